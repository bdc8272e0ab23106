"""`manage.py audit_verify`: every posted adjustment's chain is proven, and each broken link is named.

The chain is built end to end through the services: scans → reconcile → a manager and a finance
signature on one difference, the guardrail on another → a drain to the NetSuite fake → posted.
Each test then breaks one link. The ledger and the reason log are append-only (PostgreSQL
triggers refuse DELETE): a missing event is removed with the triggers off for the test's
transaction only, and a missing reason-log row is an adjustment marked posted without the
drain, so its rows were never written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from adapters.models import PendingPush, PushState
from adapters.services import push_drain
from approvals.models import Approval, ProposalState, ProposedAction
from audit.models import AuditLog, Event
from audit.verify import audit_verify
from counts.models import CountEvent, CountLine
from reconciliation.models import Variance
from tests.adapters.support import approve_adjustments
from tests.audit.test_trace import Counted, count_and_reconcile, sign_both
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def posted(organization, manager, netsuite, synced) -> Counted:
    """Two posted adjustments: `big` signed by a manager and finance, `small` by guardrail v2."""
    counted = count_and_reconcile(organization, manager)
    sign_both(counted, manager)
    drained = push_drain(connection=synced)
    assert (drained.accepted, drained.lines_accepted) == (1, 2)
    for proposal in (counted.big, counted.small):
        proposal.refresh_from_db()
        assert proposal.state == ProposalState.PUSHED
    return counted


def verify(*args: str) -> tuple[int, str]:
    """The command's exit code (as manage.py would give it) and its output."""
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except CommandError as failed:
        return failed.returncode, out.getvalue()
    return 0, out.getvalue()


@contextmanager
def triggers_off() -> Iterator[None]:
    """Lets the test delete rows the append-only triggers protect (inside its own transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")


def delete(sql: str, params: list) -> None:
    """Run a DELETE the database would refuse: triggers off, and the foreign keys pointing at the
    table dropped (DDL is transactional: the test's rollback restores them before anyone sees)."""
    table = sql.split()[2]
    with connection.cursor() as cursor:
        # Deferred foreign-key checks still pending forbid ALTER TABLE: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint"
            " WHERE contype = 'f' AND confrelid = %s::regclass",
            [table],
        )
        for referencing, name in cursor.fetchall():
            cursor.execute(f'ALTER TABLE {referencing} DROP CONSTRAINT "{name}"')
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount >= 1, sql


def test_a_complete_chain_verifies_clean(posted):
    code, output = verify()

    assert code == 0
    assert output.strip().splitlines()[-1] == "2 adjustments verified, 0 gaps"
    assert "GAP" not in output


def test_nothing_posted_is_nothing_to_prove(organization, manager, netsuite, synced):
    count_and_reconcile(organization, manager)  # proposals exist, but none was pushed

    assert verify() == (0, "0 adjustments verified, 0 gaps\n")


def test_the_check_reads_a_fixed_number_of_queries(posted, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        result = audit_verify()

    assert (result.adjustments, result.gaps) == (2, [])


def test_org_option_scopes_the_walk(posted, organization):
    OrganizationFactory(slug="globex")

    assert verify("--org", "acme")[0] == 0
    assert verify("--org", "globex") == (0, "0 adjustments verified, 0 gaps\n")
    with pytest.raises(CommandError, match="no organization"):
        call_command("audit_verify", "--org", "nope", stdout=io.StringIO())


def assert_gap(posted_proposal: ProposedAction, link: str, detail: str) -> str:
    code, output = verify()
    assert code == 1, output
    gaps = [line for line in output.splitlines() if line.startswith("GAP ")]
    expected = f"GAP acme {posted_proposal.external_id} (proposal {posted_proposal.pk}): {link} — {detail}"
    assert expected in gaps, output
    assert output.splitlines()[-1].startswith("2 adjustments verified, ")
    return output


@pytest.mark.postgres
def test_a_missing_event_is_named(posted):
    delete(
        "DELETE FROM audit_event WHERE type = 'inventory.adjusted' AND (payload->>'proposal') = %s",
        [str(posted.big.pk)],
    )

    output = assert_gap(posted.big, "event", "no inventory.adjusted event")
    assert "1 gaps in 1 adjustment(s)" in output  # the other adjustment is still proven


def test_a_doubled_event_is_named(posted):
    event = Event.objects.get(type="inventory.adjusted", payload__proposal=posted.small.pk)
    Event.objects.create(
        organization_id=event.organization_id, type=event.type, payload=event.payload, occurred_at=event.occurred_at
    )

    assert_gap(posted.small, "event", "2 inventory.adjusted events (exactly one expected)")


def test_a_reason_log_row_never_written_is_named(posted, organization, manager, synced):
    # Another adjustment marked posted by hand, skipping the drain that writes its rows.
    (proposal_id,) = approve_adjustments(organization, manager, {("NS-0003", "DALLAS-AISLE-1"): -1})
    PendingPush.objects.filter(proposal_id=proposal_id).update(state=PushState.ACCEPTED)
    proposal = ProposedAction.objects.get(pk=proposal_id)

    code, output = verify()

    assert code == 1
    assert (
        f"GAP acme {proposal.external_id} (proposal {proposal.pk}): audit — no inventory_adjustment reason-log row"
        in output
    )
    assert f"GAP acme {proposal.external_id} (proposal {proposal.pk}): event — no inventory.adjusted event" in output
    # approve_adjustments writes count lines without scans: that link is missing too.
    assert f"GAP acme {proposal.external_id} (proposal {proposal.pk}): scans — " in output
    assert output.splitlines()[-1] == "3 adjustments verified, 3 gaps in 1 adjustment(s)"


def test_a_doubled_reason_log_row_is_named(posted):
    row = AuditLog.objects.get(tag="inventory_adjustment", object_id=str(posted.big.pk))
    row.pk = None
    row.save()

    assert_gap(posted.big, "audit", "2 inventory_adjustment reason-log rows (exactly one expected)")


def test_a_missing_finance_signature_is_named(posted):
    Approval.objects.filter(proposal=posted.big, role="finance").delete()

    assert_gap(
        posted.big, "approval", "no approving finance signature with a reason code (the proposal needed finance)"
    )


def test_a_missing_manager_signature_is_named(posted):
    Approval.objects.filter(proposal=posted.big, role="manager").delete()

    assert_gap(posted.big, "approval", "no approving manager signature with a reason code")


def test_a_signature_without_reason_code_does_not_count(posted):
    Approval.objects.filter(proposal=posted.big, role="finance").update(reason_code="")

    assert_gap(
        posted.big, "approval", "no approving finance signature with a reason code (the proposal needed finance)"
    )


def test_finance_is_required_by_the_guardrail_version_even_if_the_flag_was_lost(posted):
    ProposedAction.objects.filter(pk=posted.big.pk).update(needs_finance=False)
    Approval.objects.filter(proposal=posted.big, role="finance").update(decision="reject")

    assert_gap(
        posted.big,
        "approval",
        "no approving finance signature with a reason code (its value is above the guardrail's finance limit)",
    )


def test_a_guardrail_decision_without_its_version_is_named(posted):
    payload = {key: value for key, value in posted.small.payload.items() if key != "guardrail_version"}
    ProposedAction.objects.filter(pk=posted.small.pk).update(payload=payload)

    assert_gap(posted.small, "guardrail", "approved by a guardrail but no guardrail version recorded")


def test_a_guardrail_version_that_never_existed_is_named(posted):
    Variance.objects.filter(pk=posted.small.variance_id).update(guardrail_version=99)
    ProposedAction.objects.filter(pk=posted.small.pk).update(payload={**posted.small.payload, "guardrail_version": 99})

    assert_gap(posted.small, "guardrail", "guardrail v99 is not in the guardrail's history")


@pytest.mark.postgres
def test_a_missing_variance_is_named(posted):
    delete("DELETE FROM reconciliation_variance WHERE id = %s", [posted.small.variance_id])

    assert_gap(posted.small, "variance", f"variance {posted.small.variance_id} is missing")


def test_a_variance_that_disagrees_with_the_adjustment_is_named(posted):
    Variance.objects.filter(pk=posted.small.variance_id).update(adjustment_units=5)

    assert_gap(
        posted.small,
        "variance",
        f"variance {posted.small.variance_id} does not agree with the adjustment (run, item, location or units)",
    )


@pytest.mark.postgres
def test_a_missing_count_line_is_named(posted):
    line_id = Variance.objects.get(pk=posted.big.variance_id).line_id
    delete("DELETE FROM counts_countline WHERE id = %s", [line_id])

    assert_gap(posted.big, "count_line", f"count line {line_id} is missing or not this item's")


@pytest.mark.postgres
def test_missing_scans_are_named(posted):
    line = CountLine.objects.get(pk=Variance.objects.get(pk=posted.small.variance_id).line_id)
    delete(
        "DELETE FROM counts_countevent WHERE run_id = %s AND location_id = %s AND item_id = %s",
        [line.run_id, line.location_id, line.item_id],
    )

    assert_gap(posted.small, "scans", "no matched or extra scan behind the count line")


def test_refused_scans_do_not_count(posted):
    line = CountLine.objects.get(pk=Variance.objects.get(pk=posted.small.variance_id).line_id)
    CountEvent.objects.filter(run_id=line.run_id, location_id=line.location_id, item_id=line.item_id).update(
        status="refused"
    )

    assert_gap(posted.small, "scans", "no matched or extra scan behind the count line")


def test_a_proposal_pushed_without_an_accepted_push_is_named(posted):
    PendingPush.objects.filter(proposal=posted.small).update(state=PushState.FAILED)

    code, output = verify()

    assert code == 1
    assert (
        f"GAP acme {posted.small.external_id} (proposal {posted.small.pk}): push — "
        "the proposal is pushed but no accepted push backs it"
    ) in output
    assert output.splitlines()[-1] == "1 adjustments verified, 1 gaps in 1 adjustment(s)"
