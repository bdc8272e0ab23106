"""POST /api/inventory/adjust and the X-Edit-Token rules; listing proposals."""

from __future__ import annotations

from accounts.models import EditToken
from accounts.roles import Role
from accounts.services import edit_token_matches, edit_token_rotate
from adapters.models import PendingPush
from approvals.models import ProposalState, ProposedAction
from audit.models import AuditLog
from tests.approvals.conftest import reconciled, signer
from tests.conftest import token_client
from tests.factories import member

APPROVE = {"decision": "approve", "reason_code": "CORRECTION_AFTER_REVIEW", "root_cause": "miscount", "note": ""}


def _adjust(client, proposal, **overrides):
    return client.post("/api/inventory/adjust", {"proposal": proposal.pk, **APPROVE, **overrides}, format="json")


def test_approve_with_the_edit_token(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")

    response = _adjust(signer(manager), proposal)

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "approved"
    assert body["approvals"][0]["approver"] == "manager"
    assert body["approvals"][0]["root_cause"] == "miscount"
    assert PendingPush.objects.filter(proposal=proposal).exists()


def test_missing_or_wrong_edit_token_is_403_and_audited(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")
    edit_token_rotate(user=manager)
    without = token_client(manager)
    wrong = token_client(manager)
    wrong.credentials(HTTP_AUTHORIZATION=without._credentials["HTTP_AUTHORIZATION"], HTTP_X_EDIT_TOKEN="guess")

    responses = [_adjust(without, proposal), _adjust(wrong, proposal)]

    assert [response.status_code for response in responses] == [403, 403]
    assert all(response.json()["rule"] == "edit_token" for response in responses)
    assert AuditLog.objects.filter(tag="approval_refused", data__rule="edit_token").count() == 2
    assert ProposedAction.objects.get().state == ProposalState.PENDING


def test_wrong_role_is_403_naming_the_rule(lines, manager, organization):
    proposal = reconciled(lines, manager, book="10", counted="4")

    response = _adjust(signer(member(organization, Role.ASSOCIATE)), proposal)

    assert response.status_code == 403
    assert response.json()["rule"] == "role"


def test_missing_reason_is_400(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")

    response = _adjust(signer(manager), proposal, reason_code="")

    assert response.status_code == 400
    assert "reason_code" in response.json()["errors"]


def test_a_decided_proposal_is_409(lines, manager, second_manager):
    proposal = reconciled(lines, manager, book="10", counted="4")
    _adjust(signer(manager), proposal)

    response = _adjust(signer(second_manager), proposal)

    assert response.status_code == 409


def test_another_organizations_proposal_is_404(lines, manager, other_organization):
    proposal = reconciled(lines, manager, book="10", counted="4")
    outsider = member(other_organization, Role.MANAGER, username="outsider")

    assert _adjust(signer(outsider), proposal).status_code == 404
    assert token_client(outsider).get("/api/proposals/").json()["count"] == 0


def test_edit_token_is_issued_once_and_rotation_retires_the_old_one(manager):
    client = token_client(manager)

    first = client.post("/api/me/edit-token").json()["edit_token"]
    second = client.post("/api/me/edit-token").json()["edit_token"]

    assert first != second
    assert not edit_token_matches(user=manager, raw=first)
    assert edit_token_matches(user=manager, raw=second)
    assert AuditLog.objects.filter(tag="edit_token_rotated", actor=manager).count() == 2
    assert second not in EditToken.objects.get(user=manager).token_hash


def test_proposals_list_largest_value_first_filtered_by_state_and_run(lines, manager, manager_api):
    small = reconciled(lines, manager, book="10", counted="4", cost="5.00")
    large = reconciled(lines, manager, book="10", counted="2", cost="50.00")
    auto = reconciled(lines, manager, book="100", counted="101", cost="1.00")

    everything = manager_api.get("/api/proposals/", {"run": lines.run.pk}).json()["results"]
    pending = manager_api.get("/api/proposals/", {"state": "pending"}).json()["results"]

    assert [row["id"] for row in everything] == [large.pk, small.pk, auto.pk]
    assert [row["id"] for row in pending] == [large.pk, small.pk]


# --- found by the API fuzz run (tests/fuzz) ---------------------------------------------------


def test_a_non_ascii_digit_proposal_id_is_400_not_500(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")

    response = signer(manager).post("/api/inventory/adjust", {**APPROVE, "proposal": "²"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": {"proposal": "required: a proposal id"}}
    assert ProposedAction.objects.get(pk=proposal.pk).state == ProposalState.PENDING


def test_a_body_that_is_not_an_object_is_400_not_500(lines, manager):
    response = signer(manager).post("/api/inventory/adjust", [1, 2], format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": {"non_field_errors": ["send a JSON object"]}}


def test_a_nul_character_in_the_note_is_400_and_nothing_is_decided(lines, manager):
    proposal = reconciled(lines, manager, book="10", counted="4")

    response = _adjust(signer(manager), proposal, note="short\x00")

    assert response.status_code == 400
    assert response.json() == {"errors": {"note": ["must not contain NUL characters"]}}
    assert ProposedAction.objects.get(pk=proposal.pk).state == ProposalState.PENDING
    assert not PendingPush.objects.filter(proposal=proposal).exists()


def test_proposals_list_refuses_a_non_ascii_digit_run(lines, manager, manager_api):
    reconciled(lines, manager, book="10", counted="4")

    response = manager_api.get("/api/proposals/", {"run": "²"})

    assert response.status_code == 400
    assert response.json() == {"errors": {"run": "a run id"}}


def test_proposals_list_refuses_a_run_id_beyond_any_database_integer(manager_api):
    response = manager_api.get("/api/proposals/", {"run": "9" * 30})

    assert response.status_code == 400
    assert response.json() == {"errors": {"run": "a run id"}}
