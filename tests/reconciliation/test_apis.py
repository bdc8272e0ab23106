from __future__ import annotations

from accounts.roles import Role
from audit.models import AuditLog
from counts.services.sessions import count_session_start
from reconciliation.services import run_reconcile
from tests.conftest import token_client
from tests.factories import member


def test_reconcile_moves_the_run_into_review_and_is_idempotent(lines, manager_api):
    lines.line(book="10", counted="4")
    lines.line(book="100", counted="101", cost="1.00")
    lines.line(book="7", counted="7")

    first = manager_api.post(f"/api/runs/{lines.run.pk}/reconcile")
    second = manager_api.post(f"/api/runs/{lines.run.pk}/reconcile")

    assert first.status_code == 200
    assert first.json() | {"run": 0} == {
        "run": 0, "status": "in_review", "variances": 3, "proposals": 2, "auto_approved": 1, "superseded": 0,
    }  # fmt: skip
    assert (second.json()["variances"], second.json()["proposals"]) == (0, 0)


def test_variances_list_routing_auto_or_the_proposal_id(lines, manager_api):
    big = lines.line(book="10", counted="4")
    lines.line(book="100", counted="101", cost="1.00")
    manager_api.post(f"/api/runs/{lines.run.pk}/reconcile")

    rows = manager_api.get("/api/variances/", {"run": lines.run.pk}).json()["results"]

    by_item = {row["item"]: row for row in rows}
    proposal_id = big.variances.get().proposal.pk
    assert by_item[big.item.sku]["routing"] == proposal_id
    assert sorted(str(row["routing"]) for row in rows) == sorted(["auto", str(proposal_id)])
    assert by_item[big.item.sku]["variance_value"] == "-60.00"


def test_open_sessions_make_reconcile_a_conflict(lines, manager_api, associate):
    lines.line(book="1", counted="1")
    count_session_start(run=lines.run, user=associate, device_id="d")

    response = manager_api.post(f"/api/runs/{lines.run.pk}/reconcile")

    assert response.status_code == 409
    assert "sessions still open" in response.json()["detail"]


def test_only_managers_reconcile_and_other_organizations_get_404(lines, organization, other_organization):
    associate = token_client(member(organization, Role.ASSOCIATE))
    outsider = token_client(member(other_organization, Role.MANAGER))

    assert associate.post(f"/api/runs/{lines.run.pk}/reconcile").status_code == 403
    assert outsider.post(f"/api/runs/{lines.run.pk}/reconcile").status_code == 404
    assert outsider.get("/api/variances/", {"run": lines.run.pk}).json()["count"] == 0


# --- found by the API fuzz run (tests/fuzz) ---------------------------------------------------


def test_variances_list_refuses_a_non_ascii_digit_run(lines, manager_api):
    lines.line(book="10", counted="4")

    response = manager_api.get("/api/variances/", {"run": "²"})

    assert response.status_code == 400
    assert response.json() == {"errors": {"run": "required: a run id"}}


def test_variances_list_refuses_a_run_id_beyond_any_database_integer(lines, manager_api):
    response = manager_api.get("/api/variances/", {"run": "9" * 30})

    assert response.status_code == 400
    assert response.json() == {"errors": {"run": "required: a run id"}}


def test_a_variance_decision_with_a_body_that_is_not_an_object_is_400(lines, manager, manager_api):
    lines.line(book="10", counted="4")
    run_reconcile(run=lines.run, actor=manager)
    variance = lines.run.variances.get()
    audit_rows = AuditLog.objects.count()

    response = manager_api.post(f"/api/variances/{variance.pk}/decide", ["apply"], format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": {"non_field_errors": ["send a JSON object"]}}
    assert AuditLog.objects.count() == audit_rows
