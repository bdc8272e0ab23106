"""The reviewers' queue at /proposed-actions/ and the edit-token page at /accounts/edit-token/."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import EditToken
from accounts.roles import Role
from accounts.services import edit_token_matches
from adapters.models import PendingPush
from approvals.models import Approval, ProposalState, ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit.models import AuditLog
from reconciliation.services import run_reconcile
from tests.approvals.conftest import reconciled
from tests.approvals.test_admin import new_run, scan_lines, scanned_proposals
from tests.conftest import token_client
from tests.factories import FacilityFactory, member
from tests.reconciliation.conftest import LineMaker

QUEUE = "/proposed-actions/"
EDIT_TOKEN = "/accounts/edit-token/"
APPROVE = {"decision": "approve", "reason_code": "CORRECTION_AFTER_REVIEW", "root_cause": "miscount", "note": ""}


def _queue_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(QUEUE).status_code == 200
    return len(captured.captured_queries)


def test_the_queue_lists_open_proposals_largest_value_first(client, lines, manager, finance_user):
    small = reconciled(lines, manager, book="10", counted="9", cost="30.00")  # $30
    above_limit = reconciled(lines, manager, book="10", counted="4", cost="250.00")  # $1,500
    middle = reconciled(lines, manager, book="10", counted="13", cost="100.00")  # $300
    rejected = reconciled(lines, manager, book="10", counted="5", cost="40.00")
    proposal_decide(proposal=rejected, actor=manager, decision=DecisionInput("reject", "MANAGER_OVERRIDE"))
    proposal_decide(proposal=above_limit, actor=manager, decision=DecisionInput(**APPROVE))  # awaiting finance
    client.force_login(finance_user)

    response = client.get(QUEUE)

    assert response.status_code == 200
    assert [card.proposal.pk for card in response.context["cards"]] == [above_limit.pk, middle.pk, small.pk]
    page = response.content.decode()
    assert "Waiting for the finance signature." in page
    assert "Approved by manager (manager): Correction after review, Miscount" in page
    assert "<script" not in page  # no inline (or any) scripts on the tablet page


def test_the_queue_runs_a_fixed_number_of_queries_with_the_evidence(client, lines, manager, associate):
    counters = [(associate, "tab-1")]
    scanned_proposals(lines, manager, counters, [{"book": "10", "counted": str(n)} for n in range(1, 4)])
    client.force_login(manager)
    few = _queue_queries(client)

    new_run(lines, manager)
    scanned_proposals(lines, manager, counters, [{"book": "30", "counted": str(n)} for n in range(1, 18)])

    assert _queue_queries(client) == few
    response = client.get(QUEUE)
    assert len(response.context["cards"]) == 20
    assert all(card.counters.usernames == ["associate"] for card in response.context["cards"])
    assert "tab-1" in response.content.decode()


def test_earlier_variances_of_the_same_item_here_are_counted(client, lines, manager, associate):
    [first] = scanned_proposals(lines, manager, [(associate, "tab-1")], [{"book": "10", "counted": "6"}])
    proposal_decide(proposal=first, actor=manager, decision=DecisionInput(**APPROVE))
    new_run(lines, manager)
    fresh = lines.line(book="10", counted="2")
    scan_lines(lines, associate, "tab-1", [(first.variance.line, 3), (fresh, 2)])
    run_reconcile(run=lines.run, actor=manager)
    client.force_login(manager)

    cards = {card.proposal.location_id: card for card in client.get(QUEUE).context["cards"]}

    assert cards[first.location_id].earlier_variances == 1
    assert cards[fresh.location_id].earlier_variances == 0


def test_approving_from_the_queue_goes_through_the_service(client, lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="50.00")
    client.force_login(manager)

    response = client.post(QUEUE, {"proposal": proposal.pk, **APPROVE}, follow=True)

    assert response.redirect_chain[-1] == (QUEUE, 302)
    assert ProposedAction.objects.get(pk=proposal.pk).state == ProposalState.APPROVED
    signature = Approval.objects.get()
    assert (signature.approver, signature.root_cause.code) == (manager, "miscount")
    assert PendingPush.objects.filter(proposal=proposal).count() == 1
    assert f"{proposal.item.sku} @ {proposal.location.code}: approved." in response.content.decode()
    assert response.context["cards"] == []


def test_a_refusal_is_shown_with_its_rule_and_nothing_changes(client, lines, manager, associate):
    [mine] = scanned_proposals(lines, manager, [(manager, "mgr-phone")], [{"book": "10", "counted": "4"}])
    client.force_login(manager)

    response = client.post(QUEUE, {"proposal": mine.pk, **APPROVE, "note": "looks right"})

    assert response.status_code == 403
    page = response.content.decode()
    assert "rule: counted_line" in page
    assert "nobody approves a variance on a line they counted" in page
    [card] = response.context["cards"]
    assert card.problem.rule == "counted_line"
    assert "looks right" in page  # what was typed is kept on the card
    assert ProposedAction.objects.get(pk=mine.pk).state == ProposalState.PENDING
    assert AuditLog.objects.filter(tag="approval_refused", data__rule="counted_line").count() == 1


def test_finance_cannot_give_the_first_signature_from_the_queue(client, lines, manager, finance_user):
    proposal = reconciled(lines, manager, book="10", counted="4", cost="250.00")
    client.force_login(finance_user)

    response = client.post(QUEUE, {"proposal": proposal.pk, **APPROVE})

    assert response.status_code == 403
    assert response.context["problem"].rule == "tier"
    assert "a manager gives the first signature" in response.content.decode()
    assert not Approval.objects.exists()


def test_an_incomplete_decision_names_the_field(client, lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")
    client.force_login(manager)

    response = client.post(QUEUE, {"proposal": proposal.pk, **APPROVE, "root_cause": "other", "note": ""})

    assert response.status_code == 400
    assert response.context["problem"].field_name == "note"
    assert not Approval.objects.exists()


def test_a_proposal_decided_meanwhile_is_a_conflict(client, lines, manager, second_manager):
    proposal = reconciled(lines, manager, book="10", counted="4")
    proposal_decide(proposal=proposal, actor=second_manager, decision=DecisionInput("reject", "MANAGER_OVERRIDE"))
    client.force_login(manager)

    response = client.post(QUEUE, {"proposal": proposal.pk, **APPROVE})

    assert response.status_code == 409
    assert "is rejected" in response.content.decode()
    assert Approval.objects.count() == 1


def test_another_organizations_proposal_is_not_found(client, lines, manager, other_organization):
    from reconciliation.services import root_causes_ensure

    other_manager = member(other_organization, Role.MANAGER, username="globex-manager")
    root_causes_ensure(organization=other_organization)
    theirs = LineMaker(other_organization, FacilityFactory(organization=other_organization), other_manager)
    foreign = reconciled(theirs, other_manager, book="10", counted="4")
    client.force_login(manager)

    assert client.post(QUEUE, {"proposal": foreign.pk, **APPROVE}).status_code == 404
    assert foreign.pk not in [card.proposal.pk for card in client.get(QUEUE).context["cards"]]
    assert not Approval.objects.exists()


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.PLANNER])
def test_associates_and_planners_get_403(client, organization, lines, manager, role):
    proposal = reconciled(lines, manager, book="10", counted="4")
    client.force_login(member(organization, role))

    assert client.get(QUEUE).status_code == 403
    assert client.post(QUEUE, {"proposal": proposal.pk, **APPROVE}).status_code == 403
    assert not Approval.objects.exists()
    assert AuditLog.objects.filter(tag="approval_refused").count() == 0  # refused before reaching the service


def test_the_queue_needs_a_login(client):
    response = client.get(QUEUE)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/proposed-actions/")


# --- /accounts/edit-token/ ---------------------------------------------------------------------


def test_the_edit_token_is_shown_once_and_then_works(client, lines, manager):
    client.force_login(manager)
    assert "You have no edit token yet" in client.get(EDIT_TOKEN).content.decode()

    issued = client.post(EDIT_TOKEN)

    assert issued.status_code == 200
    token = issued.context["token"]
    assert token in issued.content.decode()
    assert "won't be shown again" in issued.content.decode()
    assert "no-store" in issued["Cache-Control"]
    assert edit_token_matches(user=manager, raw=token)
    assert EditToken.objects.get(user=manager).token_hash != token  # stored hashed
    later = client.get(EDIT_TOKEN).content.decode()
    assert token not in later
    assert "You have an edit token" in later

    proposal = reconciled(lines, manager, book="10", counted="4")
    api = token_client(manager)
    adjusted = api.post(
        "/api/inventory/adjust", {"proposal": proposal.pk, **APPROVE}, format="json", HTTP_X_EDIT_TOKEN=token
    )
    assert adjusted.status_code == 200
    assert adjusted.json()["state"] == ProposalState.APPROVED


def test_issuing_again_replaces_the_token(client, associate):
    client.force_login(associate)  # anyone signed in may hold a token; the role rules apply on use
    first = client.post(EDIT_TOKEN).context["token"]

    second = client.post(EDIT_TOKEN).context["token"]

    assert first != second
    assert not edit_token_matches(user=associate, raw=first)
    assert edit_token_matches(user=associate, raw=second)
    assert AuditLog.objects.filter(tag="edit_token_rotated", actor=associate).count() == 2


def test_the_edit_token_page_needs_a_login(client, db):
    assert client.post(EDIT_TOKEN)["Location"].startswith("/accounts/login/")
    assert not EditToken.objects.exists()
