"""The weekly zone rotation: which stocked locations each facility counts in a given week.

Unit of work
    A *stocked location* is a location with at least one balance whose on hand is not zero; its
    *lines* are the number of such balances (what an associate will count there). Empty locations
    are never planned.

When a location was last counted
    The latest date of a non-cancelled cycle or hard run of the facility that covers it, dated by
    its rotation week (rotation runs), else its local start date, else the local day it was
    created. A run covers a location through ``run.locations``; a run without explicit locations
    covers its ``run.zones``; a hard run with neither covers the whole facility (the same scope
    rules as ``counts.selectors.run_scope_balances``). Directed runs count single items, not
    locations, and never count as coverage. Runs dated after the planned week are ignored (they
    have not happened yet); a run planned for a day of the planned week does count, so a zone
    a planner already scheduled this week is not planned twice.

Each week (``week_start`` is a Monday; the next opportunity is the following Monday)
    1. Due: a location's deadline is its last count + its coverage (``coverage_days``, or
       ``a_class_coverage_days`` when it holds a stocked A item and that is shorter). A location
       whose deadline falls before the next rotation Monday cannot wait and is always in this
       week's run. The comparison is on whole days, so no extra margin is needed: a location
       whose deadline is exactly next Monday is planned next Monday.
       Never counted: the rollout window starts at the facility's first rotation week. Bins
       never counted get deadlines spread evenly (by lines, in walking order) over the weeks
       left in that window, per coverage class, so the first weeks already carry the steady
       load — neither "everything in week one" nor one big cohort falling due together on day
       30 and staying in lockstep. Once the window has passed, a never-counted bin (a new or
       newly stocked one) is due at once.
    2. Balance: the run is filled up to the steady weekly load, Σ lines / weeks-per-window
       (weeks-per-window = coverage // 7, at least 1, per location, so A locations weigh double
       when their window is half as long). Fill takes the locations that have used up the
       largest share of their own window first — with one window per facility that is simply
       "counted longest ago first" — and among equals, zones whose oldest count is oldest, then
       zone and location code, so a week's run walks contiguous areas. Ranking by share of
       window (not raw age) lets fill also pull A locations forward and break up A cohorts.
       Locations already counted in the planned week are not refilled.

Guarantees (whenever one rotation run is planned every week)
    * Every stocked location is in a run dated no later than its deadline: consecutive counts
      of a location are at most its coverage apart (counted by run dates, i.e. rotation Mondays),
      and every stocked location is counted within the first coverage window of the rotation.
      Coverage below 7 days degrades to "every week": weekly runs cannot do better.
    * A week's run is at most the larger of (the lines that are due) and (the target plus one
      location's lines); in steady state that keeps weeks within a few percent of the average.
      Deadlines win over balance: after a missed week the next run also carries what was due
      in the missed one.
    * A scheduled run is taken as counted in its week; cancel a run that will not be counted
      and its locations become due again.
    * One rotation run per facility and week: planning a week that already has a non-cancelled
      rotation run returns that run unchanged (the facility row is locked first, and the
      ``one_rotation_run_per_facility_week`` constraint backs it). A cancelled rotation run frees
      the week; planning it again creates a new run (its name suffixed "#2").

Reads are set-based: a handful of queries per facility whatever its size.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from fractions import Fraction

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, DateField, Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from counts.models import CountKind, CountRun, FacilityCountSettings, RunSource, RunState
from counts.services.planning import count_run_create
from counts.timezones import week_monday
from inventory.models import AbcClass, Facility, InventoryBalance, Location, Zone

logger = logging.getLogger(__name__)

DAYS_PER_WEEK = 7
DEFAULT_COVERAGE_DAYS: int = FacilityCountSettings._meta.get_field("coverage_days").default
COVERAGE_KINDS = (CountKind.CYCLE, CountKind.HARD)
NEVER = date.min  # sorts a never-counted location before every counted one


class RotationPlanError(Exception):
    """Some facilities could not be planned; the others were (each in its own transaction).

    Positional arguments only, so the exception survives pickling (Celery re-raises it).
    """

    def __init__(self, failed: list[str], runs: list[CountRun] | None = None) -> None:
        super().__init__(failed)
        self.failed = failed
        self.runs = runs or []

    def __str__(self) -> str:
        return f"rotation failed for {', '.join(self.failed)}"


@dataclass(frozen=True)
class RotationPlan:
    """What the rotation would count at one facility in one week (a read; nothing is written)."""

    facility: Facility
    week_start: date
    location_ids: tuple[int, ...]
    zone_ids: tuple[int, ...]
    lines: int
    due_location_count: int
    due_lines: int
    target_lines: int
    stocked_location_count: int

    @property
    def is_empty(self) -> bool:
        return not self.location_ids


@dataclass(frozen=True)
class _Stocked:
    location_id: int
    code: str
    zone_id: int
    zone_code: str
    lines: int
    last_counted: date | None
    coverage_days: int
    deadline: date


def rotation_week_current() -> date:
    """The Monday (UTC) of the current week: the week the Monday 06:00 UTC beat entry plans."""
    return week_monday(timezone.now().astimezone(UTC).date())


def rotation_run_name(*, facility: Facility, week_start: date) -> str:
    iso = week_start.isocalendar()
    return f"Cycle {facility.code} {iso.year}-W{iso.week:02d}"


def _check_monday(week_start: date) -> None:
    if week_start.weekday() != 0:
        raise ValidationError({"week_start": f"{week_start.isoformat()} is not a Monday"})


def _run_date(facility: Facility, prefix: str = "") -> Coalesce:
    """The day a run counts as done: rotation Monday, else local start, else local creation day."""
    return Coalesce(
        F(f"{prefix}rotation_week"),
        F(f"{prefix}start_date_local"),
        TruncDate(f"{prefix}created_at", tzinfo=facility.zone_info),
        output_field=DateField(),
    )


def _coverage_runs(*, facility: Facility, before: date) -> QuerySet[CountRun]:
    """Non-cancelled cycle and hard runs of the facility dated before `before`."""
    return (
        CountRun.objects.filter(organization_id=facility.organization_id, facility=facility, kind__in=COVERAGE_KINDS)
        .exclude(state=RunState.CANCELLED)
        .annotate(run_date=_run_date(facility))
        .filter(run_date__lt=before)
    )


def rotation_run_for_week(*, facility: Facility, week_start: date) -> CountRun | None:
    """The facility's non-cancelled rotation run for the week, if any."""
    return (
        CountRun.objects.filter(facility=facility, kind=CountKind.CYCLE, rotation_week=week_start)
        .exclude(state=RunState.CANCELLED)
        .first()
    )


@dataclass(frozen=True)
class _LastCounts:
    by_location: dict[int, date]
    whole_facility: date | None  # the latest hard run without zones or locations

    def of(self, location_id: int) -> date | None:
        days = [day for day in (self.by_location.get(location_id), self.whole_facility) if day is not None]
        return max(days, default=None)


def _last_counts(*, facility: Facility, before: date) -> _LastCounts:
    """When each location was last covered by a run dated before `before` (four queries)."""
    runs = _coverage_runs(facility=facility, before=before)
    location_links = CountRun.locations.through.objects
    zone_links = CountRun.zones.through.objects
    has_locations = Exists(location_links.filter(countrun_id=OuterRef("pk")))
    has_zones = Exists(zone_links.filter(countrun_id=OuterRef("pk")))

    by_location: dict[int, date] = dict(
        location_links.filter(countrun__in=runs.values("pk"))
        .values("location_id")
        .annotate(last=Max(_run_date(facility, "countrun__")))
        .values_list("location_id", "last")
        .order_by()
    )
    # Runs scoped by zone only: every location of the zone (as the zone is now) was in scope.
    by_zone_location = (
        Location.objects.filter(
            facility=facility,
            zone__count_runs__in=runs.filter(~has_locations).values("pk"),
        )
        .values("pk")
        .annotate(last=Max(_run_date(facility, "zone__count_runs__")))
        .values_list("pk", "last")
        .order_by()
    )
    for location_id, day in by_zone_location:
        by_location[location_id] = max(day, by_location.get(location_id, day))
    whole_facility = (
        runs.filter(kind=CountKind.HARD).filter(~has_locations, ~has_zones).aggregate(last=Max("run_date"))["last"]
    )
    return _LastCounts(by_location=by_location, whole_facility=whole_facility)


def _coverage_settings(facility: Facility) -> tuple[int, int | None]:
    row = FacilityCountSettings.objects.filter(facility=facility).values_list("coverage_days", "a_class_coverage_days")
    return row.first() or (DEFAULT_COVERAGE_DAYS, None)


def _stocked_locations(*, facility: Facility, week_start: date) -> list[_Stocked]:
    coverage_days, a_class_days = _coverage_settings(facility)
    a_class_days = min(a_class_days, coverage_days) if a_class_days else coverage_days
    next_monday = week_start + timedelta(days=DAYS_PER_WEEK)
    last_counts = _last_counts(facility=facility, before=next_monday)
    first_rotation = (
        CountRun.objects.filter(
            facility=facility, kind=CountKind.CYCLE, source=RunSource.ROTATION, rotation_week__isnull=False
        )
        .exclude(state=RunState.CANCELLED)
        .aggregate(first=Min("rotation_week"))["first"]
    )
    anchor = min(first_rotation, week_start) if first_rotation else week_start

    rows = (
        InventoryBalance.objects.filter(organization_id=facility.organization_id, location__facility=facility)
        .exclude(on_hand=0)
        .values("location_id", "location__code", "location__zone_id", "location__zone__code")
        .annotate(lines=Count("pk"), a_lines=Count("pk", filter=Q(item__abc_class=AbcClass.A)))
        .order_by()  # the model's default ordering would otherwise join the GROUP BY
    )
    never_counted: dict[int, list[dict]] = defaultdict(list)  # coverage → rows
    stocked: list[_Stocked] = []
    for row in rows:
        row["coverage"] = a_class_days if row["a_lines"] else coverage_days
        row["last"] = last_counts.of(row["location_id"])
        if row["last"] is None:
            never_counted[row["coverage"]].append(row)
        else:
            stocked.append(_stocked(row, deadline=row["last"] + timedelta(days=row["coverage"])))
    for coverage, group in never_counted.items():
        deadlines = _rollout_deadlines(group, anchor=anchor, week_start=week_start, coverage_days=coverage)
        stocked.extend(_stocked(row, deadline=deadlines[row["location_id"]]) for row in group)
    return stocked


def _stocked(row: dict, *, deadline: date) -> _Stocked:
    return _Stocked(
        location_id=row["location_id"],
        code=row["location__code"],
        zone_id=row["location__zone_id"],
        zone_code=row["location__zone__code"],
        lines=row["lines"],
        last_counted=row["last"],
        coverage_days=row["coverage"],
        deadline=deadline,
    )


def _rollout_deadlines(rows: list[dict], *, anchor: date, week_start: date, coverage_days: int) -> dict[int, date]:
    """Deadlines for never-counted locations sharing one coverage window.

    They are spread evenly, by lines and in walking order (zone, location code), over the weeks
    left in the rollout window that began at `anchor`, so the first weeks already carry the
    steady-state load instead of one large cohort falling due together. No deadline is later
    than anchor + coverage; once the window is over, every never-counted location is due now.
    """
    window_weeks = _weeks_per_window(coverage_days)
    week_index = (week_start - anchor).days // DAYS_PER_WEEK
    weeks_left = max(1, window_weeks - week_index)
    total_lines = sum(row["lines"] for row in rows)
    latest = anchor + timedelta(days=coverage_days)
    deadlines: dict[int, date] = {}
    lines_before = 0
    for row in sorted(rows, key=lambda row: (row["location__zone__code"], row["location__code"])):
        due_week = week_index + (lines_before * weeks_left) // total_lines
        # The last day of week `due_week`: due then, and not before.
        deadlines[row["location_id"]] = min(anchor + timedelta(weeks=due_week, days=DAYS_PER_WEEK - 1), latest)
        lines_before += row["lines"]
    return deadlines


def _weeks_per_window(coverage_days: int) -> int:
    return max(1, coverage_days // DAYS_PER_WEEK)


def _window_elapsed(stocked: _Stocked, week_start: date) -> Fraction:
    """How much of its own coverage window a location has used up by `week_start`.

    Ranking by this rather than by raw age lets the fill also pull short-window (A) locations
    forward, which breaks up cohorts that fell due in the same week; with a single window per
    facility it orders exactly like "counted longest ago first". A never-counted location is
    ranked as if last counted one window before its rollout deadline.
    """
    return Fraction((week_start - stocked.deadline).days + stocked.coverage_days, stocked.coverage_days)


def rotation_plan_preview(*, facility: Facility, week_start: date) -> RotationPlan:
    """The locations the rotation would count at `facility` in the week of `week_start`.

    Read-only: the same choice `rotation_plan_week` makes, without the idempotence check (it
    plans as if the week had no rotation run yet). See the module docstring for the rules.
    """
    _check_monday(week_start)
    stocked = _stocked_locations(facility=facility, week_start=week_start)
    next_monday = week_start + timedelta(days=DAYS_PER_WEEK)
    target = math.ceil(sum((Fraction(s.lines, _weeks_per_window(s.coverage_days)) for s in stocked), Fraction(0)))

    due = [s for s in stocked if s.deadline < next_monday]
    chosen = list(due)
    lines = sum(s.lines for s in due)

    zone_oldest: dict[int, date] = {}
    for s in stocked:
        zone_oldest[s.zone_id] = min(zone_oldest.get(s.zone_id, s.last_counted or NEVER), s.last_counted or NEVER)
    due_ids = {s.location_id for s in due}
    candidates = sorted(
        (
            s
            for s in stocked
            if s.location_id not in due_ids and (s.last_counted is None or s.last_counted < week_start)
        ),
        key=lambda s: (-_window_elapsed(s, week_start), zone_oldest[s.zone_id], s.zone_code, s.code),
    )
    for candidate in candidates:
        if lines >= target:
            break
        chosen.append(candidate)
        lines += candidate.lines

    chosen.sort(key=lambda s: (s.zone_code, s.code))
    return RotationPlan(
        facility=facility,
        week_start=week_start,
        location_ids=tuple(s.location_id for s in chosen),
        zone_ids=tuple(dict.fromkeys(s.zone_id for s in chosen)),
        lines=lines,
        due_location_count=len(due),
        due_lines=sum(s.lines for s in due),
        target_lines=target,
        stocked_location_count=len(stocked),
    )


def _free_run_name(*, facility: Facility, week_start: date) -> str:
    """The week's run name, suffixed when a cancelled run of the same week holds it."""
    base = rotation_run_name(facility=facility, week_start=week_start)
    taken = set(CountRun.objects.filter(facility=facility, name__startswith=base).values_list("name", flat=True))
    name, attempt = base, 1
    while name in taken:
        attempt += 1
        name = f"{base} #{attempt}"
    return name


@transaction.atomic
def rotation_plan_week(
    *, facility: Facility, week_start: date, actor: AbstractBaseUser | None = None
) -> CountRun | None:
    """Create the facility's rotation run for the week of `week_start` (a Monday), once.

    Guarantees: at most one non-cancelled rotation run per facility and week — if the week
    already has one it is returned unchanged; every location whose coverage deadline would
    otherwise be missed is in the run; the run is scheduled, starts Monday 00:00 and is due
    Sunday 23:59 in the facility's time. Returns None when there is nothing to count: no stocked
    location, or every stocked location already counted this week (say, by a hard count).
    """
    _check_monday(week_start)
    facility = Facility.objects.select_related("organization").select_for_update(of=("self",)).get(pk=facility.pk)
    existing = rotation_run_for_week(facility=facility, week_start=week_start)
    if existing is not None:
        return existing

    plan = rotation_plan_preview(facility=facility, week_start=week_start)
    if plan.is_empty:
        return None
    locations: Iterable[Location] = Location.objects.filter(facility=facility, pk__in=plan.location_ids).only(
        "pk", "code", "facility_id", "organization_id"
    )
    zones: Iterable[Zone] = Zone.objects.filter(facility=facility, pk__in=plan.zone_ids).only(
        "pk", "code", "facility_id", "organization_id"
    )
    run = count_run_create(
        organization=facility.organization,
        facility=facility,
        name=_free_run_name(facility=facility, week_start=week_start),
        kind=CountKind.CYCLE,
        source=RunSource.ROTATION,
        actor=actor,
        zones=zones,
        locations=locations,
        rotation_week=week_start,
        start_date_local=week_start,
        due_date_local=week_start + timedelta(days=DAYS_PER_WEEK - 1),
        schedule=True,
    )
    logger.info(
        "rotation: %s planned %s locations, %s lines (due %s lines, target %s)",
        run.name,
        len(plan.location_ids),
        plan.lines,
        plan.due_lines,
        plan.target_lines,
    )
    return run


def rotation_plan_all(*, week_start: date | None = None, actor: AbstractBaseUser | None = None) -> list[CountRun]:
    """Plan the week (default: the current UTC week) at every facility of every organization.

    Returns the week's rotation runs, created now or before (idempotent). Each facility is
    planned in its own transaction, so one failing facility does not hold back the others;
    failures are logged and then raised together as RotationPlanError (the runs that were
    planned stay; a retry plans only what is missing).
    """
    week_start = week_start or rotation_week_current()
    _check_monday(week_start)
    runs: list[CountRun] = []
    failed: list[str] = []
    facilities = Facility.objects.select_related("organization").order_by("organization_id", "code", "pk")
    for facility in facilities:
        try:
            run = rotation_plan_week(facility=facility, week_start=week_start, actor=actor)
        except Exception:
            logger.exception("rotation: planning %s for %s failed", facility.code, week_start.isoformat())
            failed.append(f"{facility.organization.slug}/{facility.code}")
            continue
        if run is not None:
            runs.append(run)
    if failed:
        raise RotationPlanError(failed, runs)
    return runs
