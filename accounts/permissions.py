from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission

from accounts.selectors import organization_for_user

if TYPE_CHECKING:  # DRF imports this module while its own views module is loading
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IsOrganizationMember(BasePermission):
    """Authenticated and a member of an organization: every API row is scoped to it."""

    message = "You must belong to an organization to use the API."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return organization_for_user(request.user) is not None


def role_required(*roles: str) -> type[BasePermission]:
    """A permission class admitting members whose role is one of `roles`."""
    from accounts.selectors import role_for_user

    class HasRole(IsOrganizationMember):
        message = f"This needs one of the roles: {', '.join(roles)}."

        def has_permission(self, request: Request, view: APIView) -> bool:
            return role_for_user(request.user) in roles

    HasRole.__name__ = f"HasRole_{'_'.join(roles)}"
    return HasRole
