"""Invariant 6: a user never reads another organization's rows — they look like missing ones."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.roles import Role
from tests.conftest import token_client
from tests.factories import InventoryBalanceFactory, ItemBarcodeFactory, member


@pytest.fixture
def two_tenants(organization, other_organization):
    ours = InventoryBalanceFactory(organization=organization, location__zone__facility__organization=organization)
    theirs = InventoryBalanceFactory(
        organization=other_organization, location__zone__facility__organization=other_organization
    )
    ItemBarcodeFactory(item=ours.item)
    ItemBarcodeFactory(item=theirs.item)
    return ours, theirs


def _objects(balance):
    location = balance.location
    return {
        "facility": location.facility,
        "zone": location.zone,
        "location": location,
        "item": balance.item,
        "balance": balance,
    }


@pytest.mark.parametrize("kind", ["facility", "zone", "location", "item", "balance"])
def test_api_detail_of_another_organization_is_404(two_tenants, manager_api, kind):
    ours, theirs = two_tenants

    mine = manager_api.get(reverse(f"{kind}-detail", args=[_objects(ours)[kind].pk]))
    foreign = manager_api.get(reverse(f"{kind}-detail", args=[_objects(theirs)[kind].pk]))

    assert mine.status_code == 200
    assert foreign.status_code == 404
    assert set(foreign.json()) == {"detail"}


@pytest.mark.parametrize("kind", ["facility", "zone", "location", "item", "balance"])
def test_api_lists_only_the_callers_organization(two_tenants, manager_api, kind):
    ours, _theirs = two_tenants

    response = manager_api.get(reverse(f"{kind}-list"))

    ids = [row["id"] for row in response.json()["results"]]
    assert ids == [_objects(ours)[kind].pk]


def test_api_refuses_anonymous_and_users_without_organization(db, two_tenants):
    from tests.factories import UserFactory

    assert APIClient().get(reverse("item-list")).status_code == 401
    stranger = token_client(UserFactory())
    response = stranger.get(reverse("item-list"))
    assert response.status_code == 403
    assert "organization" in response.json()["detail"]


@pytest.mark.parametrize("model", ["facility", "zone", "location", "item", "itembarcode", "inventorybalance"])
def test_admin_change_page_of_another_organization_is_404(client, two_tenants, organization, model):
    ours, theirs = two_tenants
    admin_user = member(organization, Role.ADMIN, username="orgadmin")
    client.force_login(admin_user)
    objects = {**_objects(ours), "itembarcode": ours.item.barcodes.get(), "inventorybalance": ours}
    foreign = {**_objects(theirs), "itembarcode": theirs.item.barcodes.get(), "inventorybalance": theirs}

    mine = client.get(reverse(f"admin:inventory_{model}_change", args=[objects[model].pk]))
    other = client.get(reverse(f"admin:inventory_{model}_change", args=[foreign[model].pk]))
    other_history = client.get(reverse(f"admin:inventory_{model}_history", args=[foreign[model].pk]))

    assert mine.status_code == 200
    assert other.status_code == 404
    assert other_history.status_code == 404


def test_admin_changelist_shows_only_own_rows(client, two_tenants, manager):
    ours, theirs = two_tenants
    client.force_login(manager)

    response = client.get(reverse("admin:inventory_item_changelist"))

    assert response.status_code == 200
    assert ours.item.sku in response.content.decode()
    assert theirs.item.sku not in response.content.decode()


def test_admin_user_list_holds_only_own_people(client, organization, other_organization):
    admin_user = member(organization, Role.ADMIN, username="orgadmin")
    member(organization, Role.ASSOCIATE, username="our-associate")
    member(other_organization, Role.ASSOCIATE, username="their-associate")
    client.force_login(admin_user)

    page = client.get(reverse("admin:auth_user_changelist")).content.decode()

    assert "our-associate" in page
    assert "their-associate" not in page


def test_reverting_history_needs_the_change_permission(client, organization, manager):
    from accounts.models import Membership
    from accounts.services import membership_grant

    associate = member(organization, Role.ASSOCIATE, username="promoted-later")
    membership_grant(user=associate, organization=organization, role=Role.MANAGER)
    membership = Membership.objects.get(user=associate)
    first = membership.history.order_by("history_date").first()
    client.force_login(manager)  # managers may view memberships, not change them

    response = client.post(reverse("admin:accounts_membership_simple_history", args=[membership.pk, first.history_id]))

    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.role == Role.MANAGER
