"""Tiered sign-off and separation of duties, enforced in the service."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from accounts.roles import Role
from adapters.models import PendingPush
from approvals.models import Approval, ProposalState, ProposedAction
from approvals.services import (
    DecisionConflict,
    DecisionInput,
    DecisionInvalid,
    DecisionRefused,
    proposal_decide,
    proposals_decide_bulk,
)
from audit.models import AuditLog
from counts.services.capture import count_events_ingest
from counts.services.sessions import count_session_start, count_session_submit
from reconciliation.services import run_reconcile
from tests.approvals.conftest import reconciled
from tests.factories import member

APPROVE = DecisionInput(decision="approve", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount")
REJECT = DecisionInput(decision="reject", reason_code="MANAGER_OVERRIDE", note="recount first")


def test_a_manager_approves_within_the_finance_limit_and_the_outbox_row_is_written(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="50.00")  # −$300

    decided = proposal_decide(proposal=proposal, actor=manager, decision=APPROVE)

    assert decided.state == ProposalState.APPROVED
    assert decided.decided_at is not None
    signature = Approval.objects.get()
    assert (signature.approver, signature.role, signature.reason_code) == (manager, Role.MANAGER, APPROVE.reason_code)
    assert signature.root_cause.code == "miscount"
    push = PendingPush.objects.get()
    assert (push.proposal_id, push.external_id, push.state) == (proposal.pk, proposal.external_id, "pending")
    log = AuditLog.objects.get(tag="proposal_approved")
    assert (log.actor, log.delta, log.approved_by) == (manager, proposal.delta, "manager")


def test_above_the_finance_limit_a_manager_then_another_person_in_finance(lines, manager, finance_user):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="250.00")  # −$1,500

    after_manager = proposal_decide(proposal=proposal, actor=manager, decision=APPROVE)
    assert after_manager.state == ProposalState.AWAITING_FINANCE
    assert not PendingPush.objects.exists()

    final = proposal_decide(proposal=proposal, actor=finance_user, decision=APPROVE)

    assert final.state == ProposalState.APPROVED
    assert list(Approval.objects.values_list("role", flat=True)) == [Role.MANAGER, Role.FINANCE]
    assert PendingPush.objects.count() == 1


def test_a_manager_alone_cannot_finish_above_the_limit(lines, manager, second_manager):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="250.00")
    proposal_decide(proposal=proposal, actor=manager, decision=APPROVE)

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=second_manager, decision=APPROVE)

    assert refused.value.rule == "tier"
    assert ProposedAction.objects.get().state == ProposalState.AWAITING_FINANCE


def test_finance_does_not_give_the_first_signature(lines, manager, finance_user):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="250.00")

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=finance_user, decision=APPROVE)

    assert refused.value.rule == "tier"


def test_the_same_person_cannot_sign_twice(lines, manager, organization):
    both = member(organization, Role.MANAGER, username="both-hats")
    proposal = reconciled(lines, manager, book="10", counted="4", cost="250.00")
    proposal_decide(proposal=proposal, actor=both, decision=APPROVE)
    both.membership.role = Role.FINANCE  # the same person, now in finance
    both.membership.save()
    both = type(both).objects.get(pk=both.pk)

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=both, decision=APPROVE)

    assert refused.value.rule == "same_person"


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.PLANNER])
def test_associates_and_planners_never_decide(lines, manager, organization, role):
    proposal = reconciled(lines, manager, book="10", counted="4")
    person = member(organization, role)

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=person, decision=APPROVE)

    assert refused.value.rule == "role"
    assert AuditLog.objects.filter(tag="approval_refused", actor=person, data__rule="role").exists()


def test_nobody_approves_a_line_they_counted(lines, manager, second_manager):
    line = lines.line(book="10", counted="4")
    session = count_session_start(run=lines.run, user=second_manager, device_id="d")
    count_events_ingest(
        session=session,
        actor=second_manager,
        events=[{"event_id": str(uuid.uuid4()), "location": line.location.code, "sku": line.item.sku,
                 "quantity": 4, "kind": "set", "mode": "manual", "counted_at": "2026-11-20T10:00:00+00:00"}],
    )  # fmt: skip
    count_session_submit(session=session, actor=second_manager)
    run_reconcile(run=lines.run, actor=manager)
    proposal = ProposedAction.objects.get()

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=second_manager, decision=APPROVE)

    assert refused.value.rule == "counted_line"
    assert AuditLog.objects.filter(tag="approval_refused", data__rule="counted_line").count() == 1
    assert proposal_decide(proposal=proposal, actor=manager, decision=APPROVE).state == ProposalState.APPROVED


def test_a_decided_proposal_is_a_conflict(lines, manager, second_manager):
    proposal = reconciled(lines, manager, book="10", counted="4")
    proposal_decide(proposal=proposal, actor=manager, decision=REJECT)

    with pytest.raises(DecisionConflict):
        proposal_decide(proposal=proposal, actor=second_manager, decision=APPROVE)
    assert ProposedAction.objects.get().state == ProposalState.REJECTED


@pytest.mark.parametrize(
    ("decision", "field"),
    [
        (DecisionInput(decision="approve", reason_code=""), "reason_code"),
        (DecisionInput(decision="approve", reason_code="BECAUSE"), "reason_code"),
        (DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE"), "root_cause"),
        (DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="gremlins"), "root_cause"),
        (DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="other"), "note"),
    ],
)
def test_incomplete_decisions_are_refused_naming_the_field(lines, manager, decision, field):
    proposal = reconciled(lines, manager, book="10", counted="4")

    with pytest.raises(DecisionInvalid) as invalid:
        proposal_decide(proposal=proposal, actor=manager, decision=decision)

    assert invalid.value.field == field
    assert not Approval.objects.exists()


def test_bulk_decisions_report_each_failure_and_keep_the_rest(lines, manager, finance_user):
    ok = reconciled(lines, manager, book="10", counted="4")
    also_ok = reconciled(lines, manager, book="20", counted="12")
    already_rejected = reconciled(lines, manager, book="30", counted="3")
    proposal_decide(proposal=already_rejected, actor=manager, decision=REJECT)

    outcome = proposals_decide_bulk(
        proposal_ids=[ok.pk, also_ok.pk, already_rejected.pk], actor=manager, decision=APPROVE
    )

    assert sorted(outcome.decided) == sorted([ok.pk, also_ok.pk])
    assert list(outcome.failed) == [already_rejected.pk]
    assert "rejected" in outcome.failed[already_rejected.pk]
    assert PendingPush.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_managers_approving_at_once_exactly_one_wins(organization, facility, manager, second_manager):
    from reconciliation.services import root_causes_ensure
    from tests.reconciliation.conftest import LineMaker

    root_causes_ensure(organization=organization)
    lines = LineMaker(organization, facility, manager)
    proposal = reconciled(lines, manager, book="10", counted="4")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(user) -> None:
        try:
            barrier.wait()
            proposal_decide(proposal=proposal, actor=user, decision=APPROVE)
            outcomes.append("approved")
        except DecisionConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in (manager, second_manager)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["approved", "conflict"]
    assert Approval.objects.count() == 1
    assert PendingPush.objects.count() == 1
