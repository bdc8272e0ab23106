"""Reads of the adapters app: which connection, what is waiting, what needs a person."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from adapters.models import BackendConnection, BatchState, ParityDrift, PendingPush, PushBatch, PushState


class ConnectionNotFound(LookupError):
    pass


def connection_by_name(*, name: str, organization_slug: str | None = None) -> BackendConnection:
    """The connection an ops command names; `organization_slug` settles a name two organizations use."""
    connections = BackendConnection.objects.select_related("organization").filter(name=name)
    if organization_slug:
        connections = connections.filter(organization__slug=organization_slug)
    found = list(connections[:2])
    if not found:
        where = f" in {organization_slug}" if organization_slug else ""
        raise ConnectionNotFound(f"no connection named {name!r}{where}")
    if len(found) > 1:
        raise ConnectionNotFound(f"several organizations have a connection named {name!r}; add --org SLUG")
    return found[0]


def push_target_for(*, organization_id: int) -> BackendConnection | None:
    return (
        BackendConnection.objects.select_related("organization")
        .filter(organization_id=organization_id, is_push_target=True, active=True)
        .first()
    )


def connections_with_due_pushes() -> QuerySet[BackendConnection]:
    """Push targets with pushes waiting to be batched or batches due to be sent."""
    now = timezone.now()
    waiting_orgs = PendingPush.objects.filter(state=PushState.PENDING, batch__isnull=True).values("organization_id")
    due_batches = PushBatch.objects.filter(
        Q(state=BatchState.PENDING) | Q(state=BatchState.FAILED, next_attempt_at__lte=now)
    ).values("connection_id")
    return BackendConnection.objects.filter(active=True, is_push_target=True).filter(
        Q(organization_id__in=waiting_orgs) | Q(pk__in=due_batches)
    )


def outbox_summary(*, organization_id: int) -> dict[str, int]:
    """Counts for the admin: waiting, in flight, needing a person, open drifts."""
    pushes = PendingPush.objects.filter(organization_id=organization_id).aggregate(
        waiting=Count("pk", filter=Q(state=PushState.PENDING)),
        in_flight=Count("pk", filter=Q(state__in=[PushState.IN_FLIGHT, PushState.FAILED])),
        rejected=Count("pk", filter=Q(state=PushState.REJECTED)),
    )
    batches_needing_person = PushBatch.objects.filter(organization_id=organization_id).filter(
        Q(state=BatchState.REJECTED, line_count__gt=0) | Q(state=BatchState.FAILED, next_attempt_at__isnull=True)
    )
    return {
        **pushes,
        "batches_needing_person": batches_needing_person.count(),
        "open_drifts": ParityDrift.objects.filter(organization_id=organization_id, resolved_at__isnull=True).count(),
    }


def adjustment_file(*, batch: PushBatch) -> str:
    """The CSV a file connection exported for `batch`, rendered the same every time from the
    batch as it was formed (so a second download is byte-identical)."""
    from adapters.file.layouts import batch_csv
    from adapters.interface import AdjustmentBatch

    settings = batch.connection.settings
    return batch_csv(
        AdjustmentBatch.from_json(batch.request), layout=settings.get("layout") or "netsuite", settings=settings
    )
