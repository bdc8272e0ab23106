from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Membership
from accounts.roles import Role, group_name
from accounts.services import membership_grant
from tests.factories import UserFactory, member


def test_membership_grant_puts_user_in_exactly_one_role_group(organization):
    user = UserFactory()

    membership_grant(user=user, organization=organization, role=Role.ASSOCIATE)
    membership_grant(user=user, organization=organization, role=Role.MANAGER)

    assert list(user.groups.values_list("name", flat=True)) == [group_name(Role.MANAGER)]
    assert Membership.objects.get(user=user).role == Role.MANAGER
    user.refresh_from_db()
    assert user.is_staff


def test_associates_have_no_admin_access(client, organization):
    associate = member(organization, Role.ASSOCIATE)
    assert not associate.is_staff

    client.force_login(associate)
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_a_user_belongs_to_one_organization(organization, other_organization):
    user = member(organization, Role.MANAGER)

    with pytest.raises(ValueError, match="another organization"):
        membership_grant(user=user, organization=other_organization, role=Role.MANAGER)


def test_unknown_role_is_refused(organization):
    with pytest.raises(ValueError, match="unknown role"):
        membership_grant(user=UserFactory(), organization=organization, role="overlord")


def test_roles_see_only_what_they_may_do_in_admin(client, organization):
    manager = member(organization, Role.MANAGER)
    org_admin = member(organization, Role.ADMIN)

    assert manager.has_perm("inventory.view_inventorybalance")
    assert not manager.has_perm("inventory.change_facility")
    assert not manager.has_perm("accounts.change_membership")
    assert org_admin.has_perm("inventory.change_facility")
    assert org_admin.has_perm("accounts.change_membership")

    client.force_login(manager)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Inventory balances" in index
    assert reverse("admin:auth_user_changelist") not in index
