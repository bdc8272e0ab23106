"""Webhook deliveries: claimed under a lease, POSTed outside any transaction, every attempt recorded.

At-least-once: a worker that dies after the POST but before recording it leaves its lease to
expire, and the delivery is sent again; receivers dedupe on the event id.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import webhooks
from audit.models import (
    DeliveryState,
    EventType,
    SubscriptionState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from audit.selectors import webhook_deliveries_due, webhook_delivery_for_sending
from audit.services.events import enqueue_after_commit
from audit.services.subscriptions import subscription_locked, subscription_pause_locked

# Tunable through settings of the same name; the defaults are the documented behaviour.
DEFAULT_MAX_ATTEMPTS = 8  # AUDIT_WEBHOOK_MAX_ATTEMPTS: then the delivery is abandoned
DEFAULT_PAUSE_AFTER_FAILURES = 5  # AUDIT_WEBHOOK_PAUSE_AFTER_FAILURES: consecutive, across deliveries
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
DELIVERY_LEASE = timedelta(minutes=5)  # covers the queue wait and the 10 s POST


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


@dataclass(frozen=True)
class DeliveryClaim:
    delivery_id: int
    lease_token: uuid.UUID


@dataclass(frozen=True)
class AttemptOutcome:
    """One recorded attempt. `lease_lost`: another worker took the delivery over meanwhile, so this
    attempt was recorded but left the delivery's state alone."""

    attempt_id: int
    delivery_state: str
    status_code: int | None
    error: str
    subscription_paused: bool = False
    lease_lost: bool = False


def backoff_delay(attempts: int) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: 30 s × 2^(n−1), up to +10 % jitter, at most 1 h."""
    base = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    jitter_ms = secrets.randbelow(int(base * 100) + 1)  # up to 10 % of base, in milliseconds
    return timedelta(seconds=min(base + jitter_ms / 1000, BACKOFF_CAP_SECONDS))


def webhook_deliveries_claim(*, delivery_ids: list[int] | None = None, limit: int = 100) -> list[DeliveryClaim]:
    """Lease due deliveries to the caller (all of them, or only `delivery_ids`).

    Rows locked by another claimer are skipped, and a leased delivery is not due again until its
    lease expires, so two workers never hold the same delivery at once.
    """
    now = timezone.now()
    with transaction.atomic():
        due = webhook_deliveries_due(now=now).select_for_update(skip_locked=True, of=("self",))
        if delivery_ids is not None:
            due = due.filter(pk__in=delivery_ids)
        claimed = list(due.values_list("pk", flat=True)[:limit])
        token = uuid.uuid4()
        WebhookDelivery.objects.filter(pk__in=claimed).update(
            state=DeliveryState.DELIVERING, leased_until=now + DELIVERY_LEASE, lease_token=token, updated_at=now
        )
    return [DeliveryClaim(delivery_id=delivery_id, lease_token=token) for delivery_id in claimed]


def webhook_deliveries_sweep(*, limit: int = 100) -> list[int]:
    """Claim the deliveries that are due (retries, held ones released, dead workers' leases) and queue them."""
    claims = webhook_deliveries_claim(limit=limit)
    for claim in claims:
        enqueue_after_commit("webhook_delivery_task", claim.delivery_id, str(claim.lease_token))
    return [claim.delivery_id for claim in claims]


def _failure_text(result: webhooks.PostResult) -> str:
    return result.error or f"HTTP {result.status_code}"


def _record_attempt(
    *, delivery: WebhookDelivery, lease_token: uuid.UUID, attempted_at: datetime, result: webhooks.PostResult
) -> AttemptOutcome:
    now = timezone.now()
    is_test = delivery.event.type == EventType.WEBHOOK_TEST
    with transaction.atomic():
        # Lock order everywhere: subscription, then delivery.
        subscription = subscription_locked(delivery.subscription)
        locked = WebhookDelivery.objects.select_for_update(no_key=True).get(pk=delivery.pk)
        attempt = WebhookAttempt.objects.create(
            organization_id=locked.organization_id,
            delivery=locked,
            attempted_at=attempted_at,
            succeeded=result.succeeded,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            response_excerpt=result.response_excerpt[: webhooks.EXCERPT_CHARS],
            error=result.error,
        )
        if locked.state != DeliveryState.DELIVERING or locked.lease_token != lease_token:
            return AttemptOutcome(
                attempt_id=attempt.pk,
                delivery_state=locked.state,
                status_code=result.status_code,
                error=result.error,
                lease_lost=True,
            )
        locked.attempts += 1
        locked.last_status = result.status_code
        locked.last_error = "" if result.succeeded else _failure_text(result)
        locked.leased_until = None
        locked.lease_token = None
        if result.succeeded:
            locked.state, locked.delivered_at, locked.next_attempt_at = DeliveryState.SUCCEEDED, now, None
        elif is_test or locked.attempts >= _setting("AUDIT_WEBHOOK_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS):
            locked.state, locked.next_attempt_at = DeliveryState.ABANDONED, None
        else:
            locked.state, locked.next_attempt_at = DeliveryState.FAILED, now + backoff_delay(locked.attempts)
        locked.save(
            update_fields=[
                "attempts", "last_status", "last_error", "leased_until", "lease_token", "state", "delivered_at",
                "next_attempt_at", "updated_at",
            ]
        )  # fmt: skip
        paused = False if is_test else _count_toward_pause(subscription, result)
    return AttemptOutcome(
        attempt_id=attempt.pk,
        delivery_state=locked.state,
        status_code=result.status_code,
        error=result.error,
        subscription_paused=paused,
    )


def _count_toward_pause(subscription: WebhookSubscription, result: webhooks.PostResult) -> bool:
    """Update the consecutive-failure count of a locked subscription; True if this attempt paused it."""
    if result.succeeded:
        if subscription.consecutive_failures:
            subscription.consecutive_failures = 0
            subscription.save(update_fields=["consecutive_failures", "updated_at"])
        return False
    subscription.consecutive_failures += 1
    subscription.save(update_fields=["consecutive_failures", "updated_at"])
    limit = _setting("AUDIT_WEBHOOK_PAUSE_AFTER_FAILURES", DEFAULT_PAUSE_AFTER_FAILURES)
    if subscription.state != SubscriptionState.ACTIVE or subscription.consecutive_failures < limit:
        return False
    reason = (
        f"Paused automatically after {subscription.consecutive_failures} consecutive failed attempts "
        f"(last: {_failure_text(result)}) at {timezone.now():%Y-%m-%d %H:%M:%S} UTC."
    )
    subscription_pause_locked(subscription, state=SubscriptionState.PAUSED, reason=reason, actor=None)
    return True


def _release(*, delivery_id: int, lease_token: uuid.UUID, attempts: int) -> None:
    """Give a claimed delivery back unattempted (it keeps its place in the retry schedule)."""
    WebhookDelivery.objects.filter(pk=delivery_id, lease_token=lease_token, state=DeliveryState.DELIVERING).update(
        state=DeliveryState.FAILED if attempts else DeliveryState.PENDING,
        leased_until=None,
        lease_token=None,
        updated_at=timezone.now(),
    )


def webhook_delivery_attempt(*, delivery_id: int, lease_token: uuid.UUID | None = None) -> AttemptOutcome | None:
    """Make one attempt of a delivery and record it; None when there was nothing to do.

    Without `lease_token` the delivery is claimed first (None if it is not due: delivered,
    abandoned, held by a paused subscription, or leased by another worker). With one (from
    `webhook_deliveries_claim`) the attempt goes ahead only while that lease holds, and a
    delivery whose subscription was paused since the claim is given back unattempted. The POST
    happens outside any transaction; every attempt is recorded; a success resets the
    subscription's failure count, a failure schedules a retry with backoff or abandons the
    delivery at the attempt limit, and enough consecutive failures pause the subscription.
    Must be called outside a transaction (it commits between claim, POST and record).
    """
    if lease_token is None:
        claims = webhook_deliveries_claim(delivery_ids=[delivery_id], limit=1)
        if not claims:
            return None
        lease_token = claims[0].lease_token
    delivery = webhook_delivery_for_sending(delivery_id=delivery_id, lease_token=lease_token, now=timezone.now())
    if delivery is None:
        return None
    if delivery.subscription.state != SubscriptionState.ACTIVE and delivery.event.type != EventType.WEBHOOK_TEST:
        # Paused (or disabled) since the claim: a pause takes effect at once, not after the batch.
        _release(delivery_id=delivery_id, lease_token=lease_token, attempts=delivery.attempts)
        return None
    timestamp = int(timezone.now().timestamp())
    body = webhooks.event_body(delivery.event, organization_slug=delivery.organization.slug)
    headers = webhooks.signed_headers(
        event=delivery.event, secret=delivery.subscription.secret, body=body, timestamp=timestamp
    )
    attempted_at = timezone.now()
    result = webhooks.post(url=delivery.subscription.url, body=body, headers=headers)
    return _record_attempt(delivery=delivery, lease_token=lease_token, attempted_at=attempted_at, result=result)
