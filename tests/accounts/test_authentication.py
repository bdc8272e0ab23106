"""The API token lookup: one query that builds what select_related would, on either database."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import MembershipTokenAuthentication, token_with_membership
from accounts.models import Membership
from accounts.selectors import organization_for_user, role_for_user


@pytest.fixture
def token(manager):
    return Token.objects.create(user=manager)


def test_the_token_comes_with_what_select_related_reads(token, django_assert_num_queries):
    expected = Token.objects.select_related("user", "user__membership", "user__membership__organization").get(
        key=token.key
    )

    with django_assert_num_queries(1):
        found = token_with_membership(token.key)
        user, membership = found.user, found.user.membership
        organization = membership.organization
        assert organization_for_user(user) == organization
        assert role_for_user(user) == membership.role

    assert (found.key, found.created) == (expected.key, expected.created)
    for field in get_user_model()._meta.concrete_fields:
        assert getattr(user, field.attname) == getattr(expected.user, field.attname), field.name
    assert isinstance(user.date_joined, datetime)
    assert user.is_active is True
    assert (membership.pk, membership.role, membership.user_id) == (
        expected.user.membership.pk,
        expected.user.membership.role,
        expected.user.pk,
    )
    assert (organization.slug, organization.name) == ("acme", "Acme")
    assert membership.user is user
    assert found.user._state.adding is False
    assert found.user._state.db == "default"


def test_a_user_without_membership_has_none_without_another_query(db, django_assert_num_queries):
    user = get_user_model().objects.create_user("loner", password="x" * 20)
    key = Token.objects.create(user=user).key

    with django_assert_num_queries(1):
        found = token_with_membership(key)
        with pytest.raises(Membership.DoesNotExist):
            found.user.membership  # noqa: B018 - the cached "no membership" raises
        assert organization_for_user(found.user) is None


def test_unknown_and_inactive_tokens_are_refused(token, manager):
    authentication = MembershipTokenAuthentication()
    assert token_with_membership("0" * 40) is None
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        authentication.authenticate_credentials("0" * 40)

    manager.is_active = False
    manager.save(update_fields=["is_active"])
    with pytest.raises(AuthenticationFailed, match="inactive"):
        authentication.authenticate_credentials(token.key)
