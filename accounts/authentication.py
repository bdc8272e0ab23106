"""API token authentication that loads the caller's membership in the same query."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from accounts.selectors import remember_membership

# Where the tenant middleware leaves the token's (user, token) for DRF to pick up.
_PREAUTHENTICATED = "_cyclecount_token_authentication"


class MembershipTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; the membership (and organization) rides along.

    Scanners call the API once per scan; every request needs the caller's organization, so
    fetching it with the token saves a query on each of them.
    """

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        # The tenant middleware authenticated the token already (accounts.tenancy); one query.
        preauthenticated = getattr(getattr(request, "_request", request), _PREAUTHENTICATED, None)
        if preauthenticated is not None:
            return preauthenticated
        return super().authenticate(request)

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


def token_preauthenticate(request: HttpRequest) -> Any | None:
    """The user of the request's API token, if it carries a valid one; remembered for DRF.

    The tenant middleware needs the caller's organization before the view runs; DRF's
    authentication then reuses the answer instead of asking the database again. An invalid
    token answers None here and is refused by DRF as before.
    """
    header = get_authorization_header(request).split()
    if not header or header[0].lower() != MembershipTokenAuthentication.keyword.lower().encode():
        return None
    try:
        authenticated = MembershipTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed:
        return None
    if authenticated is None:
        return None
    setattr(request, _PREAUTHENTICATED, authenticated)
    return authenticated[0]
