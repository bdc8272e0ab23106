"""The human-in-the-loop record: proposals, their signatures, and their way to the ERP."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned
from accounts.roles import Role
from counts.models import CountRun
from inventory.models import Facility, Item, Location
from reconciliation.models import MONEY, DecisionReason, RootCause, Variance


class ProposalState(models.TextChoices):
    PENDING = "pending", "Pending"
    AWAITING_FINANCE = "awaiting_finance", "Awaiting finance"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SUPERSEDED = "superseded", "Superseded by a recount"
    QUEUED = "queued", "Queued for the ERP"
    PUSHED = "pushed", "Pushed"
    CONFIRMED = "confirmed", "Confirmed by sync"
    FAILED = "failed", "Push failed"


OPEN_PROPOSAL_STATES = (ProposalState.PENDING, ProposalState.AWAITING_FINANCE)


class ProposedAction(ConcurrentTransitionMixin, OrganizationOwned):
    """A change Cyclecount wants to make in the ERP, waiting for (or carrying) its approval.

    Adjustments within the guardrails are born approved, decided by the guardrail version; all
    others wait for a manager and, above the finance limit, a finance signature as well.
    `external_id` is stable so a push retried after a crash is recognised by the ERP.
    """

    action_type = models.CharField(max_length=32, default="inventory_adjustment")
    risk = models.PositiveSmallIntegerField(default=3)
    state = FSMField(default=ProposalState.PENDING, choices=ProposalState.choices, protected=True)
    variance = models.OneToOneField(Variance, on_delete=models.PROTECT, related_name="proposal")
    run = models.ForeignKey(CountRun, on_delete=models.PROTECT, related_name="proposals")
    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    delta = models.DecimalField(max_digits=14, decimal_places=3)
    value_abs = models.DecimalField(**MONEY, help_text="|value| of the adjustment, for sorting and tiers")
    needs_finance = models.BooleanField(default=False)
    auto_approved = models.BooleanField(default=False, help_text="Approved by the guardrail, not a person")
    payload = models.JSONField()
    external_id = models.CharField(
        max_length=64, unique=True, help_text="Stable id the ERP sees: CC-<organization>-V<variance>"
    )
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-value_abs", "pk"]
        indexes = [
            models.Index(fields=["organization", "state", "value_abs"]),
            models.Index(fields=["run", "state"]),
        ]

    def __str__(self) -> str:
        return f"proposal {self.pk}: {self.delta:+} {self.payload.get('item', '')} @ {self.payload.get('location', '')}"

    @transition(field=state, source=ProposalState.PENDING, target=ProposalState.APPROVED)
    def approve(self) -> None:
        pass

    @transition(field=state, source=ProposalState.PENDING, target=ProposalState.AWAITING_FINANCE)
    def escalate_to_finance(self) -> None:
        pass

    @transition(field=state, source=ProposalState.AWAITING_FINANCE, target=ProposalState.APPROVED)
    def approve_by_finance(self) -> None:
        pass

    @transition(
        field=state, source=[ProposalState.PENDING, ProposalState.AWAITING_FINANCE], target=ProposalState.REJECTED
    )
    def reject(self) -> None:
        pass

    @transition(
        field=state, source=[ProposalState.PENDING, ProposalState.AWAITING_FINANCE], target=ProposalState.SUPERSEDED
    )
    def supersede(self) -> None:
        pass

    @transition(field=state, source=[ProposalState.APPROVED, ProposalState.FAILED], target=ProposalState.QUEUED)
    def queue(self) -> None:
        pass

    @transition(field=state, source=ProposalState.QUEUED, target=ProposalState.PUSHED)
    def mark_pushed(self) -> None:
        pass

    @transition(field=state, source=ProposalState.PUSHED, target=ProposalState.CONFIRMED)
    def confirm(self) -> None:
        pass

    @transition(field=state, source=[ProposalState.QUEUED, ProposalState.PUSHED], target=ProposalState.FAILED)
    def fail(self) -> None:
        pass


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Approval(OrganizationOwned):
    """One signature on a proposal: who, in which role, when, and why."""

    proposal = models.ForeignKey(ProposedAction, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=16, choices=Role.choices)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason_code = models.CharField(max_length=32, choices=DecisionReason.choices)
    root_cause = models.ForeignKey(RootCause, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["proposal", "approver"], name="one_signature_per_person_per_proposal"),
        ]
        indexes = [
            # The reports' "first signature naming a root cause" of each proposal, read from the
            # index alone (PostgreSQL; other databases ignore INCLUDE).
            models.Index(
                fields=["proposal", "id"],
                include=["root_cause"],
                condition=models.Q(root_cause__isnull=False),
                name="approval_first_root_cause",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.approver} ({self.role})"
