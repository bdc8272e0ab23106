"""Revoking API tokens and edit tokens: by their owner over the API, by an organization admin in
the admin; each revocation is in the reason log and takes effect on the next request."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import EditToken
from accounts.roles import Role
from accounts.services import edit_token_matches, edit_token_rotate, tokens_revoke
from audit.models import AuditLog
from reconciliation.services import root_causes_ensure
from tests.approvals.conftest import reconciled
from tests.conftest import token_client
from tests.factories import member
from tests.reconciliation.conftest import LineMaker


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def org_admin(organization):
    return member(organization, Role.ADMIN, username="orgadmin")


def _revocations(tag: str) -> list[tuple]:
    return list(
        AuditLog.objects.filter(tag=tag).values_list("organization__slug", "actor__username", "object_id", "reason")
    )


# --- Paths ---------------------------------------------------------------------------------


def test_existing_paths_are_unchanged_and_revocation_paths_are_added():
    assert reverse("me") == "/api/me/"
    assert reverse("me-edit-token") == "/api/me/edit-token"
    assert reverse("accounts:edit-token") == "/accounts/edit-token/"
    assert reverse("me-token-revoke") == "/api/me/token/revoke"
    assert reverse("me-edit-token-revoke") == "/api/me/edit-token/revoke"


# --- API token -----------------------------------------------------------------------------


def test_revoking_the_calling_api_token_refuses_it_at_once_and_is_audited(manager, associate):
    api = token_client(manager)
    bystander = token_client(associate)
    assert api.get("/api/me/").status_code == 200

    response = api.post("/api/me/token/revoke", {"reason": "phone lost"})

    assert response.status_code == 200
    assert response.json() == {"revoked": True}
    assert api.get("/api/me/").status_code == 401
    assert api.get("/api/me/")["WWW-Authenticate"] == "Token"
    assert not Token.objects.filter(user=manager).exists()
    assert _revocations("api_token_revoked") == [("acme", "manager", str(manager.pk), "phone lost")]
    assert bystander.get("/api/me/").status_code == 200  # nobody else's token is touched
    assert not AuditLog.objects.filter(tag="edit_token_revoked").exists()


def test_a_browser_session_revokes_the_users_api_token(manager):
    token = Token.objects.create(user=manager)
    browser = APIClient(enforce_csrf_checks=False)
    browser.force_login(manager)

    first = browser.post("/api/me/token/revoke/")
    second = browser.post("/api/me/token/revoke")

    assert first.json() == {"revoked": True}
    assert second.json() == {"revoked": False}  # nothing left to revoke, nothing logged
    assert _revocations("api_token_revoked") == [("acme", "manager", str(manager.pk), "revoked by its owner")]
    assert APIClient().get("/api/me/", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 401


def test_a_new_api_token_works_after_revocation(manager):
    api = token_client(manager)
    api.post("/api/me/token/revoke")

    assert token_client(manager).get("/api/me/").status_code == 200


# --- Edit token ----------------------------------------------------------------------------


def test_revoking_the_edit_token_stops_it_approving_at_once(organization, facility, manager):
    root_causes_ensure(organization=organization)
    proposal = reconciled(LineMaker(organization, facility, manager), manager, book="10", counted="4")
    raw = edit_token_rotate(user=manager)
    api = token_client(manager)

    response = api.post("/api/me/edit-token/revoke", {"reason": "shared by mistake"})
    decision = api.post(
        "/api/inventory/adjust",
        {"proposal": proposal.pk, "decision": "approve", "reason_code": "MANAGER_OVERRIDE"},
        HTTP_X_EDIT_TOKEN=raw,
    )

    assert response.json() == {"revoked": True}
    assert not edit_token_matches(user=manager, raw=raw)
    assert not EditToken.objects.filter(user=manager).exists()
    assert decision.status_code == 403
    assert decision.json()["rule"] == "edit_token"
    assert _revocations("edit_token_revoked") == [("acme", "manager", str(manager.pk), "shared by mistake")]
    assert api.get("/api/me/").status_code == 200  # the API token is untouched
    proposal.refresh_from_db()
    assert proposal.state == "pending"


def test_revoking_without_an_edit_token_changes_nothing(manager):
    response = token_client(manager).post("/api/me/edit-token/revoke/")

    assert response.json() == {"revoked": False}
    assert not AuditLog.objects.filter(tag="edit_token_revoked").exists()


def test_revocation_needs_a_logged_in_member():
    assert APIClient().post("/api/me/token/revoke").status_code == 401
    assert APIClient().post("/api/me/edit-token/revoke").status_code == 401


# --- Organization admins -------------------------------------------------------------------


def _admin_action(client, changelist: str, ids: list[int]):
    return client.post(
        reverse(changelist), {"action": "revoke_tokens", "_selected_action": ids, "index": 0}, follow=True
    )


@pytest.mark.parametrize(
    ("changelist", "selected"),
    [("admin:accounts_membership_changelist", "membership"), ("admin:auth_user_changelist", "user")],
)
def test_an_org_admin_revokes_members_tokens_in_the_admin(
    client, org_admin, manager, associate, other_organization, changelist, selected
):
    outsider = member(other_organization, Role.MANAGER, username="outsider")
    for person in (manager, associate, outsider):
        Token.objects.create(user=person)
        edit_token_rotate(user=person)
    client.force_login(org_admin)
    ids = [person.membership.pk if selected == "membership" else person.pk for person in (manager, associate, outsider)]

    response = _admin_action(client, changelist, ids)

    assert response.status_code == 200
    assert "Revoked 2 API token(s) and 2 edit token(s) of 2 selected people" in response.content.decode()
    assert set(Token.objects.values_list("user__username", flat=True)) == {"outsider"}
    assert set(EditToken.objects.values_list("user__username", flat=True)) == {"outsider"}
    reason = "revoked by an organization admin"
    expected = sorted([("acme", "orgadmin", str(manager.pk), reason), ("acme", "orgadmin", str(associate.pk), reason)])
    assert sorted(_revocations("api_token_revoked")) == expected
    assert sorted(_revocations("edit_token_revoked")) == expected
    assert token_client(outsider).get("/api/me/").status_code == 200


def test_managers_cannot_revoke_other_peoples_tokens_in_the_admin(client, manager, associate):
    Token.objects.create(user=associate)
    client.force_login(manager)

    page = client.get(reverse("admin:accounts_membership_changelist")).content.decode()
    _admin_action(client, "admin:accounts_membership_changelist", [associate.membership.pk])

    assert "revoke_tokens" not in page
    assert Token.objects.filter(user=associate).exists()
    assert not AuditLog.objects.filter(tag="api_token_revoked").exists()


def test_the_service_refuses_other_organizations_and_non_admins(org_admin, manager, associate, other_organization):
    outsider = member(other_organization, Role.ASSOCIATE, username="outsider")
    for person in (associate, outsider):
        Token.objects.create(user=person)

    with pytest.raises(PermissionDenied, match="not a member of your organization"):
        tokens_revoke(users=[associate, outsider], actor=org_admin, reason="test")
    with pytest.raises(PermissionDenied, match="Only an organization admin"):
        tokens_revoke(users=[associate], actor=manager, reason="test")

    assert Token.objects.count() == 2  # all or nothing
    assert not AuditLog.objects.exists()
