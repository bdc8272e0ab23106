from __future__ import annotations

import importlib
import pickle
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
import time_machine
from celery import current_app
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from counts.models import CountKind, CountRun, FacilityCountSettings, RunSource, RunState
from counts.services.planning import count_run_cancel, count_run_create
from counts.services.rotation import (
    RotationPlanError,
    rotation_plan_all,
    rotation_plan_preview,
    rotation_plan_week,
)
from counts.tasks import rotation_plan_week_task
from counts.timezones import local_to_utc
from inventory.models import AbcClass, Facility
from tests.counts.factories_rotation import warehouse_generate
from tests.factories import (
    FacilityFactory,
    InventoryBalanceFactory,
    ItemFactory,
    LocationFactory,
    OrganizationFactory,
    ZoneFactory,
)

FIRST_MONDAY = date(2026, 1, 5)
WEEKS = 26


def _settings(organization, facility, *, coverage_days=30, a_class_coverage_days=None) -> FacilityCountSettings:
    return FacilityCountSettings.objects.create(
        organization=organization,
        facility=facility,
        coverage_days=coverage_days,
        a_class_coverage_days=a_class_coverage_days,
    )


def _stocked_zone(organization, facility, code: str, size: int, *, abc_class: str = AbcClass.C) -> list:
    zone = ZoneFactory(organization=organization, facility=facility, code=code)
    locations = [
        LocationFactory(organization=organization, zone=zone, code=f"{code}-{n:02d}", barcode=f"LOC-{code}-{n:02d}")
        for n in range(1, size + 1)
    ]
    for location in locations:
        item = ItemFactory(organization=organization, abc_class=abc_class)
        InventoryBalanceFactory(organization=organization, location=location, item=item)
    return locations


def _counts_by_location(facility) -> dict[int, list[date]]:
    """Location id → the rotation Mondays of the runs that include it (one query)."""
    links = CountRun.locations.through.objects.filter(
        countrun__facility=facility, countrun__source=RunSource.ROTATION
    ).values_list("location_id", "countrun__rotation_week")
    counted: dict[int, list[date]] = defaultdict(list)
    for location_id, week in links:
        counted[location_id].append(week)
    return {location_id: sorted(weeks) for location_id, weeks in counted.items()}


def _longest_gaps(counted: dict[int, list[date]], location_ids, *, start: date, last_week: date) -> dict[int, int]:
    """Per location, the longest stretch in days without a count: from the start to the first
    count, between counts, and from the last count to the Monday after the simulation."""
    gaps = {}
    for location_id in location_ids:
        days = [start, *counted.get(location_id, []), last_week + timedelta(days=7)]
        gaps[location_id] = max((later - earlier).days for earlier, later in pairwise(days))
    return gaps


def test_26_weeks_cover_every_stocked_location_in_time_and_balance_the_weeks(organization, facility):
    _settings(organization, facility, coverage_days=30, a_class_coverage_days=14)
    warehouse = warehouse_generate(organization=organization, facility=facility)
    mondays = [FIRST_MONDAY + timedelta(weeks=week) for week in range(WEEKS)]
    assert len(warehouse.stocked_location_ids) > 250
    assert 0 < len(warehouse.a_class_location_ids) < len(warehouse.stocked_location_ids)

    queries_per_week = []
    for monday in mondays:
        with CaptureQueriesContext(connection) as queries:
            run = rotation_plan_week(facility=facility, week_start=monday)
        queries_per_week.append(len(queries))
        assert run is not None
        assert run.rotation_week == monday
    # Set-based: a fixed handful of queries a week, whatever the warehouse or the run size.
    assert len(set(queries_per_week)) == 1
    assert queries_per_week[0] <= 30

    runs = list(CountRun.objects.filter(facility=facility).order_by("rotation_week"))
    assert [run.rotation_week for run in runs] == mondays
    assert {(run.kind, run.source, run.state) for run in runs} == {
        (CountKind.CYCLE, RunSource.ROTATION, RunState.SCHEDULED)
    }
    counted = _counts_by_location(facility)
    # Only stocked locations are ever planned.
    assert set(counted) <= warehouse.stocked_location_ids

    # The guarantee: no stocked location goes longer than its coverage without a count —
    # including the first window of the rollout and the tail after the last planned week.
    last_week = mondays[-1]
    gaps = _longest_gaps(counted, warehouse.stocked_location_ids, start=FIRST_MONDAY, last_week=last_week)
    late = {location_id: gap for location_id, gap in gaps.items() if gap > 30}
    assert not late, f"{len(late)} locations went more than 30 days without a count"
    a_gaps = {location_id: gaps[location_id] for location_id in warehouse.a_class_location_ids}
    late_a = {location_id: gap for location_id, gap in a_gaps.items() if gap > 14}
    assert not late_a, f"{len(late_a)} A-class locations went more than 14 days without a count"

    # The balance: after the first window, no week carries more than 1.25 × the average.
    lines_per_week = dict.fromkeys(mondays, 0)
    for location_id, weeks in counted.items():
        for week in weeks:
            lines_per_week[week] += warehouse.lines_by_location[location_id]
    steady = [lines_per_week[monday] for monday in mondays[30 // 7 :]]
    average = Decimal(sum(steady)) / len(steady)
    ratio = Decimal(max(steady)) / average
    assert ratio <= Decimal("1.25"), f"max week {max(steady)} lines vs average {average:.1f} (ratio {ratio:.3f})"
    # And the rotation does not simply count everything every week.
    total_lines = sum(warehouse.lines_by_location.values())
    assert average < Decimal(total_lines) / 2


def test_a_class_locations_are_counted_more_often_than_the_rest(organization, facility):
    _settings(organization, facility, coverage_days=28, a_class_coverage_days=14)
    a_locations = _stocked_zone(organization, facility, "A", 4, abc_class=AbcClass.A)
    c_locations = _stocked_zone(organization, facility, "C", 16)
    for week in range(12):
        rotation_plan_week(facility=facility, week_start=FIRST_MONDAY + timedelta(weeks=week))

    counted = _counts_by_location(facility)
    assert min(len(counted[location.pk]) for location in a_locations) >= 6  # every 2 weeks
    assert max(len(counted[location.pk]) for location in c_locations) <= 4  # every 4 weeks


def test_planning_the_same_week_twice_creates_one_run(organization, facility):
    _settings(organization, facility)
    _stocked_zone(organization, facility, "A", 6)

    first = rotation_plan_week(facility=facility, week_start=FIRST_MONDAY)
    location_ids = set(first.locations.values_list("pk", flat=True))
    again = rotation_plan_week(facility=facility, week_start=FIRST_MONDAY)

    assert again.pk == first.pk
    assert CountRun.objects.filter(facility=facility).count() == 1
    assert set(again.locations.values_list("pk", flat=True)) == location_ids
    assert first.name == "Cycle WH1 2026-W02"
    assert first.state == RunState.SCHEDULED
    # The week in the facility's time: Monday 00:00 to Sunday 23:59 in Chicago, stored in UTC.
    assert (first.start_date_local, first.due_date_local) == (FIRST_MONDAY, date(2026, 1, 11))
    assert first.starts_at == datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    assert first.due_at == local_to_utc(date(2026, 1, 11), first.due_time_local, "America/Chicago")


def test_a_cancelled_rotation_run_frees_the_week_and_its_locations(organization, facility, manager):
    _settings(organization, facility)
    locations = _stocked_zone(organization, facility, "A", 8)
    first = rotation_plan_week(facility=facility, week_start=FIRST_MONDAY)
    count_run_cancel(run=first, actor=manager)

    replanned = rotation_plan_week(facility=facility, week_start=FIRST_MONDAY, actor=manager)

    assert replanned.pk != first.pk
    assert replanned.name == "Cycle WH1 2026-W02 #2"
    assert replanned.created_by == manager
    # The cancelled run counted nothing: the rollout starts over from the first window.
    assert set(replanned.locations.values_list("pk", flat=True)) <= {location.pk for location in locations}


def test_zones_counted_longest_ago_go_first(organization, facility, manager):
    _settings(organization, facility, coverage_days=30)
    oldest = _stocked_zone(organization, facility, "C", 6)
    middle = _stocked_zone(organization, facility, "A", 6)
    newest = _stocked_zone(organization, facility, "B", 6)
    # Previous zone counts planned by hand (zones only, no explicit locations), none overdue yet.
    week = date(2026, 3, 2)
    for zone_locations, weeks_ago in ((oldest, 3), (middle, 2), (newest, 1)):
        count_run_create(
            organization=organization,
            facility=facility,
            name=f"Zone {zone_locations[0].zone.code}",
            kind=CountKind.CYCLE,
            actor=manager,
            zones=[zone_locations[0].zone],
            start_date_local=week - timedelta(weeks=weeks_ago) + timedelta(days=2),
        )

    plan = rotation_plan_preview(facility=facility, week_start=week)
    assert plan.due_location_count == 0
    assert plan.target_lines == 5  # 18 lines over 4 weeks, rounded up

    run = rotation_plan_week(facility=facility, week_start=week)

    zone = oldest[0].zone
    assert list(run.zones.all()) == [zone]
    assert sorted(run.locations.values_list("code", flat=True)) == ["C-01", "C-02", "C-03", "C-04", "C-05"]


def test_overdue_and_never_counted_locations_are_always_in_the_run(organization, facility, manager):
    _settings(organization, facility, coverage_days=14)
    counted_long_ago = _stocked_zone(organization, facility, "A", 12)
    counted_this_week = _stocked_zone(organization, facility, "B", 10)
    first_week = date(2026, 2, 2)
    week = first_week + timedelta(weeks=2)
    count_run_create(
        organization=organization,
        facility=facility,
        name="Earlier rotation",
        kind=CountKind.CYCLE,
        source=RunSource.ROTATION,
        actor=manager,
        zones=[counted_long_ago[0].zone],
        rotation_week=first_week,
        start_date_local=first_week,
    )
    count_run_create(
        organization=organization,
        facility=facility,
        name="Zone B by hand",
        kind=CountKind.CYCLE,
        actor=manager,
        zones=[counted_this_week[0].zone],
        start_date_local=week + timedelta(days=1),
    )
    new_bin = _stocked_zone(organization, facility, "N", 1)[0]  # never counted, and the rollout window is over

    plan = rotation_plan_preview(facility=facility, week_start=week)
    run = rotation_plan_week(facility=facility, week_start=week)

    # Zone A is at its deadline and the new bin is past the rollout window: both must go in,
    # even though that is more than the weekly target; zone B, counted this week, stays out.
    assert (plan.due_lines, plan.target_lines) == (13, 12)
    assert set(run.locations.values_list("pk", flat=True)) == {location.pk for location in counted_long_ago} | {
        new_bin.pk
    }


def test_empty_locations_and_directed_runs_do_not_count(organization, facility, manager):
    _settings(organization, facility, coverage_days=7)
    stocked = _stocked_zone(organization, facility, "A", 2)
    empty = LocationFactory(organization=organization, zone=stocked[0].zone, code="A-99", barcode="LOC-A-99")
    InventoryBalanceFactory(organization=organization, location=empty, on_hand=Decimal("0"))
    # A directed run this week counts single items: it does not make the bins counted.
    count_run_create(
        organization=organization,
        facility=facility,
        name="Directed",
        kind=CountKind.DIRECTED,
        actor=manager,
        locations=stocked,
        start_date_local=FIRST_MONDAY + timedelta(days=2),
    )

    run = rotation_plan_week(facility=facility, week_start=FIRST_MONDAY)

    assert set(run.locations.values_list("pk", flat=True)) == {location.pk for location in stocked}


def test_a_whole_facility_hard_count_this_week_leaves_nothing_to_plan(organization, facility, manager):
    _settings(organization, facility)
    _stocked_zone(organization, facility, "A", 3)
    count_run_create(
        organization=organization,
        facility=facility,
        name="Hard count",
        kind=CountKind.HARD,
        actor=manager,
        start_date_local=FIRST_MONDAY + timedelta(days=3),
    )

    assert rotation_plan_week(facility=facility, week_start=FIRST_MONDAY) is None
    assert not CountRun.objects.filter(source=RunSource.ROTATION).exists()


def test_nothing_stocked_means_no_run_and_week_start_must_be_a_monday(organization, facility):
    assert rotation_plan_week(facility=facility, week_start=FIRST_MONDAY) is None
    with pytest.raises(ValidationError):
        rotation_plan_week(facility=facility, week_start=FIRST_MONDAY + timedelta(days=1))
    assert not CountRun.objects.exists()


def test_plan_all_covers_every_facility_of_every_organization(organization, facility):
    _stocked_zone(organization, facility, "A", 3)
    other = OrganizationFactory()
    other_facility = FacilityFactory(organization=other, code="WH1", time_zone="Asia/Tokyo")
    _stocked_zone(other, other_facility, "A", 3)
    FacilityFactory(organization=other, code="EMPTY")

    runs = rotation_plan_all(week_start=FIRST_MONDAY)

    assert {(run.organization_id, run.facility_id) for run in runs} == {
        (organization.pk, facility.pk),
        (other.pk, other_facility.pk),
    }
    tokyo = next(run for run in runs if run.facility_id == other_facility.pk)
    assert tokyo.starts_at == datetime(2026, 1, 4, 15, 0, tzinfo=UTC)  # Monday 00:00 in Tokyo
    assert {run.pk for run in rotation_plan_all(week_start=FIRST_MONDAY)} == {run.pk for run in runs}


def test_plan_all_plans_the_other_facilities_when_one_fails(organization, facility):
    _stocked_zone(organization, facility, "A", 3)
    broken = FacilityFactory(organization=organization, code="BROKEN")
    _stocked_zone(organization, broken, "B", 3)
    Facility.objects.filter(pk=broken.pk).update(time_zone="Nowhere/Atlantis")  # bypasses validation

    with pytest.raises(RotationPlanError) as failure:
        rotation_plan_all(week_start=FIRST_MONDAY)

    assert failure.value.failed == ["acme/BROKEN"]
    assert [run.facility_id for run in failure.value.runs] == [facility.pk]
    assert list(CountRun.objects.values_list("facility_id", flat=True)) == [facility.pk]
    assert pickle.loads(pickle.dumps(failure.value)).failed == ["acme/BROKEN"]  # noqa: S301 — our own object


def test_beat_runs_the_rotation_every_monday_at_six_utc(db):
    task = PeriodicTask.objects.get(name="Weekly zone rotation")

    assert task.task == "counts.tasks.rotation_plan_week_task"
    assert task.enabled
    crontab = task.crontab
    assert (
        crontab.minute,
        crontab.hour,
        crontab.day_of_week,
        crontab.day_of_month,
        crontab.month_of_year,
        str(crontab.timezone),
    ) == ("0", "6", "1", "*", "*", "UTC")
    assert task.task in current_app.tasks  # the name beat sends resolves to a registered task


def test_the_beat_entry_migration_is_idempotent_and_reversible(db):
    migration = importlib.import_module("counts.migrations.0002_rotation_periodic_task")

    migration.create_rotation_task(django_apps, None)
    assert PeriodicTask.objects.filter(name="Weekly zone rotation").count() == 1
    assert CrontabSchedule.objects.filter(minute="0", hour="6", day_of_week="1").count() == 1

    migration.delete_rotation_task(django_apps, None)
    assert not PeriodicTask.objects.filter(name="Weekly zone rotation").exists()
    assert not CrontabSchedule.objects.filter(minute="0", hour="6", day_of_week="1").exists()


def test_the_task_plans_the_current_utc_week_once(organization, facility):
    _stocked_zone(organization, facility, "A", 4)

    with time_machine.travel(datetime(2026, 1, 7, 6, 0, tzinfo=UTC), tick=False):  # a Wednesday
        first = rotation_plan_week_task.apply().get()
        second = rotation_plan_week_task.apply().get()

    run = CountRun.objects.get(facility=facility)
    assert first == second == [run.pk]
    assert run.rotation_week == FIRST_MONDAY
    assert run.source == RunSource.ROTATION


def test_the_task_accepts_a_missed_week(organization, facility):
    _stocked_zone(organization, facility, "A", 4)

    rotation_plan_week_task(week_start="2026-01-12")

    assert CountRun.objects.get(facility=facility).rotation_week == date(2026, 1, 12)


def test_the_command_plans_and_reports(organization, facility, capsys):
    _stocked_zone(organization, facility, "A", 4)

    call_command("rotation_plan", "--week", "2026-01-07", "--facility", "WH1", "--dry-run")
    assert not CountRun.objects.exists()
    call_command("rotation_plan", "--week", "2026-01-07", "--facility", "WH1")
    call_command("rotation_plan", "--week", "2026-01-05")

    output = capsys.readouterr().out
    assert "Rotation week of Monday 2026-01-05 (dry run)" in output
    assert "acme/WH1: would count 1 of 4 stocked locations, 1 lines" in output
    assert "acme/WH1: created Cycle WH1 2026-W02" in output
    assert "acme/WH1: already planned: Cycle WH1 2026-W02" in output
    assert CountRun.objects.count() == 1
