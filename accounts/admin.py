from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import models
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import Membership, Organization
from accounts.scoping import OrganizationScopedAdmin, request_organization

User = get_user_model()


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


admin.site.unregister(User)


@admin.register(User)
class OrganizationUserAdmin(UserAdmin):
    """Only the people of the admin's own organization are listed."""

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        organization = request_organization(request)
        queryset = super().get_queryset(request)
        if organization is None:
            return queryset.none()
        return queryset.filter(membership__organization=organization)
