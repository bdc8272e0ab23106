"""Reads for counting: run scope and progress, session state, what an associate may see."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Abs, Coalesce

from accounts.models import Organization
from accounts.roles import Role
from accounts.selectors import role_for_user
from counts.models import (
    CountEvent,
    CountKind,
    CountLine,
    CountRequest,
    CountRun,
    CountSession,
    EventStatus,
    FacilityCountSettings,
    Identifier,
    SessionTally,
)
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode


def run_scope_balances(*, run: CountRun) -> QuerySet[InventoryBalance]:
    """The mirror balances a cycle or hard run must count: stocked item × location in scope."""
    balances = InventoryBalance.objects.filter(location__facility_id=run.facility_id).exclude(on_hand=0)
    location_ids = list(run.locations.values_list("pk", flat=True))
    zone_ids = list(run.zones.values_list("pk", flat=True))
    if location_ids:
        return balances.filter(location_id__in=location_ids)
    if zone_ids:
        return balances.filter(location__zone_id__in=zone_ids)
    if run.kind == CountKind.CYCLE:
        return balances.none()
    return balances


def _count_of(queryset: QuerySet) -> Subquery:
    return Subquery(
        queryset.order_by().annotate(group=Value(1)).values("group").annotate(total=Count("pk")).values("total"),
        output_field=IntegerField(),
    )


def with_progress(runs: QuerySet[CountRun]) -> QuerySet[CountRun]:
    """Annotate `lines_in_scope` and `lines_counted` in the same query as the runs."""
    stocked = InventoryBalance.objects.exclude(on_hand=0)
    run_locations = CountRun.locations.through.objects.filter(countrun_id=OuterRef("pk"))
    run_zones = CountRun.zones.through.objects.filter(countrun_id=OuterRef("pk"))
    return runs.annotate(
        has_locations=Exists(run_locations),
        has_zones=Exists(run_zones),
        lines_in_scope=Case(
            When(kind=CountKind.DIRECTED, then=Coalesce(_count_of(CountRequest.objects.filter(run=OuterRef("pk"))), 0)),
            When(
                has_locations=True,
                then=Coalesce(_count_of(stocked.filter(location__count_runs=OuterRef("pk"))), 0),
            ),
            When(
                has_zones=True,
                then=Coalesce(_count_of(stocked.filter(location__zone__count_runs=OuterRef("pk"))), 0),
            ),
            When(
                kind=CountKind.HARD,
                then=Coalesce(_count_of(stocked.filter(location__facility=OuterRef("facility"))), 0),
            ),
            default=Value(0),
            output_field=IntegerField(),
        ),
        lines_counted=Coalesce(_count_of(CountLine.objects.filter(run=OuterRef("pk"), is_extra=False)), 0),
    )


RUN_ORDERINGS = {"created", "-created", "due", "-due", "name", "-name", "status", "-status"}
_ORDER_FIELDS = {"created": "created_at", "due": "due_at", "name": "name", "status": "state"}


def run_list(
    *,
    organization: Organization | None,
    search: str = "",
    kind: str = "",
    state: str = "",
    facility: str = "",
    ordering: str = "-created",
    assigned_to: AbstractBaseUser | None = None,
) -> QuerySet[CountRun]:
    """Runs with progress, filtered and sorted in the database (one query for a page)."""
    runs = CountRun.objects.for_organization(organization).select_related("facility")
    if search:
        runs = runs.filter(
            Q(name__icontains=search) | Q(facility__code__iexact=search) | Q(facility__name__icontains=search)
        )
    if kind:
        runs = runs.filter(kind=kind)
    if state:
        runs = runs.filter(state=state)
    if facility:
        runs = runs.filter(facility__code=facility)
    if assigned_to is not None:
        runs = runs.filter(Q(assignees=assigned_to) | Q(assignees__isnull=True)).distinct()
    ordering = ordering if ordering in RUN_ORDERINGS else "-created"
    field = _ORDER_FIELDS[ordering.lstrip("-")]
    return with_progress(runs).order_by(f"-{field}" if ordering.startswith("-") else field, "-pk")


def run_get(*, organization: Organization | None, run_id: int) -> CountRun:
    return (
        with_progress(CountRun.objects.for_organization(organization).select_related("facility"))
        .prefetch_related("zones", "assignees")
        .get(pk=run_id)
    )


def facility_count_settings_get(*, facility: Facility) -> FacilityCountSettings:
    """The facility's settings; the defaults apply (unsaved) until a manager saves some."""
    found = FacilityCountSettings.objects.filter(facility=facility).first()
    return found or FacilityCountSettings(organization_id=facility.organization_id, facility=facility)


def may_count_run(*, user: AbstractBaseUser, run: CountRun) -> bool:
    """A run assigned to some associates is theirs alone; other roles may count any run."""
    if role_for_user(user) != Role.ASSOCIATE:
        return True
    return not run.assignees.exists() or run.assignees.filter(pk=user.pk).exists()


def book_visible_to(*, user: AbstractBaseUser, facility_id: int) -> bool:
    """Blind counts are enforced here: associates never see book quantities while it is on."""
    if role_for_user(user) != Role.ASSOCIATE:
        return True
    return not FacilityCountSettings.objects.filter(facility_id=facility_id, blind_count=True).exists()


def _visible_sessions(*, organization: Organization | None, user: AbstractBaseUser) -> QuerySet[CountSession]:
    """Associates see their own sessions; other roles every session of the organization."""
    sessions = CountSession.objects.for_organization(organization)
    if role_for_user(user) == Role.ASSOCIATE:
        sessions = sessions.filter(user=user)
    return sessions


def session_list(*, organization: Organization | None, user: AbstractBaseUser) -> QuerySet[CountSession]:
    return _visible_sessions(organization=organization, user=user).select_related("run", "run__facility", "user")


def session_tallies(*, session: CountSession) -> QuerySet[SessionTally]:
    return (
        SessionTally.objects.filter(session=session)
        .select_related("location", "item")
        .prefetch_related(Prefetch("item__barcodes", queryset=ItemBarcode.objects.order_by("value")))
        .order_by("location__code", "item__name")
    )


def session_book_quantities(*, session: CountSession) -> dict[tuple[int, int], object]:
    return {
        (location_id, item_id): book
        for location_id, item_id, book in CountLine.objects.filter(run_id=session.run_id).values_list(
            "location_id", "item_id", "book_quantity"
        )
    }


def session_requests(*, session: CountSession) -> list[dict]:
    """A directed run's requested lines and whether this run has counted each yet."""
    counted = CountLine.objects.filter(
        run_id=session.run_id, location_id=OuterRef("location_id"), item_id=OuterRef("item_id")
    )
    return list(
        CountRequest.objects.filter(run_id=session.run_id)
        .annotate(counted=Exists(counted))
        .order_by("location__code", "item__name")
        .values("location__code", "item__sku", "item__name", "counted")
    )


def session_event_summary(*, session: CountSession) -> dict[str, int]:
    totals = dict(
        CountEvent.objects.filter(session=session).values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    return {"total": sum(totals.values()), **{status: totals.get(status, 0) for status in EventStatus.values}}


def session_attention_events(*, session: CountSession, limit: int = 50) -> QuerySet[CountEvent]:
    """Events that did not simply count: unmatched, extra and refused, newest first."""
    return (
        CountEvent.objects.filter(session=session)
        .exclude(status=EventStatus.MATCHED)
        .select_related("location")
        .order_by("-counted_at", "-pk")[:limit]
    )


def run_lines(*, run: CountRun, ordering: str = "name") -> QuerySet[CountLine]:
    """A run's lines sorted by item name, location, or largest absolute variance first."""
    lines = CountLine.objects.filter(run=run).select_related("location", "item")
    if ordering == "variance":
        return lines.annotate(abs_variance=Abs(F("counted_quantity") - F("book_quantity"))).order_by(
            "-abs_variance", "item__name"
        )
    if ordering == "location":
        return lines.order_by("location__code", "item__name")
    return lines.order_by("item__name", "location__code")


def _identifier(item: Item, which: str) -> str:
    if which == Identifier.UPC:
        barcodes = list(item.barcodes.all())
        return barcodes[0].value if barcodes else item.sku
    return item.name if which == Identifier.NAME else item.sku


def session_state(session: CountSession, *, viewer: Any) -> dict[str, Any]:
    """Everything a device needs to rebuild the session: tallies, requests, what needs attention.

    While blind counting is on, associates get no book quantity anywhere in it.
    """
    run = session.run
    preferences = facility_count_settings_get(facility=run.facility)
    show_book = book_visible_to(user=viewer, facility_id=run.facility_id)
    book = session_book_quantities(session=session) if show_book else {}
    lines = []
    for tally in session_tallies(session=session):
        line = {
            "location": tally.location.code,
            "item": tally.item.sku,
            "item_name": tally.item.name,
            "primary": _identifier(tally.item, preferences.primary_identifier),
            "secondary": _identifier(tally.item, preferences.secondary_identifier),
            "counted": str(tally.quantity),
        }
        if show_book:
            line["book"] = str(book.get((tally.location_id, tally.item_id), ""))
        lines.append(line)
    attention = [
        {
            "event_id": str(event.event_id),
            "status": event.status,
            "location": event.location.code,
            "barcode": event.barcode,
            "sku": event.sku,
            "quantity": str(event.quantity),
            "reason": event.refusal_reason,
            "counted_at": event.counted_at.isoformat(),
        }
        for event in session_attention_events(session=session)
    ]
    return {
        "id": session.pk,
        "run": run.pk,
        "run_name": run.name,
        "run_type": run.kind,
        "facility": run.facility.code,
        "state": session.state,
        "device_id": session.device_id,
        "user": session.user.username,
        "is_recount": session.is_recount,
        "started_at": session.started_at.isoformat(),
        "submitted_at": session.submitted_at.isoformat() if session.submitted_at else None,
        "blind": not show_book,
        "preferences": {
            "primary_identifier": preferences.primary_identifier,
            "secondary_identifier": preferences.secondary_identifier,
            "require_scan": preferences.require_scan,
            "barcode_format": preferences.barcode_format,
        },
        "lines": lines,
        "requests": session_requests(session=session) if run.kind == CountKind.DIRECTED else [],
        "events": session_event_summary(session=session),
        "attention": attention,
    }
