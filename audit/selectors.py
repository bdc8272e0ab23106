"""Reads of the audit app: the reason log, the event ledger and the webhooks' work queues."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db import models
from django.db.models import Q, QuerySet

from audit.models import (
    AuditLog,
    DeliveryState,
    Event,
    EventType,
    SubscriptionState,
    WebhookDelivery,
    WebhookSubscription,
)


def audit_log_for_subject(*, organization_id: int, subject: models.Model) -> QuerySet[AuditLog]:
    """The reason log of one object, newest first, with actor and facility loaded."""
    return AuditLog.objects.filter(
        organization_id=organization_id, object_type=subject._meta.label_lower, object_id=str(subject.pk)
    ).select_related("actor", "facility")


def events_list(*, organization_id: int, types: Iterable[str] | None = None) -> QuerySet[Event]:
    """The organization's events, newest first, optionally of some types only."""
    events = Event.objects.filter(organization_id=organization_id)
    return events.filter(type__in=list(types)) if types is not None else events


def event_by_event_id(*, organization_id: int, event_id: uuid.UUID | str) -> Event | None:
    try:
        event_id = uuid.UUID(str(event_id))
    except ValueError:
        return None
    return Event.objects.filter(organization_id=organization_id, event_id=event_id).first()


def events_undispatched(*, occurred_before: datetime, limit: int) -> list[int]:
    """Ids of events never dispatched that occurred before `occurred_before`, oldest first."""
    return list(
        Event.objects.filter(dispatched_at__isnull=True, occurred_at__lt=occurred_before)
        .order_by("occurred_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_subscriptions_for_event(*, event: Event) -> list[WebhookSubscription]:
    """Subscriptions owed this event: same organization, taking its type, not disabled.

    Paused subscriptions are included: their deliveries are held until they are resumed, so a
    pause (automatic after failures, or by hand) never loses an event.
    """
    candidates = WebhookSubscription.objects.filter(
        organization_id=event.organization_id, state__in=[SubscriptionState.ACTIVE, SubscriptionState.PAUSED]
    ).order_by("pk")
    return [subscription for subscription in candidates if subscription.takes(event.type)]


def webhook_deliveries_due(*, now: datetime) -> QuerySet[WebhookDelivery]:
    """Deliveries a worker may take now, oldest due first.

    Due: pending or failed with `next_attempt_at` reached, or delivering with an expired lease
    (its worker died); and the subscription is active (test events go to any subscription).
    """
    waiting = Q(state__in=[DeliveryState.PENDING, DeliveryState.FAILED], next_attempt_at__lte=now)
    stale = Q(state=DeliveryState.DELIVERING, leased_until__lt=now)
    open_subscription = Q(subscription__state=SubscriptionState.ACTIVE) | Q(event__type=EventType.WEBHOOK_TEST)
    return WebhookDelivery.objects.filter((waiting | stale) & open_subscription).order_by("next_attempt_at", "pk")


def webhook_delivery_for_sending(*, delivery_id: int, lease_token: uuid.UUID, now: datetime) -> WebhookDelivery | None:
    """The delivery with what its POST needs, if this lease still holds it."""
    return (
        WebhookDelivery.objects.select_related("subscription", "event", "organization")
        .filter(pk=delivery_id, state=DeliveryState.DELIVERING, lease_token=lease_token, leased_until__gt=now)
        .first()
    )
