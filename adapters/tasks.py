"""Celery tasks for the adapters: thin interfaces that load by id and call one service.

Work for one connection runs in its organization's row-level security scope; the sweeps look
across organizations and say so (accounts.tenancy).
"""

from __future__ import annotations

from celery import shared_task

from accounts.services import system_actor
from accounts.tenancy import organization_of, rls_bypass, tenant_context
from adapters.models import BackendConnection
from adapters.selectors import connections_with_due_pushes, push_target_for
from adapters.services import backend_sync, push_drain
from adapters.services.drain import stale_work_reclaim


@shared_task(name="adapters.tasks.push_drain_organization_task")
def push_drain_organization_task(organization_id: int) -> dict | None:
    """Drain one organization's outbox into its push target (queued on commit after approvals)."""
    with tenant_context(organization_id):
        connection = push_target_for(organization_id=organization_id)
        if connection is None:
            return None  # the embedded default: pushes wait until a connection is configured
        return push_drain(connection=connection, actor=system_actor()).__dict__


@shared_task(name="adapters.tasks.push_drain_connection_task")
def push_drain_connection_task(connection_id: int) -> dict | None:
    with tenant_context(organization_of(BackendConnection, connection_id)):
        connection = BackendConnection.objects.filter(pk=connection_id).first()
        return push_drain(connection=connection, actor=system_actor()).__dict__ if connection else None


@shared_task(name="adapters.tasks.push_drain_sweep_task")
def push_drain_sweep_task() -> list[int]:
    """Beat, every minute: reclaim what dead workers left, then drain every connection with due work."""
    with rls_bypass(reason="beat: reclaim stale pushes and find due work in every organization"):
        stale_work_reclaim()
        connection_ids = list(connections_with_due_pushes().values_list("pk", flat=True))
    for connection_id in connection_ids:
        push_drain_connection_task.delay(connection_id)
    return connection_ids


@shared_task(name="adapters.tasks.backend_sync_connection_task")
def backend_sync_connection_task(connection_id: int) -> dict | None:
    with tenant_context(organization_of(BackendConnection, connection_id)):
        connection = BackendConnection.objects.filter(pk=connection_id).first()
        return backend_sync(connection=connection, actor=system_actor()).as_json() if connection else None


@shared_task(name="adapters.tasks.backend_sync_sweep_task")
def backend_sync_sweep_task() -> list[int]:
    """Beat, every 5 minutes: sync every active connection (each in its own task)."""
    with rls_bypass(reason="beat: find the active connections of every organization"):
        connection_ids = list(BackendConnection.objects.filter(active=True).values_list("pk", flat=True))
    for connection_id in connection_ids:
        backend_sync_connection_task.delay(connection_id)
    return connection_ids
