"""The event ledger: emitted in the caller's transaction, dispatched once after its commit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from audit.models import AuditLog, DeliveryState, Event, SubscriptionState, WebhookDelivery
from audit.services import audit_log_write, event_dispatch, event_emit, events_dispatch_stale
from audit.subscribers import subscribe, subscribers_for, unsubscribe
from tests.audit.factories import WebhookSubscriptionFactory
from tests.factories import OrganizationFactory


def _emit(organization, **fields) -> Event:
    return event_emit(
        organization_id=organization.pk,
        type=fields.pop("type", "inventory.adjusted"),
        payload=fields.pop("payload", {"sku": "SKU-1", "delta": "-2.000"}),
        **fields,
    )


def test_an_event_emitted_in_a_rolled_back_transaction_leaves_nothing_and_dispatches_nothing(
    organization, subscription, receiver, django_capture_on_commit_callbacks
):
    def a_change_that_fails() -> None:
        with transaction.atomic():
            _emit(organization)
            raise RuntimeError("the caller's change failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        a_change_that_fails()

    assert callbacks == []
    assert not Event.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert receiver.received == []


def test_an_emitted_event_is_dispatched_and_delivered_only_after_the_commit(
    organization, subscription, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        event = _emit(organization, payload={"quantity": Decimal("12.500"), "at": timezone.now()})

    assert len(callbacks) == 1
    event.refresh_from_db()
    assert event.payload["quantity"] == "12.500"  # a string, never a float
    assert isinstance(event.payload["at"], str)
    assert (event.version, event.dispatched_at) == (1, None)
    assert not WebhookDelivery.objects.exists()
    assert receiver.received == []

    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()

    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert WebhookDelivery.objects.get().state == DeliveryState.SUCCEEDED
    assert list(receiver.processed) == [str(event.event_id)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "inventory.adjustd"}, "unknown event type"),
        ({"type": "webhook.test"}, "unknown event type"),
        ({"payload": ["not", "an", "object"]}, "must be a dict"),
        ({"payload": {"item": object()}}, "not JSON-serialisable"),
        ({"payload": {"ratio": float("nan")}}, "not JSON-serialisable"),
        ({"version": 0}, "version"),
    ],
)
def test_event_emit_refuses_bad_events_and_writes_nothing(
    organization, fields, message, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValueError, match=message):
        _emit(organization, **fields)

    assert callbacks == []
    assert not Event.objects.exists()


def test_dispatch_creates_deliveries_only_for_subscriptions_that_take_the_event(
    organization, django_capture_on_commit_callbacks
):
    every_type = WebhookSubscriptionFactory(organization=organization)
    this_type = WebhookSubscriptionFactory(organization=organization, event_types=["proposal.created"])
    WebhookSubscriptionFactory(organization=organization, event_types=["inventory.adjusted", "parity.drift"])
    paused = WebhookSubscriptionFactory(organization=organization, state=SubscriptionState.PAUSED)
    WebhookSubscriptionFactory(organization=organization, state=SubscriptionState.DISABLED)
    WebhookSubscriptionFactory(organization=OrganizationFactory())
    event = _emit(organization, type="proposal.created", payload={"proposal": 7})

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = event_dispatch(event_id=event.pk)

    deliveries = {delivery.subscription_id: delivery for delivery in WebhookDelivery.objects.filter(event=event)}
    assert set(deliveries) == {every_type.pk, this_type.pk, paused.pk}
    assert all(delivery.state == DeliveryState.PENDING for delivery in deliveries.values())
    assert all(delivery.organization_id == organization.pk for delivery in deliveries.values())
    # Only the active subscriptions' deliveries are sent; the paused one's waits for a resume.
    assert set(outcome.delivery_ids) == {deliveries[every_type.pk].pk, deliveries[this_type.pk].pk}
    assert len(callbacks) == 2


def test_dispatching_an_event_again_changes_and_creates_nothing(organization, django_capture_on_commit_callbacks):
    WebhookSubscriptionFactory(organization=organization)
    event = _emit(organization)
    assert event_dispatch(event_id=event.pk).dispatched
    dispatched_at = Event.objects.get().dispatched_at

    with django_capture_on_commit_callbacks() as callbacks:
        again = event_dispatch(event_id=event.pk)

    assert not again.dispatched
    assert callbacks == []
    assert WebhookDelivery.objects.count() == 1
    assert Event.objects.get().dispatched_at == dispatched_at


@pytest.fixture
def handlers():
    """Register handlers for one test only."""
    registered = []

    def register(event_type, handler):
        subscribe(event_type)(handler)
        registered.append((event_type, handler))
        return handler

    yield register
    for event_type, handler in registered:
        unsubscribe(event_type, handler)


def test_subscribers_run_once_and_a_failing_one_blocks_neither_the_others_nor_the_webhooks(
    organization, handlers, caplog
):
    WebhookSubscriptionFactory(organization=organization)
    seen = []

    def broken(event):
        audit_log_write(organization_id=event.organization_id, tag="written_then_rolled_back", actor=None)
        raise RuntimeError("subscriber bug")

    def recorder(event):
        seen.append(event.event_id)
        audit_log_write(organization_id=event.organization_id, tag="subscriber_ran", actor=None)

    handlers("inventory.adjusted", broken)
    handlers("inventory.adjusted", recorder)
    handlers("parity.drift", recorder)
    event = _emit(organization)

    outcome = event_dispatch(event_id=event.pk)
    event_dispatch(event_id=event.pk)

    assert seen == [event.event_id]
    assert AuditLog.objects.filter(tag="subscriber_ran").count() == 1
    assert not AuditLog.objects.filter(tag="written_then_rolled_back").exists()
    event.refresh_from_db()
    assert [error["handler"] for error in event.subscriber_errors] == [f"{__name__}.{broken.__qualname__}"]
    assert "RuntimeError: subscriber bug" in event.subscriber_errors[0]["error"]
    assert outcome.subscriber_errors == tuple(event.subscriber_errors)
    assert "subscriber bug" in caplog.text
    assert WebhookDelivery.objects.filter(event=event).count() == 1


def test_subscribe_refuses_unknown_event_types_and_registers_a_handler_once(handlers):
    def handler(event):
        pass

    with pytest.raises(ValueError, match="unknown event type"):
        subscribe("inventory.adjust")(handler)

    handlers("push.failed", handler)
    handlers("push.failed", handler)

    assert subscribers_for("push.failed").count(handler) == 1


def test_the_sweep_dispatches_events_whose_dispatch_was_lost(organization, django_capture_on_commit_callbacks):
    WebhookSubscriptionFactory(organization=organization)
    lost = _emit(organization)  # its on_commit callback never runs: the enqueue was lost

    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        assert events_dispatch_stale() == []
        recent = _emit(organization)
    with time_machine.travel(timezone.now() + timedelta(seconds=75)):
        with django_capture_on_commit_callbacks() as callbacks:
            swept = events_dispatch_stale()
        assert events_dispatch_stale() == []

    assert swept == [lost.pk]
    assert len(callbacks) == 1  # the new delivery is queued
    assert Event.objects.get(pk=lost.pk).dispatched_at is not None
    assert Event.objects.get(pk=recent.pk).dispatched_at is None
    assert WebhookDelivery.objects.filter(event=lost).count() == 1
