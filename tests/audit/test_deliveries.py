"""Webhook deliveries to a real local receiver: signed, retried with backoff, recorded, paused and resumed."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from audit import webhooks
from audit.models import AuditLog, DeliveryState, Event, SubscriptionState, WebhookAttempt, WebhookDelivery
from audit.services import (
    event_dispatch,
    event_emit,
    webhook_deliveries_claim,
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
    webhook_subscription_resume,
    webhook_subscription_test_send,
)
from tests.audit.factories import WebhookSubscriptionFactory


def _emit_committed(organization, capture, event_type: str = "inventory.adjusted", **payload) -> Event:
    """Emit as a domain service would, then run what its commit queues (dispatch and first attempts)."""
    with capture(execute=True):
        event = event_emit(organization_id=organization.pk, type=event_type, payload=payload or {"sku": "SKU-1"})
    return event


def _sweep(capture) -> list[int]:
    with capture(execute=True):
        return webhook_deliveries_sweep()


def test_a_delivery_reaches_the_receiver_signed_with_the_documented_body_and_headers(
    organization, subscription, receiver, django_capture_on_commit_callbacks
):
    event = _emit_committed(organization, django_capture_on_commit_callbacks, "proposal.decided", proposal=4)

    [request] = receiver.received
    assert request.signature_valid
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Cyclecount-Event"] == "proposal.decided"
    assert request.headers["X-Cyclecount-Event-Id"] == str(event.event_id)
    assert webhooks.verify_signature(
        subscription.secret, request.headers["X-Cyclecount-Timestamp"], request.body,
        request.headers["X-Cyclecount-Signature"],
    )  # fmt: skip
    assert request.document == {
        "event_id": str(event.event_id),
        "type": "proposal.decided",
        "version": 1,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "organization": "acme",
        "payload": {"proposal": 4},
    }
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (DeliveryState.SUCCEEDED, 1, 200)
    assert delivery.delivered_at is not None
    assert (delivery.next_attempt_at, delivery.lease_token, delivery.leased_until) == (None, None, None)
    attempt = WebhookAttempt.objects.get()
    assert (attempt.succeeded, attempt.status_code, attempt.error) == (True, 200, "")
    assert attempt.response_excerpt == '{"received": true}'
    assert attempt.latency_ms >= 0
    assert _sweep(django_capture_on_commit_callbacks) == []
    assert len(receiver.received) == 1


def test_a_failing_receiver_is_retried_with_growing_backoff_then_abandoned(
    organization, subscription, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_WEBHOOK_PAUSE_AFTER_FAILURES = 100  # this test is about one delivery's budget
    receiver.default_status = 500
    receiver.response_body = b"x" * 2000
    start = timezone.now()
    delays = []

    with time_machine.travel(start, tick=False) as traveller:
        _emit_committed(organization, django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get()
        assert (delivery.state, delivery.attempts, delivery.last_status) == (DeliveryState.FAILED, 1, 500)
        assert _sweep(django_capture_on_commit_callbacks) == []  # not due yet
        for _ in range(7):
            delays.append((delivery.next_attempt_at - timezone.now()).total_seconds())
            traveller.move_to(delivery.next_attempt_at)
            assert len(_sweep(django_capture_on_commit_callbacks)) == 1
            delivery.refresh_from_db()
        traveller.shift(timedelta(days=1))
        assert _sweep(django_capture_on_commit_callbacks) == []

    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == (DeliveryState.ABANDONED, 8, None)
    bases = [30 * 2**n for n in range(7)]  # 30 s × 2^n, plus a jitter of at most 10 %
    assert all(base <= delay <= base * 1.1 for base, delay in zip(bases, delays, strict=True))
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery))
    assert len(attempts) == len(receiver.received) == 8
    assert all(a.status_code == 500 and not a.succeeded and a.latency_ms >= 0 for a in attempts)
    assert all(a.response_excerpt == "x" * 500 for a in attempts)
    assert all(request.signature_valid for request in receiver.received)
    assert receiver.processed == {}
    subscription.refresh_from_db()
    assert (subscription.state, subscription.consecutive_failures) == (SubscriptionState.ACTIVE, 8)


def test_consecutive_failures_pause_the_subscription_and_resume_requeues_its_deliveries(
    organization, subscription, receiver, manager, django_capture_on_commit_callbacks
):
    receiver.default_status = 503
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for number in range(3):
            _emit_committed(organization, django_capture_on_commit_callbacks, sku=f"SKU-{number}")
        traveller.shift(timedelta(minutes=2))
        assert len(_sweep(django_capture_on_commit_callbacks)) == 3  # failures 4 and 5: paused at 5

        subscription.refresh_from_db()
        assert subscription.state == SubscriptionState.PAUSED
        assert subscription.consecutive_failures == 5
        assert "5 consecutive failed attempts" in subscription.paused_reason
        assert "HTTP 503" in subscription.paused_reason
        assert AuditLog.objects.filter(tag="webhook_subscription_paused", actor=None).count() == 1
        sent_before_pause = len(receiver.received)
        assert sent_before_pause == 5

        # While paused: nothing is sent, and a new event's delivery is held, not lost.
        held = _emit_committed(organization, django_capture_on_commit_callbacks, sku="SKU-held")
        traveller.shift(timedelta(hours=2))
        assert _sweep(django_capture_on_commit_callbacks) == []
        assert len(receiver.received) == sent_before_pause
        assert WebhookDelivery.objects.get(event=held).state == DeliveryState.PENDING

        receiver.default_status = 200
        with django_capture_on_commit_callbacks(execute=True):
            _, requeued = webhook_subscription_resume(subscription=subscription, actor=manager)

    assert len(requeued) == 4
    subscription.refresh_from_db()
    assert (subscription.state, subscription.consecutive_failures, subscription.paused_reason) == ("active", 0, "")
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {DeliveryState.SUCCEEDED}
    assert len(receiver.processed) == 4
    assert WebhookAttempt.objects.count() == 5 + 4
    assert AuditLog.objects.get(tag="webhook_subscription_resumed").actor == manager


def test_a_receiver_that_is_down_is_recorded_as_an_attempt_with_an_error(
    organization, refused_url, django_capture_on_commit_callbacks
):
    WebhookSubscriptionFactory(organization=organization, url=refused_url)

    _emit_committed(organization, django_capture_on_commit_callbacks)

    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.succeeded) == (None, False)
    assert "ConnectionError" in attempt.error
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_status, delivery.attempts) == (DeliveryState.FAILED, None, 1)
    assert delivery.last_error == attempt.error
    assert delivery.next_attempt_at > timezone.now()


def test_a_delivery_resent_after_a_lost_lease_carries_the_same_event_id_and_the_receiver_dedupes(
    organization, subscription, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        event = event_emit(organization_id=organization.pk, type="push.failed", payload={"push": 1})
    with django_capture_on_commit_callbacks(execute=False):  # dispatch without sending
        event_dispatch(event_id=event.pk)
    # A worker claims the delivery, POSTs it, and dies before recording the attempt.
    [claim] = webhook_deliveries_claim()
    delivery = WebhookDelivery.objects.select_related("event").get(pk=claim.delivery_id)
    body = webhooks.event_body(delivery.event, organization_slug=organization.slug)
    timestamp = int(timezone.now().timestamp())
    headers = webhooks.signed_headers(event=delivery.event, secret=subscription.secret, body=body, timestamp=timestamp)
    assert webhooks.post(url=subscription.url, body=body, headers=headers).succeeded

    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert _sweep(django_capture_on_commit_callbacks) == [delivery.pk]  # the lease expired

    assert [request.event_id for request in receiver.received] == [str(event.event_id)] * 2
    assert all(request.signature_valid for request in receiver.received)
    assert list(receiver.processed) == [str(event.event_id)]  # processed once
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SUCCEEDED
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1  # the dead worker recorded nothing


def test_a_worker_whose_lease_was_taken_over_does_not_send(
    organization, subscription, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        event = event_emit(organization_id=organization.pk, type="parity.drift", payload={})
        event_dispatch(event_id=event.pk)
    [stale] = webhook_deliveries_claim()
    assert webhook_deliveries_claim() == []  # leased: nobody else gets it
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        [fresh] = webhook_deliveries_claim()
        assert webhook_delivery_attempt(delivery_id=stale.delivery_id, lease_token=stale.lease_token) is None
        assert receiver.received == []
        outcome = webhook_delivery_attempt(delivery_id=fresh.delivery_id, lease_token=fresh.lease_token)

    assert outcome.delivery_state == DeliveryState.SUCCEEDED
    assert len(receiver.received) == 1


def test_receivers_on_private_networks_are_refused_unless_allowed(
    organization, subscription, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    _emit_committed(organization, django_capture_on_commit_callbacks)

    assert receiver.received == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert "non-public address 127.0.0.1" in attempt.error


def test_a_test_event_goes_to_one_subscription_even_when_paused_and_is_tried_once(
    organization, subscription, receiver, manager, django_capture_on_commit_callbacks
):
    other = WebhookSubscriptionFactory(organization=organization, url=receiver.url)
    subscription.state = SubscriptionState.PAUSED
    subscription.save(update_fields=["state"])

    with django_capture_on_commit_callbacks(execute=True):
        delivered = webhook_subscription_test_send(subscription=subscription, actor=manager)
    receiver.default_status = 500
    with django_capture_on_commit_callbacks(execute=True):
        failed = webhook_subscription_test_send(subscription=subscription, actor=manager)

    assert [request.document["type"] for request in receiver.received] == ["webhook.test"] * 2
    delivered.refresh_from_db()
    failed.refresh_from_db()
    assert delivered.state == DeliveryState.SUCCEEDED
    assert (failed.state, failed.attempts) == (DeliveryState.ABANDONED, 1)
    assert not WebhookDelivery.objects.filter(subscription=other).exists()
    subscription.refresh_from_db()
    assert (subscription.state, subscription.consecutive_failures) == (SubscriptionState.PAUSED, 0)
    assert AuditLog.objects.filter(tag="webhook_test_sent", actor=manager).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_locked_by_one_worker_is_skipped_by_another(organization):
    subscription = WebhookSubscriptionFactory(organization=organization)
    event = Event.objects.create(organization=organization, type="variance.detected", occurred_at=timezone.now())
    delivery = WebhookDelivery.objects.create(
        organization=organization, subscription=subscription, event=event, next_attempt_at=timezone.now()
    )
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
                locked.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        assert webhook_deliveries_claim() == []  # skipped, not waited for
    finally:
        release.set()
        thread.join(timeout=10)
    [claim] = webhook_deliveries_claim()
    assert claim.delivery_id == delivery.pk
    assert webhook_deliveries_claim() == []  # leased now
