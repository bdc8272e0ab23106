"""Deciding proposals: tiered sign-off, separation of duties, and the outbox row on approval."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.roles import Role
from accounts.selectors import membership_for_user
from adapters.interface import push_requested
from adapters.models import PendingPush
from approvals.models import Approval, Decision, ProposalState, ProposedAction
from audit.services import audit_log_write, event_emit
from counts.models import CountEvent
from reconciliation.models import DecisionReason, RootCause

FIRST_SIGNERS = (Role.MANAGER, Role.ADMIN)
FINANCE_SIGNERS = (Role.FINANCE,)


class DecisionRefused(Exception):
    """A rule forbids this person's decision; `rule` names it (for the API and the audit row)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class DecisionInvalid(Exception):
    """The decision itself is incomplete (reason code, root cause, note); `field` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DecisionConflict(Exception):
    """The proposal's state no longer allows this decision (someone else decided first)."""


@dataclass(frozen=True)
class DecisionInput:
    decision: str
    reason_code: str
    root_cause: str = ""
    note: str = ""


def _refuse(proposal: ProposedAction, actor: AbstractBaseUser, rule: str, message: str) -> DecisionRefused:
    # The refusal is recorded outside the caller's transaction on purpose: the attempt must be
    # visible even though nothing else happens.
    with transaction.atomic():
        audit_log_write(
            organization_id=proposal.organization_id,
            tag="approval_refused",
            actor=actor,
            subject=proposal,
            facility_id=proposal.facility_id,
            reason=message,
            data={"rule": rule},
        )
    return DecisionRefused(rule, message)


def _validated(proposal: ProposedAction, decision: DecisionInput) -> RootCause | None:
    if decision.decision not in Decision.values:
        raise DecisionInvalid("decision", 'must be "approve" or "reject"')
    if decision.reason_code not in DecisionReason.values:
        allowed = ", ".join(DecisionReason.values)
        raise DecisionInvalid("reason_code", f"required: one of {allowed}")
    if not decision.root_cause:
        if decision.decision == Decision.APPROVE:
            raise DecisionInvalid("root_cause", "required: the organization's root cause code")
        return None
    root_cause = RootCause.objects.filter(
        organization_id=proposal.organization_id, code=decision.root_cause, active=True
    ).first()
    if root_cause is None:
        raise DecisionInvalid("root_cause", f"unknown root cause {decision.root_cause!r}")
    if root_cause.requires_note and not decision.note.strip():
        raise DecisionInvalid("note", f"a note is required with root cause {root_cause.code!r}")
    return root_cause


def proposal_decide(
    *, proposal: ProposedAction, actor: AbstractBaseUser, decision: DecisionInput, edit_token_ok: bool = True
) -> ProposedAction:
    """Record one signature on a proposal and move it on.

    Rules, enforced here whatever the caller: associates and planners never decide; nobody
    decides on a line they counted; a manager signs first, and above the finance limit a
    finance user — another person — signs second; a proposal decided by someone else first
    is a conflict. Approval writes the outbox row in the same transaction. Refusals are
    audited.
    """
    membership = membership_for_user(actor)
    role = membership.role if membership else None
    if not edit_token_ok:
        raise _refuse(proposal, actor, "edit_token", "missing or wrong X-Edit-Token")
    if role not in (*FIRST_SIGNERS, *FINANCE_SIGNERS):
        raise _refuse(proposal, actor, "role", f"a {role or 'non-member'} cannot approve or reject adjustments")
    root_cause = _validated(proposal, decision)

    refusal: tuple[str, str] | None = None
    with transaction.atomic():
        proposal = ProposedAction.objects.select_for_update().get(pk=proposal.pk)
        if proposal.state not in (ProposalState.PENDING, ProposalState.AWAITING_FINANCE):
            raise DecisionConflict(f"proposal {proposal.pk} is {proposal.get_state_display().lower()}")
        refusal = _signer_refusal(proposal, actor, role)
        if refusal is None:
            _sign(proposal, actor, role, decision, root_cause)
    if refusal is not None:
        raise _refuse(proposal, actor, *refusal)
    return proposal


def _signer_refusal(proposal: ProposedAction, actor: AbstractBaseUser, role: str) -> tuple[str, str] | None:
    """The separation-of-duties rule this signature would break, if any."""
    if proposal.state == ProposalState.AWAITING_FINANCE and role not in FINANCE_SIGNERS:
        return "tier", "above the finance limit a finance user must give the second signature"
    if proposal.state == ProposalState.PENDING and role not in FIRST_SIGNERS:
        return "tier", "a manager gives the first signature"
    if Approval.objects.filter(proposal=proposal, approver=actor).exists():
        return "same_person", "the same person cannot give both signatures"
    counted_it = CountEvent.objects.filter(
        run_id=proposal.run_id, location_id=proposal.location_id, item_id=proposal.item_id, user=actor
    ).exists()
    if counted_it:
        return "counted_line", "nobody approves a variance on a line they counted"
    return None


def _sign(
    proposal: ProposedAction,
    actor: AbstractBaseUser,
    role: str,
    decision: DecisionInput,
    root_cause: RootCause | None,
) -> None:
    """The signature, the state change, the outbox row on approval and the reason-log row."""
    Approval.objects.create(
        organization_id=proposal.organization_id,
        proposal=proposal,
        approver=actor,
        role=role,
        decision=decision.decision,
        reason_code=decision.reason_code,
        root_cause=root_cause,
        note=decision.note,
    )
    now = timezone.now()
    if decision.decision == Decision.REJECT:
        proposal.reject()
    elif proposal.state == ProposalState.AWAITING_FINANCE:
        proposal.approve_by_finance()
    elif proposal.needs_finance:
        proposal.escalate_to_finance()
    else:
        proposal.approve()
    if proposal.state != ProposalState.AWAITING_FINANCE:
        proposal.decided_at = now
    proposal._history_user = actor
    proposal._change_reason = f"{decision.decision} by {role}: {decision.reason_code}"
    proposal.save()
    if proposal.state == ProposalState.APPROVED:
        PendingPush.objects.create(
            organization_id=proposal.organization_id,
            proposal=proposal,
            external_id=proposal.external_id,
            payload=proposal.payload,
            created_at=now,
        )
        push_requested(organization_id=proposal.organization_id)
    event_emit(
        organization_id=proposal.organization_id,
        type="proposal.decided",
        payload={
            "proposal": proposal.pk,
            "external_id": proposal.external_id,
            "decision": decision.decision,
            "state": proposal.state,
            "decided_by": actor.get_username(),
            "role": role,
            "reason_code": decision.reason_code,
            "root_cause": root_cause.code if root_cause else "",
            "note": decision.note,
            "item": proposal.payload.get("item", ""),
            "location": proposal.payload.get("location", ""),
            "delta": proposal.delta,
            "value": proposal.value_abs,
        },
    )
    audit_log_write(
        organization_id=proposal.organization_id,
        tag=f"proposal_{proposal.state}",
        actor=actor,
        subject=proposal,
        facility_id=proposal.facility_id,
        reason=f"{decision.reason_code}: {decision.note}".strip(": "),
        delta=proposal.delta if proposal.state == ProposalState.APPROVED else None,
        approved_by=", ".join(
            Approval.objects.filter(proposal=proposal, decision=Decision.APPROVE).values_list(
                "approver__username", flat=True
            )
        ),
        data={"role": role, "root_cause": root_cause.code if root_cause else "", "value": str(proposal.value_abs)},
    )


@dataclass
class BulkOutcome:
    decided: list[int]
    failed: dict[int, str]


def proposals_decide_bulk(*, proposal_ids: list[int], actor: AbstractBaseUser, decision: DecisionInput) -> BulkOutcome:
    """Apply one decision to many proposals, one by one (each in its own transaction), reporting
    which failed and why; a failure never undoes the others."""
    outcome = BulkOutcome(decided=[], failed={})
    for proposal in ProposedAction.objects.filter(pk__in=proposal_ids).order_by("pk"):
        try:
            proposal_decide(proposal=proposal, actor=actor, decision=decision)
        except (DecisionRefused, DecisionInvalid, DecisionConflict) as error:
            outcome.failed[proposal.pk] = str(error)
        else:
            outcome.decided.append(proposal.pk)
    return outcome


def value_band(value: Decimal) -> str:
    """The band a proposal's |value| falls in, for filters."""
    if value <= 100:
        return "≤ $100"
    if value <= 1000:
        return "$100–1,000"
    return "> $1,000"
