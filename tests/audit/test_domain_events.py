"""The ledger hears the whole pipeline: detected, proposed, decided, adjusted, drifted, failed, closed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.roles import Role
from adapters.models import ExternalRecord
from adapters.services import backend_sync, push_drain
from approvals.models import ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit.models import Event
from audit.services import events_dispatch_pending
from counts.models import CountRun
from reconciliation.services import RunNotClosable, run_close
from tests.adapters.support import approve_adjustments
from tests.factories import member

pytestmark = pytest.mark.django_db


def payloads(type_: str) -> list[dict]:
    return [event.payload for event in Event.objects.filter(type=type_).order_by("pk")]


def test_reconcile_writes_detected_and_created_events_with_the_change(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1, ("NS-0001", "DALLAS-AISLE-1"): -30})

    detected = payloads("variance.detected")
    created = payloads("proposal.created")

    assert sorted((p["item"], Decimal(p["units"]), p["routing"]) for p in detected) == [
        ("NS-0000", Decimal(-1), "auto"),
        ("NS-0001", Decimal(-30), "proposal"),
    ]
    assert sorted((p["item"], p["state"], p["auto_approved"]) for p in created) == [
        ("NS-0000", "approved", True),
        ("NS-0001", "pending", False),
    ]
    assert len({event.event_id for event in Event.objects.all()}) == Event.objects.count()
    assert events_dispatch_pending() == 4
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()


def test_decisions_pushes_drifts_and_closing_are_in_the_ledger(organization, manager, netsuite, synced):
    proposals = approve_adjustments(
        organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1, ("NS-0001", "DALLAS-AISLE-1"): -30}
    )
    run = CountRun.objects.get(proposals__pk=proposals[0])
    pending = ProposedAction.objects.get(pk__in=proposals, state="pending")
    with pytest.raises(RunNotClosable, match="1 proposal"):
        run_close(run=run, actor=manager)

    proposal_decide(
        proposal=pending,
        actor=member(organization, Role.MANAGER, username="approver"),
        decision=DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="shrink_theft"),
    )
    push_drain(connection=synced)
    netsuite.set_on_hand(100, 10, Decimal(50))
    backend_sync(connection=synced)

    [decided] = payloads("proposal.decided")
    assert (decided["decision"], decided["state"], decided["decided_by"], decided["root_cause"]) == (
        "approve",
        "approved",
        "approver",
        "shrink_theft",
    )
    adjusted = {p["item"]: p for p in payloads("inventory.adjusted")}
    assert Decimal(adjusted["NS-0001"]["delta"]) == Decimal(-30)
    assert Decimal(adjusted["NS-0001"]["new_on_hand"]) == Decimal(70)
    assert adjusted["NS-0001"]["approved_by"] == "approver"
    assert adjusted["NS-0000"]["approved_by"] == "guardrail"
    assert adjusted["NS-0000"]["backend_record_id"]
    [drift] = payloads("parity.drift")
    assert (drift["item"], Decimal(drift["expected_on_hand"]), Decimal(drift["backend_on_hand"])) == (
        "NS-0000",
        Decimal(99),
        Decimal(50),
    )

    client = APIClient()
    client.force_authenticate(manager)
    response = client.post(f"/api/runs/{run.pk}/close")

    assert response.status_code == 200, response.content
    assert response.json() == {"run": run.pk, "status": "closed"}
    [closed] = payloads("count.run.closed")
    assert (closed["lines_counted"], closed["variances"], closed["adjustments"]) == (2, 2, 2)
    assert Decimal(closed["net_value"]) == Decimal("-139.50")


def test_a_batch_that_needs_a_person_is_a_push_failed_event(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    ExternalRecord.objects.filter(connection=synced, item__sku="NS-0000").update(external_id="99999")

    push_drain(connection=synced)

    [failed] = payloads("push.failed")
    assert failed["state"] == "rejected"
    assert "INVALID_KEY_OR_REF" in failed["error"]
