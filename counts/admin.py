"""Counting in the admin: find runs (search, filters, progress), see sessions, scans and lines.

Scans and lines are read-only (scans are append-only, lines are derived); runs change state
only through the actions, which call the services.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_fsm import TransitionNotAllowed
from simple_history.admin import SimpleHistoryAdmin

from accounts.scoping import OrganizationScopedAdminMixin
from counts import import_admin  # noqa: F401 - registers the plan/results import admin views
from counts.models import (
    CountEvent,
    CountLine,
    CountRequest,
    CountRun,
    CountSession,
    FacilityCountSettings,
)
from counts.selectors import with_progress
from counts.services.planning import count_run_cancel, count_run_start
from counts.services.preferences import EDITABLE_FIELDS, facility_count_settings_update


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class CountRequestInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CountRequest
    fields = ["location", "item", "reason", "expected", "found", "signal_count", "note"]
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("location", "item")


@admin.register(CountRun)
class CountRunAdmin(OrganizationScopedAdminMixin, ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "name", "facility", "kind", "created_at", "due_at", "state", "progress", "lines_counted", "lines_in_scope",
    ]  # fmt: skip
    list_filter = ["kind", "state", ("facility", admin.RelatedOnlyFieldListFilter), "source"]
    search_fields = ["name", "facility__code", "facility__name"]
    list_select_related = ["facility"]
    date_hierarchy = "created_at"
    actions = ["start_runs", "cancel_runs"]
    inlines = [CountRequestInline]
    readonly_fields = [
        "name", "facility", "kind", "state", "source", "start_date_local", "start_time_local", "due_date_local",
        "due_time_local", "starts_at", "due_at", "rotation_week", "created_by", "created_at", "started_at",
        "closed_at",
    ]  # fmt: skip
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_progress(super().get_queryset(request))

    @admin.display(ordering="lines_counted", description="counted")
    def lines_counted(self, run: CountRun) -> int:
        return run.lines_counted

    @admin.display(ordering="lines_in_scope", description="in scope")
    def lines_in_scope(self, run: CountRun) -> int:
        return run.lines_in_scope

    @admin.display(description="progress")
    def progress(self, run: CountRun) -> str:
        return f"{run.lines_counted / run.lines_in_scope:.0%}" if run.lines_in_scope else "–"

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Needed for the actions; the form itself stays read-only (every field is read-only).
        return request.user.has_perm("counts.change_countrun")

    def _command(self, request: HttpRequest, runs: QuerySet, command, verb: str) -> None:
        done, refused = 0, []
        for run in runs.order_by("pk"):
            try:
                command(run=run, actor=request.user)
                done += 1
            except TransitionNotAllowed:
                refused.append(f"{run.name} ({run.get_state_display().lower()})")
        if done:
            self.message_user(request, f"{verb} {done} run(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not {verb.lower()}: {', '.join(refused)}.", messages.WARNING)

    @admin.action(description="Start the selected runs", permissions=["change"])
    def start_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._command(request, queryset, count_run_start, "Started")

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._command(request, queryset, count_run_cancel, "Cancelled")


@admin.register(CountSession)
class CountSessionAdmin(OrganizationScopedAdminMixin, ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ["pk", "run", "user", "state", "device_id", "is_recount", "started_at", "submitted_at"]
    list_filter = ["state", "is_recount", ("run__facility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["run__name", "user__username", "device_id"]
    list_select_related = ["run", "user"]


@admin.register(CountEvent)
class CountEventAdmin(OrganizationScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every scan as it arrived: unmatched barcodes, extras and refused entries stay visible here."""

    list_display = [
        "counted_at", "run", "user", "location", "item", "barcode", "sku", "kind", "quantity", "mode", "status",
        "refusal_reason",
    ]  # fmt: skip
    list_filter = ["status", "mode", "kind", ("run__facility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=event_id", "barcode", "sku", "run__name", "user__username", "location__code"]
    list_select_related = ["run", "user", "location", "item"]
    date_hierarchy = "counted_at"


@admin.register(CountLine)
class CountLineAdmin(OrganizationScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["run", "location", "item", "counted_quantity", "book_quantity", "is_extra", "last_counted_at"]
    list_filter = ["is_extra", ("run__facility", admin.RelatedOnlyFieldListFilter), "run__kind"]
    search_fields = ["run__name", "item__sku", "item__name", "location__code"]
    list_select_related = ["run", "location", "item"]


@admin.register(FacilityCountSettings)
class FacilityCountSettingsAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    """Store preferences, set by a manager for each facility."""

    list_display = ["facility", "primary_identifier", "secondary_identifier", "require_scan", "barcode_format",
                    "blind_count", "coverage_days", "a_class_coverage_days"]  # fmt: skip
    list_select_related = ["facility"]
    fields = ["facility", *EDITABLE_FIELDS]

    def save_model(self, request: HttpRequest, obj: FacilityCountSettings, form, change: bool) -> None:
        saved = facility_count_settings_update(
            facility=obj.facility,
            actor=request.user,
            changes={name: getattr(obj, name) for name in EDITABLE_FIELDS},
        )
        obj.pk = saved.pk
