"""The reviewers' queue at /proposed-actions/: open proposals, largest |value| first, decided one at a time.

A server-rendered page for a tablet, without scripts: each card shows the line's evidence and
one form. The decision goes through `proposal_decide`, the same rules as the API and the
admin; the logged-in session is the UI, so the X-Edit-Token (an API rule) is not asked for.
The page runs a fixed number of queries whatever the queue's length: the evidence for a whole
page of cards is read in one query per kind (see `line_counters` and `earlier_variance_counts`,
which the admin uses too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.models import Organization
from accounts.roles import Role
from accounts.scoping import request_organization
from accounts.selectors import role_for_user
from approvals import selectors
from approvals.models import OPEN_PROPOSAL_STATES, Decision, ProposalState, ProposedAction
from approvals.services import DecisionConflict, DecisionInput, DecisionInvalid, DecisionRefused, proposal_decide
from counts.models import CountEvent
from reconciliation.models import DecisionReason, RootCause, Variance

LOGIN_URL = "/accounts/login/"
REVIEWER_ROLES = (Role.MANAGER, Role.FINANCE, Role.ADMIN)
QUEUE_PAGE_SIZE = 25

LineKey = tuple[int, int, int]  # run, location, item: the line a proposal is about


# --- Reads shared with the admin (approval evidence for many proposals at once) -------------


@dataclass
class LineCounters:
    """Who scanned one line, on which devices, how often and when last."""

    usernames: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    scans: int = 0
    last_counted_at: datetime | None = None


def line_key(proposal: ProposedAction) -> LineKey:
    return (proposal.run_id, proposal.location_id, proposal.item_id)


def line_counters(proposals: Iterable[ProposedAction]) -> dict[LineKey, LineCounters]:
    """The scans behind each proposal's line (run × location × item), in one query for all of them."""
    keys = {line_key(proposal) for proposal in proposals}
    if not keys:
        return {}
    lines = Q()
    for run_id, location_id, item_id in keys:
        lines |= Q(run_id=run_id, location_id=location_id, item_id=item_id)
    rows = (
        CountEvent.objects.filter(lines, run_id__in={key[0] for key in keys})
        .values("run_id", "location_id", "item_id", "user__username", "device_id")
        .annotate(scans=Count("pk"), last=Max("counted_at"))
        .order_by("user__username", "device_id")
    )
    found: dict[LineKey, LineCounters] = defaultdict(LineCounters)
    for row in rows:
        counters = found[(row["run_id"], row["location_id"], row["item_id"])]
        if row["user__username"] not in counters.usernames:
            counters.usernames.append(row["user__username"])
        if row["device_id"] and row["device_id"] not in counters.devices:
            counters.devices.append(row["device_id"])
        counters.scans += row["scans"]
        if counters.last_counted_at is None or row["last"] > counters.last_counted_at:
            counters.last_counted_at = row["last"]
    return dict(found)


def earlier_variance_counts(proposals: Iterable[ProposedAction]) -> dict[int, int]:
    """For each proposal (by pk), how many non-zero variances its item × location had before its own.

    A repeat offender is worth a closer look; one query for all the proposals given. Their
    `variance` must be loaded (the selector's `select_related` does it).
    """
    proposals = list(proposals)
    if not proposals:
        return {}
    pairs = Q()
    for proposal in proposals:
        pairs |= Q(location_id=proposal.location_id, item_id=proposal.item_id)
    rows = list(
        Variance.objects.filter(pairs, organization_id=proposals[0].organization_id)
        .exclude(variance_units=0)
        .order_by()
        .values_list("pk", "location_id", "item_id", "computed_at")
    )
    by_pair: dict[tuple[int, int], list[tuple[int, datetime]]] = defaultdict(list)
    for pk, location_id, item_id, computed_at in rows:
        by_pair[(location_id, item_id)].append((pk, computed_at))
    return {
        proposal.pk: sum(
            1
            for pk, computed_at in by_pair[(proposal.location_id, proposal.item_id)]
            if pk != proposal.variance_id and computed_at < proposal.variance.computed_at
        )
        for proposal in proposals
    }


# --- Display helpers ------------------------------------------------------------------------


def quantity_text(value: Decimal | None, *, signed: bool = False) -> str:
    """4.000 → "4", 2.500 → "2.5"; signed: "+2.5" / "−3"."""
    if value is None:
        return "–"
    text = format(abs(value).normalize(), "f")
    if value < 0:
        return f"−{text}"
    return f"+{text}" if signed and value > 0 else text


def money_text(value: Decimal | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"${abs(value):,.2f}"
    if value < 0:
        return f"−{text}"
    return f"+{text}" if signed and value > 0 else text


def percent_text(value: Decimal | None) -> str:
    """Blank when the book was zero (the percentage is undefined)."""
    if value is None:
        return "n/a (book 0)"
    return f"{'+' if value > 0 else ''}{value:.2f}%".replace("-", "−")


# --- The queue page -------------------------------------------------------------------------


class DecisionForm(forms.Form):
    """The shape of a posted decision; the rules (reason codes, root causes, notes) are the service's."""

    proposal = forms.IntegerField(min_value=1)
    decision = forms.ChoiceField(choices=Decision.choices)
    reason_code = forms.CharField(required=False, max_length=32)
    root_cause = forms.CharField(required=False, max_length=40)
    note = forms.CharField(required=False, max_length=2000)


@dataclass(frozen=True)
class Problem:
    """Why a posted decision did not happen, shown on the card it was made on (and at the top)."""

    title: str
    message: str
    proposal_id: int | None = None
    rule: str = ""
    field_name: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueueCard:
    proposal: ProposedAction
    counters: LineCounters
    earlier_variances: int
    problem: Problem | None

    @property
    def values(self) -> dict[str, Any]:
        """What to show in the form: what was posted when this card's decision failed."""
        return self.problem.values if self.problem else {}

    @property
    def book(self) -> str:
        return quantity_text(self.proposal.variance.book_at_count)

    @property
    def book_now(self) -> str:
        return quantity_text(self.proposal.variance.book_current)

    @property
    def counted(self) -> str:
        return quantity_text(self.proposal.variance.counted_quantity)

    @property
    def units(self) -> str:
        return quantity_text(self.proposal.variance.variance_units, signed=True)

    @property
    def percent(self) -> str:
        return percent_text(self.proposal.variance.variance_percent)

    @property
    def value(self) -> str:
        return money_text(self.proposal.variance.variance_value, signed=True)

    @property
    def delta(self) -> str:
        return quantity_text(self.proposal.delta, signed=True)

    @property
    def value_abs(self) -> str:
        return money_text(self.proposal.value_abs)


def _reviewer_required(request: HttpRequest) -> str:
    role = role_for_user(request.user)
    if role not in REVIEWER_ROLES:
        raise PermissionDenied("Only managers, finance and admins review proposed adjustments.")
    return role


def _decide(request: HttpRequest, organization: Organization | None) -> tuple[Problem, int] | None:
    """Apply the posted decision; None when it was recorded, else the problem and its status code."""
    form = DecisionForm(request.POST)
    if not form.is_valid():
        detail = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return Problem(title="Not understood", message=detail), 400
    values = form.cleaned_data
    proposal = get_object_or_404(
        ProposedAction.objects.for_organization(organization).select_related("item", "location"),
        pk=values["proposal"],
    )
    decision = DecisionInput(
        decision=values["decision"],
        reason_code=values["reason_code"],
        root_cause=values["root_cause"],
        note=values["note"],
    )
    label = f"{proposal.item.sku} @ {proposal.location.code}"
    try:
        decided = proposal_decide(proposal=proposal, actor=request.user, decision=decision, edit_token_ok=True)
    except DecisionRefused as error:
        problem = Problem(f"Refused: {label}", str(error), proposal.pk, rule=error.rule, values=values)
        return problem, 403
    except DecisionInvalid as error:
        problem = Problem(f"Incomplete: {label}", str(error), proposal.pk, field_name=error.field, values=values)
        return problem, 400
    except DecisionConflict as error:
        return Problem(f"Already decided: {label}", str(error), proposal.pk, rule="conflict"), 409
    if decided.state == ProposalState.AWAITING_FINANCE:
        outcome = "approved by you; now waiting for a finance signature"
    else:
        outcome = decided.get_state_display().lower()
    messages.success(request, f"{label}: {outcome}.")
    return None


def _queue_page(
    request: HttpRequest, organization: Organization | None, problem: Problem | None, status: int
) -> HttpResponse:
    queue = selectors.proposal_list(organization=organization).filter(state__in=OPEN_PROPOSAL_STATES)
    page = Paginator(queue, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    proposals = list(page.object_list)
    counters = line_counters(proposals)
    earlier = earlier_variance_counts(proposals)
    cards = [
        QueueCard(
            proposal=proposal,
            counters=counters.get(line_key(proposal)) or LineCounters(),
            earlier_variances=earlier.get(proposal.pk, 0),
            problem=problem if problem is not None and problem.proposal_id == proposal.pk else None,
        )
        for proposal in proposals
    ]
    context = {
        "page": page,
        "cards": cards,
        "problem": problem,
        "reasons": DecisionReason.choices,
        "root_causes": list(RootCause.objects.for_organization(organization).filter(active=True).order_by("code")),
        "organization": organization,
    }
    return render(request, "approvals/queue.html", context, status=status)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def proposal_queue(request: HttpRequest) -> HttpResponse:
    """`/proposed-actions/`: the open queue (pending and awaiting finance); POST decides one proposal.

    A recorded decision redirects back (the message says what happened); a refused, incomplete
    or conflicting one re-renders the queue with the rule and message on the card, answering
    403, 400 or 409 like the API.
    """
    _reviewer_required(request)
    organization = request_organization(request)
    if request.method == "POST":
        failed = _decide(request, organization)
        if failed is None:
            return redirect(request.get_full_path())
        problem, status = failed
        return _queue_page(request, organization, problem, status)
    return _queue_page(request, organization, None, 200)
