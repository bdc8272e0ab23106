from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

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
