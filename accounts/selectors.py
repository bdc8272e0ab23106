from __future__ import annotations

from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max

from accounts.models import Membership, Organization

_CACHE_ATTRIBUTE = "_cyclecount_membership"


def remember_membership(user: AbstractBaseUser, membership: Membership | None) -> None:
    """Prime the per-request cache when the membership was loaded along with the user."""
    setattr(user, _CACHE_ATTRIBUTE, membership)


def membership_for_user(user: AbstractBaseUser | AnonymousUser | None) -> Membership | None:
    """The user's membership, cached on the user object for the rest of the request."""
    if user is None or not user.is_authenticated:
        return None
    if not hasattr(user, _CACHE_ATTRIBUTE):
        membership = Membership.objects.select_related("organization").filter(user=user).first()
        setattr(user, _CACHE_ATTRIBUTE, membership)
    return getattr(user, _CACHE_ATTRIBUTE)


def organization_for_user(user: AbstractBaseUser | AnonymousUser | None) -> Organization | None:
    membership = membership_for_user(user)
    return membership.organization if membership else None


def role_for_user(user: AbstractBaseUser | AnonymousUser | None) -> str | None:
    membership = membership_for_user(user)
    return membership.role if membership else None


def login_lockout_end(*, username: str | None, ip_address: str | None) -> datetime | None:
    """When a locked-out username + address may log in again: the last failure plus the cool-off."""
    last_failure = (
        AccessAttempt.objects.filter(username=username, ip_address=ip_address)
        .aggregate(last=Max("attempt_time"))
        .get("last")
    )
    return last_failure + settings.AXES_COOLOFF_TIME if last_failure else None
