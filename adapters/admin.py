"""Connections, the outbox, batches and parity drifts in the admin.

Secrets are write-only here: the form takes new values as JSON and shows stored ones masked.
Retries and drift resolutions are admin actions that call the services.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from adapters.interface import backend_spec
from adapters.models import (
    BackendConnection,
    BackendKind,
    BatchState,
    ExternalRecord,
    ParityDrift,
    PendingPush,
    PushBatch,
)
from adapters.secrets import SecretsUnreadable, mask, secrets_decrypt
from adapters.selectors import adjustment_file, outbox_summary, push_target_for
from adapters.services import ConnectionInvalid, NotRetryable, backend_connect, push_batch_retry, push_retry
from adapters.services.connections import connection_values_errors
from adapters.services.drain import push_batch_mark_imported
from adapters.services.sync import parity_drift_resolve


class ReadOnlyAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value: a form shown again after an error must not echo
    the secrets typed into it (the same rule as PasswordInput(render_value=False))."""

    def format_value(self, value: Any) -> None:
        return None


class ConnectionForm(forms.ModelForm):
    settings_json = forms.CharField(
        label="Settings (JSON)",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        help_text="Hosts, ids and limits, e.g. for NetSuite: account_id, subsidiary_id, adjustment_account_id, "
        "concurrency, restlet_url, rest_url.",
    )
    new_secrets = forms.CharField(
        label="New secrets (JSON, write-only)",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "cols": 80, "autocomplete": "off"}),
        help_text="Only what changes; secrets left out keep their stored value. Never shown again, "
        "not even when the form is refused: type them again then.",
    )

    class Meta:
        model = BackendConnection
        fields = ["kind", "name", "is_push_target", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "settings_json" in self.fields:
            self.fields["settings_json"].initial = json.dumps(self.instance.settings or {}, indent=2, sort_keys=True)
        if self.instance.pk:
            for name in ("kind", "name"):
                if name in self.fields:
                    self.fields[name].disabled = True

    def _json(self, field: str) -> dict[str, Any]:
        raw = self.cleaned_data.get(field) or "{}"
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise forms.ValidationError({field: f"not JSON: {error}"}) from None
        if not isinstance(value, dict):
            raise forms.ValidationError({field: "must be one JSON object"})
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        settings_values, secret_values = self._json("settings_json"), self._json("new_secrets")
        kind = cleaned.get("kind") or self.instance.kind
        secret_keys = set(backend_spec(kind).secret_keys) if kind in BackendKind.values else set()
        misplaced = sorted(set(settings_values) & secret_keys)
        if misplaced:
            self._scrub_settings_echo({key: value for key, value in settings_values.items() if key not in secret_keys})
            raise forms.ValidationError({"settings_json": f"secrets belong in 'New secrets': {', '.join(misplaced)}"})
        try:
            stored = secrets_decrypt(self.instance.secrets_encrypted) if self.instance.pk else {}
        except SecretsUnreadable:
            stored = {}
        values = {**settings_values, **secret_values}
        errors = connection_values_errors(kind=kind, values=values, stored_secrets=stored)
        if errors:
            raise forms.ValidationError("; ".join(f"{field}: {message}" for field, message in errors.items()))
        cleaned["values"] = values
        return cleaned

    def _scrub_settings_echo(self, settings_values: dict[str, Any]) -> None:
        # The refused form is shown again from the submitted data: a secret typed into the
        # settings box by mistake is dropped from what goes back to the browser.
        self.data = self.data.copy()
        self.data[self.add_prefix("settings_json")] = json.dumps(settings_values, indent=2, sort_keys=True)


@admin.register(BackendConnection)
class BackendConnectionAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    form = ConnectionForm
    list_display = ["name", "kind", "is_push_target", "active", "last_sync_at", "last_drain_at", "lease"]
    list_filter = ["kind", "active"]
    search_fields = ["name"]
    readonly_fields = ["stored_secrets", "last_sync_at", "last_sync_summary", "last_drain_at", "lease"]
    fieldsets = [
        (None, {"fields": ["kind", "name", "is_push_target", "active"]}),
        ("Configuration", {"fields": ["settings_json", "new_secrets", "stored_secrets"]}),
        ("Activity", {"fields": ["last_sync_at", "last_sync_summary", "last_drain_at", "lease"]}),
    ]

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # deactivate instead: batches and mappings refer to it

    def get_fieldsets(self, request: HttpRequest, obj: BackendConnection | None = None) -> list:
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only visitors see the settings as stored, never an editable secrets box.
            return [
                (None, {"fields": ["kind", "name", "is_push_target", "active"]}),
                ("Configuration", {"fields": ["settings", "stored_secrets"]}),
                ("Activity", {"fields": ["last_sync_at", "last_sync_summary", "last_drain_at", "lease"]}),
            ]
        return super().get_fieldsets(request, obj)

    @admin.display(description="Stored secrets")
    def stored_secrets(self, connection: BackendConnection) -> str:
        try:
            values = secrets_decrypt(connection.secrets_encrypted)
        except SecretsUnreadable as error:
            return str(error)
        if not values:
            return "—"
        return format_html_join(", ", "{}: {}", ((key, mask(value)) for key, value in sorted(values.items())))

    @admin.display(description="Worker")
    def lease(self, connection: BackendConnection) -> str:
        if not connection.worker_lease_owner:
            return "idle"
        return f"{connection.worker_lease_owner} until {connection.worker_lease_until:%H:%M:%S} UTC"

    def save_model(self, request: HttpRequest, obj: BackendConnection, form: ConnectionForm, change: bool) -> None:
        try:
            connection, _ = backend_connect(
                organization=request_organization(request),
                kind=obj.kind,
                name=obj.name,
                values=form.cleaned_data["values"],
                actor=request.user,
                is_push_target=form.cleaned_data["is_push_target"],
            )
        except ConnectionInvalid as invalid:  # validated by the form; a race can still land here
            messages.error(request, str(invalid))
            return
        if connection.active != form.cleaned_data["active"]:
            connection.active = form.cleaned_data["active"]
            connection._history_user = request.user
            connection.save(update_fields=["active", "updated_at"])
        obj.pk = connection.pk


class PushInline(admin.TabularInline):
    model = PendingPush
    fields = ["external_id", "proposal", "state", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("proposal")


@admin.register(PushBatch)
class PushBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "external_id",
        "connection",
        "state",
        "line_count",
        "attempts",
        "failures",
        "next_attempt_at",
        "record_id",
        "file_link",
        "created_at",
        "error_excerpt",
    ]
    list_filter = ["state", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id", "record_id", "location_external_id"]
    list_select_related = ["connection"]
    readonly_fields = [field.name for field in PushBatch._meta.fields if field.name != "organization"]
    inlines = [PushInline]
    actions = ["retry", "mark_imported"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The change permission unlocks the retry action; the batch itself is never edited.
        return obj is None and super().has_change_permission(request, obj)

    def has_mark_imported_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("adapters.mark_imported_pushbatch")

    def get_urls(self) -> list:
        download = self.admin_site.admin_view(self.download_view)
        return [path("<path:object_id>/file/", download, name="adapters_pushbatch_file"), *super().get_urls()]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        batch = self.get_object(request, object_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        if batch.state not in (BatchState.EXPORTED, BatchState.ACCEPTED) or batch.connection.kind != BackendKind.FILE:
            raise Http404("Only exported adjustment files can be downloaded.")
        response = HttpResponse(adjustment_file(batch=batch), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{batch.record_id}"'
        return response

    @admin.display(description="File")
    def file_link(self, batch: PushBatch) -> str:
        if batch.connection.kind != BackendKind.FILE or batch.state not in (BatchState.EXPORTED, BatchState.ACCEPTED):
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:adapters_pushbatch_file", args=[batch.pk]), batch.record_id
        )

    @admin.action(description="Mark the selected exported files imported into the ERP", permissions=["mark_imported"])
    def mark_imported(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, refused = 0, []
        for batch in queryset.order_by("pk"):
            try:
                push_batch_mark_imported(batch=batch, actor=request.user)
                done += 1
            except NotRetryable as error:
                refused.append(str(error))
        if done:
            messages.success(request, f"{done} file(s) marked imported; the mirror took their adjustments.")
        for message in refused:
            messages.warning(request, message)

    @admin.display(description="Error")
    def error_excerpt(self, batch: PushBatch) -> str:
        return batch.last_error[:120]

    @admin.action(description="Retry the selected batches (after fixing the cause)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, refused = 0, []
        for batch in queryset.order_by("pk"):
            try:
                push_batch_retry(batch=batch, actor=request.user)
                done += 1
            except NotRetryable as error:
                refused.append(str(error))
        if done:
            messages.success(request, f"{done} batch(es) queued again.")
        for message in refused:
            messages.warning(request, message)


@admin.register(PendingPush)
class PendingPushAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "state", "batch", "proposal", "attempts", "created_at", "last_error"]
    list_filter = ["state"]
    search_fields = ["external_id", "batch__external_id"]
    list_select_related = ["batch", "proposal"]
    readonly_fields = [field.name for field in PendingPush._meta.fields if field.name != "organization"]
    actions = ["retry"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and request.user.has_perm("adapters.change_pushbatch")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        organization = request_organization(request)
        if organization is not None:
            summary = outbox_summary(organization_id=organization.pk)
            if push_target_for(organization_id=organization.pk) is None and summary["waiting"]:
                messages.warning(
                    request,
                    f"No connection is configured to receive adjustments: {summary['waiting']} approved "
                    "adjustment(s) wait here. Add a backend connection (or run manage.py backend_connect).",
                )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Retry the selected pushes (after fixing their mapping)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, refused = 0, []
        for push in queryset.order_by("pk"):
            try:
                push_retry(push=push, actor=request.user)
                done += 1
            except NotRetryable as error:
                refused.append(str(error))
        if done:
            messages.success(request, f"{done} push(es) queued again.")
        for message in refused:
            messages.warning(request, message)


@admin.register(ParityDrift)
class ParityDriftAdmin(ReadOnlyAdmin):
    list_display = [
        "item",
        "location",
        "connection",
        "expected_on_hand",
        "backend_on_hand",
        "difference",
        "detected_at",
        "resolved_at",
        "resolved_by",
    ]
    list_filter = [("connection", admin.RelatedOnlyFieldListFilter), ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["item__sku", "location__code"]
    list_select_related = ["item", "location", "connection", "resolved_by"]
    readonly_fields = ["connection", "item", "location", "expected_on_hand", "backend_on_hand", "difference"]
    fields = [*readonly_fields, "detected_at", "resolved_at", "resolved_by", "resolution_note", "pushes_list"]
    actions = ["resolve"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [*self.readonly_fields, "detected_at", "resolved_at", "resolved_by", "resolution_note", "pushes_list"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="Pushes")
    def pushes_list(self, drift: ParityDrift) -> str:
        return format_html_join(", ", "{}", ((push.external_id,) for push in drift.pushes.all())) or "—"

    @admin.action(description="Mark the selected drifts resolved (checked in the ERP)", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        resolved = 0
        for drift in queryset.filter(resolved_at__isnull=True).order_by("pk"):
            parity_drift_resolve(drift=drift, actor=request.user, note=f"resolved in admin by {request.user}")
            resolved += 1
        messages.success(request, f"{resolved} drift(s) resolved.")


@admin.register(ExternalRecord)
class ExternalRecordAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    """Mappings between mirror rows and backend ids; fixing one lets a rejected push be retried."""

    list_display = ["kind", "external_id", "connection", "facility", "location", "item"]
    list_filter = ["kind", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id", "item__sku", "location__code", "facility__code"]
    list_select_related = ["connection", "facility", "location", "item"]
    autocomplete_fields = ["item", "location", "facility"]


import adapters.file.admin  # noqa: E402,F401  (the file backend's uploads and mappings)
