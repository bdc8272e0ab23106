"""Admin for saved column mappings and the count plan upload page.

Who may see and edit mappings follows the same roles as the import API (planners: plan
mappings; managers and admins: both). Writes go through counts.services.imports.

The plan upload is two steps: a dry run validates the file and shows every problem by row
and column; only a valid file can be applied, and applying re-validates it and writes it in
one transaction. Between the steps the file waits in a temporary file (django-import-export's
TempFolderStorage) whose path is kept in the user's session, never sent to the browser.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from import_export.tmp_storages import TempFolderStorage
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import Organization
from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from accounts.selectors import role_for_user
from counts.models import ColumnMapping, ImportKind
from counts.services import imports

PENDING_PLAN_KEY = "counts_plan_import_pending"


def _kinds(request: HttpRequest) -> list[str]:
    return imports.import_kinds_for(role_for_user(request.user))


class ColumnMappingForm(forms.ModelForm):
    columns = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text='{"field": "column header in the file"}; fields left out keep the template\'s header.',
    )

    # Set per request by ColumnMappingAdmin.get_form.
    organization: Organization | None = None
    allowed_kinds: list[str] = []

    class Meta:
        model = ColumnMapping
        fields = ["name", "kind", "columns"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:
            self.fields["kind"].choices = [(k, label) for k, label in ImportKind.choices if k in self.allowed_kinds]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        if "columns" in cleaned and kind:
            try:
                cleaned["columns"] = imports.column_mapping_clean(kind=kind, columns=cleaned["columns"])
            except ValidationError as error:
                self.add_error("columns", error.message_dict.get("columns", error.messages))
        name = (cleaned.get("name") or "").strip()
        adding = self.instance.pk is None and name and kind
        if adding and imports.column_mapping_find(organization=self.organization, kind=kind, name=name):
            self.add_error("name", f"a {kind} mapping named {name!r} already exists; edit that one")
        return cleaned


@admin.register(ColumnMapping)
class ColumnMappingAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    form = ColumnMappingForm
    list_display = ["name", "kind", "created_by", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    list_select_related = ["created_by"]
    change_list_template = "admin/counts/columnmapping/change_list.html"

    # Roles decide, as in the API: a planner keeps plan mappings, managers and admins both kinds.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(_kinds(request))

    def has_view_permission(self, request: HttpRequest, obj: ColumnMapping | None = None) -> bool:
        kinds = _kinds(request)
        return bool(kinds) and (obj is None or obj.kind in kinds)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(_kinds(request))

    def has_change_permission(self, request: HttpRequest, obj: ColumnMapping | None = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ColumnMapping | None = None) -> bool:
        return self.has_view_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ColumnMapping]:
        return super().get_queryset(request).filter(kind__in=_kinds(request))

    def get_readonly_fields(self, request: HttpRequest, obj: ColumnMapping | None = None) -> list[str]:
        # The name and kind identify a mapping; renaming would be saving another one.
        return ["name", "kind"] if obj else []

    def get_form(self, request: HttpRequest, obj: ColumnMapping | None = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.organization = request_organization(request)
        form.allowed_kinds = _kinds(request)
        return form

    def save_model(self, request: HttpRequest, obj: ColumnMapping, form: forms.ModelForm, change: bool) -> None:
        saved, _created = imports.column_mapping_save(
            organization=request_organization(request),
            actor=request.user,
            kind=obj.kind,
            name=obj.name,
            columns=form.cleaned_data["columns"],
        )
        # The admin logs and redirects with the object it was given.
        obj.pk, obj.organization, obj._state.adding = saved.pk, saved.organization, False

    def delete_model(self, request: HttpRequest, obj: ColumnMapping) -> None:
        imports.column_mapping_delete(mapping=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ColumnMapping]) -> None:
        for mapping in queryset:
            imports.column_mapping_delete(mapping=mapping, actor=request.user)

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "import-plan/",
                self.admin_site.admin_view(self.plan_import_view),
                name="counts_columnmapping_plan_import",
            ),
            path(
                "plan-template/",
                self.admin_site.admin_view(self.plan_template_view),
                name="counts_columnmapping_plan_template",
            ),
        ]
        return extra + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {"can_import_plan": ImportKind.PLAN in _kinds(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    # --- plan upload ---------------------------------------------------------------------

    def _require_plan_role(self, request: HttpRequest) -> Organization:
        organization = request_organization(request)
        if organization is None or ImportKind.PLAN not in _kinds(request):
            raise PermissionDenied
        return organization

    def plan_template_view(self, request: HttpRequest) -> HttpResponse:
        organization = self._require_plan_role(request)
        mapping = None
        if mapping_id := request.GET.get("mapping"):
            mapping = (
                imports.column_mapping_list(organization=organization, kinds=[ImportKind.PLAN])
                .filter(pk=mapping_id if mapping_id.isdigit() else None)
                .first()
            )
        response = HttpResponse(
            imports.import_template_csv(kind=ImportKind.PLAN, mapping=mapping), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="plan-import-template.csv"'
        return response

    def plan_import_view(self, request: HttpRequest) -> HttpResponse:
        organization = self._require_plan_role(request)
        saved = imports.column_mapping_list(organization=organization, kinds=[ImportKind.PLAN])
        applying = request.method == "POST" and "_apply" in request.POST
        bound = request.method == "POST" and not applying
        form = PlanUploadForm(request.POST if bound else None, request.FILES if bound else None, saved_mappings=saved)
        report = None
        pending = request.session.get(PENDING_PLAN_KEY)
        if pending and pending.get("organization") != organization.pk:
            pending = None

        if applying:
            if not pending:
                messages.error(request, "Nothing is waiting to be applied: upload the file and dry-run it again.")
                return HttpResponseRedirect(request.path)
            report = self._apply_pending(request, organization, pending)
            pending = None
            if report is None:
                messages.error(request, "The uploaded file is no longer available: upload it again.")
                return HttpResponseRedirect(request.path)
            if report.valid:
                runs = report.created["runs"]
                messages.success(
                    request,
                    f"Created {len(runs)} run(s) with {report.created['requests']} request(s): "
                    + ", ".join(f"{run['name']} at {run['facility']}" for run in runs),
                )
                return HttpResponseRedirect(self._after_apply_url(request))
        elif bound and form.is_valid():
            report, pending = self._dry_run(request, organization, form)

        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import a count plan",
            "form": form,
            "report": report,
            "errors": report.errors[: imports.MAX_REPORTED_ERRORS] if report else [],
            "pending": pending if report is not None and report.valid and report.dry_run else None,
            "fields": imports.PLAN_FIELDS,
            "row_numbering": imports.ROW_NUMBERING,
            "max_megabytes": imports.MAX_IMPORT_BYTES // (1024 * 1024),
            "max_rows": imports.MAX_IMPORT_ROWS,
        }
        return TemplateResponse(request, "admin/counts/plan_import.html", context)

    def _dry_run(
        self, request: HttpRequest, organization: Organization, form: PlanUploadForm
    ) -> tuple[imports.ImportReport, dict[str, Any] | None]:
        self._discard_pending(request)
        upload = form.cleaned_data["file"]
        file_bytes = upload.read(imports.MAX_IMPORT_BYTES + 1)
        saved_mapping = form.cleaned_data.get("saved_mapping")
        columns = dict(saved_mapping.columns) if saved_mapping else (form.cleaned_data.get("columns") or {})
        report = imports.plan_import(
            organization=organization, actor=request.user, file_bytes=file_bytes, mapping=columns, dry_run=True
        )
        save_as = form.cleaned_data.get("save_mapping_as")
        if save_as and columns and not any(error.row is None for error in report.errors):
            try:
                imports.column_mapping_save(
                    organization=organization, actor=request.user, kind=ImportKind.PLAN, name=save_as, columns=columns
                )
                messages.success(request, f"Saved the column mapping as {save_as!r}.")
            except ValidationError as error:
                messages.error(request, f"The mapping was not saved: {'; '.join(error.messages)}")
        if not report.valid:
            return report, None
        storage = TempFolderStorage(read_mode="rb")
        storage.save(file_bytes)
        pending = {
            "organization": organization.pk,
            "storage_name": storage.name,
            "sha256": hashlib.sha256(file_bytes).hexdigest(),
            "columns": columns,
            "file_name": upload.name,
        }
        request.session[PENDING_PLAN_KEY] = pending
        return report, pending

    def _apply_pending(
        self, request: HttpRequest, organization: Organization, pending: dict[str, Any]
    ) -> imports.ImportReport | None:
        storage = TempFolderStorage(name=pending["storage_name"], read_mode="rb")
        try:
            file_bytes = storage.read()
        except OSError:
            file_bytes = None
        self._discard_pending(request)
        if file_bytes is None or hashlib.sha256(file_bytes).hexdigest() != pending["sha256"]:
            return None
        return imports.plan_import(
            organization=organization,
            actor=request.user,
            file_bytes=file_bytes,
            mapping=pending["columns"],
            dry_run=False,
        )

    def _discard_pending(self, request: HttpRequest) -> None:
        pending = request.session.pop(PENDING_PLAN_KEY, None)
        if pending:
            with contextlib.suppress(OSError):  # already gone: nothing to clean up
                TempFolderStorage(name=pending["storage_name"]).remove()

    def _after_apply_url(self, request: HttpRequest) -> str:
        try:
            return reverse("admin:counts_countrun_changelist")
        except NoReverseMatch:
            return request.path


class PlanUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, UTF-8")
    saved_mapping = forms.ModelChoiceField(
        queryset=ColumnMapping.objects.none(), required=False, help_text="reuse a mapping saved earlier"
    )
    columns = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='or map them here: {"item": "SKU", "count_name": "Run"}; blank uses the template\'s headers',
    )
    save_mapping_as = forms.CharField(
        required=False, max_length=100, help_text="save the typed mapping under this name for next time"
    )

    def __init__(self, *args: Any, saved_mappings: QuerySet[ColumnMapping], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["saved_mapping"].queryset = saved_mappings

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("saved_mapping") and cleaned.get("columns"):
            raise ValidationError("Pick a saved mapping or type one, not both.")
        if cleaned.get("save_mapping_as") and not cleaned.get("columns"):
            self.add_error("save_mapping_as", "Type a mapping to save.")
        return cleaned
