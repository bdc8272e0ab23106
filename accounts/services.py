"""Writes for organizations, memberships and role groups."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AbstractUser, Group, Permission
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

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
