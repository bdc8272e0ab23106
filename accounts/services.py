"""Writes for organizations, memberships and role groups."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, AbstractUser, Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import EditToken, Membership, Organization
from accounts.roles import ROLE_PERMISSIONS, STAFF_ROLES, Role, group_name
from audit.services import audit_log_write  # the reason log is a sink every app writes to


def role_groups_sync(*, using: str = "default") -> None:
    """Make each role's Django group hold exactly the permissions ROLE_PERMISSIONS lists."""
    for role in Role:
        wanted = ROLE_PERMISSIONS[role]
        condition = Q(pk__in=[])
        for dotted in wanted:
            app_label, codename = dotted.split(".", 1)
            condition |= Q(content_type__app_label=app_label, codename=codename)
        group, _ = Group.objects.using(using).get_or_create(name=group_name(role))
        group.permissions.set(Permission.objects.using(using).filter(condition))


def organization_create(*, name: str, slug: str) -> Organization:
    """Create a tenant; the slug is its stable handle in commands and URLs."""
    return Organization.objects.create(name=name, slug=slug)


@transaction.atomic
def membership_grant(*, user: AbstractUser, organization: Organization, role: str) -> Membership:
    """Put a user in an organization with a role, and align their admin access with it.

    A user belongs to one organization; granting into another organization is refused.
    """
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(Role.values)}")
    membership = Membership.objects.select_for_update().filter(user=user).first()
    if membership and membership.organization_id != organization.pk:
        raise ValueError(f"{user} already belongs to another organization")
    if membership is None:
        membership = Membership.objects.create(user=user, organization=organization, role=role)
    elif membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])

    role_groups = Group.objects.filter(name__in=[group_name(r) for r in Role])
    user.groups.remove(*role_groups)
    user.groups.add(Group.objects.get(name=group_name(role)))
    is_staff = role in STAFF_ROLES
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
    return membership


def user_create(*, username: str, password: str, email: str = "", first_name: str = "") -> AbstractUser:
    """Create a user whose password passes AUTH_PASSWORD_VALIDATORS (else ValidationError, nothing saved)."""
    candidate = get_user_model()(username=username, email=email, first_name=first_name)
    password_validation.validate_password(password, user=candidate)
    return get_user_model().objects.create_user(
        username=username, password=password, email=email, first_name=first_name
    )


def _edit_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def edit_token_rotate(*, user: AbstractUser) -> str:
    """Issue a new personal edit token (the old one stops working) and return it — the only time
    it is ever visible; only its hash is stored."""
    raw = secrets.token_urlsafe(32)
    EditToken.objects.update_or_create(
        user=user, defaults={"token_hash": _edit_token_hash(raw), "created_at": timezone.now()}
    )
    membership = Membership.objects.filter(user=user).first()
    if membership is not None:
        audit_log_write(organization_id=membership.organization_id, tag="edit_token_rotated", actor=user, subject=user)
    return raw


def edit_token_matches(*, user: AbstractBaseUser, raw: str | None) -> bool:
    """True when `raw` is the user's current edit token (constant-time comparison)."""
    if not raw:
        return False
    stored = EditToken.objects.filter(user=user).values_list("token_hash", flat=True).first()
    return stored is not None and hmac.compare_digest(stored, _edit_token_hash(raw))


SYSTEM_USERNAME = "cyclecount-system"


def system_actor() -> AbstractUser:
    """The user history and the reason log name for work done by Celery tasks (beat, drains, syncs).

    It cannot log in (no usable password, inactive) and belongs to no organization, so it can
    never act through the admin or the API; it only makes "who" explicit for background work.
    """
    user, created = get_user_model().objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": False, "first_name": "Cyclecount (background tasks)"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


# --- Revoking credentials ----------------------------------------------------------------


@dataclass(frozen=True)
class TokensRevoked:
    api_tokens: int = 0
    edit_tokens: int = 0


def _revocation_check(*, actor: AbstractBaseUser, memberships: dict[int, Membership], user_ids: list[int]) -> None:
    """People revoke their own tokens; an organization's admins revoke those of its members only."""
    if all(user_id == actor.pk for user_id in user_ids):
        return
    actor_membership = Membership.objects.filter(user=actor).first()
    if actor_membership is None or not (actor_membership.role == Role.ADMIN or actor.is_superuser):
        raise PermissionDenied("Only an organization admin may revoke another person's tokens.")
    for user_id in user_ids:
        membership = memberships.get(user_id)
        if membership is None or membership.organization_id != actor_membership.organization_id:
            raise PermissionDenied("That person is not a member of your organization.")


@transaction.atomic
def tokens_revoke(
    *, users: Iterable[AbstractBaseUser], actor: AbstractBaseUser, reason: str, api: bool = True, edit: bool = True
) -> TokensRevoked:
    """Revoke the API tokens (`api`) and personal edit tokens (`edit`) of `users`.

    A revoked API token answers 401 from the next request on, a revoked edit token no longer
    matches X-Edit-Token; nothing is cached. Each token revoked gets an `api_token_revoked` or
    `edit_token_revoked` row in the reason log (actor, the person as subject, reason) in the same
    transaction; a person without a token of that kind gets none. Raises PermissionDenied, revoking
    nothing, unless every user is the actor or a member of the organization the actor administers.
    """
    user_ids = sorted({user.pk for user in users})
    memberships = {m.user_id: m for m in Membership.objects.filter(user_id__in=user_ids)}
    _revocation_check(actor=actor, memberships=memberships, user_ids=user_ids)
    revoked: list[tuple[str, int, datetime]] = []
    if api:
        tokens = list(Token.objects.select_for_update().filter(user_id__in=user_ids).order_by("user_id"))
        Token.objects.filter(pk__in=[token.pk for token in tokens]).delete()
        revoked += [("api_token_revoked", token.user_id, token.created) for token in tokens]
    if edit:
        edit_tokens = list(EditToken.objects.select_for_update().filter(user_id__in=user_ids).order_by("user_id"))
        EditToken.objects.filter(pk__in=[token.pk for token in edit_tokens]).delete()
        revoked += [("edit_token_revoked", token.user_id, token.created_at) for token in edit_tokens]
    people = get_user_model().objects.in_bulk(user_ids)
    for tag, user_id, issued_at in revoked:
        membership = memberships.get(user_id)
        if membership is None:  # no organization, no reason log (like edit_token_rotate)
            continue
        audit_log_write(
            organization_id=membership.organization_id,
            tag=tag,
            actor=actor,
            subject=people[user_id],
            reason=reason,
            data={"issued_at": issued_at.isoformat()},
        )
    return TokensRevoked(
        api_tokens=sum(tag == "api_token_revoked" for tag, _, _ in revoked),
        edit_tokens=sum(tag == "edit_token_revoked" for tag, _, _ in revoked),
    )


def api_token_revoke(*, user: AbstractBaseUser, actor: AbstractBaseUser, reason: str) -> bool:
    """Revoke the user's API token (see tokens_revoke); False when they had none."""
    return tokens_revoke(users=[user], actor=actor, reason=reason, edit=False).api_tokens > 0


def edit_token_revoke(*, user: AbstractBaseUser, actor: AbstractBaseUser, reason: str) -> bool:
    """Revoke the user's personal edit token (see tokens_revoke); False when they had none."""
    return tokens_revoke(users=[user], actor=actor, reason=reason, api=False).edit_tokens > 0
