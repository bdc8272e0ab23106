"""The variance engine and its routing, at the guardrail boundaries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.models import PendingPush
from approvals.models import ProposalState, ProposedAction
from counts.models import RunState
from counts.services.sessions import count_session_start
from reconciliation.models import Guardrail, MovedBookPolicy, Routing, Variance
from reconciliation.services import RunNotReconcilable, guardrail_for, run_reconcile


def _routing_of(line) -> str:
    return Variance.objects.get(line=line, superseded_at__isnull=True).routing


@pytest.mark.parametrize(
    ("book", "counted", "cost", "routing"),
    [
        ("100", "102", "1.00", Routing.AUTO),  # exactly 2.00%, $2.00
        ("100", "98", "1.00", Routing.AUTO),  # exactly −2.00%
        ("10000", "10201", "0.01", Routing.PROPOSAL),  # 2.01%: one hundredth of a percent above
        ("1000", "1010", "10.00", Routing.AUTO),  # 1%, exactly $100.00
        ("1000", "1010", "10.001", Routing.PROPOSAL),  # 1%, $100.01: one cent above
        ("50", "50", "99.00", Routing.NONE),  # no difference: recorded as an accuracy hit
        ("0", "3", "1.00", Routing.PROPOSAL),  # book zero: no percent, always a person
        ("5", "0", "1.00", Routing.PROPOSAL),  # −100%
    ],
)
def test_guardrail_boundaries(lines, manager, book, counted, cost, routing):
    line = lines.line(book=book, counted=counted, cost=cost)

    run_reconcile(run=lines.run, actor=manager)

    assert _routing_of(line) == routing


def test_variance_figures_are_decimal_and_rounded_to_cents(lines, manager):
    line = lines.line(book="3", counted="1", cost="33.3333")

    run_reconcile(run=lines.run, actor=manager)

    variance = Variance.objects.get(line=line)
    assert variance.variance_units == Decimal("-2")
    assert variance.variance_percent == Decimal("-66.67")
    assert variance.variance_value == Decimal("-66.67")
    assert isinstance(variance.variance_value, Decimal)


def test_book_zero_has_no_percent(lines, manager):
    line = lines.line(book="0", counted="4")

    run_reconcile(run=lines.run, actor=manager)

    assert Variance.objects.get(line=line).variance_percent is None


def test_auto_adjustments_are_approved_by_the_guardrail_with_an_outbox_row(lines, manager):
    line = lines.line(book="100", counted="101", cost="1.00")

    run_reconcile(run=lines.run, actor=manager)

    proposal = ProposedAction.objects.get(variance__line=line)
    assert proposal.state == ProposalState.APPROVED
    assert proposal.auto_approved
    assert proposal.decided_at is not None
    assert proposal.payload["guardrail_version"] == guardrail_for(facility=lines.run.facility).version
    push = PendingPush.objects.get(proposal=proposal)
    assert push.external_id == proposal.external_id == f"CC-{proposal.organization_id}-V{proposal.variance_id}"
    assert proposal.history.count() == 1


def test_larger_variances_become_pending_proposals_with_their_evidence(lines, manager):
    line = lines.line(book="10", counted="4", cost="250.00")

    run_reconcile(run=lines.run, actor=manager)

    proposal = ProposedAction.objects.get(variance__line=line)
    assert (proposal.state, proposal.action_type, proposal.risk) == (ProposalState.PENDING, "inventory_adjustment", 3)
    assert proposal.needs_finance is True  # |−$1,500| is above the $1,000 finance limit
    payload = proposal.payload
    assert payload["item"] == line.item.sku
    assert payload["location"] == line.location.code
    assert Decimal(payload["on_hand"]) == Decimal("10")
    assert Decimal(payload["physical"]) == Decimal("4")
    assert Decimal(payload["variance"]["units"]) == Decimal("-6")
    assert Decimal(payload["variance"]["value"]) == Decimal("-1500.00")
    assert payload["suggested_reason"] == "shrink_theft"
    assert not PendingPush.objects.exists()


def test_reconciling_twice_creates_nothing_new(lines, manager):
    lines.line(book="10", counted="4")
    lines.line(book="100", counted="101", cost="1.00")

    first = run_reconcile(run=lines.run, actor=manager)
    second = run_reconcile(run=lines.run, actor=manager)

    assert (first.variances, first.proposals, first.auto_approved) == (2, 2, 1)
    assert (second.variances, second.proposals, second.auto_approved) == (0, 0, 0)
    assert ProposedAction.objects.count() == 2
    assert PendingPush.objects.count() == 1
    lines.run.refresh_from_db()
    assert lines.run.state == RunState.IN_REVIEW


@pytest.mark.parametrize(
    ("policy", "routing", "delta"),
    [
        (MovedBookPolicy.KEEP_DIFFERENCE, Routing.PROPOSAL, Decimal("-2")),  # counted 8 − book at count 10
        (MovedBookPolicy.KEEP_COUNT, Routing.AUTO, Decimal("1")),  # counted 8 − current book 7 (a sale of 3)
        (MovedBookPolicy.REQUIRE_RECOUNT, Routing.RECOUNT, Decimal("-2")),
    ],
)
def test_moved_book_policies(lines, manager, organization, policy, routing, delta):
    Guardrail.objects.create(organization=organization, moved_book_policy=policy, auto_max_percent=Decimal("15"))
    line = lines.line(book="10", counted="8", on_hand="7", cost="1.00")

    run_reconcile(run=lines.run, actor=manager)

    variance = Variance.objects.get(line=line)
    assert variance.book_moved
    assert (variance.book_at_count, variance.book_current) == (Decimal("10"), Decimal("7"))
    assert variance.variance_units == Decimal("-2")
    assert (variance.routing, variance.adjustment_units) == (routing, delta)


def test_recount_threshold_routes_to_a_recount_first(lines, manager, organization):
    Guardrail.objects.create(organization=organization, recount_min_value=Decimal("500.00"))
    big = lines.line(book="10", counted="0", cost="60.00")  # $600
    small = lines.line(book="10", counted="7", cost="60.00")  # $180

    run_reconcile(run=lines.run, actor=manager)

    assert _routing_of(big) == Routing.RECOUNT
    assert _routing_of(small) == Routing.PROPOSAL
    assert not ProposedAction.objects.filter(variance__line=big).exists()


def test_facility_override_wins_and_its_version_is_recorded(lines, manager, organization, facility):
    Guardrail.objects.create(organization=organization)
    override = Guardrail.objects.create(
        organization=organization, facility=facility, auto_max_value=Decimal("5.00"), version=4
    )
    line = lines.line(book="100", counted="101", cost="6.00")  # 1%, $6: auto by default, not here

    run_reconcile(run=lines.run, actor=manager)

    variance = Variance.objects.get(line=line)
    assert (variance.routing, variance.guardrail_id, variance.guardrail_version) == (Routing.PROPOSAL, override.pk, 4)


def test_open_sessions_block_reconciliation(lines, manager, associate):
    lines.line(book="1", counted="1")
    count_session_start(run=lines.run, user=associate, device_id="d")

    with pytest.raises(RunNotReconcilable, match="sessions still open"):
        run_reconcile(run=lines.run, actor=manager)
    lines.run.refresh_from_db()
    assert lines.run.state == RunState.IN_PROGRESS
    assert not Variance.objects.exists()


def test_a_recount_supersedes_the_open_proposal(lines, manager):
    line = lines.line(book="10", counted="4", cost="5.00")
    run_reconcile(run=lines.run, actor=manager)
    first = ProposedAction.objects.get()

    line.counted_quantity = Decimal("10")
    line.save()
    result = run_reconcile(run=lines.run, actor=manager)

    first.refresh_from_db()
    assert first.state == ProposalState.SUPERSEDED
    assert result.superseded == 1
    current = Variance.objects.get(line=line, superseded_at__isnull=True)
    assert current.routing == Routing.NONE
    assert Variance.objects.filter(line=line).count() == 2


def test_a_recount_never_replaces_an_approved_adjustment(lines, manager, organization):
    from approvals.services import DecisionInput, proposal_decide
    from reconciliation.services import root_causes_ensure

    root_causes_ensure(organization=organization)
    line = lines.line(book="10", counted="4", cost="5.00")
    run_reconcile(run=lines.run, actor=manager)
    approved = proposal_decide(
        proposal=ProposedAction.objects.get(),
        actor=manager,
        decision=DecisionInput(decision="approve", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount"),
    )

    line.counted_quantity = Decimal("6")
    line.save()
    result = run_reconcile(run=lines.run, actor=manager)

    approved.refresh_from_db()
    assert approved.state == ProposalState.APPROVED
    assert result.superseded == 0
    assert ProposedAction.objects.count() == 1
    assert PendingPush.objects.count() == 1
