"""Planning: runs in facility time, directed counts from signals, finding and commanding runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from django.core.exceptions import ValidationError

from accounts.roles import Role
from counts.models import CountKind, CountRequest, CountRun, RunState
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create, facility_time_zone_change
from counts.services.sessions import count_session_start
from tests.conftest import token_client
from tests.counts.conftest import scan
from tests.factories import FacilityFactory, member


def test_local_intent_is_kept_and_utc_computed_in_the_facility_zone(organization, facility, manager):
    run = count_run_create(
        organization=organization,
        facility=facility,
        name="Spring",
        kind=CountKind.HARD,
        actor=manager,
        start_date_local=date(2026, 3, 7),
        start_time_local=time(9, 0),
        due_date_local=date(2026, 3, 9),
        due_time_local=time(17, 0),
    )

    # Chicago is UTC-6 before the 8 March DST change and UTC-5 after it.
    assert run.starts_at == datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    assert run.due_at == datetime(2026, 3, 9, 22, 0, tzinfo=UTC)
    assert run.state == RunState.SCHEDULED


def test_changing_the_facility_zone_recomputes_open_runs_from_local_intent(organization, facility, manager):
    open_run = count_run_create(
        organization=organization, facility=facility, name="Across DST", kind=CountKind.HARD, actor=manager,
        start_date_local=date(2026, 3, 7), start_time_local=time(9, 0),
        due_date_local=date(2026, 3, 9), due_time_local=time(9, 0),
    )  # fmt: skip
    cancelled = count_run_create(
        organization=organization, facility=facility, name="Old", kind=CountKind.HARD, actor=manager,
        start_date_local=date(2026, 3, 7), start_time_local=time(9, 0),
    )  # fmt: skip
    cancelled.cancel()
    cancelled.save()

    changed = facility_time_zone_change(facility=facility, time_zone="America/Los_Angeles", actor=manager)

    open_run.refresh_from_db()
    cancelled.refresh_from_db()
    assert changed == 1
    # 09:00 Pacific: PST (UTC-8) on 7 March, PDT (UTC-7) on 9 March; the wall clock intent is unchanged.
    assert open_run.starts_at == datetime(2026, 3, 7, 17, 0, tzinfo=UTC)
    assert open_run.due_at == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    assert (open_run.start_time_local, open_run.due_time_local) == (time(9, 0), time(9, 0))
    assert cancelled.starts_at == datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    assert open_run.history.first().history_user == manager


def test_a_time_that_dst_skips_moves_forward(organization, facility, manager):
    run = count_run_create(
        organization=organization, facility=facility, name="Gap", kind=CountKind.HARD, actor=manager,
        start_date_local=date(2026, 3, 8), start_time_local=time(2, 30),
    )  # fmt: skip

    assert run.starts_at == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)  # 03:30 CDT


def test_unknown_time_zone_is_refused(facility, manager):
    with pytest.raises(ValidationError):
        facility_time_zone_change(facility=facility, time_zone="Mars/Olympus", actor=manager)


def test_signal_adds_to_the_open_directed_run_deduplicated(manager_api, warehouse):
    payload = {
        "kind": "pick_short",
        "item": warehouse.items[0].sku,
        "location": warehouse.locations[0].code,
        "expected": 10,
        "found": 7,
        "note": "picker found 7",
    }

    first = manager_api.post("/api/signals/", payload, format="json")
    again = manager_api.post("/api/signals/", payload, format="json")
    by_barcode = manager_api.post(
        "/api/signals/",
        {**payload, "kind": "negative_available", "item": warehouse.barcodes[1].value},
        format="json",
    )

    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["run_created"] is True
    assert again.status_code == 200
    assert again.json() == {"run": first.json()["run"], "created": False, "run_created": False}
    assert by_barcode.json()["run"] == first.json()["run"]
    run = CountRun.objects.get()
    assert (run.kind, run.source, run.state) == ("directed", "signal", "scheduled")
    request = CountRequest.objects.get(item=warehouse.items[0])
    assert (request.signal_count, request.reason, request.found) == (2, "pick_short", 7)


def test_signal_errors_name_the_field(manager_api, warehouse):
    response = manager_api.post(
        "/api/signals/", {"kind": "gut_feeling", "item": "NOPE", "location": "A-01-01"}, format="json"
    )
    unknown_item = manager_api.post(
        "/api/signals/", {"kind": "pick_short", "item": "NOPE", "location": "A-01-01"}, format="json"
    )

    assert response.status_code == 400
    assert "kind" in response.json()["errors"]
    assert unknown_item.status_code == 400
    assert "item" in unknown_item.json()["errors"]


def test_a_closed_directed_run_is_not_reused(manager_api, warehouse):
    payload = {"kind": "pick_short", "item": warehouse.items[0].sku, "location": warehouse.locations[0].code}
    first_run = manager_api.post("/api/signals/", payload, format="json").json()["run"]
    manager_api.post(f"/api/runs/{first_run}/cancel", {"reason": "duplicate"}, format="json")

    second = manager_api.post("/api/signals/", payload, format="json").json()

    assert second["run"] != first_run
    assert second["run_created"] is True


def test_runs_are_listed_with_filters_and_progress(manager_api, organization, warehouse, manager, associate):
    hard = count_run_create(
        organization=organization, facility=warehouse.facility, name="Wall to wall", kind="hard", actor=manager
    )
    count_run_create(
        organization=organization, facility=warehouse.facility, name="Zone A cycle", kind="cycle", actor=manager,
        zones=[warehouse.zone],
    )  # fmt: skip
    elsewhere = FacilityFactory(organization=organization, code="WH9")
    count_run_create(organization=organization, facility=elsewhere, name="Far away", kind="hard", actor=manager)
    session = count_session_start(run=hard, user=associate, device_id="d")
    count_events_ingest(
        session=session, actor=associate, events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
    )

    everything = manager_api.get("/api/runs/").json()
    by_search = manager_api.get("/api/runs/", {"q": "wall"}).json()["results"]
    by_type = manager_api.get("/api/runs/", {"type": "cycle"}).json()["results"]
    by_facility = manager_api.get("/api/runs/", {"facility": "WH9"}).json()["results"]
    in_progress = manager_api.get("/api/runs/", {"status": "in_progress"}).json()["results"]
    by_name = manager_api.get("/api/runs/", {"ordering": "name"}).json()["results"]

    assert everything["count"] == 3
    assert [row["name"] for row in by_search] == ["Wall to wall"]
    assert [row["name"] for row in by_type] == ["Zone A cycle"]
    assert [row["name"] for row in by_facility] == ["Far away"]
    assert [row["name"] for row in by_name] == ["Far away", "Wall to wall", "Zone A cycle"]
    row = in_progress[0]
    assert (row["facility"], row["type"], row["status"]) == ("WH1", "hard", "in_progress")
    assert (row["lines_in_scope"], row["lines_counted"], row["progress"]) == (3, 1, 0.3333)
    assert by_type[0]["lines_in_scope"] == 3


def test_run_list_query_count_does_not_grow(
    manager_api, organization, warehouse, manager, django_assert_max_num_queries
):
    for n in range(15):
        count_run_create(
            organization=organization, facility=warehouse.facility, name=f"Run {n}", kind="hard", actor=manager
        )
    with django_assert_max_num_queries(6):
        response = manager_api.get("/api/runs/")
    assert response.json()["count"] == 15


def test_runs_can_be_created_in_local_time_started_and_cancelled(manager_api, warehouse, manager):
    created = manager_api.post(
        "/api/runs/",
        {"facility": "WH1", "name": "Audit prep", "type": "hard", "zones": ["A"], "start": "2026-07-01T08:00",
         "due": "2026-07-02"},
        format="json",
    )  # fmt: skip
    run_id = created.json()["id"]
    started = manager_api.post(f"/api/runs/{run_id}/start")
    cancelled = manager_api.post(f"/api/runs/{run_id}/cancel", {"reason": "moved"}, format="json")
    cancel_again = manager_api.post(f"/api/runs/{run_id}/cancel")
    start_cancelled = manager_api.post(f"/api/runs/{run_id}/start")

    assert created.status_code == 201
    assert created.json()["starts_at"] == "2026-07-01T13:00:00Z"
    assert created.json()["starts_at_local"] == "2026-07-01T08:00:00-05:00"
    assert created.json()["due_at_local"] == "2026-07-02T23:59:00-05:00"
    assert started.json()["status"] == "in_progress"
    assert cancelled.json()["status"] == "cancelled"
    assert cancel_again.status_code == 200
    assert start_cancelled.status_code == 409
    duplicate = manager_api.post("/api/runs/", {"facility": "WH1", "name": "Audit prep", "type": "hard"}, format="json")
    assert duplicate.status_code == 400
    assert "name" in duplicate.json()["errors"]


def test_associates_cannot_command_runs(associate_api, hard_run):
    assert associate_api.post(f"/api/runs/{hard_run.pk}/cancel").status_code == 403
    assert associate_api.post("/api/runs/", {"facility": "WH1", "name": "x", "type": "hard"}).status_code == 403


def test_another_organizations_runs_are_404(hard_run, other_organization):
    outsider = token_client(member(other_organization, Role.PLANNER, username="outsider"))

    assert outsider.get(f"/api/runs/{hard_run.pk}").status_code == 404
    assert outsider.post(f"/api/runs/{hard_run.pk}/start").status_code == 404
    assert outsider.get("/api/runs/").json()["count"] == 0


def test_run_lines_sort_by_variance(manager_api, hard_run, warehouse, associate):
    session = count_session_start(run=hard_run, user=associate, device_id="d")
    events = [
        scan(warehouse.locations[0].code, warehouse.barcodes[0].value, quantity=9, kind="set"),  # book 10: -1
        scan(warehouse.locations[1].code, warehouse.barcodes[1].value, quantity=5, kind="set"),  # book 20: -15
        scan(warehouse.locations[2].code, warehouse.barcodes[2].value, quantity=33, kind="set"),  # book 30: +3
    ]
    count_events_ingest(session=session, actor=associate, events=events)

    rows = manager_api.get(f"/api/runs/{hard_run.pk}/lines", {"ordering": "variance"}).json()["results"]

    assert [row["variance"] for row in rows] == ["-15.000", "3.000", "-1.000"]
