"""Writes of the audit app: the reason log, the event ledger (a transactional outbox) and webhooks.

The event flow:

1. A domain service calls `event_emit` inside its transaction: the Event row commits with the
   change it describes, or not at all.
2. On commit, `audit.tasks.event_dispatch_task` runs `event_dispatch`: the in-process subscribers
   (`audit.subscribers`), then one WebhookDelivery per subscription that takes the event.
3. On that commit, `audit.tasks.webhook_delivery_task` runs `webhook_delivery_attempt` for each
   delivery: claim it (lease), POST it signed (outside any transaction), record the attempt.
4. Beat, every minute: `events_dispatch_stale` catches events whose enqueue was lost (a crash
   between commit and enqueue, a broker outage) and `webhook_deliveries_sweep` claims retries
   that came due and deliveries whose worker died.

Delivery is at-least-once: receivers dedupe on the event's `event_id`.
"""

from audit.services.deliveries import (
    AttemptOutcome,
    DeliveryClaim,
    backoff_delay,
    webhook_deliveries_claim,
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
)
from audit.services.events import (
    DispatchOutcome,
    event_dispatch,
    event_emit,
    events_dispatch_pending,
    events_dispatch_soon,
    events_dispatch_stale,
    events_emit_bulk,
    sql_event_id,
)
from audit.services.log import audit_log_write
from audit.services.subscriptions import (
    webhook_subscription_create,
    webhook_subscription_disable,
    webhook_subscription_pause,
    webhook_subscription_resume,
    webhook_subscription_secret_rotate,
    webhook_subscription_test_send,
    webhook_subscription_update,
)

__all__ = [
    "AttemptOutcome",
    "DeliveryClaim",
    "DispatchOutcome",
    "audit_log_write",
    "backoff_delay",
    "event_dispatch",
    "event_emit",
    "events_dispatch_pending",
    "events_dispatch_soon",
    "events_dispatch_stale",
    "events_emit_bulk",
    "sql_event_id",
    "webhook_deliveries_claim",
    "webhook_deliveries_sweep",
    "webhook_delivery_attempt",
    "webhook_subscription_create",
    "webhook_subscription_disable",
    "webhook_subscription_pause",
    "webhook_subscription_resume",
    "webhook_subscription_secret_rotate",
    "webhook_subscription_test_send",
    "webhook_subscription_update",
]
