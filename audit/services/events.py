"""The event ledger: record events in the caller's transaction, fan them out after the commit."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit.models import DOMAIN_EVENT_TYPES, DeliveryState, Event, SubscriptionState, WebhookDelivery
from audit.selectors import events_undispatched, webhook_subscriptions_for_event
from audit.subscribers import handler_name, subscribers_for

logger = logging.getLogger(__name__)

STALE_EVENT_AFTER = timedelta(minutes=1)


def enqueue_after_commit(task_name: str, *args: object) -> None:
    """Send the Celery task `audit.tasks.<task_name>` once the current transaction commits (at once outside one).

    Robust: a broker error is logged, not raised; the beat sweeps pick the work up within a minute.
    """

    def enqueue() -> None:
        from audit import tasks  # the tasks module imports the services

        getattr(tasks, task_name).delay(*args)

    transaction.on_commit(enqueue, robust=True)


def _json_payload(payload: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError(f"payload must be a dict (a JSON object), not {type(payload).__name__}")
    try:
        # DjangoJSONEncoder writes Decimal as a string (never a float), datetimes as ISO 8601, UUIDs as text.
        text = json.dumps(payload, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"payload is not JSON-serialisable: {error}") from None
    return json.loads(text)


def event_emit(*, organization_id: int, type: str, payload: dict[str, Any], version: int = 1) -> Event:
    """Record a domain event; call it inside the transaction of the change it describes.

    Guarantees: the event exists if and only if the caller's transaction commits (a rollback
    leaves no row and dispatches nothing); after the commit it is dispatched (at once, or by the
    beat sweep about a minute later if that enqueue was lost), and each webhook receives it at
    least once. The payload is stored as plain JSON (Decimal → string, datetime → ISO 8601,
    UUID → string); `version` is the payload's schema version for this type.
    Raises ValueError for an unknown type, a version below 1 or a payload that is not a
    JSON-serialisable dict; nothing is written then.
    """
    if type not in DOMAIN_EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {', '.join(DOMAIN_EVENT_TYPES)}")
    if int(version) < 1:
        raise ValueError("version must be 1 or more")
    event = Event.objects.create(
        organization_id=organization_id,
        type=type,
        version=int(version),
        payload=_json_payload(payload),
        occurred_at=timezone.now(),
    )
    enqueue_after_commit("event_dispatch_task", event.pk)
    return event


def events_emit_bulk(*, organization_id: int, type: str, payloads: list[dict[str, Any]], version: int = 1) -> int:
    """`event_emit` for many events of one type in one insert (an accepted batch's lines).

    Same guarantees; one dispatch task drains them all after the commit. Returns how many.
    """
    if type not in DOMAIN_EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {', '.join(DOMAIN_EVENT_TYPES)}")
    if not payloads:
        return 0
    now = timezone.now()
    Event.objects.bulk_create(
        [
            Event(
                organization_id=organization_id,
                type=type,
                version=int(version),
                payload=_json_payload(payload),
                occurred_at=now,
            )
            for payload in payloads
        ],
        batch_size=1000,
    )
    events_dispatch_soon()
    return len(payloads)


def events_dispatch_soon() -> None:
    """Dispatch every undispatched event once the current transaction commits.

    For services that insert events in SQL (set-based, with their change) or in bulk: one
    task drains them, instead of one task per event.
    """
    enqueue_after_commit("events_dispatch_pending_task")


def events_dispatch_pending(*, batch: int = 500) -> int:
    """Dispatch undispatched events, oldest first, until none is left; returns how many."""
    dispatched = 0
    while True:
        pending = events_undispatched(occurred_before=timezone.now() + timedelta(seconds=1), limit=batch)
        done = [event_id for event_id in pending if event_dispatch(event_id=event_id).dispatched]
        dispatched += len(done)
        if len(pending) < batch or not done:
            return dispatched


def sql_event_id() -> str:
    """SQL that yields a fresh event id in the current database (for INSERT … SELECT of events)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return "gen_random_uuid()"
    return "lower(hex(randomblob(16)))"  # SQLite keeps UUIDs as 32 hex characters


@dataclass(frozen=True)
class DispatchOutcome:
    """`dispatched` is False when the event was already dispatched (or another worker is at it)."""

    dispatched: bool
    delivery_ids: tuple[int, ...] = ()
    subscriber_errors: tuple[dict[str, str], ...] = ()


def _run_subscribers(event: Event, now: datetime) -> list[dict[str, str]]:
    errors = []
    for handler in subscribers_for(event.type):
        name = handler_name(handler)
        try:
            with transaction.atomic():
                handler(event)
        except Exception as error:  # one subscriber's bug must block neither the others nor the webhooks
            logger.exception("event subscriber %s failed on %s %s", name, event.type, event.event_id)
            errors.append({"handler": name, "error": f"{type(error).__name__}: {error}"[:500], "at": now.isoformat()})
    return errors


def event_dispatch(*, event_id: int) -> DispatchOutcome:
    """Fan one event out: run its in-process subscribers and create its webhook deliveries.

    Idempotent: an event is dispatched once; dispatching it again (a duplicate task, the sweep)
    changes and creates nothing. Subscriber writes, the deliveries (one per subscription, a
    unique constraint) and `dispatched_at` commit together. Deliveries of active subscriptions
    are sent after the commit; those of paused subscriptions wait for `webhook_subscription_resume`.
    `event_id` is the Event's primary key.
    """
    with transaction.atomic():
        undispatched = Event.objects.select_for_update(skip_locked=True).filter(dispatched_at__isnull=True)
        event = undispatched.filter(pk=event_id).first()
        if event is None:
            return DispatchOutcome(dispatched=False)
        now = timezone.now()
        errors = _run_subscribers(event, now)
        subscriptions = webhook_subscriptions_for_event(event=event)
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    organization_id=event.organization_id, subscription=subscription, event=event, next_attempt_at=now
                )
                for subscription in subscriptions
            ],
            ignore_conflicts=True,
        )
        to_send = list(
            WebhookDelivery.objects.filter(
                event=event, state=DeliveryState.PENDING, subscription__state=SubscriptionState.ACTIVE
            ).values_list("pk", flat=True)
        )
        event.dispatched_at = now
        event.subscriber_errors = errors
        event.save(update_fields=["dispatched_at", "subscriber_errors"])
        for delivery_id in to_send:
            enqueue_after_commit("webhook_delivery_task", delivery_id)
    return DispatchOutcome(dispatched=True, delivery_ids=tuple(to_send), subscriber_errors=tuple(errors))


def events_dispatch_stale(*, older_than: timedelta = STALE_EVENT_AFTER, limit: int = 500) -> list[int]:
    """Dispatch events still undispatched `older_than` after they occurred (their enqueue was lost).

    Returns the ids (primary keys) this call dispatched; safe to run concurrently with workers.
    """
    stale = events_undispatched(occurred_before=timezone.now() - older_than, limit=limit)
    return [event_id for event_id in stale if event_dispatch(event_id=event_id).dispatched]
