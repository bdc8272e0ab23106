from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import Role
from counts.models import FacilityCountSettings, RunState
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.sessions import count_session_start, count_session_submit
from tests.counts.conftest import scan
from tests.factories import member


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def _counted_runs(organization, warehouse, manager, associate, count: int, offset: int) -> None:
    for n in range(count):
        run = count_run_create(
            organization=organization, facility=warehouse.facility, name=f"Run {offset + n}", kind="hard", actor=manager
        )
        session = count_session_start(run=run, user=associate, device_id="d")
        count_events_ingest(
            session=session,
            actor=associate,
            events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value), scan("A-01-01", "404")],
        )
        count_session_submit(session=session, actor=associate)


@pytest.mark.parametrize("model", ["countrun", "countsession", "countevent", "countline"])
def test_counting_changelists_run_a_fixed_number_of_queries(client, organization, warehouse, manager, associate, model):
    client.force_login(manager)
    url = reverse(f"admin:counts_{model}_changelist")
    _counted_runs(organization, warehouse, manager, associate, 2, 0)
    few = _queries(client, url)

    _counted_runs(organization, warehouse, manager, associate, 12, 2)

    assert _queries(client, url) == few


def test_run_changelist_shows_progress_and_filters(client, organization, warehouse, manager, associate):
    _counted_runs(organization, warehouse, manager, associate, 1, 0)
    client.force_login(manager)

    page = client.get(reverse("admin:counts_countrun_changelist"), {"kind": "hard"}).content.decode()

    assert "Run 0" in page
    assert "33%" in page  # one of three stocked lines counted


def test_cancel_action_goes_through_the_service(client, organization, warehouse, manager):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="To cancel", kind="hard", actor=manager
    )
    client.force_login(manager)

    client.post(
        reverse("admin:counts_countrun_changelist"),
        {"action": "cancel_runs", "_selected_action": [run.pk]},
    )

    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert run.history.first().history_user == manager


def test_manager_sets_store_preferences_with_history(client, warehouse, manager):
    client.force_login(manager)

    response = client.post(
        reverse("admin:counts_facilitycountsettings_add"),
        {
            "facility": warehouse.facility.pk,
            "primary_identifier": "upc",
            "secondary_identifier": "name",
            "require_scan": "on",
            "barcode_format": "gs1",
            "barcode_pattern": "",
            "blind_count": "on",
            "coverage_days": 30,
            "a_class_coverage_days": 14,
        },
    )

    assert response.status_code == 302
    saved = FacilityCountSettings.objects.get()
    assert (saved.require_scan, saved.blind_count, saved.primary_identifier) == (True, True, "upc")
    assert saved.history.first().history_user == manager


def test_associates_and_finance_cannot_command_runs(organization):
    finance = member(organization, Role.FINANCE)
    planner = member(organization, Role.PLANNER)

    assert finance.has_perm("counts.view_countrun")
    assert not finance.has_perm("counts.change_countrun")
    assert planner.has_perm("counts.change_countrun")
    assert not planner.has_perm("counts.change_facilitycountsettings")
