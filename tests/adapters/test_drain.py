"""The push drain: approved adjustments reach NetSuite exactly once, whatever fails on the way."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from adapters.models import BackendConnection, BatchState, ExternalRecord, PendingPush, PushBatch, PushState
from adapters.netsuite.backend import NetSuiteBackend
from adapters.services import backend_sync, push_batch_retry, push_drain, push_retry
from adapters.services.drain import stale_work_reclaim
from approvals.models import ProposalState, ProposedAction
from audit.models import AuditLog
from inventory.models import InventoryBalance
from tests.adapters.support import approve_adjustments, connect, fake_netsuite, warehouse

pytestmark = pytest.mark.django_db

SKUS = [f"NS-{index:04d}" for index in range(5)]
AISLES = ["DALLAS-AISLE-1", "DALLAS-AISLE-2"]


def mirror(organization) -> dict[tuple[str, str], Decimal]:
    return {
        (sku, code): on_hand
        for sku, code, on_hand in InventoryBalance.objects.filter(organization=organization).values_list(
            "item__sku", "location__code", "on_hand"
        )
    }


def netsuite_ids(connection) -> tuple[dict[str, int], dict[str, int]]:
    records = ExternalRecord.objects.filter(connection=connection).select_related("item", "location")
    items = {record.item.sku: int(record.external_id) for record in records if record.item_id}
    locations = {record.location.code: int(record.external_id) for record in records if record.location_id}
    return items, locations


def assert_mirror_matches_netsuite(organization, connection, fake) -> None:
    items, locations = netsuite_ids(connection)
    for (sku, code), on_hand in mirror(organization).items():
        if sku in items and code in locations:
            assert fake.on_hand(items[sku], locations[code]) == on_hand, (sku, code)


def test_approved_adjustments_are_pushed_once_per_location_and_the_mirror_follows(
    organization, manager, netsuite, synced
):
    deltas = {(SKUS[0], AISLES[0]): -1, (SKUS[1], AISLES[0]): 2, (SKUS[2], AISLES[1]): -1}
    proposals = approve_adjustments(organization, manager, deltas)

    result = push_drain(connection=synced)

    assert (result.batches_formed, result.sent, result.accepted, result.lines_accepted) == (2, 2, 2, 3)
    assert netsuite.adjustment_posts == 2
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert netsuite.on_hand(101, 10) == Decimal(102)
    assert netsuite.on_hand(102, 11) == Decimal(99)
    assert mirror(organization)[(SKUS[1], AISLES[0])] == Decimal(102)
    assert_mirror_matches_netsuite(organization, synced, netsuite)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"pushed"}
    batches = PushBatch.objects.filter(connection=synced).order_by("pk")
    assert [batch.state for batch in batches] == ["accepted", "accepted"]
    assert all(batch.record_id and batch.external_id == f"CC-{organization.pk}-B{batch.pk}" for batch in batches)
    logged = AuditLog.objects.filter(tag="inventory_adjustment").order_by("object_id")
    assert logged.count() == 3
    assert {row.approved_by for row in logged} == {"guardrail"}
    assert {row.data["record_id"] for row in logged} == {batch.record_id for batch in batches}


def test_a_second_drain_sends_nothing(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})
    push_drain(connection=synced)

    again = push_drain(connection=synced)

    assert (again.batches_formed, again.sent) == (0, 0)
    assert netsuite.adjustment_posts == 1


def test_batches_never_exceed_the_backends_size(organization, manager, netsuite, synced, monkeypatch):
    monkeypatch.setattr(NetSuiteBackend, "max_batch_lines", 2)
    approve_adjustments(organization, manager, {(sku, AISLES[0]): -1 for sku in SKUS})

    result = push_drain(connection=synced)

    assert result.batches_formed == 3
    assert sorted(PushBatch.objects.values_list("line_count", flat=True)) == [1, 2, 2]
    assert all(netsuite.on_hand(100 + index, 10) == Decimal(99) for index in range(5))


def test_a_lost_answer_is_looked_up_never_resent_blindly(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})
    netsuite.drop_next(1)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert netsuite.adjustment_posts == 1  # the lookup found it: no second POST
    assert len(netsuite.adjustments) == 1
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert mirror(organization)[(SKUS[0], AISLES[0])] == Decimal(99)
    assert "found by external id" in PushBatch.objects.get().history.first().history_change_reason


def test_a_worker_killed_after_sending_is_recovered_without_a_double_adjustment(
    organization, manager, netsuite, synced, monkeypatch
):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})

    # The worker formed and sent the batch, NetSuite committed it, then the worker died before
    # recording the answer: the batch is in flight, attempted once, its lease running out.
    def die_after_sending(backend, batch_id, batch, in_doubt, backoff):
        backend.push_adjustments(batch)
        raise SystemExit("killed")

    monkeypatch.setattr("adapters.services.drain._deliver", die_after_sending)
    with pytest.raises(SystemExit):
        push_drain(connection=synced)
    monkeypatch.undo()
    batch = PushBatch.objects.get()
    assert (batch.state, batch.attempts, batch.outcome_unknown) == (BatchState.IN_FLIGHT, 1, False)
    BackendConnection.objects.filter(pk=synced.pk).update(
        worker_lease_owner="drain:dead", worker_lease_until=timezone.now() - timedelta(seconds=1)
    )

    assert stale_work_reclaim() == 1
    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert netsuite.adjustment_posts == 1
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert mirror(organization)[(SKUS[0], AISLES[0])] == Decimal(99)


def test_a_batch_refused_before_it_ran_is_sent_again_without_a_lookup(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})
    netsuite.fail_next(5, status=503)  # every inline try of the first drain, refused at the edge
    push_drain(connection=synced)
    batch = PushBatch.objects.get()
    assert (batch.state, batch.outcome_unknown) == (BatchState.FAILED, False)
    PushBatch.objects.update(next_attempt_at=timezone.now())
    requests_before = netsuite.requests_made

    push_drain(connection=synced)

    assert netsuite.requests_made - requests_before == 1  # the POST, no GET first
    assert netsuite.on_hand(100, 10) == Decimal(99)


def test_one_writer_per_connection(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})
    BackendConnection.objects.filter(pk=synced.pk).update(
        worker_lease_owner="drain:other", worker_lease_until=timezone.now() + timedelta(minutes=5)
    )

    result = push_drain(connection=synced)

    assert "busy" in result.skipped
    assert netsuite.requests_made == 0 or netsuite.adjustment_posts == 0
    assert PendingPush.objects.get().state == PushState.PENDING


def test_the_concurrency_limit_is_respected(organization, manager, synced, monkeypatch):
    with fake_netsuite(concurrency_limit=2, latency=0.05) as fake:
        warehouse(fake, locations=6)
        connection = connect(organization, fake, name="limited", concurrency=2)
        BackendConnection.objects.filter(pk=synced.pk).update(is_push_target=False)
        BackendConnection.objects.filter(pk=connection.pk).update(is_push_target=True)
        backend_sync(connection=connection)
        codes = [f"DALLAS-AISLE-{index}" for index in range(1, 7)]
        approve_adjustments(organization, manager, {(SKUS[0], code): -1 for code in codes})
        connection.refresh_from_db()

        result = push_drain(connection=connection)

        assert result.accepted == 6
        assert fake.max_concurrent_seen <= 2
        assert fake.limit_breaches == 0


def test_limit_refusals_and_5xx_are_retried(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1, (SKUS[0], AISLES[1]): -1})
    netsuite.fail_next(3, status=503)

    result = push_drain(connection=synced)

    assert result.accepted == 2
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert netsuite.on_hand(100, 11) == Decimal(99)


def test_every_adjustment_lands_exactly_once_through_dropped_answers_and_503s(
    organization, manager, synced, monkeypatch
):
    """20% of answers lost after NetSuite committed, 10% of requests refused with 503."""
    monkeypatch.setattr(NetSuiteBackend, "max_batch_lines", 3)
    with fake_netsuite(seed=7) as fake:
        warehouse(fake, locations=4, items=12)
        connection = connect(organization, fake, name="flaky")
        BackendConnection.objects.filter(pk=synced.pk).update(is_push_target=False)
        BackendConnection.objects.filter(pk=connection.pk).update(is_push_target=True)
        backend_sync(connection=connection)
        codes = [f"DALLAS-AISLE-{index}" for index in range(1, 5)]
        deltas = {(f"NS-{item:04d}", code): (item % 3) - 1 or 1 for item in range(12) for code in codes}
        approve_adjustments(organization, manager, deltas)
        before = {
            (item, location): fake.on_hand(item, location) for item in range(100, 112) for location in range(10, 14)
        }
        fake.drop_after_commit_rate = 0.2
        fake.fail_rate_503 = 0.1
        connection.refresh_from_db()

        for _ in range(6):
            push_drain(connection=connection)
            PushBatch.objects.filter(state=BatchState.FAILED).update(next_attempt_at=timezone.now())
            if not PushBatch.objects.exclude(state=BatchState.ACCEPTED).exists():
                break

        assert not PushBatch.objects.exclude(state=BatchState.ACCEPTED).exists()
        assert PendingPush.objects.filter(state=PushState.ACCEPTED).count() == 48
        assert len(fake.adjustments) == PushBatch.objects.count() == 16
        for (sku, code), delta in deltas.items():
            item, location = 100 + int(sku[3:]), 10 + codes.index(code)
            assert fake.on_hand(item, location) == before[(item, location)] + delta
        assert_mirror_matches_netsuite(organization, connection, fake)


def test_a_rejected_batch_waits_for_a_person_then_goes_out_afresh(organization, manager, netsuite, synced):
    proposals = approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1, (SKUS[1], AISLES[0]): -1})
    ExternalRecord.objects.filter(connection=synced, item__sku=SKUS[1]).update(external_id="99999")

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "INVALID_KEY_OR_REF" in batch.last_error
    assert batch.needs_person
    assert netsuite.on_hand(100, 10) == Decimal(100)  # all or nothing
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"failed"}
    assert AuditLog.objects.filter(tag="push_failed", object_id=str(batch.pk)).exists()

    ExternalRecord.objects.filter(connection=synced, item__sku=SKUS[1]).update(external_id="101")
    push_batch_retry(batch=batch, actor=manager)
    again = push_drain(connection=synced)

    assert again.accepted == 1
    assert PushBatch.objects.filter(state=BatchState.ACCEPTED).exclude(pk=batch.pk).count() == 1
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert netsuite.on_hand(101, 10) == Decimal(99)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"pushed"}


def test_an_item_netsuite_does_not_know_is_refused_alone_with_the_reason(organization, manager, netsuite, synced):
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1, (SKUS[1], AISLES[0]): -1})
    ExternalRecord.objects.filter(connection=synced, item__sku=SKUS[1]).delete()

    result = push_drain(connection=synced)

    assert (result.unmappable, result.accepted) == (1, 1)
    refused = PendingPush.objects.get(state=PushState.REJECTED)
    assert f"item {SKUS[1]} has no NetSuite id" in refused.last_error
    assert refused.proposal.state == ProposalState.FAILED

    backend_sync(connection=synced)  # maps the item again
    push_retry(push=refused, actor=manager)
    push_drain(connection=synced)

    refused.refresh_from_db()
    assert refused.state == PushState.ACCEPTED
    assert netsuite.on_hand(101, 10) == Decimal(99)


def test_failures_past_the_limit_need_a_person(organization, manager, netsuite, synced, settings):
    settings.PUSH_MAX_FAILURES = 2
    proposals = approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})
    # Two drains of five inline tries each, every one refused at NetSuite's edge.
    netsuite.fail_next(10, status=503)

    push_drain(connection=synced)
    batch = PushBatch.objects.get()
    assert (batch.state, batch.failures) == (BatchState.FAILED, 1)
    assert batch.next_attempt_at > timezone.now()
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.QUEUED

    PushBatch.objects.update(next_attempt_at=timezone.now())
    push_drain(connection=synced)
    batch.refresh_from_db()
    assert (batch.failures, batch.next_attempt_at, batch.needs_person) == (2, None, True)
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.FAILED
    assert push_drain(connection=synced).sent == 0  # nobody retries it but a person

    push_batch_retry(batch=batch, actor=manager)
    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert PushBatch.objects.get().external_id == batch.external_id  # the same batch, the same id
    assert netsuite.on_hand(100, 10) == Decimal(99)
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.PUSHED


def test_without_a_push_target_adjustments_wait(organization, manager, netsuite, synced):
    BackendConnection.objects.filter(pk=synced.pk).update(is_push_target=False)
    synced.refresh_from_db()
    approve_adjustments(organization, manager, {(SKUS[0], AISLES[0]): -1})

    result = push_drain(connection=synced)

    assert "push target" in result.skipped
    assert PendingPush.objects.get().state == PushState.PENDING
    assert netsuite.adjustment_posts == 0
