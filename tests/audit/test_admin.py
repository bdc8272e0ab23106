"""The audit admin: read-only reason log and ledger, webhooks managed through services, scoped, no N+1."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from audit.models import (
    AuditLog,
    DeliveryState,
    Event,
    SubscriptionState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from audit.services import audit_log_write
from tests.audit.factories import WebhookSubscriptionFactory
from tests.factories import FacilityFactory, OrganizationFactory, member


@pytest.fixture
def administrator(organization):
    return member(organization, Role.ADMIN, username="administrator")


def _rows(organization, user, count: int) -> None:
    facility = FacilityFactory(organization=organization)
    subscription = WebhookSubscriptionFactory(organization=organization, created_by=user)
    for number in range(count):
        audit_log_write(
            organization_id=organization.pk, tag=f"tag_{number % 3}", actor=user, facility_id=facility.pk,
            reason=f"reason {number}", delta=Decimal("-1.5"),
        )  # fmt: skip
        event = Event.objects.create(
            organization=organization, type="inventory.adjusted", payload={"n": number}, occurred_at=timezone.now()
        )
        delivery = WebhookDelivery.objects.create(organization=organization, subscription=subscription, event=event)
        WebhookAttempt.objects.create(
            organization=organization, delivery=delivery, attempted_at=timezone.now(), status_code=500, latency_ms=12
        )
        WebhookSubscriptionFactory(organization=organization, created_by=user)


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("model", ["auditlog", "event", "webhooksubscription", "webhookdelivery"])
def test_changelists_render_for_a_manager_in_a_fixed_number_of_queries(
    client, organization, manager, model, django_assert_max_num_queries
):
    client.force_login(manager)
    url = reverse(f"admin:audit_{model}_changelist")
    _rows(organization, manager, 2)
    few = _queries(client, url)

    _rows(organization, manager, 20)
    with django_assert_max_num_queries(few):
        response = client.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 22
    assert reverse(f"admin:audit_{model}_add") not in response.content.decode()  # a manager adds nothing


def test_change_pages_render_for_a_manager_without_n_plus_1(
    client, organization, manager, django_assert_max_num_queries
):
    client.force_login(manager)
    _rows(organization, manager, 5)
    delivery = WebhookDelivery.objects.first()
    pages = {
        reverse("admin:audit_auditlog_change", args=[AuditLog.objects.first().pk]): 12,
        reverse("admin:audit_event_change", args=[delivery.event_id]): 12,
        reverse("admin:audit_webhookdelivery_change", args=[delivery.pk]): 14,
        reverse("admin:audit_webhooksubscription_change", args=[delivery.subscription_id]): 12,
    }
    for url, budget in pages.items():
        with django_assert_max_num_queries(budget):
            response = client.get(url)
        assert response.status_code == 200, url
        assert 'name="_save"' not in response.content.decode()  # a manager only reads


def test_the_reason_log_cannot_be_added_changed_or_deleted_even_by_an_administrator(
    client, organization, administrator
):
    log = audit_log_write(organization_id=organization.pk, tag="proposal_approved", actor=None, reason="ok")
    client.force_login(administrator)

    change_page = client.get(reverse("admin:audit_auditlog_change", args=[log.pk]))
    assert change_page.status_code == 200
    assert 'name="_save"' not in change_page.content.decode()
    assert client.get(reverse("admin:audit_auditlog_add")).status_code == 403
    assert client.post(reverse("admin:audit_auditlog_change", args=[log.pk]), {"reason": "x"}).status_code == 403
    assert client.post(reverse("admin:audit_auditlog_delete", args=[log.pk]), {"post": "yes"}).status_code == 403

    log.refresh_from_db()
    assert log.reason == "ok"
    assert AuditLog.objects.count() == 1


def test_the_reason_log_shows_only_the_organizations_rows_and_filters_by_tag_facility_and_search(
    client, organization, manager
):
    facility = FacilityFactory(organization=organization, code="WH-NORTH")
    audit_log_write(organization_id=organization.pk, tag="ours", actor=manager, facility_id=facility.pk, reason="A1")
    audit_log_write(organization_id=organization.pk, tag="also_ours", actor=manager, reason="needle in reason")
    other = OrganizationFactory()
    theirs = audit_log_write(
        organization_id=other.pk, tag="theirs", actor=None, facility_id=FacilityFactory(organization=other).pk
    )
    client.force_login(manager)
    url = reverse("admin:audit_auditlog_changelist")

    page = client.get(url).content.decode()
    assert "?tag=ours" in page
    assert "theirs" not in page
    assert "WH-NORTH" in page
    assert client.get(url, {"tag": "ours"}).context["cl"].result_count == 1
    assert client.get(url, {"facility__id__exact": facility.pk}).context["cl"].result_count == 1
    assert client.get(url, {"q": "needle"}).context["cl"].result_count == 1
    assert client.get(reverse("admin:audit_auditlog_change", args=[theirs.pk])).status_code == 404


def test_the_search_by_event_id_tolerates_any_text(client, organization, manager):
    event = Event.objects.create(organization=organization, type="push.failed", occurred_at=timezone.now())
    client.force_login(manager)
    url = reverse("admin:audit_event_changelist")

    assert client.get(url, {"q": str(event.event_id)}).context["cl"].result_count == 1
    assert client.get(url, {"q": "not-a-uuid"}).context["cl"].result_count == 0


def test_the_secret_is_never_listed_and_masked_on_the_subscription_page(client, organization, administrator):
    subscription = WebhookSubscriptionFactory(organization=organization)
    client.force_login(administrator)

    listing = client.get(reverse("admin:audit_webhooksubscription_changelist")).content.decode()
    page = client.get(reverse("admin:audit_webhooksubscription_change", args=[subscription.pk])).content.decode()

    assert subscription.url in listing
    assert subscription.secret not in listing
    assert subscription.secret not in page
    assert f"whsec_…{subscription.secret[-4:]}" in page


def test_an_administrator_creates_a_subscription_and_sees_its_secret_once(client, organization, administrator):
    client.force_login(administrator)

    response = client.post(
        reverse("admin:audit_webhooksubscription_add"),
        {"url": "https://erp.example.com/hooks", "description": "ERP", "event_types": ["inventory.adjusted"]},
    )

    subscription = WebhookSubscription.objects.get()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert subscription.secret in response.content.decode()
    assert (subscription.organization, subscription.created_by) == (organization, administrator)
    assert (subscription.state, subscription.event_types) == (SubscriptionState.ACTIVE, ["inventory.adjusted"])
    assert AuditLog.objects.get(tag="webhook_subscription_created").actor == administrator
    page = client.get(reverse("admin:audit_webhooksubscription_change", args=[subscription.pk])).content.decode()
    assert subscription.secret not in page


def test_an_administrator_changes_a_subscription_through_the_service(client, organization, administrator):
    subscription = WebhookSubscriptionFactory(organization=organization, url="https://old.example.com/h")
    secret = subscription.secret
    client.force_login(administrator)

    response = client.post(
        reverse("admin:audit_webhooksubscription_change", args=[subscription.pk]),
        {"url": "https://new.example.com/h", "description": "", "event_types": ["parity.drift", "push.failed"]},
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.url == "https://new.example.com/h"
    assert subscription.event_types == ["parity.drift", "push.failed"]
    assert subscription.secret == secret
    log = AuditLog.objects.get(tag="webhook_subscription_updated")
    assert log.data["changes"]["url"] == ["https://old.example.com/h", "https://new.example.com/h"]


def _action(client, action: str, subscription: WebhookSubscription):
    return client.post(
        reverse("admin:audit_webhooksubscription_changelist"),
        {"action": action, "_selected_action": [subscription.pk]},
    )


def test_resume_reactivates_a_paused_subscription_and_requeues_its_deliveries(
    client, organization, administrator, subscription, receiver, django_capture_on_commit_callbacks
):
    subscription.state, subscription.paused_reason, subscription.consecutive_failures = "paused", "5 failures", 5
    subscription.save(update_fields=["state", "paused_reason", "consecutive_failures"])
    event = Event.objects.create(organization=organization, type="proposal.created", occurred_at=timezone.now())
    WebhookDelivery.objects.create(
        organization=organization, subscription=subscription, event=event, state=DeliveryState.ABANDONED, attempts=8
    )
    client.force_login(administrator)

    with django_capture_on_commit_callbacks(execute=True):
        response = _action(client, "resume_selected", subscription)

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.state, subscription.paused_reason, subscription.consecutive_failures) == ("active", "", 0)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == (DeliveryState.SUCCEEDED, 1)
    assert list(receiver.processed) == [str(event.event_id)]


def test_send_test_event_and_rotate_secret_actions(
    client, organization, administrator, subscription, receiver, django_capture_on_commit_callbacks
):
    old_secret = subscription.secret
    client.force_login(administrator)

    with django_capture_on_commit_callbacks(execute=True):
        _action(client, "send_test_event", subscription)
    rotated = _action(client, "rotate_secret", subscription)

    assert [request.document["type"] for request in receiver.received] == ["webhook.test"]
    assert receiver.received[0].signature_valid
    subscription.refresh_from_db()
    assert subscription.secret != old_secret
    assert subscription.secret in rotated.content.decode()
    assert AuditLog.objects.filter(tag="webhook_secret_rotated", actor=administrator).count() == 1


def test_a_manager_can_read_subscriptions_but_not_act_on_them(client, organization, manager):
    subscription = WebhookSubscriptionFactory(organization=organization, state=SubscriptionState.PAUSED)
    client.force_login(manager)

    _action(client, "resume_selected", subscription)

    subscription.refresh_from_db()
    assert subscription.state == SubscriptionState.PAUSED
    assert client.get(reverse("admin:audit_webhooksubscription_add")).status_code == 403
    assert not AuditLog.objects.filter(tag__startswith="webhook_").exists()
