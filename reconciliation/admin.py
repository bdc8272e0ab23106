"""The organization's rules and its variances in the admin.

Guardrails change only through `guardrail_update` (one new version per save, audited); root
causes are edited by admins (codes are fixed once created: API clients send them); variances
are computed by the engine and only read here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import Organization
from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from reconciliation.guardrails import EDITABLE_FIELDS, guardrail_errors, guardrail_update
from reconciliation.models import Guardrail, RootCause, Variance

# A root cause whose whole point is the explanation cannot be chosen without one.
NOTE_REQUIRED_CODES = frozenset({"other"})


class GuardrailForm(forms.ModelForm):
    class Meta:
        model = Guardrail
        fields = list(EDITABLE_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        values = {name: cleaned.get(name, getattr(self.instance, name)) for name in EDITABLE_FIELDS}
        for field, message in guardrail_errors(values).items():
            if field not in self.errors:
                self.add_error(field, message)
        return cleaned


@admin.register(Guardrail)
class GuardrailAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    """Thresholds; guardrails are created on first use (the default) so there is nothing to add here."""

    form = GuardrailForm
    list_display = [
        "__str__", "version", "auto_max_percent", "auto_max_value", "finance_min_value", "recount_min_value",
        "moved_book_policy", "updated_by", "updated_at",
    ]  # fmt: skip
    list_select_related = ["facility", "updated_by"]
    readonly_fields = ["facility", "version", "updated_by", "updated_at"]
    fields = ["facility", "version", *EDITABLE_FIELDS, "updated_by", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Guardrail, form: forms.ModelForm, change: bool) -> None:
        # The whole form is applied, as the admin saw it (a revert from history posts a past
        # version's values); the service compares with the locked row and logs what changed.
        saved = guardrail_update(
            guardrail=obj,
            actor=request.user,
            changes={name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.cleaned_data},
        )
        for name in (*EDITABLE_FIELDS, "version", "updated_by", "updated_at"):
            setattr(obj, name, getattr(saved, name))


class RootCauseForm(forms.ModelForm):
    organization: Organization | None = None  # set per request by RootCauseAdmin.get_form

    class Meta:
        model = RootCause
        fields = ["code", "label", "requires_note", "active"]

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].lower()
        # The (organization, code) constraint is not checked by the form (organization is not a
        # form field), so check it here rather than fail on the insert.
        taken = RootCause.objects.for_organization(self.organization).filter(code=code)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("your organization already has this root cause")
        return code

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        code = cleaned.get("code", self.instance.code)
        if code in NOTE_REQUIRED_CODES and not cleaned.get("requires_note"):
            self.add_error("requires_note", f"{code!r} always requires a note explaining it")
        return cleaned


@admin.register(RootCause)
class RootCauseAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    """Admins add, relabel and deactivate root causes; deactivated ones stay on past decisions."""

    form = RootCauseForm
    list_display = ["code", "label", "requires_note", "active"]
    list_editable = ["active"]
    list_filter = ["active", "requires_note"]
    search_fields = ["code", "label"]

    def get_form(self, request: HttpRequest, obj: RootCause | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.organization = request_organization(request)
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: RootCause | None = None) -> Any:
        # Decisions and API clients refer to a root cause by its code: it is fixed once created.
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Variance)
class VarianceAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "run", "facility", "location", "item", "book_at_count", "counted_quantity", "variance_units",
        "variance_percent", "variance_value", "adjustment_units", "routing", "guardrail_version", "computed_at",
        "superseded_at",
    ]  # fmt: skip
    list_filter = [
        "routing",
        ("run", admin.RelatedOnlyFieldListFilter),
        ("facility", admin.RelatedOnlyFieldListFilter),
        "book_moved",
    ]
    list_select_related = ["run", "facility", "location", "item"]
    search_fields = ["item__sku", "item__name", "location__code", "run__name"]
    ordering = ["-computed_at", "pk"]
    readonly_fields = [
        "run", "line", "facility", "location", "item", "counted_quantity", "book_at_count", "book_current",
        "book_moved", "variance_units", "variance_percent", "variance_value", "unit_cost", "adjustment_units",
        "adjustment_value", "routing", "guardrail", "guardrail_version", "computed_at", "superseded_at",
    ]  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
