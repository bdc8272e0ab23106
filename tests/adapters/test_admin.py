"""The way to the ERP in the admin: what waits, what failed, who retried, what drifted."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.roles import Role
from adapters.models import BackendConnection, BatchState, ExternalRecord, ParityDrift, PendingPush, PushBatch
from adapters.services import backend_sync, push_drain
from approvals.models import ProposalState
from tests.adapters.support import approve_adjustments
from tests.factories import member

pytestmark = pytest.mark.django_db


def test_the_outbox_says_when_no_connection_receives_adjustments(organization, manager, client, netsuite, synced):
    BackendConnection.objects.filter(pk=synced.pk).update(is_push_target=False)
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    client.force_login(manager)

    page = client.get("/admin/adapters/pendingpush/")

    assert page.status_code == 200
    assert "No connection is configured to receive adjustments: 1 approved adjustment(s) wait here" in (
        page.content.decode()
    )


def test_a_manager_retries_a_rejected_batch_from_the_admin(organization, manager, client, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    ExternalRecord.objects.filter(connection=synced, item__sku="NS-0000").update(external_id="99999")
    push_drain(connection=synced)
    batch = PushBatch.objects.get()
    assert batch.state == BatchState.REJECTED
    ExternalRecord.objects.filter(connection=synced, item__sku="NS-0000").update(external_id="100")
    client.force_login(manager)

    listing = client.get("/admin/adapters/pushbatch/?state=rejected")
    response = client.post(
        "/admin/adapters/pushbatch/", {"action": "retry", "_selected_action": [batch.pk]}, follow=True
    )

    assert batch.external_id in listing.content.decode()
    assert "1 batch(es) queued again." in response.content.decode()
    assert PendingPush.objects.get().proposal.state == ProposalState.QUEUED
    push_drain(connection=synced)
    assert netsuite.on_hand(100, 10) == Decimal(99)


def test_finance_sees_batches_but_cannot_retry(organization, manager, client, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    push_drain(connection=synced)
    client.force_login(member(organization, Role.FINANCE, username="finance"))

    page = client.get("/admin/adapters/pushbatch/")

    assert page.status_code == 200
    assert 'value="retry"' not in page.content.decode()


def test_admin_lists_do_not_grow_queries_with_rows(
    organization, manager, client, netsuite, synced, django_assert_max_num_queries
):
    approve_adjustments(organization, manager, {(f"NS-{index:04d}", "DALLAS-AISLE-1"): -1 for index in range(5)})
    push_drain(connection=synced)
    netsuite.set_on_hand(100, 10, Decimal(1))
    netsuite.set_on_hand(101, 10, Decimal(1))
    backend_sync(connection=synced)
    assert ParityDrift.objects.count() == 2
    client.force_login(manager)

    for url in (
        "/admin/adapters/pushbatch/",
        "/admin/adapters/pendingpush/",
        "/admin/adapters/paritydrift/",
        "/admin/adapters/externalrecord/",
        "/admin/adapters/backendconnection/",
        f"/admin/adapters/pushbatch/{PushBatch.objects.first().pk}/change/",
    ):
        with django_assert_max_num_queries(16):
            assert client.get(url).status_code == 200, url


def test_a_manager_resolves_drifts_from_the_admin(organization, manager, client, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    push_drain(connection=synced)
    netsuite.set_on_hand(100, 10, Decimal(90))
    backend_sync(connection=synced)
    drift = ParityDrift.objects.get()
    client.force_login(manager)

    client.post("/admin/adapters/paritydrift/", {"action": "resolve", "_selected_action": [drift.pk]})

    drift.refresh_from_db()
    assert drift.resolved_by == manager
    assert drift.pushes.get().proposal.state == ProposalState.CONFIRMED


def test_another_organizations_batches_are_404(organization, other_organization, manager, client, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    push_drain(connection=synced)
    client.force_login(member(other_organization, Role.MANAGER, username="globex-manager"))

    assert client.get(f"/admin/adapters/pushbatch/{PushBatch.objects.get().pk}/change/").status_code == 404
    assert PushBatch.objects.get().external_id not in client.get("/admin/adapters/pushbatch/").content.decode()
