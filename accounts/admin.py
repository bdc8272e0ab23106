from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import Membership, Organization
from accounts.scoping import OrganizationScopedAdmin, request_organization
from accounts.services import tokens_revoke

User = get_user_model()


def _revoke_tokens(request: HttpRequest, users: list) -> None:
    try:
        revoked = tokens_revoke(users=users, actor=request.user, reason="revoked by an organization admin")
    except PermissionDenied as refusal:
        messages.error(request, str(refusal))
        return
    messages.success(
        request,
        f"Revoked {revoked.api_tokens} API token(s) and {revoked.edit_tokens} edit token(s) "
        f"of {len(users)} selected people; requests with them are refused from now on.",
    )


@admin.register(Organization)
class OrganizationAdmin(SimpleHistoryAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["slug", "created_at"]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        organization = request_organization(request)
        queryset = super().get_queryset(request)
        return queryset.filter(pk=organization.pk) if organization else queryset.none()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin, SimpleHistoryAdmin):
    list_display = ["user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user", "organization"]
    autocomplete_fields = ["user"]
    actions = ["revoke_tokens"]

    @admin.action(description="Revoke API and edit tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        _revoke_tokens(request, [membership.user for membership in queryset.select_related("user")])


admin.site.unregister(User)


@admin.register(User)
class OrganizationUserAdmin(UserAdmin):
    """Only the people of the admin's own organization are listed."""

    actions = ["revoke_tokens"]

    @admin.action(description="Revoke API and edit tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        _revoke_tokens(request, list(queryset))

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        organization = request_organization(request)
        queryset = super().get_queryset(request)
        if organization is None:
            return queryset.none()
        return queryset.filter(membership__organization=organization)
