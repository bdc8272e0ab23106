"""The dashboard tile and the variance report: KPI formulas on a hand-computed floor, scoping,
filters, sorting, exports, per-associate quality and pinned query counts."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from accounts.roles import Role
from adapters.models import BackendConnection, BatchState, ParityDrift, PushBatch
from approvals.models import ProposalState, ProposedAction
from approvals.services import DecisionInput, proposal_decide
from counts.models import CountKind, CountLine, CountRun
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create, count_run_start
from counts.services.sessions import count_session_start, count_session_submit
from reconciliation import reports
from reconciliation.models import Guardrail, Variance
from reconciliation.services import report_rollup_rebuild, root_causes_ensure, run_reconcile
from tests.counts.conftest import scan
from tests.factories import (
    FacilityFactory,
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    ItemFactory,
    LocationFactory,
    ZoneFactory,
    member,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
# 21:30 on Nov 19 in Chicago: the local day differs from the UTC day.
RECONCILED_AT = datetime(2026, 11, 20, 3, 30, tzinfo=UTC)
COUNTED_AT = datetime(2026, 11, 19, 20, 0, tzinfo=UTC)


@dataclass
class Floor:
    """The hand-computed fixture: five lines in two zones of WH1 (tolerance 2.00 %).

    zone A: A1 book 100 → 100 @ $10 (0, within);   A2 100 → 99 @ $10 (−1 = 1 %, within, −$10, auto);
            A3 50 → 45 @ $4 (−5 = 10 %, out, −$20, proposal → manager approves, waits for finance)
    zone B: B1 0 → 3 @ $2.50 (+3, book 0: out, +$7.50, pending); B2 200 → 204 @ $1.25 (+2.00 %, within, +$5, auto)
    Plus an uncounted stocked balance (F), an unstocked one (G), a 40-day-old count of F, a superseded
    variance (S) in the window, and another organization's count: none of them may show.
    """

    run: CountRun
    lines: dict[str, CountLine]
    zones: dict[str, object]
    manager: object

    def variance(self, name: str) -> Variance:
        return Variance.objects.get(line=self.lines[name], superseded_at__isnull=True)


def _line(organization, run, zone, *, book, counted, cost, abc="C", on_hand=None, sku=None) -> CountLine:
    location = LocationFactory(organization=organization, zone=zone)
    item = ItemFactory(
        organization=organization, average_cost=Decimal(cost), abc_class=abc, **({"sku": sku} if sku else {})
    )
    InventoryBalanceFactory(
        organization=organization,
        location=location,
        item=item,
        on_hand=Decimal(on_hand if on_hand is not None else book),
    )
    return CountLine.objects.create(
        organization=organization,
        run=run,
        location=location,
        item=item,
        counted_quantity=Decimal(counted),
        book_quantity=Decimal(book),
        first_counted_at=COUNTED_AT,
        last_counted_at=COUNTED_AT,
    )


def _run(organization, facility, manager, name: str) -> CountRun:
    run = count_run_create(organization=organization, facility=facility, name=name, kind=CountKind.HARD, actor=manager)
    return count_run_start(run=run, actor=manager)


def build_floor(organization, facility, manager, other_organization) -> Floor:
    root_causes_ensure(organization=organization)
    Guardrail.objects.create(organization=organization, finance_min_value=Decimal("15.00"))
    zones = {
        "A": ZoneFactory(organization=organization, facility=facility, code="A"),
        "B": ZoneFactory(organization=organization, facility=facility, code="B"),
    }
    run = _run(organization, facility, manager, "Floor count")
    lines = {
        "A1": _line(organization, run, zones["A"], book="100", counted="100", cost="10.00", abc="A", sku="A1"),
        "A2": _line(organization, run, zones["A"], book="100", counted="99", cost="10.00", abc="B", sku="A2"),
        "A3": _line(organization, run, zones["A"], book="50", counted="45", cost="4.00", abc="A", sku="A3"),
        "B1": _line(organization, run, zones["B"], book="0", counted="3", cost="2.50", sku="B1"),
        "B2": _line(organization, run, zones["B"], book="200", counted="204", cost="1.25", sku="B2"),
    }
    stocked_uncounted = InventoryBalanceFactory(
        organization=organization,
        location=LocationFactory(organization=organization, zone=zones["B"]),
        item=ItemFactory(organization=organization, sku="F"),
        on_hand=Decimal("7"),
    )
    InventoryBalanceFactory(
        organization=organization,
        location=LocationFactory(organization=organization, zone=zones["B"]),
        item=ItemFactory(organization=organization, sku="G"),
        on_hand=Decimal("0"),
    )
    with time_machine.travel(RECONCILED_AT, tick=False):
        run_reconcile(run=run, actor=manager)
    proposal_decide(
        proposal=ProposedAction.objects.get(variance__line=lines["A3"]),
        actor=manager,
        decision=DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="miscount"),
    )

    # A count of F 40 days ago: outside the window.
    old = _run(organization, facility, manager, "Old count")
    CountLine.objects.create(
        organization=organization,
        run=old,
        location=stocked_uncounted.location,
        item=stocked_uncounted.item,
        counted_quantity=Decimal("1"),
        book_quantity=Decimal("7"),
        first_counted_at=NOW - timedelta(days=40),
        last_counted_at=NOW - timedelta(days=40),
    )
    with time_machine.travel(NOW - timedelta(days=40), tick=False):
        run_reconcile(run=old, actor=manager)
    proposal_decide(
        proposal=ProposedAction.objects.get(run=old),
        actor=manager,
        decision=DecisionInput(decision="reject", reason_code="CORRECTION_AFTER_REVIEW"),
    )
    # A variance in the window that a recount replaced: superseded, with its proposal.
    recounted = _run(organization, facility, manager, "Recounted")
    superseded = _line(organization, recounted, zones["A"], book="10", counted="0", cost="100.00", on_hand="0")
    with time_machine.travel(RECONCILED_AT, tick=False):
        run_reconcile(run=recounted, actor=manager)
    Variance.objects.filter(line=superseded).update(superseded_at=RECONCILED_AT + timedelta(hours=1))
    # A write behind the pipeline's back: the reports' rollup is rebuilt, as operations would.
    report_rollup_rebuild(organization=organization)
    ProposedAction.objects.filter(variance__line=superseded).update(state=ProposalState.SUPERSEDED)

    # Another organization's count in the window.
    globex = FacilityFactory(organization=other_organization, code="GX1")
    globex_manager = member(other_organization, Role.MANAGER, username="globex-manager")
    globex_run = _run(other_organization, globex, globex_manager, "Globex count")
    _line(
        other_organization,
        globex_run,
        ZoneFactory(organization=other_organization, facility=globex, code="A"),
        book="10",
        counted="1",
        cost="50.00",
    )
    with time_machine.travel(RECONCILED_AT, tick=False):
        run_reconcile(run=globex_run, actor=globex_manager)

    # The way to the ERP: two batches need a person, one will retry, one went through; one open drift.
    connection = BackendConnection.objects.create(organization=organization, kind="file", name="erp")
    for index, (state, next_attempt) in enumerate(
        [
            (BatchState.REJECTED, None),
            (BatchState.FAILED, None),
            (BatchState.FAILED, NOW + timedelta(minutes=5)),
            (BatchState.ACCEPTED, None),
        ]
    ):
        PushBatch.objects.create(
            organization=organization,
            connection=connection,
            external_id=f"B-{index}",
            location_external_id="L",
            request={},
            line_count=1,
            state=state,
            next_attempt_at=next_attempt,
            created_at=NOW,
        )
    for resolved_at in (None, NOW):
        ParityDrift.objects.create(
            organization=organization,
            connection=connection,
            item=lines["A1"].item,
            location=lines["A1"].location if resolved_at is None else lines["A2"].location,
            expected_on_hand=Decimal("1"),
            backend_on_hand=Decimal("2"),
            difference=Decimal("1"),
            detected_at=NOW,
            resolved_at=resolved_at,
        )
    return Floor(run=run, lines=lines, zones=zones, manager=manager)


@pytest.fixture(autouse=True)
def _tile_computed_on_every_request(settings):
    # The tile's cache would carry one test's figures into the next (ids are reused).
    settings.REPORT_TILE_CACHE_SECONDS = 0


@pytest.fixture
def floor(organization, facility, manager, other_organization) -> Floor:
    return build_floor(organization, facility, manager, other_organization)


# --- Formulas -----------------------------------------------------------------------------------


def test_formulas_are_decimal_ratios_and_undefined_without_a_denominator():
    assert reports.record_accuracy(within_tolerance=2, lines=3) == Decimal("0.6667")
    assert reports.record_accuracy(within_tolerance=0, lines=0) is None
    assert reports.value_accuracy(absolute_value=Decimal("42.50"), book_value=Decimal("2450.00")) == Decimal("0.9827")
    assert reports.value_accuracy(absolute_value=Decimal("300"), book_value=Decimal("100")) == Decimal("-2.0000")
    assert reports.value_accuracy(absolute_value=Decimal("5"), book_value=Decimal("0")) is None
    assert reports.coverage_share(counted=4, stocked=5) == Decimal("0.8000")
    assert reports.coverage_share(counted=0, stocked=0) is None


def test_the_dashboard_kpis_match_the_hand_computed_floor(floor, organization):
    dashboard = reports.dashboard_figures(organization=organization, now=NOW)

    assert dashboard.tolerance_percent == Decimal("2.00")
    totals = dashboard.totals
    assert (totals.lines, totals.variances, totals.within_tolerance) == (5, 4, 3)
    assert totals.net_value == Decimal("-17.50")
    assert totals.absolute_value == Decimal("42.50")
    assert totals.book_value == Decimal("2450.00")
    assert dashboard.record_accuracy == Decimal("0.6000")
    assert dashboard.value_accuracy == Decimal("0.9827")
    assert (dashboard.stocked, dashboard.stocked_counted, dashboard.coverage) == (5, 4, Decimal("0.8000"))
    # A3 waits for finance (manager signed), B1 for a manager; the rejected and the superseded do not.
    assert (dashboard.approvals_waiting, dashboard.approvals_waiting_value) == (2, Decimal("27.50"))
    assert dashboard.push_failures == 2
    assert dashboard.parity_drifts == 1
    for value in (totals.net_value, totals.absolute_value, dashboard.approvals_waiting_value, dashboard.coverage):
        assert isinstance(value, Decimal)


def test_the_dashboard_breaks_down_by_zone_and_local_day(floor, organization):
    dashboard = reports.dashboard_figures(organization=organization, now=NOW)

    by_zone = {entry.zone.code: entry for entry in dashboard.zones}
    assert set(by_zone) == {"A", "B"}
    zone_a, zone_b = by_zone["A"].figures, by_zone["B"].figures
    assert (zone_a.lines, zone_a.variances, zone_a.net_value, zone_a.absolute_value) == (
        3,
        2,
        Decimal("-30.00"),
        Decimal("30.00"),
    )
    assert (zone_a.record_accuracy, zone_a.value_accuracy) == (Decimal("0.6667"), Decimal("0.9864"))
    assert (zone_b.lines, zone_b.variances, zone_b.net_value, zone_b.absolute_value) == (
        2,
        2,
        Decimal("12.50"),
        Decimal("12.50"),
    )
    assert (zone_b.record_accuracy, zone_b.value_accuracy) == (Decimal("0.5000"), Decimal("0.9500"))
    # Reconciled at 03:30 UTC on Nov 20, which is the evening of Nov 19 in Chicago.
    assert by_zone["A"].net_by_day == {date(2026, 11, 19): Decimal("-30.00")}
    assert by_zone["A"].days[0] == date(2026, 10, 22)
    assert by_zone["A"].days[-1] == date(2026, 11, 21)
    assert len(by_zone["A"].daily_net) == len(by_zone["A"].days)


def test_the_top_items_are_ranked_by_absolute_value(floor, organization):
    dashboard = reports.dashboard_figures(organization=organization, now=NOW)

    ranked = [(entry.item.sku, entry.absolute_value, entry.net_value) for entry in dashboard.top_items]
    # A1 was counted right: it has no value to rank.
    assert ranked == [
        ("A3", Decimal("20.00"), Decimal("-20.00")),
        ("A2", Decimal("10.00"), Decimal("-10.00")),
        ("B1", Decimal("7.50"), Decimal("7.50")),
        ("B2", Decimal("5.00"), Decimal("5.00")),
    ]


def test_the_tolerance_is_the_organizations_guardrail(floor, organization):
    Guardrail.objects.filter(organization=organization, facility=None).update(auto_max_percent=Decimal("10.00"))

    dashboard = reports.dashboard_figures(organization=organization, now=NOW)

    # A3 (10 %) is now within; B1 (book 0) never is.
    assert dashboard.totals.within_tolerance == 4
    assert dashboard.record_accuracy == Decimal("0.8000")


def test_an_organization_without_counts_has_an_empty_dashboard(organization):
    dashboard = reports.dashboard_figures(organization=organization, now=NOW)

    assert dashboard.zones == []
    assert dashboard.top_items == []
    assert dashboard.record_accuracy is None
    assert dashboard.value_accuracy is None
    assert dashboard.coverage is None
    assert dashboard.tolerance_percent == Decimal("2.00")


# --- The tile on the admin index ------------------------------------------------------------------


def test_the_admin_index_shows_the_tile_to_a_manager_in_a_fixed_number_of_queries(
    floor, client, manager, django_assert_max_num_queries
):
    client.force_login(manager)
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(24):
        page = client.get(reverse("admin:index")).content.decode()

    assert 'id="dashboard"' in page
    assert "Signed in as <strong>manager</strong>" in page
    assert 'id="report-tile"' in page
    assert "60.0%" in page  # record accuracy
    assert "98.3%" in page  # value accuracy
    assert "80.0%" in page  # coverage
    assert "$27.50" in page
    assert "−$17.50" in page
    assert "$42.50" in page
    assert page.count('role="img"') == 2  # a chart per zone
    assert "Globex" not in page
    assert "GX1" not in page


def test_the_tile_query_count_does_not_grow_with_the_data(
    floor, client, manager, organization, django_assert_max_num_queries
):
    zone = floor.zones["B"]
    run = _run(organization, floor.run.facility, manager, "More lines")
    for index in range(12):
        _line(organization, run, zone, book="10", counted=str(index), cost="3.00")
    with time_machine.travel(RECONCILED_AT, tick=False):
        run_reconcile(run=run, actor=manager)
    client.force_login(manager)

    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(24):
        assert client.get(reverse("admin:index")).status_code == 200


def test_the_tile_is_computed_at_most_every_few_minutes(floor, client, manager, settings):
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.REPORT_TILE_CACHE_SECONDS = 300
    cache.clear()
    client.force_login(manager)
    with time_machine.travel(NOW, tick=False):
        first = client.get(reverse("admin:index"))
        Variance.objects.filter(line=floor.lines["A3"]).update(variance_value=Decimal("-99.00"))
        with CaptureQueriesContext(connection) as captured:
            second = client.get(reverse("admin:index"))

    assert "refreshed every 5 min" in second.content.decode()
    assert first.context["report_tile"]["totals"] == second.context["report_tile"]["totals"]
    assert not any("reconciliation_variance" in query["sql"] for query in captured.captured_queries)
    cache.clear()


@pytest.mark.parametrize("role", [Role.PLANNER])
def test_staff_without_a_reporting_role_see_the_index_without_the_tile(floor, client, organization, role):
    client.force_login(member(organization, role, username="planner"))

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="dashboard"' in page
    assert 'id="report-tile"' not in page


# --- The variance report ------------------------------------------------------------------------


def _report(client, **params):
    with time_machine.travel(NOW, tick=False):
        return client.get(reverse("reports:variances"), params)


def _skus(response) -> list[str]:
    return [row.variance.item.sku for row in response.context["rows"]]


def test_the_report_defaults_to_the_last_30_local_days_by_absolute_value(floor, client, manager):
    client.force_login(manager)

    response = _report(client)

    assert response.status_code == 200
    filters = response.context["filters"]
    assert (filters.date_from, filters.date_to) == (date(2026, 10, 23), date(2026, 11, 21))
    assert _skus(response) == ["A3", "A2", "B1", "B2", "A1"]
    totals = response.context["totals"]
    assert (totals.lines, totals.variances, totals.net_value, totals.absolute_value) == (
        5,
        4,
        Decimal("-17.50"),
        Decimal("42.50"),
    )
    page = response.content.decode()
    assert "2026-11-19 21:30 CST" in page  # the facility's time zone
    proposal = ProposedAction.objects.get(variance=floor.variance("A3"))
    assert f'href="/trace/?proposal={proposal.pk}"' in page
    assert "Miscount" in page
    assert page.count('role="img"') == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"abc": "A"}, ["A3", "A1"]),
        ({"root_cause": "miscount"}, ["A3"]),
        ({"decision": "auto"}, ["A2", "B2"]),
        ({"decision": "open"}, ["A3", "B1"]),
        ({"decision": "none"}, ["A1"]),
        ({"state": "awaiting_finance"}, ["A3"]),
        ({"state": "none"}, ["A1"]),
        ({"date_from": "2026-11-20", "date_to": "2026-11-21"}, []),
        ({"date_from": "2026-11-19", "date_to": "2026-11-19"}, ["A3", "A2", "B1", "B2", "A1"]),
    ],
)
def test_the_report_filters(floor, client, manager, params, expected):
    client.force_login(manager)

    response = _report(client, **params)

    assert response.status_code == 200
    assert _skus(response) == expected


def test_the_report_filters_by_facility_and_zone(floor, client, manager, organization):
    client.force_login(manager)

    by_zone = _report(client, zone=floor.zones["B"].pk)
    by_facility = _report(client, facility=floor.run.facility_id)
    elsewhere = _report(client, facility=FacilityFactory(organization=organization, code="WH2").pk)

    assert _skus(by_zone) == ["B1", "B2"]
    assert len(_skus(by_facility)) == 5
    assert _skus(elsewhere) == []


def test_an_approved_decision_is_a_persons(floor, client, manager, organization):
    finance = member(organization, Role.FINANCE, username="finance")
    proposal_decide(
        proposal=ProposedAction.objects.get(variance=floor.variance("A3")),
        actor=finance,
        decision=DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="damaged"),
    )
    client.force_login(manager)

    response = _report(client, decision="approved")

    assert _skus(response) == ["A3"]
    # The root cause is the first signature's (the manager's), in the filter as in the table.
    assert _skus(_report(client, root_cause="miscount")) == ["A3"]
    assert _skus(_report(client, root_cause="damaged")) == []


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("value", ["A3", "A2", "A1", "B2", "B1"]),
        ("-value", ["B1", "B2", "A1", "A2", "A3"]),
        ("units", ["A3", "A2", "A1", "B1", "B2"]),
        ("sku", ["A1", "A2", "A3", "B1", "B2"]),
        ("-percent", ["B2", "A1", "A2", "A3", "B1"]),
        ("percent", ["B1", "A3", "A2", "A1", "B2"]),
    ],
)
def test_the_report_sorts(floor, client, manager, sort, expected):
    client.force_login(manager)

    assert _skus(_report(client, sort=sort)) == expected


def test_the_report_pages(floor, client, manager, monkeypatch):
    monkeypatch.setattr("reconciliation.report_views.PAGE_SIZE", 2)
    client.force_login(manager)

    first, last = _report(client), _report(client, page=3)

    assert _skus(first) == ["A3", "A2"]
    assert first.context["pages"] == 3
    assert _skus(last) == ["A1"]
    assert "page=2" in first.context["next_query"]


def test_the_report_runs_a_fixed_number_of_queries(floor, client, manager, organization, django_assert_max_num_queries):
    client.force_login(manager)
    with django_assert_max_num_queries(20):
        _report(client)
    run = _run(organization, floor.run.facility, manager, "More lines")
    for index in range(15):
        _line(organization, run, floor.zones["A"], book="10", counted=str(index), cost="3.00")
    with time_machine.travel(RECONCILED_AT, tick=False):
        run_reconcile(run=run, actor=manager)

    with django_assert_max_num_queries(20):
        response = _report(client)
    assert len(response.context["rows"]) == 20


def test_the_report_is_for_managers_finance_and_admins(floor, client, associate, organization):
    assert client.get(reverse("reports:variances")).status_code == 302  # to the login page
    client.force_login(associate)
    assert _report(client).status_code == 403
    client.force_login(member(organization, Role.PLANNER, username="planner"))
    assert _report(client).status_code == 403
    for role in (Role.FINANCE, Role.ADMIN):
        client.force_login(member(organization, role, username=f"user-{role}"))
        assert _report(client).status_code == 200


def test_the_report_shows_only_the_users_organization(floor, client, other_organization):
    globex_manager = member(other_organization, Role.MANAGER, username="globex-boss")
    client.force_login(globex_manager)

    response = _report(client)

    assert [row.variance.facility.code for row in response.context["rows"]] == ["GX1"]
    # Another organization's facility is not a choice: the filter is refused, nothing leaks.
    refused = _report(client, facility=floor.run.facility_id)
    assert refused.status_code == 400
    assert "rows" not in refused.context


def test_a_start_after_the_end_is_refused(floor, client, manager):
    client.force_login(manager)

    response = _report(client, date_from="2026-11-20", date_to="2026-11-01")

    assert response.status_code == 400
    assert "The start date is after the end date." in response.content.decode()


def test_the_csv_export_holds_every_filtered_row(floor, client, manager, django_assert_max_num_queries):
    item = floor.lines["A1"].item
    item.name = '=HYPERLINK("http://evil")'
    item.save(update_fields=["name"])
    client.force_login(manager)

    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(12):
        response = client.get(reverse("reports:variances-export", args=["csv"]), {"zone": floor.zones["A"].pk})

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="variances-20261023-20261121.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["sku"] for row in rows] == ["A1", "A2", "A3"]
    a3 = rows[2]
    proposal = ProposedAction.objects.get(variance=floor.variance("A3"))
    assert a3["computed_at_local"] == "2026-11-19T21:30:00-06:00"
    assert a3["time_zone"] == "America/Chicago"
    assert (a3["zone"], a3["abc_class"], a3["root_cause"], a3["decision"]) == ("A", "A", "miscount", "open")
    assert Decimal(a3["variance_value"]) == Decimal("-20.00")
    assert a3["trace"] == f"/trace/?proposal={proposal.pk}"
    assert rows[0]["trace"] == ""
    assert rows[0]["item_name"] == '\'=HYPERLINK("http://evil")'  # not a formula in a spreadsheet
    assert rows[0]["decision"] == "none"


def test_the_xlsx_export(floor, client, manager):
    openpyxl = pytest.importorskip("openpyxl")
    client.force_login(manager)

    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("reports:variances-export", args=["xlsx"]))

    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert len(rows) == 6
    assert sorted(row[header.index("sku")] for row in rows[1:]) == ["A1", "A2", "A3", "B1", "B2"]


def test_an_export_too_large_is_refused(floor, client, manager, settings):
    settings.REPORT_EXPORT_MAX_ROWS = 4
    client.force_login(manager)

    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("reports:variances-export", args=["csv"]))

    assert response.status_code == 400
    assert "5 rows are more than 4" in response.content.decode()


def test_the_export_is_for_reporting_roles_and_known_formats(floor, client, associate, manager):
    client.force_login(associate)
    assert client.get(reverse("reports:variances-export", args=["csv"])).status_code == 403
    client.force_login(manager)
    assert client.get(reverse("reports:variances-export", args=["pdf"])).status_code == 404


# --- Per-associate quality ------------------------------------------------------------------------


def test_associate_quality_counts_lines_and_recount_overturns(organization, facility, manager, client):
    zone = ZoneFactory(organization=organization, facility=facility, code="Q")
    first, second, recounter = (member(organization, Role.ASSOCIATE, username=name) for name in ("ann", "bob", "cid"))
    stock = []
    for index in range(4):
        location = LocationFactory(organization=organization, zone=zone, code=f"Q-{index}")
        barcode = ItemBarcodeFactory(item__organization=organization)
        InventoryBalanceFactory(organization=organization, location=location, item=barcode.item, on_hand=Decimal("5"))
        stock.append((location.code, barcode.value))
    run = _run(organization, facility, manager, "Quality")

    def count(user, events, *, recount=False):
        session = count_session_start(run=run, user=user, device_id=f"{user.username}-phone", is_recount=recount)
        result = count_events_ingest(session=session, actor=user, events=events)
        assert not result.rejected
        count_session_submit(session=session, actor=user)

    count(first, [scan(*stock[0], quantity=5, kind="set"), scan(*stock[1], quantity=3, kind="set"),
                  scan(*stock[3], quantity=5, kind="set")])  # fmt: skip
    count(second, [scan(*stock[2], quantity=7, kind="set")])
    # The recount replaces ann's 3 with 4 (overturned) and confirms bob's 7 (not overturned).
    count(recounter, [scan(*stock[1], quantity=4, kind="set"), scan(*stock[2], quantity=7, kind="set")], recount=True)
    run_reconcile(run=run, actor=manager)
    # After reconciliation, ann's Q-0 figure changes before anyone decided: its variance is superseded.
    line = CountLine.objects.get(run=run, location__code="Q-0")
    line.counted_quantity = Decimal("6")
    line.save(update_fields=["counted_quantity"])
    run_reconcile(run=run, actor=manager)

    today = datetime.now(tz=UTC).date()
    filters = reports.VarianceFilters(
        date_from=today - timedelta(days=1), date_to=today + timedelta(days=1), time_zone=facility.zone_info
    )
    variances = reports.variance_report(organization=organization, filters=filters)
    quality = reports.associate_quality(variances, organization=organization)

    assert [(entry.username, entry.lines_counted, entry.overturned) for entry in quality] == [
        ("ann", 3, 2),
        ("bob", 1, 0),
    ]
    assert quality[0].overturned_share == Decimal("0.6667")
    assert quality[1].overturned_share == Decimal("0.0000")
    client.force_login(manager)
    page = client.get(reverse("reports:variance-associates")).content.decode()
    assert '<tr data-associate="ann"><td>ann</td><td class="num" data-col="lines">3</td>' in page
    assert '<td class="num" data-col="share">66.7%</td>' in page


def test_the_associates_page_shows_the_quality_of_the_selection(floor, client, manager, django_assert_max_num_queries):
    client.force_login(manager)

    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(16):
        response = client.get(reverse("reports:variance-associates"), {"zone": floor.zones["A"].pk})

    assert response.status_code == 200
    # The floor's lines were entered, not scanned: nobody counted them in a session.
    assert response.context["associates"] == []
    assert "No scanned lines in this selection" in response.content.decode()
    assert "zone=" in response.context["report_query"]
