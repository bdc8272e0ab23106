"""Webhook subscriptions: created, changed, paused and resumed by people (the admin), always audited."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit import webhooks
from audit.models import (
    DOMAIN_EVENT_TYPES,
    DeliveryState,
    Event,
    EventType,
    SubscriptionState,
    WebhookDelivery,
    WebhookSubscription,
)
from audit.services.events import enqueue_after_commit
from audit.services.log import audit_log_write

# Deliveries a resume sends again (a delivering one is in a worker's hands already).
RESUMABLE = (DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.ABANDONED)


def _validated_event_types(event_types: list[str]) -> list[str]:
    unknown = [value for value in event_types if value not in DOMAIN_EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; expected some of {', '.join(DOMAIN_EVENT_TYPES)}")
    return sorted(set(event_types))


def _validated_url(url: str) -> str:
    url = url.strip()
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError("the URL must start with https:// or http://")
    return url


def subscription_locked(subscription: WebhookSubscription) -> WebhookSubscription:
    """The subscription's row, re-read under a lock (lock order: subscription before its deliveries)."""
    # no_key: deliveries being inserted for this subscription (key-share locks) are not blocked.
    return WebhookSubscription.objects.select_for_update(no_key=True).get(pk=subscription.pk)


def webhook_subscription_create(
    *, organization_id: int, url: str, event_types: list[str], actor: AbstractBaseUser, description: str = ""
) -> WebhookSubscription:
    """Create an active subscription with a newly generated secret (returned on the instance: show it once).

    `event_types` empty means every event type. Audited. Raises ValueError for a bad URL or type.
    """
    with transaction.atomic():
        subscription = WebhookSubscription.objects.create(
            organization_id=organization_id,
            url=_validated_url(url),
            description=description,
            event_types=_validated_event_types(event_types),
            secret=webhooks.secret_generate(),
            created_by=actor if actor.is_authenticated else None,
        )
        audit_log_write(
            organization_id=organization_id,
            tag="webhook_subscription_created",
            actor=actor,
            subject=subscription,
            data={"url": subscription.url, "event_types": subscription.event_types},
        )
    return subscription


def webhook_subscription_update(
    *, subscription: WebhookSubscription, url: str, event_types: list[str], description: str, actor: AbstractBaseUser
) -> WebhookSubscription:
    """Change where and what a subscription receives; audited with the changes. The secret and state stay."""
    wanted = {
        "url": _validated_url(url),
        "event_types": _validated_event_types(event_types),
        "description": description,
    }
    with transaction.atomic():
        locked = subscription_locked(subscription)
        changes = {
            name: [getattr(locked, name), value] for name, value in wanted.items() if getattr(locked, name) != value
        }
        if changes:
            for name, value in wanted.items():
                setattr(locked, name, value)
            locked.save(update_fields=[*wanted, "updated_at"])
            audit_log_write(
                organization_id=locked.organization_id,
                tag="webhook_subscription_updated",
                actor=actor,
                subject=locked,
                data={"changes": changes},
            )
    return locked


def subscription_pause_locked(
    subscription: WebhookSubscription, *, state: str, reason: str, actor: AbstractBaseUser | None
) -> None:
    """Pause or disable a subscription the caller has locked, with the reason; audited."""
    subscription.state = state
    subscription.paused_reason = reason
    subscription.paused_at = timezone.now()
    subscription.save(update_fields=["state", "paused_reason", "paused_at", "updated_at"])
    audit_log_write(
        organization_id=subscription.organization_id,
        tag=f"webhook_subscription_{state}",
        actor=actor,
        subject=subscription,
        reason=reason,
    )


def webhook_subscription_pause(
    *, subscription: WebhookSubscription, actor: AbstractBaseUser, reason: str = ""
) -> WebhookSubscription:
    """Hold deliveries: new events still get deliveries, sent only after a resume. Audited."""
    with transaction.atomic():
        locked = subscription_locked(subscription)
        if locked.state != SubscriptionState.PAUSED:
            reason = reason or f"Paused by {actor}."
            subscription_pause_locked(locked, state=SubscriptionState.PAUSED, reason=reason, actor=actor)
    return locked


def webhook_subscription_disable(
    *, subscription: WebhookSubscription, actor: AbstractBaseUser, reason: str = ""
) -> WebhookSubscription:
    """Stop the subscription: no deliveries are created for new events until it is resumed. Audited."""
    with transaction.atomic():
        locked = subscription_locked(subscription)
        if locked.state != SubscriptionState.DISABLED:
            reason = reason or f"Disabled by {actor}."
            subscription_pause_locked(locked, state=SubscriptionState.DISABLED, reason=reason, actor=actor)
    return locked


def webhook_subscription_resume(
    *, subscription: WebhookSubscription, actor: AbstractBaseUser
) -> tuple[WebhookSubscription, list[int]]:
    """Reactivate a subscription and re-queue its unfinished deliveries (pending, failed, abandoned).

    The failure count restarts at zero and each re-queued delivery gets its full attempt budget
    again (earlier attempts stay recorded). Audited. Returns the subscription and the re-queued
    delivery ids, which are sent after the commit.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = subscription_locked(subscription)
        previous = locked.state
        locked.state = SubscriptionState.ACTIVE
        locked.paused_reason = ""
        locked.paused_at = None
        locked.consecutive_failures = 0
        locked.save(update_fields=["state", "paused_reason", "paused_at", "consecutive_failures", "updated_at"])
        requeued = list(
            WebhookDelivery.objects.select_for_update(of=("self",))
            .filter(
                subscription=locked,
                state__in=RESUMABLE,
            )
            .exclude(event__type=EventType.WEBHOOK_TEST)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=requeued, state__in=RESUMABLE).update(
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=now, updated_at=now
        )
        audit_log_write(
            organization_id=locked.organization_id,
            tag="webhook_subscription_resumed",
            actor=actor,
            subject=locked,
            data={"previous_state": previous, "requeued_deliveries": len(requeued)},
        )
        for delivery_id in requeued:
            enqueue_after_commit("webhook_delivery_task", delivery_id)
    return locked, requeued


def webhook_subscription_secret_rotate(
    *, subscription: WebhookSubscription, actor: AbstractBaseUser
) -> WebhookSubscription:
    """Replace the signing secret (the new one is on the returned instance: show it once). Audited.

    Deliveries sent from the commit on are signed with the new secret, retries included.
    """
    with transaction.atomic():
        locked = subscription_locked(subscription)
        locked.secret = webhooks.secret_generate()
        locked.save(update_fields=["secret", "updated_at"])
        audit_log_write(
            organization_id=locked.organization_id, tag="webhook_secret_rotated", actor=actor, subject=locked
        )
    return locked


def webhook_subscription_test_send(*, subscription: WebhookSubscription, actor: AbstractBaseUser) -> WebhookDelivery:
    """Send a `webhook.test` event to this subscription only, whatever its state (one attempt, no retries).

    The test event is in the ledger, already dispatched (no subscriber sees it); its outcome
    never pauses or resumes the subscription. Audited.
    """
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            organization_id=subscription.organization_id,
            type=EventType.WEBHOOK_TEST,
            payload={"message": "Test event from Cyclecount", "subscription": subscription.pk},
            occurred_at=now,
            dispatched_at=now,
        )
        delivery = WebhookDelivery.objects.create(
            organization_id=subscription.organization_id, subscription=subscription, event=event, next_attempt_at=now
        )
        audit_log_write(
            organization_id=subscription.organization_id,
            tag="webhook_test_sent",
            actor=actor,
            subject=subscription,
            data={"event_id": str(event.event_id)},
        )
        enqueue_after_commit("webhook_delivery_task", delivery.pk)
    return delivery
