"""Reads for the managers' dashboard tile and the variance report: set-based aggregates, one organization.

Every figure is computed in the database over the organization's *current* variances (one per
counted line: `superseded_at IS NULL`), so a line recounted after reconciliation is judged by its
recount. A variance row is written when a run is reconciled, so "counted in a window" means
"reconciled in that window" (`Variance.computed_at`).

KPI definitions (the dashboard shows them for the last 30 days; the report for its filters):

- **Inventory record accuracy (IRA)** = lines within tolerance / lines counted. A *line* is one
  counted item × location of one run (an item × location counted twice in the window is tested
  twice). It is within tolerance when |counted − book at count| × 100 ≤ T × |book at count|, with
  T the organization's default guardrail `auto_max_percent` (2.00 % unless changed). So a line
  whose book was zero is accurate only when nothing was found. The difference is taken at count
  time whatever the moved-book policy (the record was right or wrong when it was tested).
- **Value accuracy** = 1 − Σ |variance value| / Σ book value, both over the lines counted; the
  book value of a line is book at count × unit cost (the cost frozen on the variance). It can
  fall below zero when the differences outweigh the book. Undefined (None) without book value.
- **Coverage** = stocked item × locations counted / stocked item × locations. *Stocked*: an
  InventoryBalance of the organization with on hand ≠ 0 now; *counted*: it has a current variance
  computed in the window.
- **Approvals waiting**: proposals pending or awaiting finance, their number and Σ |value|.
- **Push failures**: push batches that need a person (rejected, or failed with no retry planned:
  `PushBatch.needs_person`).
- **Parity drift**: open (unresolved) parity drifts.

Per-associate quality (`associate_quality`), over the report's lines: an associate *counted* a
line when one of their sessions — not voided, not a recount session (`is_recount`), not a
manager's review session — tallied its item × location in its run. A line was *overturned by a
recount* when a later count changed its figure: a recount session tallied it and the line's
figure (the recount's, which replaces the others) differs from the sum of the regular sessions'
tallies; or its reconciled variance was superseded (`_supersede_recounted`: the figure changed
after reconciliation, before anyone decided). Share overturned = overturned / counted.

This module reads the whole pipeline, adapters included (push batches, parity drift): the report
sits at the right end of it.

Speed (bench/report_bench.py, millions of variances): the figures of whole UTC hours come from
`VarianceHourlyRollup` and coverage from `CountedItemLocation`, both written by `run_reconcile`
in the transaction that writes the variances (never a cache: they cannot be stale), and rebuilt
from the variances by `manage.py report_rollup_rebuild`. What the rollup cannot answer exactly is
read from the variances, as before: the parts of a window that are not whole hours, lines within
tolerance (the guardrail's percent may change), report filters other than dates, facility and
zone, and time zones that are not a whole number of hours from UTC.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    DateField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Abs, Cast, TruncDate, TruncMonth, TruncWeek
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone
from import_export import fields, resources

from accounts.models import Organization
from accounts.roles import Role
from adapters.models import BatchState, ParityDrift, PushBatch
from approvals.models import OPEN_PROPOSAL_STATES, Approval, ProposalState, ProposedAction
from counts.models import SessionState
from inventory.models import Facility, InventoryBalance, Item, Zone
from reconciliation.models import CountedItemLocation, Guardrail, RootCause, Routing, Variance, VarianceHourlyRollup
from reconciliation.review import REVIEW_DEVICE_ID

REPORT_ROLES = frozenset({Role.MANAGER, Role.FINANCE, Role.ADMIN})
DASHBOARD_DAYS = 30
TOP_ITEMS = 10
DEFAULT_TOLERANCE_PERCENT = Guardrail._meta.get_field("auto_max_percent").default
CENT = Decimal("0.01")
RATIO = Decimal("0.0001")
# Proposals whose adjustment was approved and went (or goes) on to the ERP.
APPROVED_STATES = (
    ProposalState.APPROVED,
    ProposalState.QUEUED,
    ProposalState.PUSHED,
    ProposalState.CONFIRMED,
    ProposalState.FAILED,
)
BOOK_VALUE = ExpressionWrapper(
    F("book_at_count") * F("unit_cost"), output_field=DecimalField(max_digits=32, decimal_places=7)
)


# --- Formulas -------------------------------------------------------------------------------


def money(value: Decimal | None) -> Decimal:
    """A sum of money to the cent (the database may carry more places, or none at all)."""
    return (value if value is not None else Decimal("0")).quantize(CENT, rounding=ROUND_HALF_UP)


def ratio(numerator: Decimal | int, denominator: Decimal | int) -> Decimal | None:
    """numerator / denominator to four places (0.9832 = 98.32 %); None when nothing to divide by."""
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO, rounding=ROUND_HALF_UP)


def record_accuracy(*, within_tolerance: int, lines: int) -> Decimal | None:
    """IRA: the share of counted lines within tolerance (see the module docstring)."""
    return ratio(within_tolerance, lines)


def value_accuracy(*, absolute_value: Decimal, book_value: Decimal) -> Decimal | None:
    """1 − Σ|variance value| / Σ book value of the counted lines; None without book value."""
    share = ratio(absolute_value, book_value)
    return None if share is None else Decimal("1") - share


def coverage_share(*, counted: int, stocked: int) -> Decimal | None:
    """The share of stocked item × locations counted in the window."""
    return ratio(counted, stocked)


def tolerance_percent(*, organization: Organization) -> Decimal:
    """The organization's default guardrail auto percent (the model default before one exists)."""
    found = (
        Guardrail.objects.for_organization(organization)
        .filter(facility__isnull=True)
        .values_list("auto_max_percent", flat=True)
        .first()
    )
    return found if found is not None else DEFAULT_TOLERANCE_PERCENT


def within_tolerance(tolerance: Decimal) -> LessThanOrEqual:
    """|counted − book| × 100 ≤ T × |book|, exact in SQL (a zero book tolerates no difference)."""
    threshold = Cast(Value(tolerance), output_field=DecimalField(max_digits=7, decimal_places=2))
    return LessThanOrEqual(Abs(F("variance_units")) * 100, threshold * Abs(F("book_at_count")))


# Counting `*` (or an indexed column) rather than the primary key keeps the aggregates inside
# the report index (an index-only scan).
def _figure_aggregates(tolerance: Decimal) -> dict[str, Any]:
    return {
        "lines": Count("*"),
        "variances": Count("variance_units", filter=~Q(variance_units=0)),
        "within": Count("variance_units", filter=within_tolerance(tolerance)),
        "net": Sum("variance_value"),
        "absolute": Sum(Abs("variance_value")),
        "book": Sum(BOOK_VALUE),
    }


@dataclass
class Figures:
    """Lines counted and what they were off by; sums of groups add up."""

    lines: int = 0
    variances: int = 0
    within_tolerance: int = 0
    net_value: Decimal = Decimal("0.00")
    absolute_value: Decimal = Decimal("0.00")
    book_value: Decimal = Decimal("0.00")

    @classmethod
    def of(cls, row: dict[str, Any]) -> Figures:
        return cls(
            lines=row["lines"] or 0,
            variances=row["variances"] or 0,
            within_tolerance=row["within"] or 0,
            net_value=money(row["net"]),
            absolute_value=money(row["absolute"]),
            book_value=money(row["book"]),
        )

    def add(self, other: Figures) -> None:
        self.lines += other.lines
        self.variances += other.variances
        self.within_tolerance += other.within_tolerance
        self.net_value += other.net_value
        self.absolute_value += other.absolute_value
        self.book_value += other.book_value

    @property
    def record_accuracy(self) -> Decimal | None:
        return record_accuracy(within_tolerance=self.within_tolerance, lines=self.lines)

    @property
    def value_accuracy(self) -> Decimal | None:
        return value_accuracy(absolute_value=self.absolute_value, book_value=self.book_value)


# --- The read session ---------------------------------------------------------------------


@contextmanager
def report_session() -> Iterator[None]:
    """One read transaction for a page's aggregates, tuned on PostgreSQL: work memory enough to
    sort and hash a window of variances in memory (`REPORT_WORK_MEM`, default 64MB), and no JIT
    (compiling costs these short aggregates more than it saves). Settings end with the transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true),"
                    " set_config('max_parallel_workers_per_gather', %s, true)",
                    [
                        getattr(settings, "REPORT_WORK_MEM", "64MB"),
                        str(getattr(settings, "REPORT_PARALLEL_WORKERS", 0)),
                    ],
                )
        yield


# --- Time ---------------------------------------------------------------------------------


def local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def report_time_zone(*, facilities: Sequence[Facility], facility_id: int | None = None) -> ZoneInfo:
    """The zone a report's dates are read in: the chosen facility's; with none chosen, the
    facilities' common zone; UTC when they differ (the page says so)."""
    if facility_id is not None:
        for facility in facilities:
            if facility.pk == facility_id:
                return facility.zone_info
    zones = {facility.time_zone for facility in facilities}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo("UTC")


def _truncated(zone: tzinfo, bucket: str = "day", moment: str = "computed_at") -> Any:
    """`moment` (a variance's `computed_at`, a rollup's `hour`) as a local date in `zone` (or the
    week's Monday, the month's first day)."""
    trunc = {"day": TruncDate, "week": TruncWeek, "month": TruncMonth}[bucket]
    return trunc(moment, tzinfo=zone, output_field=DateField())


def _local_date(facilities: Iterable[Facility], moment: str = "computed_at") -> Any:
    """The row's date in its facility's zone, one CASE branch per distinct zone, so a whole
    organization groups by local day in one query."""
    by_zone: dict[str, list[int]] = defaultdict(list)
    for facility in facilities:
        by_zone[facility.time_zone].append(facility.pk)
    if len(by_zone) <= 1:
        return _truncated(ZoneInfo(next(iter(by_zone), "UTC")), moment=moment)
    return Case(
        *(
            When(facility_id__in=ids, then=_truncated(ZoneInfo(zone), moment=moment))
            for zone, ids in sorted(by_zone.items())
        ),
        output_field=DateField(),
    )


# --- The rollup ---------------------------------------------------------------------------------
#
# Lines, differences and money of whole UTC hours come from `VarianceHourlyRollup` (kept by the
# pipeline in the variances' own transaction); the parts of a window that are not whole hours
# (the tile's rolling 30 days start and end mid-hour) are read from the variances. Lines within
# tolerance depend on the guardrail's percent, so the rollup does not hold them: a line without
# difference is always within (|0| × 100 ≤ T × |book|), and those with one (a few percent) are
# tested in the database, from their own partial index.

HOUR = timedelta(hours=1)


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment: datetime) -> datetime:
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def whole_hour_zones(zones: Iterable[tzinfo], *, since: datetime, until: datetime) -> bool:
    """Whether each zone is a whole number of hours from UTC from `since` to `until`, so that every
    UTC hour lies within one of its local days (zones such as India's, or Lord Howe's summer, are
    not; their reports read the variances). Offsets are sampled every six hours: no zone keeps a
    fractional offset for less."""
    zones = list(zones)
    moment = since
    while True:
        for zone in zones:
            offset = moment.astimezone(zone).utcoffset()
            if offset is None or offset.total_seconds() % 3600:
                return False
        if moment >= until:
            return True
        moment = min(moment + timedelta(hours=6), until)


@dataclass(frozen=True)
class RollupSplit:
    """A window [since, until] cut into whole UTC hours [first_hour, end_hour) for the rollup and
    the rest (`edges`) for the variances."""

    first_hour: datetime
    end_hour: datetime
    edges: Q | None


def rollup_split(*, since: datetime, until: datetime, until_inclusive: bool) -> RollupSplit | None:
    """None when the window holds no whole hour (the variances answer alone)."""
    first, end = _hour_ceil(since), _hour_floor(until)
    if first >= end:
        return None
    before = Q(computed_at__gte=since, computed_at__lt=first) if since < first else None
    if until_inclusive:
        after = Q(computed_at__gte=end, computed_at__lte=until)
    else:
        after = Q(computed_at__gte=end, computed_at__lt=until) if end < until else None
    edges = None
    for part in (before, after):
        if part is not None:
            edges = part if edges is None else edges | part
    return RollupSplit(first_hour=first, end_hour=end, edges=edges)


def _rollup_sums() -> dict[str, Any]:
    return {
        "lines": Sum("lines"),
        "variances": Sum("variances"),
        "net": Sum("net_value"),
        "absolute": Sum("absolute_value"),
        "book": Sum("book_value"),
    }


def _edge_aggregates() -> dict[str, Any]:
    aggregates = _figure_aggregates(DEFAULT_TOLERANCE_PERCENT)
    del aggregates["within"]
    return aggregates


def _without_difference(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rollup or edge rows, their lines without difference counted within tolerance (the lines with
    one are added by `_differences_within`)."""
    for row in rows:
        yield {**row, "within": (row["lines"] or 0) - (row["variances"] or 0)}


def _differences_within(variances: QuerySet[Variance], tolerance: Decimal) -> QuerySet[Variance]:
    """The lines with a difference that are within tolerance (the partial index `variance_report_differences`)."""
    return variances.exclude(variance_units=0).filter(within_tolerance(tolerance))


def _within_only(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {**row, "lines": 0, "variances": 0, "net": None, "absolute": None, "book": None}


_FIGURE_KEYS = ("lines", "variances", "within", "net", "absolute", "book")


def _merged(rows: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Rows of the same group (rollup, edges, within) summed before any rounding, so a group's
    money is rounded once, as when one query computed it."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group = tuple(row[key] for key in keys)
        into = merged.get(group)
        if into is None:
            merged[group] = dict(row)
            continue
        for name in _FIGURE_KEYS:
            if row[name] is not None:
                into[name] = row[name] if into[name] is None else into[name] + row[name]
    return list(merged.values())


# --- The dashboard tile ---------------------------------------------------------------------


@dataclass
class ZoneFigures:
    zone: Zone
    figures: Figures
    days: list[date]
    net_by_day: dict[date, Decimal] = field(default_factory=dict)
    absolute_by_day: dict[date, Decimal] = field(default_factory=dict)

    @property
    def daily_net(self) -> list[Decimal]:
        return [self.net_by_day.get(day, Decimal("0.00")) for day in self.days]

    @property
    def daily_absolute(self) -> list[Decimal]:
        return [self.absolute_by_day.get(day, Decimal("0.00")) for day in self.days]


@dataclass(frozen=True)
class ItemFigures:
    """An item's differences with a value in the window (its lines counted right are not read)."""

    item: Item
    variances: int
    net_value: Decimal
    absolute_value: Decimal


@dataclass(frozen=True)
class Dashboard:
    since: datetime
    until: datetime
    tolerance_percent: Decimal
    totals: Figures
    zones: list[ZoneFigures]
    top_items: list[ItemFigures]
    stocked: int
    stocked_counted: int
    approvals_waiting: int
    approvals_waiting_value: Decimal
    push_failures: int
    parity_drifts: int

    @property
    def record_accuracy(self) -> Decimal | None:
        return self.totals.record_accuracy

    @property
    def value_accuracy(self) -> Decimal | None:
        return self.totals.value_accuracy

    @property
    def coverage(self) -> Decimal | None:
        return coverage_share(counted=self.stocked_counted, stocked=self.stocked)


def organization_zones(*, organization: Organization | None) -> list[Zone]:
    return list(
        Zone.objects.for_organization(organization).select_related("facility").order_by("facility__code", "code")
    )


def current_variances(*, organization: Organization | None) -> QuerySet[Variance]:
    return Variance.objects.for_organization(organization).filter(superseded_at__isnull=True)


def dashboard_figures(
    *, organization: Organization, now: datetime | None = None, days: int = DASHBOARD_DAYS
) -> Dashboard:
    """The tile: the last `days` days (rolling, ending now) by zone, item and value, and the KPIs.

    A fixed number of queries (about a dozen, in one `report_session`) whatever the organization's
    size; every aggregate runs in the database, over the rollup for the window's whole hours and
    over the current variances for the rest (see the module docstring).
    """
    with report_session():
        return _dashboard_figures(organization=organization, now=now, days=days)


def _dashboard_figures(*, organization: Organization, now: datetime | None, days: int) -> Dashboard:
    until = now or timezone.now()
    since = until - timedelta(days=days)
    tolerance = tolerance_percent(organization=organization)
    zones = organization_zones(organization=organization)
    facilities = {zone.facility_id: zone.facility for zone in zones}
    window = current_variances(organization=organization).filter(computed_at__gte=since, computed_at__lte=until)

    by_zone: dict[int, ZoneFigures] = {}
    totals = Figures()
    zone_day = ("location__zone_id", "day")
    split = rollup_split(since=since, until=until, until_inclusive=True)
    zone_infos = {facility.zone_info for facility in facilities.values()}
    rows: Iterable[dict[str, Any]]
    if split is not None and whole_hour_zones(zone_infos, since=split.first_hour, until=split.end_hour):
        local_date = _local_date(facilities.values())
        rolled = (
            VarianceHourlyRollup.objects.for_organization(organization)
            .filter(hour__gte=split.first_hour, hour__lt=split.end_hour, lines__gt=0)
            .annotate(day=_local_date(facilities.values(), moment="hour"))
            .values(*zone_day)
            .annotate(**_rollup_sums())
            .order_by()
        )
        edges = (
            current_variances(organization=organization)
            .filter(split.edges)
            .annotate(day=local_date)
            .values(*zone_day)
            .annotate(**_edge_aggregates())
            .order_by()
            if split.edges is not None
            else []
        )
        within = (
            _differences_within(window, tolerance)
            .annotate(day=local_date)
            .values(*zone_day)
            .annotate(within=Count("*"))
            .order_by()
        )
        rows = _merged(chain(_without_difference(rolled), _without_difference(edges), _within_only(within)), *zone_day)
    else:
        rows = (
            window.annotate(day=_local_date(facilities.values()))
            .values(*zone_day)
            .annotate(**_figure_aggregates(tolerance))
            .order_by()
        )
    zone_by_id = {zone.pk: zone for zone in zones}
    for row in rows:
        zone = zone_by_id[row["location__zone_id"]]
        entry = by_zone.get(zone.pk)
        if entry is None:
            zone_info = zone.facility.zone_info
            first, last = since.astimezone(zone_info).date(), until.astimezone(zone_info).date()
            entry = by_zone[zone.pk] = ZoneFigures(
                zone=zone, figures=Figures(), days=[first + timedelta(n) for n in range((last - first).days + 1)]
            )
        figures = Figures.of(row)
        entry.figures.add(figures)
        totals.add(figures)
        entry.net_by_day[row["day"]] = entry.net_by_day.get(row["day"], Decimal("0.00")) + figures.net_value
        entry.absolute_by_day[row["day"]] = (
            entry.absolute_by_day.get(row["day"], Decimal("0.00")) + figures.absolute_value
        )

    # Only differences with a value can rank: read them alone (the `variance_report_valued` index).
    top = list(
        window.exclude(variance_value=0)
        .values("item_id")
        .annotate(
            variances=Count("*"),
            net=Sum("variance_value"),
            absolute=Sum(Abs("variance_value")),
        )
        .order_by("-absolute", "item_id")[:TOP_ITEMS]
    )
    items = Item.objects.in_bulk([row["item_id"] for row in top])
    top_items = [
        ItemFigures(
            item=items[row["item_id"]],
            variances=row["variances"],
            net_value=money(row["net"]),
            absolute_value=money(row["absolute"]),
        )
        for row in top
    ]

    stocked, stocked_counted = coverage_counts(organization=organization, window=window, since=since, until=until)
    waiting = (
        ProposedAction.objects.for_organization(organization)
        .filter(state__in=OPEN_PROPOSAL_STATES)
        .aggregate(count=Count("*"), value=Sum("value_abs"))
    )
    return Dashboard(
        since=since,
        until=until,
        tolerance_percent=tolerance,
        totals=totals,
        zones=[by_zone[zone.pk] for zone in zones if zone.pk in by_zone],
        top_items=top_items,
        stocked=stocked,
        stocked_counted=stocked_counted,
        approvals_waiting=waiting["count"],
        approvals_waiting_value=money(waiting["value"]),
        push_failures=push_failures(organization=organization).count(),
        parity_drifts=ParityDrift.objects.for_organization(organization).filter(resolved_at__isnull=True).count(),
    )


# A pair counted in the window is stocked when its balance's on hand is not zero. So: the pairs
# counted in the window linked to a balance (a count over one narrow table), less those whose balance is
# stocked out (the few zero balances, found in the one pass over the balances that counts the
# stocked ones, each probed once), plus the pairs counted without a balance that has one now,
# stocked (a few, probed by item and location). No join of the whole window to the balances.
_COVERAGE_SQL = """
SELECT b.stocked, c.linked - b.stocked_out + u.unlinked
FROM (
    SELECT SUM(CASE WHEN bal.on_hand <> 0 THEN 1 ELSE 0 END) AS stocked,
           SUM(CASE WHEN bal.on_hand <> 0 THEN 0
                    WHEN EXISTS (
                        SELECT 1 FROM reconciliation_counteditemlocation p
                        WHERE p.balance_id = bal.id AND p.last_counted_at >= %(since)s
                          AND p.last_counted_at <= %(until)s
                    ) THEN 1 ELSE 0 END) AS stocked_out
    FROM inventory_inventorybalance bal
    WHERE bal.organization_id = %(organization)s
) b, (
    SELECT COUNT(*) AS linked FROM reconciliation_counteditemlocation p
    WHERE p.organization_id = %(organization)s AND p.last_counted_at >= %(since)s
      AND p.last_counted_at <= %(until)s AND p.balance_id IS NOT NULL
) c, (
    SELECT COUNT(*) AS unlinked FROM reconciliation_counteditemlocation p
    JOIN inventory_inventorybalance bal ON bal.item_id = p.item_id AND bal.location_id = p.location_id
    WHERE p.organization_id = %(organization)s AND p.last_counted_at >= %(since)s
      AND p.last_counted_at <= %(until)s AND p.balance_id IS NULL AND bal.on_hand <> 0
) u
"""


def coverage_counts(
    *, organization: Organization, window: QuerySet[Variance], since: datetime, until: datetime
) -> tuple[int, int]:
    """(stocked item × locations, those counted in [since, until]), in one query.

    When each pair was last counted (`CountedItemLocation`) answers whether it was counted in a
    window that ends now: its latest current variance is in the window or none is. A window that
    ends before some pair's latest count (a past `now`) may hold an earlier count of it: then the
    window's variances are read instead (two queries).
    """
    later = CountedItemLocation.objects.for_organization(organization).filter(last_counted_at__gt=until)
    if not later.exists():
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.execute(
                _COVERAGE_SQL, {"organization": organization.pk, "since": adapt(since), "until": adapt(until)}
            )
            stocked, counted = cursor.fetchone()
        return stocked or 0, counted or 0
    # Counted pairs that are stocked, from the window's side: its distinct pairs, each probed once
    # against its balance (a balance names one organization's location).
    stocked_here = InventoryBalance.objects.filter(
        item_id=OuterRef("item_id"), location_id=OuterRef("location_id")
    ).exclude(on_hand=0)
    counted = window.filter(Exists(stocked_here)).values("location_id", "item_id").distinct().count()
    return InventoryBalance.objects.for_organization(organization).exclude(on_hand=0).count(), counted


def push_failures(*, organization: Organization | None) -> QuerySet[PushBatch]:
    """Batches a person must look at (the queryset form of `PushBatch.needs_person`)."""
    return PushBatch.objects.for_organization(organization).filter(
        Q(state=BatchState.REJECTED) | Q(state=BatchState.FAILED, next_attempt_at__isnull=True)
    )


# --- The variance report --------------------------------------------------------------------


class Decision:
    """How a variance was decided, derived from its proposal (the report's `decision` filter)."""

    AUTO = "auto"
    APPROVED = "approved"
    REJECTED = "rejected"
    OPEN = "open"
    NONE = "none"
    CHOICES = (
        (AUTO, "Auto-approved by the guardrail"),
        (APPROVED, "Approved by a person"),
        (REJECTED, "Rejected"),
        (OPEN, "Waiting for a decision"),
        (NONE, "Nothing to decide (no difference, or recount first)"),
    )


NO_PROPOSAL = "none"
STATE_CHOICES = (*ProposalState.choices, (NO_PROPOSAL, "No proposal"))

# Sort keys the report accepts ("-" for descending) and the columns they order by.
SORTS: dict[str, tuple[Any, ...]] = {
    # A plain expression, not an OrderBy: descending it is `ABS(…) DESC` with the database's own
    # NULLS placement (never null), the order of the index `variance_report_by_abs_value`.
    "value_abs": (Abs("variance_value"), "pk"),
    "value": ("variance_value", "pk"),
    "units": ("variance_units", "pk"),
    "percent": (F("variance_percent").asc(nulls_first=True), "pk"),
    "date": ("computed_at", "pk"),
    "sku": ("item__sku", "location__code", "pk"),
    "location": ("location__code", "item__sku", "pk"),
}
DEFAULT_SORT = "-value_abs"


def _descending(term: Any) -> Any:
    if isinstance(term, str):
        return F(term).desc()
    if hasattr(term, "expression"):  # an OrderBy: flip it
        return term.expression.desc(nulls_last=True)
    return term.desc()


def sort_terms(sort: str) -> tuple[Any, ...]:
    key = sort.removeprefix("-")
    terms = SORTS.get(key) or SORTS[DEFAULT_SORT.removeprefix("-")]
    if sort.startswith("-") or key not in SORTS:
        return tuple(_descending(term) for term in terms)
    return terms


@dataclass(frozen=True)
class VarianceFilters:
    """What the report shows: local dates (inclusive) in `time_zone`, and optional filters."""

    date_from: date
    date_to: date
    time_zone: ZoneInfo
    facility_id: int | None = None
    zone_id: int | None = None
    abc_class: str = ""
    root_cause: str = ""
    decision: str = ""
    state: str = ""

    @property
    def since(self) -> datetime:
        return local_midnight(self.date_from, self.time_zone)

    @property
    def until(self) -> datetime:
        return local_midnight(self.date_to + timedelta(days=1), self.time_zone)


def naming_signatures() -> QuerySet[Approval]:
    """The signatures that name a proposal's root cause: each proposal's first one carrying one."""
    earlier = Approval.objects.filter(
        proposal_id=OuterRef("proposal_id"), root_cause__isnull=False, pk__lt=OuterRef("pk")
    )
    return Approval.objects.filter(root_cause__isnull=False).filter(~Exists(earlier))


@dataclass(frozen=True)
class ReportScope:
    """What a `variance_report` queryset selects, when the rollup can answer its figures: an
    organization's current variances of a time window, by facility or zone at most."""

    organization_id: int
    filters: VarianceFilters


_SCOPE = "_report_scope"


def report_scope(variances: QuerySet[Variance]) -> ReportScope | None:
    """The scope `variance_report` attached to this very queryset: a queryset derived from it
    (filtered further) is a new object without one, so it is never mistaken for the report."""
    return getattr(variances, _SCOPE, None)


def variance_report(*, organization: Organization | None, filters: VarianceFilters) -> QuerySet[Variance]:
    """The organization's current variances matching the filters (unordered, nothing loaded)."""
    variances = _variance_report(organization=organization, filters=filters)
    if organization is not None and not (filters.abc_class or filters.root_cause or filters.decision or filters.state):
        setattr(variances, _SCOPE, ReportScope(organization_id=organization.pk, filters=filters))
    return variances


def _variance_report(*, organization: Organization | None, filters: VarianceFilters) -> QuerySet[Variance]:
    variances = current_variances(organization=organization).filter(
        computed_at__gte=filters.since, computed_at__lt=filters.until
    )
    if filters.facility_id is not None:
        variances = variances.filter(facility_id=filters.facility_id)
    if filters.zone_id is not None:
        variances = variances.filter(location__zone_id=filters.zone_id)
    if filters.abc_class:
        variances = variances.filter(item__abc_class=filters.abc_class)
    if filters.root_cause:
        # Only proposals routed to a person carry signatures.
        named = naming_signatures().filter(organization=organization, root_cause__code=filters.root_cause)
        variances = variances.filter(routing=Routing.PROPOSAL, proposal__in=named.values("proposal_id"))
    if filters.decision == Decision.AUTO:
        variances = variances.filter(proposal__auto_approved=True)
    elif filters.decision == Decision.APPROVED:
        variances = variances.filter(proposal__auto_approved=False, proposal__state__in=APPROVED_STATES)
    elif filters.decision == Decision.REJECTED:
        variances = variances.filter(proposal__state=ProposalState.REJECTED)
    elif filters.decision == Decision.OPEN:
        variances = variances.filter(proposal__state__in=OPEN_PROPOSAL_STATES)
    elif filters.decision == Decision.NONE:
        variances = variances.filter(proposal__isnull=True)
    if filters.state == NO_PROPOSAL:
        variances = variances.filter(proposal__isnull=True)
    elif filters.state:
        variances = variances.filter(proposal__state=filters.state)
    return variances


def report_page(variances: QuerySet[Variance], *, sort: str, offset: int, limit: int) -> list[Variance]:
    """One page of rows with what the table shows, in two queries plus one for signatures.

    The page's ids are picked first (a top-N over the filtered rows, no joins), then only those
    rows are loaded with their relations: joining before the limit would join every row.
    """
    ids = list(variances.order_by(*sort_terms(sort)).values_list("pk", flat=True)[offset : offset + limit])
    if not ids:
        return []
    loaded = (
        Variance.objects.order_by()
        .select_related("item", "location__zone", "facility", "proposal")
        .prefetch_related("proposal__approvals__root_cause")
        .in_bulk(ids)
    )
    return [loaded[pk] for pk in ids]


@dataclass(frozen=True)
class PeriodFigures:
    start: date
    figures: Figures

    @property
    def lines(self) -> int:
        return self.figures.lines

    @property
    def variances(self) -> int:
        return self.figures.variances

    @property
    def net_value(self) -> Decimal:
        return self.figures.net_value

    @property
    def absolute_value(self) -> Decimal:
        return self.figures.absolute_value


def period_bucket(filters: VarianceFilters) -> str:
    """Bars by day up to two months, by week up to two years, else by month."""
    span = (filters.date_to - filters.date_from).days + 1
    return "day" if span <= 62 else "week" if span <= 731 else "month"


def report_by_period(
    variances: QuerySet[Variance], *, filters: VarianceFilters, tolerance: Decimal
) -> tuple[list[PeriodFigures], Figures]:
    """Figures per local day (week, month) of the report, every period present (zeros included),
    and their sum (the report's totals): from the rollup (three queries) when `variances` is a
    `variance_report` the rollup can answer (`report_scope`), else from the variances (one)."""
    bucket = period_bucket(filters)
    # One zone for the whole report: the chosen facility's, their common one, or UTC.
    scope = report_scope(variances)
    split = rollup_split(since=filters.since, until=filters.until, until_inclusive=False)
    rows: Iterable[dict[str, Any]]
    if (
        scope is not None
        and scope.filters == filters
        and split is not None
        and whole_hour_zones([filters.time_zone], since=split.first_hour, until=split.end_hour)
    ):
        period = _truncated(filters.time_zone, bucket)
        rolled = VarianceHourlyRollup.objects.filter(
            organization_id=scope.organization_id,
            hour__gte=split.first_hour,
            hour__lt=split.end_hour,
            lines__gt=0,
        )
        if filters.facility_id is not None:
            rolled = rolled.filter(facility_id=filters.facility_id)
        if filters.zone_id is not None:
            rolled = rolled.filter(location__zone_id=filters.zone_id)
        rolled_rows = (
            rolled.annotate(period=_truncated(filters.time_zone, bucket, moment="hour"))
            .values("period")
            .annotate(**_rollup_sums())
            .order_by()
        )
        edges = (
            variances.filter(split.edges).annotate(period=period).values("period").annotate(**_edge_aggregates())
            if split.edges is not None
            else []
        )
        within = (
            _differences_within(variances, tolerance)
            .annotate(period=period)
            .values("period")
            .annotate(within=Count("*"))
            .order_by()
        )
        rows = _merged(
            chain(_without_difference(rolled_rows), _without_difference(edges), _within_only(within)), "period"
        )
    else:
        rows = (
            variances.annotate(period=_truncated(filters.time_zone, bucket))
            .values("period")
            .annotate(**_figure_aggregates(tolerance))
            .order_by("period")
        )
    found = {row["period"]: Figures.of(row) for row in rows}
    totals = Figures()
    periods: list[PeriodFigures] = []
    for start in _period_starts(filters.date_from, filters.date_to, bucket):
        figures = found.get(start) or Figures()
        totals.add(figures)
        periods.append(PeriodFigures(start=start, figures=figures))
    return periods, totals


def _period_starts(first: date, last: date, bucket: str) -> list[date]:
    if bucket == "day":
        return [first + timedelta(n) for n in range((last - first).days + 1)]
    if bucket == "week":
        start = first - timedelta(days=first.weekday())
        return [start + timedelta(weeks=n) for n in range((last - start).days // 7 + 1)]
    starts, current = [], first.replace(day=1)
    while current <= last:
        starts.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return starts


@dataclass(frozen=True)
class RootCauseFigures:
    code: str
    label: str
    variances: int
    absolute_value: Decimal


def report_by_root_cause(variances: QuerySet[Variance], *, root_causes: Sequence[RootCause]) -> list[RootCauseFigures]:
    """Decided variances per root cause (of the proposal's first signature naming one), by |value|.

    Only variances routed to a person carry signatures: the report's rows are narrowed to those
    (a few percent), and each looks its root cause up through its proposal (two index probes).
    `root_causes` are the organization's, for the labels.
    """
    first_cause = (
        Approval.objects.filter(proposal__variance_id=OuterRef("pk"), root_cause__isnull=False)
        .order_by("pk")
        .values("root_cause_id")[:1]
    )
    rows = (
        variances.filter(routing=Routing.PROPOSAL)
        .annotate(cause=Subquery(first_cause))
        .values("cause")
        .annotate(variances=Count("*"), absolute=Sum(Abs("variance_value")))
        .order_by()
    )
    causes = {cause.pk: cause for cause in root_causes}
    figures = [
        RootCauseFigures(
            code=causes[row["cause"]].code,
            label=causes[row["cause"]].label,
            variances=row["variances"],
            absolute_value=money(row["absolute"]),
        )
        for row in rows
        if row["cause"] in causes
    ]
    return sorted(figures, key=lambda entry: (-entry.absolute_value, entry.code))


@dataclass(frozen=True)
class AssociateQuality:
    user_id: int
    username: str
    lines_counted: int
    overturned: int

    @property
    def overturned_share(self) -> Decimal | None:
        return ratio(self.overturned, self.lines_counted)


# The report's lines, the session tallies of their runs (with who counted) and the superseded
# lines are each read once; lines are judged with window functions (no self-join). Materialising
# the steps keeps the planner from nesting loops on its (far too low) estimate of the three-column
# join between lines and tallies.
_ASSOCIATES_SQL = """
WITH report AS MATERIALIZED ({report}),
runs AS MATERIALIZED (SELECT DISTINCT run_id FROM report),
counted AS MATERIALIZED (
    SELECT t.run_id, t.location_id, t.item_id, t.quantity, s.user_id,
           CASE WHEN s.is_recount THEN 1 ELSE 0 END AS recount,
           CASE WHEN s.is_recount OR s.device_id = %s THEN 0 ELSE 1 END AS regular
    FROM counts_sessiontally t
    JOIN counts_countsession s ON s.id = t.session_id
    WHERE t.run_id IN (SELECT run_id FROM runs) AND s.state <> %s
),
tallied AS MATERIALIZED (
    SELECT r.line_id, r.counted_quantity, c.user_id, c.quantity, c.recount, c.regular,
           CASE WHEN r.line_id IN (
               SELECT v.line_id FROM reconciliation_variance v
               WHERE v.organization_id = %s AND v.superseded_at IS NOT NULL
           ) THEN 1 ELSE 0 END AS superseded
    FROM report r
    JOIN counted c ON c.run_id = r.run_id AND c.location_id = r.location_id AND c.item_id = r.item_id
),
judged AS (
    SELECT line_id, user_id, regular,
           CASE WHEN superseded = 1 THEN 1
                WHEN MAX(recount) OVER line = 1 AND counted_quantity <> SUM(regular * quantity) OVER line THEN 1
                ELSE 0 END AS overturned
    FROM tallied
    WINDOW line AS (PARTITION BY line_id)
)
SELECT user_id, COUNT(DISTINCT line_id), COUNT(DISTINCT CASE WHEN overturned = 1 THEN line_id END)
FROM judged
WHERE regular = 1
GROUP BY user_id
"""


def associate_quality(variances: QuerySet[Variance], *, organization: Organization) -> list[AssociateQuality]:
    """Per associate, the report's lines they counted and how many a recount overturned (see the
    module docstring), most lines first; two queries."""
    report_sql, report_params = (
        variances.order_by()
        .values("line_id", "run_id", "location_id", "item_id", "counted_quantity")
        .query.sql_with_params()
    )
    # Positional, in the order the placeholders appear in the statement.
    voided, review = SessionState.VOIDED.value, REVIEW_DEVICE_ID
    params = [*report_params, review, voided, organization.pk]
    with connection.cursor() as cursor:
        cursor.execute(_ASSOCIATES_SQL.format(report=report_sql), params)
        rows = cursor.fetchall()
    usernames = dict(get_user_model().objects.filter(pk__in=[row[0] for row in rows]).values_list("pk", "username"))
    quality = [
        AssociateQuality(user_id=user, username=usernames.get(user, str(user)), lines_counted=lines, overturned=over)
        for user, lines, over in rows
    ]
    return sorted(quality, key=lambda entry: (-entry.lines_counted, entry.username))


def decision_of(variance: Variance) -> str:
    """The `Decision` of one loaded variance (its proposal loaded with it)."""
    proposal = getattr(variance, "proposal", None) if variance.routing in (Routing.AUTO, Routing.PROPOSAL) else None
    if proposal is None:
        return Decision.NONE
    if proposal.auto_approved:
        return Decision.AUTO
    if proposal.state in APPROVED_STATES:
        return Decision.APPROVED
    if proposal.state == ProposalState.REJECTED:
        return Decision.REJECTED
    return Decision.OPEN


def root_cause_of(variance: Variance) -> RootCause | None:
    """The root cause of one loaded variance: its proposal's first signature naming one (prefetched)."""
    proposal = getattr(variance, "proposal", None) if variance.routing in (Routing.AUTO, Routing.PROPOSAL) else None
    if proposal is None:
        return None
    for signature in sorted(proposal.approvals.all(), key=lambda approval: approval.pk):
        if signature.root_cause_id is not None:
            return signature.root_cause
    return None


# --- The report as a file (django-import-export) -------------------------------------------

# A text cell starting with one of these is a formula to a spreadsheet (CSV injection); names
# come from the ERP and from people, so such cells are written with a leading apostrophe.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return f"'{value}"
    return value


class SpreadsheetSafeResource(resources.ModelResource):
    """A Resource whose `text_columns` cannot be read as formulas by a spreadsheet."""

    text_columns: frozenset[str] = frozenset()

    def export_field(self, field: fields.Field, instance: Any, **kwargs: Any) -> Any:
        value = super().export_field(field, instance, **kwargs)
        return spreadsheet_safe(value) if field.column_name in self.text_columns else value


def variance_export_rows(variances: QuerySet[Variance]) -> QuerySet[Variance]:
    """Every row of the report with what the file shows, in one streamed query (no prefetch):
    the root cause is a subquery on the proposal's first signature naming one."""
    first = (
        Approval.objects.filter(proposal__variance=OuterRef("pk"), root_cause__isnull=False)
        .order_by("pk")
        .values("root_cause__code")[:1]
    )
    return (
        variances.select_related("item", "location__zone", "facility", "proposal")
        .annotate(root_cause_code=Subquery(first))
        .order_by("computed_at", "pk")
    )


class VarianceReportResource(SpreadsheetSafeResource):
    """The variance report as CSV or XLSX: one row per current variance, times in the facility's zone."""

    text_columns = frozenset({"facility", "zone", "location", "sku", "item_name", "root_cause"})

    counted_at_local = fields.Field(column_name="computed_at_local")
    time_zone = fields.Field(attribute="facility__time_zone", column_name="time_zone")
    facility = fields.Field(attribute="facility__code", column_name="facility")
    zone = fields.Field(attribute="location__zone__code", column_name="zone")
    location = fields.Field(attribute="location__code", column_name="location")
    sku = fields.Field(attribute="item__sku", column_name="sku")
    item_name = fields.Field(attribute="item__name", column_name="item_name")
    abc_class = fields.Field(attribute="item__abc_class", column_name="abc_class")
    proposal = fields.Field(column_name="proposal")
    proposal_state = fields.Field(column_name="proposal_state")
    decision = fields.Field(column_name="decision")
    root_cause = fields.Field(attribute="root_cause_code", column_name="root_cause")
    trace = fields.Field(column_name="trace")

    class Meta:
        model = Variance
        fields = (
            "id",
            "run",
            "counted_at_local",
            "time_zone",
            "facility",
            "zone",
            "location",
            "sku",
            "item_name",
            "abc_class",
            "book_at_count",
            "counted_quantity",
            "variance_units",
            "variance_percent",
            "unit_cost",
            "variance_value",
            "adjustment_units",
            "adjustment_value",
            "routing",
            "guardrail_version",
            "proposal",
            "proposal_state",
            "decision",
            "root_cause",
            "trace",
        )
        export_order = fields

    def dehydrate_counted_at_local(self, variance: Variance) -> str:
        return variance.computed_at.astimezone(ZoneInfo(variance.facility.time_zone)).isoformat(timespec="seconds")

    def _proposal(self, variance: Variance) -> ProposedAction | None:
        if variance.routing not in (Routing.AUTO, Routing.PROPOSAL):
            return None
        return getattr(variance, "proposal", None)

    def dehydrate_proposal(self, variance: Variance) -> str:
        proposal = self._proposal(variance)
        return str(proposal.pk) if proposal else ""

    def dehydrate_proposal_state(self, variance: Variance) -> str:
        proposal = self._proposal(variance)
        return proposal.state if proposal else ""

    def dehydrate_decision(self, variance: Variance) -> str:
        return decision_of(variance)

    def dehydrate_trace(self, variance: Variance) -> str:
        proposal = self._proposal(variance)
        return f"/trace/?proposal={proposal.pk}" if proposal else ""


def variance_filter_options(*, organization: Organization | None) -> dict[str, list[Any]]:
    """The choices of the report's filters, three small queries."""
    return {
        "facilities": list(Facility.objects.for_organization(organization).order_by("code")),
        "zones": list(
            Zone.objects.for_organization(organization).select_related("facility").order_by("facility__code", "code")
        ),
        "root_causes": list(RootCause.objects.for_organization(organization).order_by("code")),
    }
