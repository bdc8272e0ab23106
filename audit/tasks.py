"""Celery tasks of the event ledger and webhooks: thin interfaces that call one service.

All are idempotent: each service re-checks state under a lock and does nothing when the work is
done or held by another worker, so duplicates and retries are harmless. Work on one event or
delivery runs in its organization's row-level security scope; the sweeps look across
organizations and say so (accounts.tenancy).
"""

from __future__ import annotations

import uuid

from celery import shared_task

from accounts.tenancy import organization_of, rls_bypass, tenant_context
from audit.models import Event, WebhookDelivery
from audit.services import (
    event_dispatch,
    events_dispatch_pending,
    events_dispatch_stale,
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
)


@shared_task(name="audit.tasks.event_dispatch_task")
def event_dispatch_task(event_id: int) -> list[int]:
    """Dispatch one event (queued on the commit of `event_emit`); returns the deliveries it queued."""
    with tenant_context(organization_of(Event, event_id)):
        return list(event_dispatch(event_id=event_id).delivery_ids)


@shared_task(name="audit.tasks.events_dispatch_pending_task")
def events_dispatch_pending_task() -> int:
    """Dispatch every undispatched event (queued after services that insert events in bulk or SQL)."""
    with rls_bypass(reason="dispatch the undispatched events of every organization"):
        return events_dispatch_pending()


@shared_task(name="audit.tasks.webhook_delivery_task")
def webhook_delivery_task(delivery_id: int, lease_token: str | None = None) -> str | None:
    """Make one attempt of a delivery; returns the delivery's state after it (None: nothing to do)."""
    with tenant_context(organization_of(WebhookDelivery, delivery_id)):
        outcome = webhook_delivery_attempt(
            delivery_id=delivery_id, lease_token=uuid.UUID(lease_token) if lease_token else None
        )
    return outcome.delivery_state if outcome else None


@shared_task(name="audit.tasks.events_sweep_task")
def events_sweep_task() -> list[int]:
    """Beat, every minute: dispatch events whose dispatch was lost more than a minute ago."""
    with rls_bypass(reason="beat: dispatch stale events of every organization"):
        return events_dispatch_stale()


@shared_task(name="audit.tasks.webhook_deliveries_sweep_task")
def webhook_deliveries_sweep_task() -> list[int]:
    """Beat, every minute: claim due retries, released held deliveries and expired leases; queue them."""
    with rls_bypass(reason="beat: claim due webhook deliveries of every organization"):
        return webhook_deliveries_sweep()


from audit import export_tasks  # noqa: E402,F401
