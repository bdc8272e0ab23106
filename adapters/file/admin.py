"""On-hand files in the admin: the upload page (dry run, then apply), the uploads, saved mappings.

Uploading needs `adapters.add_onhandsnapshot` (managers, finance, admins). The upload is two
steps, as for count plans: a dry run shows every problem by row and column and what would
change; only a valid file can be applied, and applying checks it again and syncs in one
transaction. Between the steps the file waits in a temporary file (django-import-export's
TempFolderStorage) whose name is kept in the user's session, never sent to the browser.
Uploads are read-only afterwards: the list shows each one's state and problems.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from import_export.tmp_storages import TempFolderStorage
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import Organization
from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from adapters.file import snapshots
from adapters.file.models import OnHandColumnMapping, OnHandSnapshot
from adapters.models import BackendConnection, BackendKind

PENDING_KEY = "adapters_onhand_pending"
UPLOAD_PERMISSION = "adapters.add_onhandsnapshot"


def _file_connections(organization: Organization | None) -> QuerySet[BackendConnection]:
    return BackendConnection.objects.for_organization(organization).filter(kind=BackendKind.FILE, active=True)


class OnHandUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, UTF-8")
    saved_mapping = forms.ModelChoiceField(
        queryset=OnHandColumnMapping.objects.none(), required=False, help_text="reuse a mapping saved earlier"
    )
    columns = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='or map them here: {"item": "Item", "on_hand": "On Hand"}; blank uses the template\'s headers',
    )
    save_mapping_as = forms.CharField(
        required=False, max_length=100, help_text="save the typed mapping under this name for next time"
    )

    def __init__(self, *args: Any, saved_mappings: QuerySet[OnHandColumnMapping], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["saved_mapping"].queryset = saved_mappings

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("saved_mapping") and cleaned.get("columns"):
            raise ValidationError("Pick a saved mapping or type one, not both.")
        if cleaned.get("save_mapping_as") and not cleaned.get("columns"):
            self.add_error("save_mapping_as", "Type a mapping to save.")
        return cleaned


@admin.register(OnHandSnapshot)
class OnHandSnapshotAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "uploaded_at",
        "filename",
        "connection",
        "state",
        "row_count",
        "problems",
        "uploaded_by",
        "applied_at",
        "applied_by",
    ]
    list_filter = ["state", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["filename", "content_sha256"]
    list_select_related = ["connection", "uploaded_by", "applied_by"]
    fields = [
        "connection",
        "filename",
        "state",
        "row_count",
        "columns",
        "uploaded_by",
        "uploaded_at",
        "applied_by",
        "applied_at",
        "content_sha256",
        "error_table",
        "sync_summary",
    ]
    readonly_fields = fields
    change_list_template = "adapters/onhandsnapshot_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # files come in through the upload page, which validates them first

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Problems")
    def problems(self, snapshot: OnHandSnapshot) -> int:
        return len(snapshot.errors)

    @admin.display(description="Problems (row, column, message)")
    def error_table(self, snapshot: OnHandSnapshot) -> str:
        if not snapshot.errors:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (error.get("row") or "—", error.get("column") or "—", error.get("message", ""))
                for error in snapshot.errors
            ),
        )
        return format_html(
            "<table><thead><tr><th>Row</th><th>Column</th><th>Problem</th></tr></thead><tbody>{}</tbody></table>", rows
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "upload/<int:connection_id>/",
                self.admin_site.admin_view(self.upload_view),
                name="adapters_onhandsnapshot_upload",
            ),
            path("template/", self.admin_site.admin_view(self.template_view), name="adapters_onhandsnapshot_template"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        organization = request_organization(request)
        can_upload = organization is not None and request.user.has_perm(UPLOAD_PERMISSION)
        context = {
            "upload_connections": list(_file_connections(organization).order_by("name")) if can_upload else [],
            "can_upload": can_upload,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    # --- upload ----------------------------------------------------------------------------

    def _require_uploader(self, request: HttpRequest) -> Organization:
        organization = request_organization(request)
        if organization is None or not request.user.has_perm(UPLOAD_PERMISSION):
            raise PermissionDenied
        return organization

    def template_view(self, request: HttpRequest) -> HttpResponse:
        organization = self._require_uploader(request)
        columns: dict[str, str] = {}
        if (mapping_id := request.GET.get("mapping", "")).isdigit():
            mapping = snapshots.onhand_column_mapping_list(organization=organization).filter(pk=mapping_id).first()
            columns = dict(mapping.columns) if mapping else {}
        response = HttpResponse(snapshots.onhand_template_csv(columns=columns), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="onhand-template.csv"'
        return response

    def upload_view(self, request: HttpRequest, connection_id: int) -> HttpResponse:
        organization = self._require_uploader(request)
        connection = _file_connections(organization).filter(pk=connection_id).first()
        if connection is None:
            raise Http404("No such file connection.")
        saved = snapshots.onhand_column_mapping_list(organization=organization)
        applying = request.method == "POST" and "_apply" in request.POST
        bound = request.method == "POST" and not applying
        form = OnHandUploadForm(request.POST if bound else None, request.FILES if bound else None, saved_mappings=saved)
        report = None
        pending = request.session.get(PENDING_KEY)
        if pending and (pending.get("organization"), pending.get("connection")) != (organization.pk, connection.pk):
            pending = None

        if applying:
            if not pending:
                messages.error(request, "Nothing is waiting to be applied: upload the file and dry-run it again.")
                return HttpResponseRedirect(request.path)
            report = self._apply_pending(request, connection, pending)
            pending = None
            if report is None:
                messages.error(request, "The uploaded file is no longer available: upload it again.")
                return HttpResponseRedirect(request.path)
            if report.applied:
                summary = report.sync
                messages.success(
                    request,
                    f"Applied {report.filename} to {connection.name}: {summary.get('balances_changed', 0)} balance(s) "
                    f"and {summary.get('items_updated', 0)} cost(s) changed, {summary.get('confirmed', 0)} "
                    f"adjustment(s) confirmed, {summary.get('drifts', 0)} drift(s).",
                )
                return HttpResponseRedirect(reverse("admin:adapters_onhandsnapshot_change", args=[report.snapshot.pk]))
        elif bound and form.is_valid():
            report, pending = self._dry_run(request, organization, connection, form)

        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Upload an on-hand file to {connection.name}",
            "connection": connection,
            "form": form,
            "report": report,
            "errors": report.errors[: snapshots.MAX_REPORTED_ERRORS] if report else [],
            "pending": pending if report is not None and report.valid and report.dry_run else None,
            "fields": snapshots.ONHAND_FIELDS,
            "row_numbering": snapshots.ROW_NUMBERING,
            "max_megabytes": snapshots.MAX_FILE_BYTES // (1024 * 1024),
            "max_rows": snapshots.MAX_ROWS,
        }
        return TemplateResponse(request, "adapters/onhand_upload.html", context)

    def _dry_run(
        self, request: HttpRequest, organization: Organization, connection: BackendConnection, form: OnHandUploadForm
    ) -> tuple[snapshots.SnapshotReport, dict[str, Any] | None]:
        self._discard_pending(request)
        upload = form.cleaned_data["file"]
        content = upload.read(snapshots.MAX_FILE_BYTES + 1)
        saved_mapping = form.cleaned_data.get("saved_mapping")
        columns = dict(saved_mapping.columns) if saved_mapping else (form.cleaned_data.get("columns") or {})
        report = snapshots.onhand_snapshot_check(
            connection=connection, content=content, filename=upload.name, columns=columns, actor=request.user
        )
        save_as = form.cleaned_data.get("save_mapping_as")
        if save_as and columns and not any(error.row is None for error in report.errors):
            try:
                snapshots.onhand_column_mapping_save(
                    organization=organization, actor=request.user, name=save_as, columns=columns
                )
                messages.success(request, f"Saved the column mapping as {save_as!r}.")
            except ValidationError as error:
                messages.error(request, f"The mapping was not saved: {'; '.join(error.messages)}")
        if not report.valid:
            return report, None
        storage = TempFolderStorage(read_mode="rb")
        storage.save(content)
        pending = {
            "organization": organization.pk,
            "connection": connection.pk,
            "storage_name": storage.name,
            "sha256": hashlib.sha256(content).hexdigest(),
            "columns": columns,
            "file_name": upload.name,
        }
        request.session[PENDING_KEY] = pending
        return report, pending

    def _apply_pending(
        self, request: HttpRequest, connection: BackendConnection, pending: dict[str, Any]
    ) -> snapshots.SnapshotReport | None:
        storage = TempFolderStorage(name=pending["storage_name"], read_mode="rb")
        try:
            content = storage.read()
        except OSError:
            content = None
        self._discard_pending(request)
        if content is None or hashlib.sha256(content).hexdigest() != pending["sha256"]:
            return None
        return snapshots.onhand_snapshot_apply(
            connection=connection,
            content=content,
            filename=pending["file_name"],
            columns=pending["columns"],
            actor=request.user,
        )

    def _discard_pending(self, request: HttpRequest) -> None:
        pending = request.session.pop(PENDING_KEY, None)
        if pending:
            with contextlib.suppress(OSError):  # already gone: nothing to clean up
                TempFolderStorage(name=pending["storage_name"]).remove()


class OnHandColumnMappingForm(forms.ModelForm):
    columns = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text='{"field": "column header in the file"}; fields: '
        + ", ".join(spec.key for spec in snapshots.ONHAND_FIELDS)
        + ". Fields left out keep the template's header.",
    )

    organization: Organization | None = None  # set per request by the admin

    class Meta:
        model = OnHandColumnMapping
        fields = ["name", "columns"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "columns" in cleaned:
            try:
                cleaned["columns"] = snapshots.onhand_column_mapping_clean(columns=cleaned["columns"])
            except ValidationError as error:
                self.add_error("columns", error.message_dict.get("columns", error.messages))
        name = (cleaned.get("name") or "").strip()
        if self.instance.pk is None and name:
            existing = snapshots.onhand_column_mapping_list(organization=self.organization).filter(name=name)
            if existing.exists():
                self.add_error("name", f"a mapping named {name!r} already exists; edit that one")
        return cleaned


@admin.register(OnHandColumnMapping)
class OnHandColumnMappingAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    form = OnHandColumnMappingForm
    list_display = ["name", "created_by", "updated_at"]
    search_fields = ["name"]
    list_select_related = ["created_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: OnHandColumnMapping | None = None) -> list[str]:
        return ["name"] if obj else []  # renaming would be saving another mapping

    def get_form(self, request: HttpRequest, obj: OnHandColumnMapping | None = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.organization = request_organization(request)
        return form

    def save_model(self, request: HttpRequest, obj: OnHandColumnMapping, form: forms.ModelForm, change: bool) -> None:
        saved, _created = snapshots.onhand_column_mapping_save(
            organization=request_organization(request),
            actor=request.user,
            name=obj.name,
            columns=form.cleaned_data["columns"],
        )
        obj.pk, obj.organization, obj._state.adding = saved.pk, saved.organization, False

    def delete_model(self, request: HttpRequest, obj: OnHandColumnMapping) -> None:
        snapshots.onhand_column_mapping_delete(mapping=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[OnHandColumnMapping]) -> None:
        for mapping in queryset.order_by("pk"):
            snapshots.onhand_column_mapping_delete(mapping=mapping, actor=request.user)
