"""Planning: creating runs, their schedule in facility time, directed requests from signals."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from accounts.models import Organization
from counts.models import (
    OPEN_RUN_STATES,
    CountKind,
    CountRequest,
    CountRun,
    RunSource,
    RunState,
    SignalKind,
)
from counts.timezones import local_to_utc
from inventory.models import Facility, Item, Location, Zone, validate_time_zone

DEFAULT_START_TIME = time(0, 0)
DEFAULT_DUE_TIME = time(23, 59)


def _apply_schedule(run: CountRun, time_zone: str) -> None:
    run.starts_at = (
        local_to_utc(run.start_date_local, run.start_time_local, time_zone) if run.start_date_local else None
    )
    run.due_at = local_to_utc(run.due_date_local, run.due_time_local, time_zone) if run.due_date_local else None


def _check_same_organization(organization: Organization, *rows: Iterable) -> None:
    for group in rows:
        for row in group:
            if row.organization_id != organization.pk:
                raise ValidationError(f"{row} belongs to another organization")


@transaction.atomic
def count_run_create(
    *,
    organization: Organization,
    facility: Facility,
    name: str,
    kind: str,
    actor: AbstractBaseUser | None,
    source: str = RunSource.MANUAL,
    zones: Iterable[Zone] = (),
    locations: Iterable[Location] = (),
    assignees: Iterable[AbstractBaseUser] = (),
    start_date_local: date | None = None,
    start_time_local: time = DEFAULT_START_TIME,
    due_date_local: date | None = None,
    due_time_local: time = DEFAULT_DUE_TIME,
    rotation_week: date | None = None,
    schedule: bool = True,
) -> CountRun:
    """Create a run in the facility's time: the local intent is kept and UTC computed from it.

    With `schedule` the run leaves draft at once (it is ready to be counted).
    """
    zones, locations = list(zones), list(locations)
    _check_same_organization(organization, [facility], zones, locations)
    if kind not in CountKind.values:
        raise ValidationError({"kind": f"unknown kind {kind!r}"})
    if any(zone.facility_id != facility.pk for zone in zones) or any(
        location.facility_id != facility.pk for location in locations
    ):
        raise ValidationError({"locations": "zones and locations must be in the run's facility"})
    if start_date_local and due_date_local and (due_date_local, due_time_local) < (start_date_local, start_time_local):
        raise ValidationError({"due": "due is before start"})

    if CountRun.objects.filter(facility=facility, name=name).exists():
        raise ValidationError({"name": f"a run named {name!r} already exists at {facility.code}"})
    run = CountRun(
        organization=organization,
        facility=facility,
        name=name,
        kind=kind,
        source=source,
        start_date_local=start_date_local,
        start_time_local=start_time_local,
        due_date_local=due_date_local,
        due_time_local=due_time_local,
        rotation_week=rotation_week,
        created_by=actor,
    )
    _apply_schedule(run, facility.time_zone)
    if schedule:
        run.schedule()
    run._history_user = actor
    run.save()
    if zones:
        run.zones.set(zones)
    if locations:
        run.locations.set(locations)
    if assignees:
        run.assignees.set(list(assignees))
    return run


@transaction.atomic
def facility_time_zone_change(*, facility: Facility, time_zone: str, actor: AbstractBaseUser | None) -> int:
    """Move a facility to another zone and recompute UTC of its open runs from their local intent.

    Returns how many runs were rescheduled. Closed and cancelled runs keep their instants: they
    record what happened.
    """
    try:
        validate_time_zone(time_zone)
    except ValidationError as error:
        raise ValidationError({"time_zone": error.messages}) from None
    facility = Facility.objects.select_for_update().get(pk=facility.pk)
    facility.time_zone = time_zone
    facility._history_user = actor
    facility.save(update_fields=["time_zone"])
    runs = list(
        CountRun.objects.select_for_update()
        .filter(facility=facility)
        .exclude(state__in=[RunState.CLOSED, RunState.CANCELLED])
        .order_by("pk")
    )
    for run in runs:
        _apply_schedule(run, time_zone)
    bulk_update_with_history(runs, CountRun, ["starts_at", "due_at"], default_user=actor)
    return len(runs)


def _locked_run(run_id: int) -> CountRun:
    return CountRun.objects.select_for_update().get(pk=run_id)


@transaction.atomic
def count_run_start(*, run: CountRun, actor: AbstractBaseUser | None) -> CountRun:
    """Open a run for counting. Starting a run that is already in progress changes nothing."""
    run = _locked_run(run.pk)
    if run.state == RunState.IN_PROGRESS:
        return run
    run.start()
    run.started_at = timezone.now()
    run._history_user = actor
    run.save()
    return run


@transaction.atomic
def count_run_cancel(*, run: CountRun, actor: AbstractBaseUser | None, reason: str = "") -> CountRun:
    """Cancel a run that is not closed; its scans stay, nothing is reconciled from it."""
    run = _locked_run(run.pk)
    if run.state == RunState.CANCELLED:
        return run
    run.cancel()
    run._history_user = actor
    run._change_reason = reason or "cancelled"
    run.save()
    return run


@dataclass(frozen=True)
class DirectedRequestResult:
    run: CountRun
    created: bool
    run_created: bool


@dataclass(frozen=True)
class DirectedRequestsResult:
    run: CountRun
    created: set[tuple[int, int]]
    run_created: bool


def _open_directed_run(
    *, organization: Organization, facility: Facility, actor: AbstractBaseUser | None
) -> tuple[CountRun, bool]:
    run = (
        CountRun.objects.filter(facility=facility, kind=CountKind.DIRECTED, state__in=OPEN_RUN_STATES)
        .order_by("created_at", "pk")
        .first()
    )
    if run is not None:
        return run, False
    today = timezone.localdate(timezone=facility.zone_info)
    base_name = f"Directed {facility.code} {today.isoformat()}"
    taken = set(CountRun.objects.filter(facility=facility, name__startswith=base_name).values_list("name", flat=True))
    name = base_name if base_name not in taken else f"{base_name} #{len(taken) + 1}"
    run = count_run_create(
        organization=organization,
        facility=facility,
        name=name,
        kind=CountKind.DIRECTED,
        source=RunSource.SIGNAL,
        actor=actor,
        start_date_local=today,
    )
    return run, True


@transaction.atomic
def directed_requests_add(
    *,
    organization: Organization,
    facility: Facility,
    pairs: list[tuple[Item, Location]],
    reason: str,
    actor: AbstractBaseUser | None,
    expected: Decimal | None = None,
    found: Decimal | None = None,
    note: str = "",
) -> DirectedRequestsResult:
    """Add item × location pairs to the facility's open directed run, creating the run if none is open.

    Signals repeat (every short pick of the same bin); a repeat only raises the request's
    signal count. The facility row is locked first so two callers can't open two runs. A few
    queries whatever the number of pairs.
    """
    items = [item for item, _ in pairs]
    locations = [location for _, location in pairs]
    _check_same_organization(organization, [facility], items, locations)
    if any(location.facility_id != facility.pk for location in locations):
        raise ValidationError({"location": "every location must be in the facility"})
    if reason not in SignalKind.values:
        raise ValidationError({"kind": f"unknown signal kind {reason!r}"})
    facility = Facility.objects.select_for_update().get(pk=facility.pk)
    run, run_created = _open_directed_run(organization=organization, facility=facility, actor=actor)
    keys = {(item.pk, location.pk) for item, location in pairs}
    existing = (
        set(
            CountRequest.objects.filter(
                run=run, item_id__in={key[0] for key in keys}, location_id__in={key[1] for key in keys}
            ).values_list("item_id", "location_id")
        )
        & keys
    )
    created = keys - existing
    CountRequest.objects.bulk_create(
        [
            CountRequest(
                organization=organization,
                run=run,
                item_id=item_id,
                location_id=location_id,
                reason=reason,
                expected=expected,
                found=found,
                note=note,
            )
            for item_id, location_id in sorted(created)
        ]
    )
    for item_id, location_id in sorted(existing):
        CountRequest.objects.filter(run=run, item_id=item_id, location_id=location_id).update(
            signal_count=F("signal_count") + 1
        )
    return DirectedRequestsResult(run=run, created=created, run_created=run_created)


def directed_request_add(
    *,
    organization: Organization,
    item: Item,
    location: Location,
    reason: str,
    actor: AbstractBaseUser | None,
    expected: Decimal | None = None,
    found: Decimal | None = None,
    note: str = "",
) -> DirectedRequestResult:
    """One item × location for the facility's open directed run (see `directed_requests_add`)."""
    _check_same_organization(organization, [location])
    result = directed_requests_add(
        organization=organization,
        facility=Facility.objects.get(pk=location.facility_id),
        pairs=[(item, location)],
        reason=reason,
        actor=actor,
        expected=expected,
        found=found,
        note=note,
    )
    return DirectedRequestResult(run=result.run, created=bool(result.created), run_created=result.run_created)
