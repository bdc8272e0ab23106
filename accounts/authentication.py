"""API token authentication that loads the caller's membership in the same query."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.selectors import remember_membership


class MembershipTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; the membership (and organization) rides along.

    Scanners call the API once per scan; every request needs the caller's organization, so
    fetching it with the token saves a query on each of them.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        try:
            token = model.objects.select_related("user", "user__membership", "user__membership__organization").get(
                key=key
            )
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        user = token.user
        try:
            membership = user.membership
        except user.__class__.membership.RelatedObjectDoesNotExist:
            membership = None
        remember_membership(user, membership)
        return user, token
