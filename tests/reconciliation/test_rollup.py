"""The reports' variance rollup: kept by the pipeline, equal at every step to a fresh aggregation
of the current variances, rebuilt from scratch on demand; and the reports read it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Abs, TruncHour
from django.test.utils import CaptureQueriesContext

from approvals.models import ProposalState, ProposedAction
from approvals.services import DecisionInput, proposal_decide
from reconciliation import reports
from reconciliation.models import CountedItemLocation, Guardrail, Variance, VarianceHourlyRollup
from reconciliation.services import BOOK_VALUE, report_rollup_rebuild, root_causes_ensure, run_reconcile
from tests.factories import FacilityFactory, LocationFactory, ZoneFactory

FIRST = datetime(2026, 11, 10, 14, 25, tzinfo=UTC)
RECOUNT = datetime(2026, 11, 10, 16, 40, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 12, 17, 31, tzinfo=UTC)


def _fresh(organization) -> dict[tuple, tuple]:
    """The rollup as a fresh aggregation of the organization's current variances would make it."""
    rows = (
        Variance.objects.filter(organization=organization, superseded_at__isnull=True)
        .annotate(hour=TruncHour("computed_at", tzinfo=UTC))
        .values("facility_id", "location_id", "hour")
        .annotate(
            lines=Count("*"),
            variances=Count("pk", filter=~Q(variance_units=0)),
            net=Sum("variance_value"),
            absolute=Sum(Abs("variance_value")),
            book=Sum(BOOK_VALUE),
        )
        .order_by()
    )
    return {
        (row["facility_id"], row["location_id"], row["hour"]): (
            row["lines"],
            row["variances"],
            Decimal(row["net"]).quantize(Decimal("0.01")),
            Decimal(row["absolute"]).quantize(Decimal("0.01")),
            Decimal(row["book"]).quantize(Decimal("0.0000001")),
        )
        for row in rows
    }


def _kept(organization) -> dict[tuple, tuple]:
    return {
        (row.facility_id, row.location_id, row.hour): (
            row.lines,
            row.variances,
            Decimal(row.net_value).quantize(Decimal("0.01")),
            Decimal(row.absolute_value).quantize(Decimal("0.01")),
            Decimal(row.book_value).quantize(Decimal("0.0000001")),
        )
        for row in VarianceHourlyRollup.objects.filter(organization=organization)
    }


def _assert_in_step(organization) -> None:
    fresh = _fresh(organization)
    assert fresh, "the scenario has variances"
    assert _kept(organization) == fresh
    last_counts = (
        Variance.objects.filter(organization=organization, superseded_at__isnull=True)
        .values("item_id", "location_id")
        .annotate(last=Max("computed_at"))
        .order_by()
    )
    assert {
        (pair.item_id, pair.location_id): pair.last_counted_at
        for pair in CountedItemLocation.objects.filter(organization=organization)
    } == {(row["item_id"], row["location_id"]): row["last"] for row in last_counts}


def test_the_pipeline_keeps_the_rollup_equal_to_the_variances(lines, manager, organization):
    root_causes_ensure(organization=organization)
    Guardrail.objects.create(organization=organization)
    off = lines.line(book="10", counted="4", cost="5.00")  # −$30: a proposal
    rejected = lines.line(book="20", counted="8", cost="7.50")  # −$90: a proposal, rejected below
    lines.line(book="100", counted="101", cost="1.00")  # auto
    lines.line(book="50", counted="50", cost="2.00")  # no difference
    lines.line(book="0", counted="0", cost="3.3333")  # nothing on the book, nothing found

    with time_machine.travel(FIRST, tick=False):
        run_reconcile(run=lines.run, actor=manager)
    _assert_in_step(organization)
    assert VarianceHourlyRollup.objects.get(location=off.location).lines == 1

    # A decision changes no variance: the rollup stays as it is.
    proposal_decide(
        proposal=ProposedAction.objects.get(variance__line=rejected),
        actor=manager,
        decision=DecisionInput(decision="reject", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount"),
    )
    _assert_in_step(organization)

    # A recount of the open one: its variance is superseded, the new one lands in a later hour.
    off.counted_quantity = Decimal("9")
    off.save(update_fields=["counted_quantity"])
    with time_machine.travel(RECOUNT, tick=False):
        result = run_reconcile(run=lines.run, actor=manager)
    assert result.superseded == 1
    _assert_in_step(organization)
    # The first hour's row of that location held only the replaced line: it is gone.
    assert list(VarianceHourlyRollup.objects.filter(location=off.location).values_list("hour", "lines")) == [
        (datetime(2026, 11, 10, 16, tzinfo=UTC), 1)
    ]

    # Reconciling again changes nothing.
    with time_machine.travel(RECOUNT + timedelta(minutes=5), tick=False):
        run_reconcile(run=lines.run, actor=manager)
    _assert_in_step(organization)
    assert ProposedAction.objects.filter(variance__line=off, state=ProposalState.SUPERSEDED).count() == 1


def test_the_rebuild_recomputes_the_rollup_from_scratch(lines, manager, organization, other_organization):
    for book, counted in (("10", "4"), ("7", "7"), ("3", "5")):
        lines.line(book=book, counted=counted)
    with time_machine.travel(FIRST, tick=False):
        run_reconcile(run=lines.run, actor=manager)
    expected = _kept(organization)
    # Drift, as a write behind the pipeline's back would leave it.
    VarianceHourlyRollup.objects.filter(organization=organization).update(lines=99)
    VarianceHourlyRollup.objects.create(
        organization=other_organization,
        facility=FacilityFactory(organization=other_organization),
        location=LocationFactory(organization=other_organization),
        hour=FIRST.replace(minute=0),
        lines=1,
    )

    assert report_rollup_rebuild(organization=organization) == len(expected)

    assert _kept(organization) == expected == _fresh(organization)
    assert VarianceHourlyRollup.objects.filter(organization=other_organization).count() == 1  # not touched
    out = StringIO()
    call_command("report_rollup_rebuild", stdout=out)
    assert "every organization" in out.getvalue()
    assert not VarianceHourlyRollup.objects.filter(organization=other_organization).exists()  # no variances there
    _assert_in_step(organization)


# --- The reports read it -----------------------------------------------------------------------


def _tables(captured) -> list[str]:
    return [query["sql"] for query in captured.captured_queries]


@pytest.fixture
def counted_floor(organization, facility, manager, lines):
    """Lines of one run reconciled in two hours, in a Chicago facility (the `lines` fixture's)."""
    Guardrail.objects.create(organization=organization)
    made = [
        lines.line(book="100", counted="100", cost="10.00"),
        lines.line(book="100", counted="99", cost="10.00"),  # 1 %: within
        lines.line(book="50", counted="45", cost="4.00"),  # 10 %: out
        lines.line(book="0", counted="3", cost="2.50"),  # book 0: out
        lines.line(book="200", counted="204", cost="1.25"),  # 2.00 %: within
        lines.line(book="7", counted="7", cost="0.3333"),
    ]
    with time_machine.travel(FIRST, tick=False):
        run_reconcile(run=lines.run, actor=manager)
    # A later recount of one line, reconciled the next day (another hour, another local day).
    made[2].counted_quantity = Decimal("49")
    made[2].save(update_fields=["counted_quantity"])
    with time_machine.travel(FIRST + timedelta(days=1, minutes=7), tick=False):
        run_reconcile(run=lines.run, actor=manager)
    return made


def _live_dashboard(organization, now):
    """The tile as the variances alone give it (no whole hour in the window: no rollup)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reports, "rollup_split", lambda **kwargs: None)
        return reports.dashboard_figures(organization=organization, now=now)


def test_the_tile_reads_the_rollup_and_shows_what_the_variances_give(counted_floor, organization):
    with CaptureQueriesContext(connection) as captured:
        dashboard = reports.dashboard_figures(organization=organization, now=NOW)
    assert any("reconciliation_variancehourlyrollup" in sql for sql in _tables(captured))

    live = _live_dashboard(organization, NOW)
    assert dashboard.totals == live.totals
    assert dashboard.totals.lines == 6
    assert dashboard.totals.within_tolerance == 5  # all but 3 found on a book of 0
    assert [(entry.zone, entry.figures, entry.net_by_day, entry.absolute_by_day) for entry in dashboard.zones] == [
        (entry.zone, entry.figures, entry.net_by_day, entry.absolute_by_day) for entry in live.zones
    ]
    assert dashboard.coverage == live.coverage
    assert dashboard.top_items == live.top_items


@pytest.mark.parametrize(
    "now",
    [
        # The window starts mid-hour, in the hour of the first reconciliation (an edge read from
        # the variances), and ends in the hour of the recount.
        FIRST + timedelta(days=30, minutes=-10),
        FIRST + timedelta(days=1, minutes=30),
        FIRST + timedelta(days=1, minutes=7),  # ends on the recount's very moment (inclusive)
        FIRST + timedelta(days=30, minutes=1),  # the first reconciliation just left the window
    ],
)
def test_the_tile_is_exact_at_the_window_edges(counted_floor, organization, now):
    dashboard = reports.dashboard_figures(organization=organization, now=now)
    live = _live_dashboard(organization, now)

    assert dashboard.totals == live.totals
    assert [(entry.figures, entry.net_by_day) for entry in dashboard.zones] == [
        (entry.figures, entry.net_by_day) for entry in live.zones
    ]


def test_the_tolerance_is_applied_when_read_not_when_rolled_up(counted_floor, organization):
    before = reports.dashboard_figures(organization=organization, now=NOW).totals.within_tolerance
    Guardrail.objects.filter(organization=organization).update(auto_max_percent=Decimal("0.50"))

    after = reports.dashboard_figures(organization=organization, now=NOW).totals

    assert (before, after.within_tolerance) == (5, 2)  # only the lines without difference
    assert after == _live_dashboard(organization, NOW).totals


def _filters(zone_name: str, **extra) -> reports.VarianceFilters:
    return reports.VarianceFilters(
        date_from=date(2026, 11, 1), date_to=date(2026, 11, 21), time_zone=ZoneInfo(zone_name), **extra
    )


@pytest.mark.parametrize("zone_name", ["America/Chicago", "UTC", "Asia/Kolkata"])
def test_the_report_totals_read_the_rollup_and_match_the_variances(counted_floor, organization, zone_name):
    filters = _filters(zone_name)
    variances = reports.variance_report(organization=organization, filters=filters)
    with CaptureQueriesContext(connection) as captured:
        periods, totals = reports.report_by_period(variances, filters=filters, tolerance=Decimal("2.00"))
    # Kolkata is 5:30 from UTC: its days are not whole UTC hours, the variances answer.
    read_rollup = any("reconciliation_variancehourlyrollup" in sql for sql in _tables(captured))
    assert read_rollup == (zone_name != "Asia/Kolkata")

    # The same queryset filtered further is not the report: it reads the variances.
    live_periods, live_totals = reports.report_by_period(
        variances.filter(pk__gte=0), filters=filters, tolerance=Decimal("2.00")
    )
    assert totals == live_totals
    assert [(period.start, period.figures) for period in periods] == [
        (period.start, period.figures) for period in live_periods
    ]
    assert totals.lines == 6


def test_the_report_by_facility_and_zone_reads_the_rollup(counted_floor, organization, facility, lines):
    other_zone = ZoneFactory(organization=organization, facility=facility, code="OTHER")
    for zone_id, facility_id, expected in ((lines.zone.pk, None, 6), (other_zone.pk, None, 0), (None, facility.pk, 6)):
        filters = _filters("America/Chicago", zone_id=zone_id, facility_id=facility_id)
        variances = reports.variance_report(organization=organization, filters=filters)
        _, totals = reports.report_by_period(variances, filters=filters, tolerance=Decimal("2.00"))
        _, live = reports.report_by_period(variances.filter(pk__gte=0), filters=filters, tolerance=Decimal("2.00"))
        assert totals == live
        assert totals.lines == expected


def test_a_filter_the_rollup_cannot_answer_reads_the_variances(counted_floor, organization):
    filters = _filters("America/Chicago", abc_class="A")
    assert reports.report_scope(reports.variance_report(organization=organization, filters=filters)) is None


def test_whole_hour_zones():
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    assert reports.whole_hour_zones([ZoneInfo("America/Chicago"), ZoneInfo("UTC")], since=start, until=end)
    assert not reports.whole_hour_zones([ZoneInfo("Asia/Kolkata")], since=start, until=end)
    # Lord Howe Island: +10:30 in winter, +11 in summer.
    assert not reports.whole_hour_zones([ZoneInfo("Australia/Lord_Howe")], since=start, until=end)


def test_coverage_reads_the_last_counts_and_the_balances_as_they_are_now(lines, manager, organization):
    from inventory.models import InventoryBalance
    from tests.factories import InventoryBalanceFactory

    lines.line(book="5", counted="5")  # stocked
    lines.line(book="0", counted="0", on_hand="0")  # stocked out
    found_later = lines.line(book="0", counted="4", on_hand="0")
    InventoryBalance.objects.filter(item=found_later.item, location=found_later.location).delete()  # none at count
    emptied = lines.line(book="3", counted="3")
    recreated = lines.line(book="2", counted="2")
    InventoryBalanceFactory(  # never counted
        organization=organization, location=LocationFactory(organization=organization, zone=lines.zone), on_hand=9
    )
    with time_machine.travel(FIRST, tick=False):
        run_reconcile(run=lines.run, actor=manager)
    # After the count: a balance appears, one is sold out, one is deleted and created again.
    InventoryBalanceFactory(organization=organization, item=found_later.item, location=found_later.location, on_hand=4)
    InventoryBalance.objects.filter(item=emptied.item, location=emptied.location).update(on_hand=0, available=0)
    InventoryBalance.objects.filter(item=recreated.item, location=recreated.location).delete()
    InventoryBalanceFactory(organization=organization, item=recreated.item, location=recreated.location, on_hand=2)

    now = FIRST + timedelta(days=2)
    window = reports.current_variances(organization=organization).filter(
        computed_at__gte=now - timedelta(days=30), computed_at__lte=now
    )
    counts = reports.coverage_counts(
        organization=organization, window=window, since=now - timedelta(days=30), until=now
    )

    # Stocked: stocked, found_later, recreated, never_counted; counted among them: all but the last.
    assert counts == (4, 3)
    # The variances say the same (the path a window ending before the last count takes).
    before = FIRST - timedelta(seconds=1)
    assert reports.coverage_counts(
        organization=organization, window=window, since=now - timedelta(days=30), until=before
    ) == (4, 3)


def test_the_migrations_backfill_writes_what_the_pipeline_writes(lines, manager, organization):
    import importlib
    from types import SimpleNamespace

    from django.apps import apps

    for book, counted in (("10", "4"), ("7", "7"), ("3", "5")):
        lines.line(book=book, counted=counted)
    with time_machine.travel(FIRST, tick=False):
        run_reconcile(run=lines.run, actor=manager)
    kept = _kept(organization)
    pairs = set(CountedItemLocation.objects.values_list("item_id", "location_id", "last_counted_at", "balance_id"))
    VarianceHourlyRollup.objects.all().delete()
    CountedItemLocation.objects.all().delete()

    migration = importlib.import_module("reconciliation.migrations.0003_report_rollup")
    migration.backfill(apps, SimpleNamespace(connection=connection))

    assert _kept(organization) == kept
    assert (
        set(CountedItemLocation.objects.values_list("item_id", "location_id", "last_counted_at", "balance_id")) == pairs
    )
    _assert_in_step(organization)
