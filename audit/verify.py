"""The audit completeness check: every posted adjustment carries its whole chain.

A *posted adjustment* is a proposal whose outbox row the system of record accepted
(`PendingPush.state == accepted`): the mirror took its delta and the drain wrote its ledger event
and reason-log row in the same transaction (adapters.services.drain._record_accepted). For each,
the check proves, right to left along audit.trace's chain:

- exactly one `inventory.adjusted` event and exactly one `inventory_adjustment` reason-log row;
- who decided: a person's proposal has an approving manager (or admin) signature with a reason
  code and, when it needed finance (as recorded on the proposal when it was created, or as the
  guardrail version it was valued under says), an approving finance signature with a reason code;
  a guardrail's proposal names the guardrail version it was routed under, that version is in
  the guardrail's history, and its variance was routed `auto`;
- its variance, agreeing with the adjustment (run, item, location, units);
- the variance's count line, for the same run, item and location;
- at least one counting scan (a matched or extra CountEvent) behind that line.

It also flags a proposal that says it was pushed while no accepted push backs it.

Set-based: one query per check, each an anti-join (NOT EXISTS) or a GROUP BY returning only the
adjustments that fail it, so the cost does not grow with one query per adjustment. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import CharField, Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from accounts.models import Organization
from adapters.models import PendingPush, PushState
from approvals.models import Approval, Decision, ProposalState, ProposedAction
from approvals.services import FINANCE_SIGNERS, FIRST_SIGNERS
from audit.models import AuditLog, Event, EventType
from counts.models import CountEvent, CountLine, EventStatus
from reconciliation.models import Guardrail, Routing, Variance

ADJUSTMENT_TAG = "inventory_adjustment"
_PROPOSAL_LABEL = ProposedAction._meta.label_lower
_POSTED_STATES = (ProposalState.PUSHED, ProposalState.CONFIRMED)
_COUNTING_SCANS = (EventStatus.MATCHED, EventStatus.EXTRA)
# What each gap row needs to name its adjustment.
_NAMING = ("pk", "external_id", "organization__slug")


@dataclass(frozen=True)
class Gap:
    """One missing or broken link of one posted adjustment."""

    organization: str
    proposal_id: int
    external_id: str
    link: str  # push | event | audit | approval | guardrail | variance | count_line | scans
    detail: str

    def __str__(self) -> str:
        return f"{self.organization} {self.external_id} (proposal {self.proposal_id}): {self.link} — {self.detail}"


@dataclass
class Verification:
    adjustments: int
    gaps: list[Gap]

    @property
    def ok(self) -> bool:
        return not self.gaps


def audit_verify(*, organization: Organization | None = None) -> Verification:
    """Every gap in the chains of the posted adjustments (of `organization`, or of all).

    Guarantees: a fixed number of queries whatever the number of adjustments; gaps ordered by
    organization, proposal and link; an empty list means every posted adjustment was proven.
    """
    proposals = ProposedAction.objects.all()
    if organization is not None:
        proposals = proposals.filter(organization=organization)
    posted = proposals.filter(push__state=PushState.ACCEPTED)
    gaps = [
        *_unbacked_pushed(proposals),
        *_event_gaps(posted),
        *_audit_gaps(posted),
        *_approval_gaps(posted),
        *_guardrail_gaps(posted),
        *_variance_gaps(posted),
        *_line_gaps(posted),
        *_scan_gaps(posted),
    ]
    gaps.sort(key=lambda gap: (gap.organization, gap.proposal_id, gap.link, gap.detail))
    return Verification(adjustments=posted.count(), gaps=gaps)


def _gap(row: dict[str, Any], link: str, detail: str) -> Gap:
    return Gap(
        organization=row["organization__slug"],
        proposal_id=row["pk"],
        external_id=row["external_id"],
        link=link,
        detail=detail,
    )


def _proposal_key() -> Cast:
    return Cast(OuterRef("pk"), output_field=CharField())


def _unbacked_pushed(proposals: QuerySet[ProposedAction]) -> list[Gap]:
    accepted = PendingPush.objects.filter(proposal=OuterRef("pk"), state=PushState.ACCEPTED)
    rows = proposals.filter(state__in=_POSTED_STATES).filter(~Exists(accepted)).values(*_NAMING, "state")
    return [_gap(row, "push", f"the proposal is {row['state']} but no accepted push backs it") for row in rows]


def _adjusted_events() -> QuerySet[Event]:
    # Cast on both sides: PostgreSQL's ->> gives text, SQLite's json_extract a number.
    return Event.objects.filter(type=EventType.INVENTORY_ADJUSTED).annotate(
        proposal_key=Cast(KT("payload__proposal"), output_field=CharField())
    )


def _event_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    named = _adjusted_events().filter(organization_id=OuterRef("organization_id"), proposal_key=_proposal_key())
    missing = posted.filter(~Exists(named)).values(*_NAMING)
    gaps = [_gap(row, "event", "no inventory.adjusted event") for row in missing]
    repeated = _repeated(
        _adjusted_events().values("organization_id", "proposal_key"), key="proposal_key", posted=posted
    )
    gaps += [_gap(row, "event", f"{count} inventory.adjusted events (exactly one expected)") for row, count in repeated]
    return gaps


def _adjustment_rows() -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(tag=ADJUSTMENT_TAG, object_type=_PROPOSAL_LABEL)


def _audit_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    named = _adjustment_rows().filter(organization_id=OuterRef("organization_id"), object_id=_proposal_key())
    missing = posted.filter(~Exists(named)).values(*_NAMING)
    gaps = [_gap(row, "audit", f"no {ADJUSTMENT_TAG} reason-log row") for row in missing]
    repeated = _repeated(_adjustment_rows().values("organization_id", "object_id"), key="object_id", posted=posted)
    gaps += [
        _gap(row, "audit", f"{count} {ADJUSTMENT_TAG} reason-log rows (exactly one expected)")
        for row, count in repeated
    ]
    return gaps


def _repeated(grouped: QuerySet, *, key: str, posted: QuerySet[ProposedAction]) -> list[tuple[dict[str, Any], int]]:
    """Posted adjustments that `grouped` (values of organization_id and `key`) names more than once."""
    counts = {
        (row["organization_id"], int(row[key])): row["n"]
        for row in grouped.annotate(n=Count("pk")).filter(n__gt=1)
        if str(row[key]).isdigit()
    }
    if not counts:
        return []
    rows = posted.filter(pk__in=[pk for _, pk in counts]).values(*_NAMING, "organization_id")
    return [
        (row, counts[(row["organization_id"], row["pk"])])
        for row in rows
        if (row["organization_id"], row["pk"]) in counts
    ]


def _signature(roles: tuple[str, ...]) -> Exists:
    return Exists(
        Approval.objects.filter(proposal=OuterRef("pk"), decision=Decision.APPROVE, role__in=roles).exclude(
            reason_code=""
        )
    )


def _approval_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    # The finance limit of the guardrail version the variance was valued under, from its history:
    # a proposal above it needed finance even if the flag on the proposal says otherwise.
    above_limit = Guardrail.history.filter(
        id=OuterRef("variance__guardrail_id"),
        version=OuterRef("variance__guardrail_version"),
        finance_min_value__lt=OuterRef("value_abs"),
    )
    rows = (
        posted.filter(auto_approved=False)
        .annotate(
            has_first=_signature(FIRST_SIGNERS),
            has_finance=_signature(FINANCE_SIGNERS),
            finance_by_guardrail=Exists(above_limit),
        )
        .filter(Q(has_first=False) | (Q(has_finance=False) & (Q(needs_finance=True) | Q(finance_by_guardrail=True))))
        .values(*_NAMING, "has_first", "has_finance", "needs_finance")
    )
    gaps = []
    for row in rows:
        if not row["has_first"]:
            gaps.append(_gap(row, "approval", "no approving manager signature with a reason code"))
        if not row["has_finance"]:
            why = (
                "the proposal needed finance"
                if row["needs_finance"]
                else "its value is above the guardrail's finance limit"
            )
            gaps.append(_gap(row, "approval", f"no approving finance signature with a reason code ({why})"))
    return gaps


def _guardrail_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    version_known = Guardrail.history.filter(
        id=OuterRef("variance__guardrail_id"), version=OuterRef("variance__guardrail_version")
    )
    rows = (
        posted.filter(auto_approved=True)
        .annotate(
            recorded=Cast(KT("payload__guardrail_version"), output_field=CharField()),
            valued_under=Cast("variance__guardrail_version", output_field=CharField()),
            version_known=Exists(version_known),
        )
        .filter(
            Q(recorded__isnull=True)
            | ~Q(recorded=F("valued_under"))
            | Q(version_known=False)
            | ~Q(variance__routing=Routing.AUTO)
        )
        .values(*_NAMING, "recorded", "valued_under", "version_known", "variance__routing")
    )
    gaps = []
    for row in rows:
        if row["recorded"] is None:
            gaps.append(_gap(row, "guardrail", "approved by a guardrail but no guardrail version recorded"))
        elif row["recorded"] != row["valued_under"]:
            gaps.append(
                _gap(row, "guardrail", f"records guardrail v{row['recorded']}, its variance v{row['valued_under']}")
            )
        if not row["version_known"]:
            gaps.append(_gap(row, "guardrail", f"guardrail v{row['valued_under']} is not in the guardrail's history"))
        if row["variance__routing"] != Routing.AUTO:
            gaps.append(
                _gap(
                    row, "guardrail", f"approved by a guardrail but its variance was routed {row['variance__routing']}"
                )
            )
    return gaps


def _variance_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    agreeing = Variance.objects.filter(
        pk=OuterRef("variance_id"),
        run_id=OuterRef("run_id"),
        item_id=OuterRef("item_id"),
        location_id=OuterRef("location_id"),
        adjustment_units=OuterRef("delta"),
    )
    rows = (
        posted.filter(~Exists(agreeing))
        .annotate(exists=Exists(Variance.objects.filter(pk=OuterRef("variance_id"))))
        .values(*_NAMING, "exists", "variance_id")
    )
    return [
        _gap(
            row,
            "variance",
            f"variance {row['variance_id']} "
            + ("does not agree with the adjustment (run, item, location or units)" if row["exists"] else "is missing"),
        )
        for row in rows
    ]


def _line_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    # Reached through the variance: an adjustment whose variance is missing is reported there.
    line = CountLine.objects.filter(
        pk=OuterRef("variance__line_id"),
        run_id=OuterRef("run_id"),
        item_id=OuterRef("item_id"),
        location_id=OuterRef("location_id"),
    )
    rows = posted.filter(~Exists(line)).values(*_NAMING, "variance__line_id")
    return [
        _gap(row, "count_line", f"count line {row['variance__line_id']} is missing or not this item's") for row in rows
    ]


def _scan_gaps(posted: QuerySet[ProposedAction]) -> list[Gap]:
    scans = CountEvent.objects.filter(
        run_id=OuterRef("run_id"),
        location_id=OuterRef("location_id"),
        item_id=OuterRef("item_id"),
        status__in=_COUNTING_SCANS,
    )
    rows = posted.filter(~Exists(scans)).values(*_NAMING)
    return [_gap(row, "scans", "no matched or extra scan behind the count line") for row in rows]
