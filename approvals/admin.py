"""The approval surface in the admin, the managers' home: proposals by |value|, their evidence, bulk decisions.

Proposals are never edited here: their page is view-only and their state moves only through
`proposal_decide` (the bulk actions call it one proposal at a time via `proposals_decide_bulk`).
A decision made here is made in a logged-in session, which is the UI: the personal edit token
is an API rule. The list reads who counted each line for the whole page in one query.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from approvals.models import Approval, Decision, ProposalState, ProposedAction
from approvals.services import DecisionInput, proposals_decide_bulk, value_band
from approvals.views import LineCounters, line_counters, line_key, money_text, percent_text, quantity_text
from counts.models import CountEvent
from reconciliation.models import DecisionReason, RootCause, Variance

# --- Filters ---------------------------------------------------------------------------------


class ValueBandFilter(admin.SimpleListFilter):
    """|value| bands; the labels come from `value_band`, so the filter and the bands agree."""

    title = "value band"
    parameter_name = "value_band"
    BANDS = {
        "upto100": (Decimal("100"), Q(value_abs__lte=100)),
        "100to1000": (Decimal("1000"), Q(value_abs__gt=100, value_abs__lte=1000)),
        "over1000": (Decimal("1000.01"), Q(value_abs__gt=1000)),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, value_band(example)) for key, (example, _) in self.BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        band = self.BANDS.get(self.value() or "")
        return queryset.filter(band[1]) if band else queryset


class AgeFilter(admin.SimpleListFilter):
    """How long a proposal has waited: created today (server time zone), in the last 7 days, or before."""

    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("today", "Created today"), ("week", "Last 7 days"), ("older", "Older than 7 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        week_ago = now - timedelta(days=7)
        if self.value() == "today":
            start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            return queryset.filter(created_at__gte=start_of_day)
        if self.value() == "week":
            return queryset.filter(created_at__gte=week_ago)
        if self.value() == "older":
            return queryset.filter(created_at__lt=week_ago)
        return queryset


class ZoneFilter(admin.SimpleListFilter):
    """Zone codes of the proposals the user can see.

    Not Django's AllValuesFieldListFilter: across a relation it lists every zone in the
    database, other organizations' included.
    """

    title = "zone"
    parameter_name = "zone"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        codes = (
            model_admin.get_queryset(request)
            .order_by("location__zone__code")
            .values_list("location__zone__code", flat=True)
            .distinct()
        )
        return [(code, code) for code in codes]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(location__zone__code=self.value()) if self.value() else queryset


class RootCauseFilter(admin.RelatedOnlyFieldListFilter):
    """Root causes given in the signatures of the proposals the user can see."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "root cause"


# --- The list --------------------------------------------------------------------------------


class ProposalChangeList(ChangeList):
    """Attaches who counted each row's line, read for the whole page in one query."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        counters = line_counters(self.result_list)
        for proposal in self.result_list:
            proposal.line_counters = counters.get(line_key(proposal)) or LineCounters()


class BulkDecisionForm(forms.Form):
    """One decision for every selected proposal; the service still judges each one."""

    reason_code = forms.ChoiceField(choices=DecisionReason.choices)
    root_cause = forms.ChoiceField(required=False)
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(self, *args: Any, decision: str, root_causes: list[RootCause], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root_causes = {root_cause.code: root_cause for root_cause in root_causes}
        field = self.fields["root_cause"]
        field.choices = [("", "—")] + [
            (code, f"{rc.label} (note required)" if rc.requires_note else rc.label)
            for code, rc in self.root_causes.items()
        ]
        # The service requires a root cause to approve; asking here saves a page of identical failures.
        field.required = decision == Decision.APPROVE

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        root_cause = self.root_causes.get(cleaned.get("root_cause") or "")
        if root_cause is not None and root_cause.requires_note and not (cleaned.get("note") or "").strip():
            self.add_error("note", f"a note is required with root cause {root_cause.code!r}")
        return cleaned


ADJUSTMENT_FIELDS = [
    "delta_column", "value_abs_column", "needs_finance", "auto_approved", "external_id", "created_at", "decided_at",
]  # fmt: skip


@admin.register(ProposedAction)
class ProposedActionAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "item_column", "location_column", "facility_column", "book", "counted", "units", "percent", "value",
        "value_abs_column", "counted_by", "state",
    ]  # fmt: skip
    list_display_links = ["item_column"]
    list_filter = [
        "state",
        ("facility", admin.RelatedOnlyFieldListFilter),
        ZoneFilter,
        ValueBandFilter,
        ("approvals__root_cause", RootCauseFilter),
        AgeFilter,
    ]
    list_select_related = ["facility", "item", "location", "variance"]
    search_fields = ["item__sku", "item__name", "location__code", "=external_id"]
    ordering = ["-value_abs", "pk"]
    actions = ["approve_selected", "reject_selected"]
    fieldsets = [
        ("Line", {"fields": ["state", "facility", "run", "location", "item", "book", "counted", "counted_by"]}),
        ("Variance", {"fields": ["units", "percent", "value", "book_now"]}),
        ("Adjustment", {"fields": ADJUSTMENT_FIELDS}),
    ]
    readonly_fields = [
        "state", "facility", "run", "location", "item", "book", "counted", "counted_by", "units", "percent", "value",
        "book_now", *ADJUSTMENT_FIELDS,
    ]  # fmt: skip

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ProposalChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The change permission unlocks the bulk actions on the list. A proposal's own page is
        # view-only: its state moves only through the decision service.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    # --- columns ---

    @admin.display(description="item", ordering="item__sku")
    def item_column(self, proposal: ProposedAction) -> str:
        return format_html("{}<br><small>{}</small>", proposal.item.sku, proposal.item.name)

    @admin.display(description="location", ordering="location__code")
    def location_column(self, proposal: ProposedAction) -> str:
        return proposal.location.code

    @admin.display(description="facility", ordering="facility__code")
    def facility_column(self, proposal: ProposedAction) -> str:
        return proposal.facility.code

    @admin.display(description="book", ordering="variance__book_at_count")
    def book(self, proposal: ProposedAction) -> str:
        return quantity_text(proposal.variance.book_at_count)

    @admin.display(description="book now")
    def book_now(self, proposal: ProposedAction) -> str:
        moved = " (moved since the count)" if proposal.variance.book_moved else ""
        return quantity_text(proposal.variance.book_current) + moved

    @admin.display(description="counted", ordering="variance__counted_quantity")
    def counted(self, proposal: ProposedAction) -> str:
        return quantity_text(proposal.variance.counted_quantity)

    @admin.display(description="variance units", ordering="variance__variance_units")
    def units(self, proposal: ProposedAction) -> str:
        return quantity_text(proposal.variance.variance_units, signed=True)

    @admin.display(description="variance %", ordering="variance__variance_percent")
    def percent(self, proposal: ProposedAction) -> str:
        return percent_text(proposal.variance.variance_percent)

    @admin.display(description="variance value", ordering="variance__variance_value")
    def value(self, proposal: ProposedAction) -> str:
        return money_text(proposal.variance.variance_value, signed=True)

    @admin.display(description="delta (units posted)")
    def delta_column(self, proposal: ProposedAction) -> str:
        return quantity_text(proposal.delta, signed=True)

    @admin.display(description="|value|", ordering="value_abs")
    def value_abs_column(self, proposal: ProposedAction) -> str:
        return money_text(proposal.value_abs)

    @admin.display(description="who counted")
    def counted_by(self, proposal: ProposedAction) -> str:
        counters = getattr(proposal, "line_counters", None)
        if counters is None:  # the detail page: one proposal, one query
            counters = line_counters([proposal]).get(line_key(proposal)) or LineCounters()
        return ", ".join(counters.usernames) or "–"

    # --- the detail page: the evidence ---

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ProposedAction | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self._evidence(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _evidence(self, proposal: ProposedAction) -> dict[str, Any]:
        own = proposal.variance
        return {
            "facility_time_zone": proposal.facility.time_zone,
            "scans": CountEvent.objects.filter(
                run_id=proposal.run_id, location_id=proposal.location_id, item_id=proposal.item_id
            )
            .select_related("user", "session")
            .order_by("counted_at", "pk"),
            # Earlier variances of the same item × location: other runs, and this run's counts
            # before a recount replaced them; newest first.
            "earlier_variances": Variance.objects.filter(
                organization_id=proposal.organization_id,
                location_id=proposal.location_id,
                item_id=proposal.item_id,
                computed_at__lte=own.computed_at,
            )
            .exclude(pk=own.pk)
            .select_related("run", "proposal")
            .order_by("-computed_at", "-pk")[:50],
            "signatures": proposal.approvals.select_related("approver", "root_cause").order_by("created_at", "pk"),
            "history_url": reverse("admin:approvals_proposedaction_history", args=[proposal.pk]),
        }

    # --- bulk decisions ---

    @admin.action(description="Approve selected", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide_selected(request, queryset, Decision.APPROVE)

    @admin.action(description="Reject selected", permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide_selected(request, queryset, Decision.REJECT)

    def _decide_selected(self, request: HttpRequest, queryset: QuerySet, decision: str) -> HttpResponse | None:
        """First the form (reason, root cause, note) for the selection, then one decision per proposal."""
        root_causes = list(
            RootCause.objects.for_organization(request_organization(request)).filter(active=True).order_by("code")
        )
        posted = request.POST if "apply" in request.POST else None
        form = BulkDecisionForm(posted, decision=decision, root_causes=root_causes)
        proposals = list(queryset.select_related("item", "location").order_by("-value_abs", "pk"))
        if form.is_bound and form.is_valid():
            self._report(request, proposals, decision, form.cleaned_data)
            return None
        verb = "Approve" if decision == Decision.APPROVE else "Reject"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} {len(proposals)} proposed adjustment(s)",
            "opts": self.model._meta,
            "form": form,
            "proposals": proposals,
            "decision": decision,
            "verb": verb,
            "action_name": f"{decision}_selected",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/approvals/proposedaction/decide.html", context)

    def _report(self, request: HttpRequest, proposals: list[ProposedAction], decision: str, values: dict) -> None:
        outcome = proposals_decide_bulk(
            proposal_ids=[proposal.pk for proposal in proposals],
            actor=request.user,
            decision=DecisionInput(
                decision=decision,
                reason_code=values["reason_code"],
                root_cause=values["root_cause"] or "",
                note=values["note"] or "",
            ),
        )
        if outcome.decided:
            states = list(ProposedAction.objects.filter(pk__in=outcome.decided).values_list("state", flat=True))
            waiting = states.count(ProposalState.AWAITING_FINANCE)
            done = "Rejected" if decision == Decision.REJECT else "Approved"
            text = f"{done} {len(outcome.decided)} proposal(s)."
            if waiting:
                text += f" Now awaiting a finance signature: {waiting}."
            self.message_user(request, text, messages.SUCCESS)
        labels = {proposal.pk: f"{proposal.item.sku} @ {proposal.location.code}" for proposal in proposals}
        for pk, reason in outcome.failed.items():
            self.message_user(request, f"Not decided: proposal {pk} ({labels.get(pk, '?')}): {reason}", messages.ERROR)


@admin.register(Approval)
class ApprovalAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """Every signature, read-only: who, in which role, what, why and when."""

    list_display = ["created_at", "proposal", "approver", "role", "decision", "reason_code", "root_cause"]
    list_filter = ["role", "decision", "reason_code", ("root_cause", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["proposal", "approver", "root_cause"]
    search_fields = ["approver__username", "proposal__item__sku", "proposal__location__code"]
    ordering = ["-created_at", "-pk"]
    readonly_fields = ["proposal", "approver", "role", "decision", "reason_code", "root_cause", "note", "created_at"]
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
