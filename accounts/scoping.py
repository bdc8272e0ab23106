"""Tenant scoping for the admin and the API: one place, used everywhere.

Rows of another organization are invisible: lists leave them out and details answer 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest
from rest_framework.request import Request

from accounts.models import Organization, OrganizationScopedQuerySet
from accounts.selectors import organization_for_user


def scope_queryset(queryset: models.QuerySet, organization: Organization | None) -> models.QuerySet:
    if isinstance(queryset, OrganizationScopedQuerySet):
        return queryset.for_organization(organization)
    if organization is None:
        return queryset.none()
    return queryset.filter(organization=organization)


def request_organization(request: HttpRequest | Request) -> Organization | None:
    return organization_for_user(getattr(request, "user", None))


class OrganizationScopedAdminMixin:
    """Admin base for organization-owned models.

    Querysets, foreign-key choices and object lookups are limited to the user's organization;
    new rows get the user's organization, which the form never offers.
    """

    exclude: Any = ("organization",)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return scope_queryset(super().get_queryset(request), request_organization(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        found = super().get_object(request, object_id, from_field)
        if found is None:
            # Django's default redirects with "doesn't exist"; another tenant's id must look
            # exactly like a missing one.
            raise Http404("No such object.")
        return found

    def _require_visible(self, request: HttpRequest, object_id: str) -> None:
        if not self.get_queryset(request).filter(pk=unquote(object_id)).exists():
            raise Http404("No such object.")

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        # simple-history falls back to the history table for missing objects, which would show
        # another tenant's history; only rows visible in the scoped queryset have a history page.
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        self._require_visible(request, object_id)
        # simple-history's "revert" saves on POST after checking only the view permission; a
        # revert is a change and needs the change permission on the object.
        if request.method == "POST" and not self.has_change_permission(request, self.get_object(request, object_id)):
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def formfield_for_foreignkey(self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.related_model
        if any(field.name == "organization" for field in related._meta.fields):
            kwargs["queryset"] = scope_queryset(related._default_manager.all(), request_organization(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        if not change:
            obj.organization = request_organization(request)
        super().save_model(request, obj, form, change)


class OrganizationScopedAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    pass


class OrganizationScopedAPIMixin:
    """DRF views: `get_queryset` returns only the caller's organization's rows (404 otherwise)."""

    request: Request

    def get_queryset(self) -> models.QuerySet:
        return scope_queryset(super().get_queryset(), request_organization(self.request))
