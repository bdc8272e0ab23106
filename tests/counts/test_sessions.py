"""Sessions: one active per user (a database rule), any device, blind counts enforced by the server."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from counts.models import CountSession, SessionState
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.preferences import facility_count_settings_update
from counts.services.sessions import ActiveSessionExists, count_session_start
from tests.conftest import token_client
from tests.counts.conftest import scan


def _start(api, run, device="phone-1", **extra):
    return api.post("/api/sessions/", {"run": run.pk, "device_id": device, **extra}, format="json")


def test_start_returns_the_session_and_starts_the_run(associate_api, hard_run):
    response = _start(associate_api, hard_run)

    assert response.status_code == 201
    body = response.json()
    assert {"id", "run", "state", "lines", "events"} <= set(body)
    assert (body["run"], body["state"], body["device_id"]) == (hard_run.pk, "active", "phone-1")
    hard_run.refresh_from_db()
    assert hard_run.state == "in_progress"


def test_second_active_session_is_409_naming_the_active_one(associate_api, hard_run, organization, manager, warehouse):
    first = _start(associate_api, hard_run).json()
    other_run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Other", kind="hard", actor=manager
    )

    response = _start(associate_api, other_run, device="tablet")

    assert response.status_code == 409
    assert response.json()["active_session"] == first["id"]
    assert CountSession.objects.filter(state=SessionState.ACTIVE).count() == 1


def test_the_database_itself_refuses_two_active_sessions(hard_run, associate):
    from django.db import IntegrityError, transaction

    count_session_start(run=hard_run, user=associate, device_id="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        CountSession.objects.create(organization=hard_run.organization, run=hard_run, user=associate, device_id="b")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_starts_one_wins_the_other_gets_the_winner(organization, warehouse, manager, associate):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Race", kind="hard", actor=manager
    )
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def start(device: str) -> None:
        try:
            barrier.wait()
            outcomes.append(count_session_start(run=run, user=associate, device_id=device))
        except ActiveSessionExists as error:
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(device,)) for device in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    sessions = [outcome for outcome in outcomes if isinstance(outcome, CountSession)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, ActiveSessionExists)]
    assert len(sessions) == 1
    assert len(refusals) == 1
    assert refusals[0].session.pk == sessions[0].pk
    assert CountSession.objects.filter(user=associate, state=SessionState.ACTIVE).count() == 1


def test_pause_then_resume_on_another_device_rebuilds_without_duplicates(associate_api, hard_run, warehouse):
    session = _start(associate_api, hard_run).json()
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    batch = [scan(location, barcode, offset=i) for i in range(3)]
    associate_api.post("/api/inventory/count", {"session": session["id"], "events": batch}, format="json")

    paused = associate_api.post(f"/api/sessions/{session['id']}/pause")
    resumed = associate_api.post(f"/api/sessions/{session['id']}/resume", {"device_id": "tablet-2"}, format="json")
    # The first device comes back online and replays what it already sent.
    replay = associate_api.post("/api/inventory/count", {"session": session["id"], "events": batch}, format="json")

    assert paused.json()["state"] == "paused"
    state = resumed.json()
    assert (state["state"], state["device_id"]) == ("active", "tablet-2")
    assert [(line["location"], line["counted"]) for line in state["lines"]] == [(location, "3.000")]
    assert replay.json()["duplicates"] == 3
    assert associate_api.get(f"/api/sessions/{session['id']}").json()["lines"][0]["counted"] == "3.000"


def test_submit_closes_the_session_for_scans(associate_api, hard_run, warehouse):
    session = _start(associate_api, hard_run).json()

    submitted = associate_api.post(f"/api/sessions/{session['id']}/submit")
    late = associate_api.post(
        "/api/inventory/count",
        {"session": session["id"], "events": [scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]},
        format="json",
    )

    assert submitted.json()["state"] == "submitted"
    assert submitted.json()["submitted_at"]
    assert late.status_code == 409
    assert associate_api.post(f"/api/sessions/{session['id']}/pause").status_code == 409


def test_associates_cannot_reach_each_others_sessions(hard_run, associate, second_associate):
    session = count_session_start(run=hard_run, user=associate, device_id="a")
    intruder = token_client(second_associate)

    assert intruder.get(f"/api/sessions/{session.pk}").status_code == 404
    assert intruder.post(f"/api/sessions/{session.pk}/submit").status_code == 404


def test_sessions_of_another_organization_are_404(hard_run, associate, other_organization):
    from accounts.roles import Role
    from tests.factories import member

    session = count_session_start(run=hard_run, user=associate, device_id="a")
    outsider = token_client(member(other_organization, Role.MANAGER, username="outsider"))

    assert outsider.get(f"/api/sessions/{session.pk}").status_code == 404
    assert outsider.post("/api/sessions/", {"run": hard_run.pk, "device_id": "x"}, format="json").status_code == 404


def _leaks_book(payload: object, book_values: set[str]) -> bool:
    """True if any key says book/variance, anywhere in the response."""
    if isinstance(payload, dict):
        return any(
            key in {"book", "book_quantity", "variance", "on_hand"} or _leaks_book(value, book_values)
            for key, value in payload.items()
        )
    if isinstance(payload, list):
        return any(_leaks_book(value, book_values) for value in payload)
    return False


def test_blind_counts_never_send_book_quantities_to_associates(
    associate_api, manager_api, hard_run, warehouse, manager, associate
):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"blind_count": True})
    session = _start(associate_api, hard_run).json()
    events = [scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
    capture = associate_api.post("/api/inventory/count", {"session": session["id"], "events": events}, format="json")

    responses = [
        capture.json(),
        associate_api.get(f"/api/sessions/{session['id']}").json(),
        associate_api.post(f"/api/sessions/{session['id']}/pause").json(),
        associate_api.post(f"/api/sessions/{session['id']}/resume", {"device_id": "b"}, format="json").json(),
        associate_api.get(f"/api/runs/{hard_run.pk}/lines").json(),
        associate_api.get(f"/api/runs/{hard_run.pk}/lines?ordering=variance").json(),
        associate_api.get("/api/sessions/").json(),
    ]

    assert not any(_leaks_book(response, set()) for response in responses)
    assert responses[1]["blind"] is True
    # A manager reviewing the same run sees the book.
    manager_lines = manager_api.get(f"/api/runs/{hard_run.pk}/lines").json()["results"]
    assert manager_lines[0]["book"] == "10.000"


def test_without_blind_counting_associates_see_the_book(associate_api, hard_run, warehouse, associate):
    session = count_session_start(run=hard_run, user=associate, device_id="a")
    count_events_ingest(
        session=session, actor=associate, events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
    )

    state = associate_api.get(f"/api/sessions/{session.pk}").json()

    assert state["blind"] is False
    assert Decimal(state["lines"][0]["book"]) == Decimal("10")
