"""Reads for counting: run scope, progress, session state."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import Organization
from counts.models import CountKind, CountLine, CountRequest, CountRun
from inventory.models import InventoryBalance


def run_scope_balances(*, run: CountRun) -> QuerySet[InventoryBalance]:
    """The mirror balances a cycle or hard run must count: stocked item × location in scope."""
    balances = InventoryBalance.objects.filter(location__facility_id=run.facility_id).exclude(on_hand=0)
    location_ids = list(run.locations.values_list("pk", flat=True))
    zone_ids = list(run.zones.values_list("pk", flat=True))
    if location_ids:
        balances = balances.filter(location_id__in=location_ids)
    elif zone_ids:
        balances = balances.filter(location__zone_id__in=zone_ids)
    elif run.kind == CountKind.CYCLE:
        return balances.none()
    return balances


def run_scope_size(*, run: CountRun) -> int:
    if run.kind == CountKind.DIRECTED:
        return CountRequest.objects.filter(run=run).count()
    return run_scope_balances(run=run).count()


def run_list(
    *,
    organization: Organization | None,
    search: str = "",
    kind: str = "",
    state: str = "",
    facility: str = "",
    ordering: str = "-created_at",
) -> QuerySet[CountRun]:
    """Runs with their progress (lines counted) annotated, filtered and sorted in the database."""
    runs = CountRun.objects.for_organization(organization).select_related("facility")
    if search:
        runs = runs.filter(Q(name__icontains=search) | Q(facility__code__iexact=search) | Q(facility__name__icontains=search))
    if kind:
        runs = runs.filter(kind=kind)
    if state:
        runs = runs.filter(state=state)
    if facility:
        runs = runs.filter(facility__code=facility)
    counted = (
        CountLine.objects.filter(run=OuterRef("pk"), is_extra=False)
        .values("run")
        .annotate(total=Count("pk"))
        .values("total")
    )
    runs = runs.annotate(lines_counted=Coalesce(Subquery(counted), Value(0)))
    allowed = {"created_at", "-created_at", "due_at", "-due_at", "name", "-name", "state", "-state"}
    return runs.order_by(ordering if ordering in allowed else "-created_at", "-pk")
