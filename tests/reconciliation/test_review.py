"""Review before posting: uncounted items, extras, unmatched barcodes, variance decisions, watchlist."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import Role
from adapters.models import PendingPush
from approvals.models import Approval, Decision, ProposalState, ProposedAction
from approvals.services import DecisionInput, DecisionRefused, proposal_decide
from audit.models import AuditLog
from counts.models import (
    CountEvent,
    CountKind,
    CountLine,
    CountRequest,
    CountRun,
    CountSession,
    EventStatus,
    RunState,
    SessionState,
    SignalKind,
)
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create, count_run_start, directed_request_add
from counts.services.sessions import count_session_start, count_session_submit
from reconciliation.models import Guardrail, Routing, Variance
from reconciliation.review import extra_include, uncounted_accept_zero, unmatched_match
from reconciliation.review_selectors import accept_zero_event_id, match_event_id, watchlist_list
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.approvals.conftest import signer
from tests.conftest import token_client
from tests.counts.conftest import scan
from tests.factories import (
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    ItemFactory,
    LocationFactory,
    ZoneFactory,
    member,
)

UNKNOWN_BARCODE = "000000000017"
COUNTED_AT = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _root_causes(organization):
    root_causes_ensure(organization=organization)


@dataclass
class Store:
    locations: list
    items: list
    barcodes: list


@pytest.fixture
def store(organization, facility) -> Store:
    """Three bins, one item each, on hand 10, 20 and 30 at $5.00."""
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    locations = [LocationFactory(organization=organization, zone=zone, code=f"A-{n}") for n in range(1, 4)]
    barcodes = [
        ItemBarcodeFactory(item__organization=organization, item__average_cost=Decimal("5.00")) for _ in range(3)
    ]
    items = [barcode.item for barcode in barcodes]
    for index, item in enumerate(items):
        InventoryBalanceFactory(
            organization=organization, location=locations[index], item=item, on_hand=Decimal(10 * (index + 1))
        )
    return Store(locations=locations, items=items, barcodes=[barcode.value for barcode in barcodes])


@pytest.fixture
def second_manager(organization):
    return member(organization, Role.MANAGER, username="manager2")


def _counted(run, user, events) -> CountSession:
    session = count_session_start(run=run, user=user, device_id="scanner-1")
    count_events_ingest(session=session, actor=user, events=events)
    return count_session_submit(session=session, actor=user)


def _hard_run(organization, facility, manager, name="Hard count") -> CountRun:
    return count_run_create(organization=organization, facility=facility, name=name, kind=CountKind.HARD, actor=manager)


def _item(location, sku) -> dict:
    return {"item": sku, "location": location}


# --- Hard counts: uncounted items ----------------------------------------------------------------


@pytest.fixture
def reviewed_hard_run(organization, facility, manager, associate, store) -> CountRun:
    """A hard run in review where only the first bin was counted (exactly)."""
    run = _hard_run(organization, facility, manager)
    _counted(run, associate, [scan("A-1", store.barcodes[0], quantity=10)])
    run_reconcile(run=run, actor=manager)
    return run


def test_review_lists_the_stocked_items_nobody_counted(manager_api, reviewed_hard_run, store):
    body = manager_api.get(f"/api/runs/{reviewed_hard_run.pk}/review").json()

    assert body["uncounted"]["count"] == 2
    assert [(row["location"], row["item"], row["book"]) for row in body["uncounted"]["results"]] == [
        ("A-2", store.items[1].sku, "20.000"),
        ("A-3", store.items[2].sku, "30.000"),
    ]
    assert body["requested_uncounted"] == body["extras"] == body["unmatched"] == []
    paged = manager_api.get(f"/api/runs/{reviewed_hard_run.pk}/uncounted/?limit=1&offset=1").json()
    assert (paged["count"], [row["item"] for row in paged["results"]]) == (2, [store.items[2].sku])


def test_accepting_zero_records_who_and_when_and_gives_the_line_its_variance(
    manager_api, manager, reviewed_hard_run, store
):
    before = datetime.now(tz=UTC)

    response = manager_api.post(
        f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero",
        {"items": [_item("A-2", store.items[1].sku)]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["accepted"] == [{"item": store.items[1].sku, "location": "A-2", "book": "20.000"}]
    line = CountLine.objects.get(run=reviewed_hard_run, item=store.items[1])
    assert (line.counted_quantity, line.book_quantity, line.is_extra) == (Decimal("0"), Decimal("20"), False)
    event = CountEvent.objects.get(run=reviewed_hard_run, item=store.items[1])
    assert (event.user, event.kind, event.quantity, event.mode) == (manager, "set", Decimal("0"), "import")
    assert event.counted_by == "accepted zero by manager"
    assert event.received_at >= before
    assert event.event_id == accept_zero_event_id(
        run_id=reviewed_hard_run.pk, location_id=line.location_id, item_id=line.item_id
    )
    assert event.session.state == SessionState.SUBMITTED
    variance = Variance.objects.get(line=line, superseded_at__isnull=True)
    assert (variance.counted_quantity, variance.variance_units, variance.routing) == (
        Decimal("0"),
        Decimal("-20"),
        Routing.PROPOSAL,
    )
    log = AuditLog.objects.get(tag="uncounted_accepted_zero")
    assert (log.actor, log.object_id, log.data["items"][0]["item"]) == (
        manager,
        str(reviewed_hard_run.pk),
        store.items[1].sku,
    )
    assert log.created_at >= before
    # The third bin is still waiting for a decision; nothing was posted.
    assert not CountLine.objects.filter(run=reviewed_hard_run, item=store.items[2]).exists()
    assert not PendingPush.objects.exists()


def test_accepting_zero_twice_changes_nothing(manager, reviewed_hard_run, store):
    first = uncounted_accept_zero(run=reviewed_hard_run, actor=manager, keys=None)
    counts = (CountEvent.objects.count(), Variance.objects.count(), ProposedAction.objects.count())

    second = uncounted_accept_zero(run=reviewed_hard_run, actor=manager, keys=None)

    assert len(first.accepted) == 2
    assert (second.accepted, second.session) == ([], None)
    assert (CountEvent.objects.count(), Variance.objects.count(), ProposedAction.objects.count()) == counts
    assert AuditLog.objects.filter(tag="uncounted_accepted_zero").count() == 1


def test_who_accepted_zero_cannot_also_approve_the_write_off(manager, second_manager, reviewed_hard_run, store):
    uncounted_accept_zero(run=reviewed_hard_run, actor=manager, keys=None)
    proposal = ProposedAction.objects.get(item=store.items[1])
    decision = DecisionInput(decision="approve", reason_code="ANNUAL_COUNT_ADJUSTMENT", root_cause="shrink_theft")

    with pytest.raises(DecisionRefused) as refused:
        proposal_decide(proposal=proposal, actor=manager, decision=decision)

    assert refused.value.rule == "counted_line"
    assert proposal_decide(proposal=proposal, actor=second_manager, decision=decision).state == ProposalState.APPROVED


def test_uncounted_items_can_go_to_a_follow_up_directed_run(manager_api, manager, reviewed_hard_run, store):
    response = manager_api.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/recount", {"all": True}, format="json")

    assert response.status_code == 200, response.json()
    follow_up = CountRun.objects.get(pk=response.json()["run"])
    assert (follow_up.kind, follow_up.state, follow_up.facility_id) == (
        CountKind.DIRECTED,
        RunState.SCHEDULED,
        reviewed_hard_run.facility_id,
    )
    assert set(CountRequest.objects.filter(run=follow_up).values_list("item_id", "location_id", "reason")) == {
        (store.items[1].pk, store.locations[1].pk, SignalKind.PLANNED),
        (store.items[2].pk, store.locations[2].pk, SignalKind.PLANNED),
    }
    assert AuditLog.objects.get(tag="uncounted_recount_requested").data["follow_up_run"] == follow_up.pk
    # Still uncounted here (nothing is posted for them), and shown with their follow-up run.
    review = manager_api.get(f"/api/runs/{reviewed_hard_run.pk}/review").json()
    assert {row["follow_up_run"] for row in review["uncounted"]["results"]} == {follow_up.pk}
    reviewed_hard_run.refresh_from_db()
    assert reviewed_hard_run.state == RunState.IN_REVIEW

    again = manager_api.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/recount", {"all": True}, format="json")

    assert again.json() == {"run": follow_up.pk, "requested": 0, "repeated": 2}
    assert set(CountRequest.objects.filter(run=follow_up).values_list("signal_count", flat=True)) == {1}


def test_uncounted_input_is_checked_by_row(manager_api, reviewed_hard_run, store):
    url = f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero"

    unknown = manager_api.post(url, {"items": [_item("A-2", store.items[1].sku), _item("B-9", "NOPE")]}, format="json")
    neither = manager_api.post(url, {}, format="json")

    assert unknown.status_code == 400
    assert set(unknown.json()["errors"]["items"]["1"]) == {"item", "location"}
    assert neither.status_code == 400
    assert not CountLine.objects.filter(item=store.items[1]).exists()


def test_a_manager_counting_elsewhere_finishes_that_session_first(
    manager_api, organization, facility, manager, reviewed_hard_run
):
    elsewhere = count_session_start(
        run=_hard_run(organization, facility, manager, name="Other"), user=manager, device_id="x"
    )

    response = manager_api.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero", {"all": True}, format="json")

    assert response.status_code == 409
    assert f"session ({elsewhere.pk}" in response.json()["detail"]
    assert not CountEvent.objects.filter(mode="import").exists()
    assert not AuditLog.objects.filter(tag="uncounted_accepted_zero").exists()


def test_review_actions_need_a_run_in_review(manager_api, organization, facility, manager, store):
    run = count_run_start(run=_hard_run(organization, facility, manager), actor=manager)

    response = manager_api.post(f"/api/runs/{run.pk}/uncounted/accept-zero", {"all": True}, format="json")

    assert response.status_code == 409
    assert not CountEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_managers_accepting_zero_at_once_record_it_once(reviewed_hard_run, manager, second_manager):
    barrier = threading.Barrier(2)
    accepted: list[int] = []

    def accept(user) -> None:
        try:
            barrier.wait()
            accepted.append(len(uncounted_accept_zero(run=reviewed_hard_run, actor=user, keys=None).accepted))
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(user,)) for user in (manager, second_manager)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(accepted) == [0, 2]
    assert CountEvent.objects.filter(run=reviewed_hard_run, mode="import").count() == 2
    assert Variance.objects.filter(run=reviewed_hard_run, counted_quantity=0).count() == 2
    assert AuditLog.objects.filter(tag="uncounted_accepted_zero").count() == 1


# --- Directed counts: requested-uncounted and extras ------------------------------------------------


@pytest.fixture
def reviewed_directed_run(organization, manager, associate, store) -> CountRun:
    """Requested: item 0 at A-1 (counted 10 of 10) and item 2 at A-3 (not counted).
    Extras: item 1 at A-2 (18 of 20) and item 1 at A-1 (4, no stock there)."""
    run = directed_request_add(
        organization=organization,
        item=store.items[0],
        location=store.locations[0],
        reason=SignalKind.PICK_SHORT,
        actor=manager,
    ).run
    directed_request_add(
        organization=organization, item=store.items[2], location=store.locations[2], reason="planned", actor=manager
    )
    _counted(
        run,
        associate,
        [
            scan("A-1", store.barcodes[0], quantity=10),
            scan("A-2", store.barcodes[1], quantity=18),
            scan("A-1", store.barcodes[1], quantity=4, offset=1),
        ],
    )
    run_reconcile(run=run, actor=manager)
    return run


def test_directed_review_lists_requested_uncounted_and_extras(manager_api, reviewed_directed_run, store):
    body = manager_api.get(f"/api/runs/{reviewed_directed_run.pk}/review").json()

    assert body["uncounted"] == {"count": 0, "results": []}
    assert [(row["item"], row["location"], row["reason"]) for row in body["requested_uncounted"]] == [
        (store.items[2].sku, "A-3", "planned")
    ]
    assert [(row["location"], row["item"], row["counted"], row["decision"]) for row in body["extras"]] == [
        ("A-1", store.items[1].sku, "4.000", None),
        ("A-2", store.items[1].sku, "18.000", None),
    ]
    assert body["totals"]["extras_undecided"] == 2
    assert not Variance.objects.filter(line__is_extra=True).exists()


def test_including_an_extra_gives_it_a_variance_once(manager_api, manager, reviewed_directed_run, store):
    line = CountLine.objects.get(run=reviewed_directed_run, item=store.items[1], location=store.locations[1])
    url = f"/api/runs/{reviewed_directed_run.pk}/extras/{line.pk}"

    response = manager_api.post(f"{url}/include", {"note": "it was on the shelf"}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["decision"], body["decided_by"], body["note"], body["routing"]) == (
        "included",
        "manager",
        "it was on the shelf",
        Routing.PROPOSAL,
    )
    line.refresh_from_db()
    assert line.is_extra is False
    variance = Variance.objects.get(line=line)
    assert (variance.pk, variance.variance_units) == (body["variance"], Decimal("-2"))
    log = AuditLog.objects.get(tag="extra_included")
    assert (log.actor, log.object_id, log.reason) == (manager, str(line.pk), "it was on the shelf")

    assert manager_api.post(f"{url}/include", {}, format="json").status_code == 409
    assert manager_api.post(f"{url}/discard", {}, format="json").status_code == 409
    assert Variance.objects.filter(line=line).count() == 1


def test_discarding_an_extra_keeps_it_out_and_is_recorded(manager_api, manager, reviewed_directed_run, store):
    line = CountLine.objects.get(run=reviewed_directed_run, item=store.items[1], location=store.locations[0])
    url = f"/api/runs/{reviewed_directed_run.pk}/extras/{line.pk}"

    response = manager_api.post(f"{url}/discard", {"note": "belongs to A-2"}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["decision"], response.json()["variance"]) == ("discarded", None)
    assert AuditLog.objects.get(tag="extra_discarded").actor == manager
    run_reconcile(run=reviewed_directed_run, actor=manager)
    assert not Variance.objects.filter(line=line).exists()
    assert manager_api.post(f"{url}/discard", {}, format="json").status_code == 409
    assert manager_api.post(f"{url}/include", {}, format="json").status_code == 409


def test_a_requested_line_is_not_an_extra(manager_api, reviewed_directed_run, store):
    line = CountLine.objects.get(run=reviewed_directed_run, item=store.items[0])

    response = manager_api.post(f"/api/runs/{reviewed_directed_run.pk}/extras/{line.pk}/discard", {}, format="json")

    assert response.status_code == 409
    assert not AuditLog.objects.filter(tag="extra_discarded").exists()


def test_requested_uncounted_can_take_zero(manager_api, reviewed_directed_run, store):
    response = manager_api.post(
        f"/api/runs/{reviewed_directed_run.pk}/uncounted/accept-zero",
        {"items": [_item("A-3", store.items[2].sku)]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    line = CountLine.objects.get(run=reviewed_directed_run, item=store.items[2])
    assert (line.counted_quantity, line.is_extra) == (Decimal("0"), False)
    assert Variance.objects.get(line=line).variance_units == Decimal("-30")


# --- Unmatched barcodes ----------------------------------------------------------------------------


@pytest.fixture
def short_bin(organization, facility, manager, associate):
    """Book 5; the associate scanned the item 3 times and an unknown barcode twice."""
    zone = ZoneFactory(organization=organization, facility=facility, code="U")
    location = LocationFactory(organization=organization, zone=zone, code="U-1")
    barcode = ItemBarcodeFactory(item__organization=organization, item__average_cost=Decimal("5.00"))
    InventoryBalanceFactory(organization=organization, location=location, item=barcode.item, on_hand=Decimal("5"))
    run = _hard_run(organization, facility, manager, name="Unmatched")
    unknown = [scan("U-1", UNKNOWN_BARCODE, offset=10 + n) for n in range(2)]
    _counted(run, associate, [*(scan("U-1", barcode.value, offset=n) for n in range(3)), *unknown])
    run_reconcile(run=run, actor=manager)
    return run, barcode.item, [uuid.UUID(event["event_id"]) for event in unknown]


def test_matching_unknown_barcodes_makes_them_count_and_supersedes_the_proposal(manager_api, manager, short_bin):
    run, item, unknown_ids = short_bin
    old_proposal = ProposedAction.objects.get(run=run)
    assert (old_proposal.state, old_proposal.delta) == (ProposalState.PENDING, Decimal("-2"))
    review = manager_api.get(f"/api/runs/{run.pk}/review").json()
    assert [(row["barcode"], row["resolved"]) for row in review["unmatched"]] == [(UNKNOWN_BARCODE, False)] * 2

    response = manager_api.post(
        f"/api/runs/{run.pk}/unmatched/{unknown_ids[0]}/match", {"item": item.sku, "same_barcode": True}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["matched"] == [str(event_id) for event_id in unknown_ids]
    assert [(row["counted"], row["routing"]) for row in body["lines"]] == [("5.000", Routing.NONE)]
    assert CountLine.objects.get(run=run).counted_quantity == Decimal("5")
    old_proposal.refresh_from_db()
    assert old_proposal.state == ProposalState.SUPERSEDED
    assert Variance.objects.get(run=run, superseded_at__isnull=True).routing == Routing.NONE
    # The scans stay as they were; their re-readings are new events with derived ids.
    originals = CountEvent.objects.filter(event_id__in=unknown_ids)
    assert {(event.status, event.item_id) for event in originals} == {(EventStatus.UNMATCHED, None)}
    derived = CountEvent.objects.filter(event_id__in=[match_event_id(event_id) for event_id in unknown_ids])
    assert {(event.status, event.item_id, event.counted_by) for event in derived} == {
        (EventStatus.MATCHED, item.pk, "associate")
    }
    assert AuditLog.objects.get(tag="unmatched_matched").actor == manager
    review = manager_api.get(f"/api/runs/{run.pk}/review").json()
    assert [(row["resolved"], row["matched_item"], row["matched_by"]) for row in review["unmatched"]] == [
        (True, item.sku, "manager")
    ] * 2

    again = manager_api.post(f"/api/runs/{run.pk}/unmatched/{unknown_ids[1]}/match", {"item": item.sku}, format="json")
    assert again.status_code == 409
    assert CountLine.objects.get(run=run).counted_quantity == Decimal("5")


def test_matching_one_scan_counts_only_that_scan(manager_api, short_bin):
    run, item, unknown_ids = short_bin

    response = manager_api.post(f"/api/runs/{run.pk}/unmatched/{unknown_ids[1]}/match", {"item": item.sku})

    assert response.status_code == 200, response.json()
    assert response.json()["matched"] == [str(unknown_ids[1])]
    current = Variance.objects.get(run=run, superseded_at__isnull=True)
    assert (current.counted_quantity, current.variance_units, current.routing) == (
        Decimal("4"),
        Decimal("-1"),
        Routing.PROPOSAL,
    )
    assert ProposedAction.objects.filter(run=run, state=ProposalState.PENDING).get().variance == current


def test_a_match_cannot_change_a_count_whose_adjustment_was_approved(
    manager_api, second_manager, short_bin, organization
):
    run, item, unknown_ids = short_bin
    proposal_decide(
        proposal=ProposedAction.objects.get(run=run),
        actor=second_manager,
        decision=DecisionInput(decision="approve", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount"),
    )

    response = manager_api.post(f"/api/runs/{run.pk}/unmatched/{unknown_ids[0]}/match", {"item": item.sku})

    assert response.status_code == 409
    assert not CountEvent.objects.filter(event_id=match_event_id(unknown_ids[0])).exists()
    assert CountLine.objects.get(run=run).counted_quantity == Decimal("3")


def test_matching_needs_a_known_item_and_an_unmatched_scan(manager_api, short_bin):
    run, item, unknown_ids = short_bin
    url = f"/api/runs/{run.pk}/unmatched/{unknown_ids[0]}/match"

    assert manager_api.post(url, {"item": "NO-SUCH-SKU"}).status_code == 400
    assert manager_api.post(f"/api/runs/{run.pk}/unmatched/{uuid.uuid4()}/match", {"item": item.sku}).status_code == 404
    assert not CountEvent.objects.filter(event_id=match_event_id(unknown_ids[0])).exists()


def test_an_included_extra_stays_included_when_a_match_adds_to_it(
    manager, reviewed_directed_run, store, associate, organization
):
    line = CountLine.objects.get(run=reviewed_directed_run, item=store.items[1], location=store.locations[1])
    extra_include(run=reviewed_directed_run, line=line, actor=manager)
    # An unknown barcode scanned in the same bin, found to be the same item.
    session = CountSession.objects.get(run=reviewed_directed_run, user=associate)
    event = CountEvent.objects.create(
        organization=organization, event_id=uuid.uuid4(), session=session, run=reviewed_directed_run,
        user=associate, location=store.locations[1], barcode=UNKNOWN_BARCODE, quantity=Decimal("2"), kind="add",
        mode="scan", status=EventStatus.UNMATCHED, counted_at=COUNTED_AT, received_at=COUNTED_AT,
    )  # fmt: skip

    unmatched_match(run=reviewed_directed_run, event_id=event.event_id, item=store.items[1], actor=manager)

    line.refresh_from_db()
    assert (line.counted_quantity, line.is_extra) == (Decimal("20"), False)
    assert Variance.objects.get(line=line, superseded_at__isnull=True).routing == Routing.NONE


# --- Variance decisions ------------------------------------------------------------------------------


def _decide(client, variance, **body):
    return client.post(f"/api/variances/{variance.pk}/decide", body, format="json")


def test_applying_a_variance_approves_it_and_writes_the_outbox_row(lines, manager):
    line = lines.line(book="10", counted="4", cost="50.00")  # −$300: a manager alone
    run_reconcile(run=lines.run, actor=manager)
    variance = Variance.objects.get(line=line)

    response = _decide(
        signer(manager), variance, action="apply", reason_code="ANNUAL_COUNT_ADJUSTMENT", root_cause="shrink_theft"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == ProposalState.APPROVED
    assert response.json()["approvals"][0]["approver"] == "manager"
    push = PendingPush.objects.get()
    assert push.proposal.variance_id == variance.pk


def test_skipping_a_variance_records_the_decision_and_posts_nothing(lines, manager):
    line = lines.line(book="10", counted="4", cost="50.00")
    run_reconcile(run=lines.run, actor=manager)
    variance = Variance.objects.get(line=line)

    response = _decide(
        signer(manager),
        variance,
        action="skip",
        reason_code="PARTIAL_SCOPE_POST",
        root_cause="other",
        note="the bin is being moved; counted again next week",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == ProposalState.REJECTED
    signature = Approval.objects.get()
    assert (signature.decision, signature.reason_code, signature.root_cause.code, signature.approver) == (
        Decision.REJECT,
        "PARTIAL_SCOPE_POST",
        "other",
        manager,
    )
    assert not PendingPush.objects.exists()
    assert Variance.objects.get(pk=variance.pk).superseded_at is None  # still recorded
    assert AuditLog.objects.filter(tag="proposal_rejected", actor=manager).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "skip", "reason_code": "MANAGER_OVERRIDE"}, "root_cause"),
        ({"action": "skip", "reason_code": "MANAGER_OVERRIDE", "root_cause": "other"}, "note"),
        ({"action": "apply", "reason_code": "BECAUSE", "root_cause": "miscount"}, "reason_code"),
        ({"action": "apply", "reason_code": "MANAGER_OVERRIDE", "root_cause": "no_such_cause"}, "root_cause"),
        ({"action": "post", "reason_code": "MANAGER_OVERRIDE", "root_cause": "miscount"}, "action"),
    ],
)
def test_a_decision_needs_a_reason_and_a_root_cause(lines, manager, body, field):
    line = lines.line(book="10", counted="4", cost="50.00")
    run_reconcile(run=lines.run, actor=manager)

    response = _decide(signer(manager), Variance.objects.get(line=line), **body)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Approval.objects.exists()


def test_a_decision_needs_the_edit_token(lines, manager, manager_api):
    line = lines.line(book="10", counted="4", cost="50.00")
    run_reconcile(run=lines.run, actor=manager)

    response = _decide(
        manager_api, Variance.objects.get(line=line), action="apply", reason_code="MANAGER_OVERRIDE", root_cause="found"
    )

    assert response.status_code == 403
    assert response.json()["rule"] == "edit_token"
    assert AuditLog.objects.filter(tag="approval_refused").exists()
    assert not PendingPush.objects.exists()


@pytest.mark.parametrize(("book", "counted", "cost"), [("50", "50", "1.00"), ("100", "101", "1.00")])
def test_auto_and_exact_variances_have_nothing_to_decide(lines, manager, book, counted, cost):
    line = lines.line(book=book, counted=counted, cost=cost)
    run_reconcile(run=lines.run, actor=manager)

    response = _decide(
        signer(manager), Variance.objects.get(line=line), action="skip", reason_code="MANAGER_OVERRIDE",
        root_cause="miscount",
    )  # fmt: skip

    assert response.status_code == 409
    assert "nothing to decide" in response.json()["detail"]
    assert not Approval.objects.exists()


def test_a_decided_variance_is_a_conflict(lines, manager):
    line = lines.line(book="10", counted="4", cost="50.00")
    run_reconcile(run=lines.run, actor=manager)
    variance = Variance.objects.get(line=line)
    client = signer(manager)
    body = {"action": "skip", "reason_code": "MANAGER_OVERRIDE", "root_cause": "miscount"}

    assert _decide(client, variance, **body).status_code == 200
    assert _decide(client, variance, **body).status_code == 409
    assert Approval.objects.count() == 1


# --- Recount watchlist -------------------------------------------------------------------------------


class History:
    """Counts of the same item × locations run after run, reconciled one after the other."""

    def __init__(self, organization, facility, manager) -> None:
        self.organization, self.facility, self.manager = organization, facility, manager
        zone = ZoneFactory(organization=organization, facility=facility, code="W")
        self.locations = [LocationFactory(organization=organization, zone=zone, code=f"W-{n}") for n in range(2)]
        self.items = [ItemFactory(organization=organization, average_cost=Decimal("1.00")) for _ in range(2)]
        for location, item in zip(self.locations, self.items, strict=True):
            InventoryBalanceFactory(organization=organization, location=location, item=item, on_hand=Decimal("100"))
        self.runs: list[CountRun] = []

    def run(self, *counted: str) -> CountRun:
        """One reconciled run; `counted[i]` is what was counted of item i (book 100, $1 each):
        "100" exact, "101" within tolerance (auto), "90" beyond it (a proposal)."""
        run = count_run_start(
            run=_hard_run(self.organization, self.facility, self.manager, name=f"Count {len(self.runs) + 1}"),
            actor=self.manager,
        )
        CountLine.objects.bulk_create(
            CountLine(
                organization=self.organization, run=run, location=location, item=item,
                counted_quantity=Decimal(quantity), book_quantity=Decimal("100"),
                first_counted_at=COUNTED_AT, last_counted_at=COUNTED_AT,
            )
            for location, item, quantity in zip(self.locations, self.items, counted, strict=True)
        )  # fmt: skip
        run_reconcile(run=run, actor=self.manager)
        self.runs.append(run)
        return run


@pytest.fixture
def history(organization, facility, manager) -> History:
    return History(organization, facility, manager)


def test_two_of_the_last_three_counts_beyond_tolerance_put_an_item_on_the_watchlist(manager_api, history):
    history.run("90", "90")
    history.run("101", "100")
    history.run("90", "101")  # item 0: 2 of 3 beyond tolerance; item 1: 1 of 3

    response = manager_api.get("/api/watchlist/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    entry = body["results"][0]
    assert (entry["item"], entry["location"], entry["hits"], entry["counts"]) == (history.items[0].sku, "W-0", 2, 3)
    assert (entry["hits_needed"], entry["window"], entry["directed_run"]) == (2, 3, None)


def test_only_the_last_counts_in_the_window_matter(organization, history):
    history.run("90", "100")
    history.run("90", "100")
    history.run("101", "100")
    history.run("100", "100")  # item 0's last three: exact, auto, beyond → 1 hit

    assert watchlist_list(organization=organization) == []


def test_the_watchlist_follows_the_guardrail(organization, facility, history):
    Guardrail.objects.create(organization=organization, watchlist_hits=3, watchlist_window=3)
    history.run("90", "100")
    history.run("101", "100")
    history.run("90", "100")
    assert watchlist_list(organization=organization) == []

    Guardrail.objects.create(organization=organization, facility=facility, watchlist_hits=2, watchlist_window=2)

    assert [entry.item_sku for entry in watchlist_list(organization=organization)] == []  # last 2: auto, beyond
    history.run("90", "100")
    assert [entry.item_sku for entry in watchlist_list(organization=organization)] == [history.items[0].sku]


def test_flagging_a_run_sends_its_watchlisted_items_to_a_directed_recount(manager_api, manager, history):
    history.run("90", "90")
    history.run("101", "100")
    last = history.run("90", "101")

    response = manager_api.post(f"/api/runs/{last.pk}/watchlist")

    assert response.status_code == 200, response.json()
    body = response.json()
    directed = CountRun.objects.get(pk=body["run"])
    assert directed.kind == CountKind.DIRECTED
    request = CountRequest.objects.get(run=directed)
    assert (request.item, request.location, request.reason) == (
        history.items[0],
        history.locations[0],
        SignalKind.RECURRING_VARIANCE,
    )
    assert [entry["item"] for entry in body["flagged"]] == [history.items[0].sku]
    assert AuditLog.objects.get(tag="watchlist_flagged").actor == manager
    assert manager_api.get("/api/watchlist/").json()["results"][0]["directed_run"] == directed.pk

    again = manager_api.post(f"/api/runs/{last.pk}/watchlist").json()

    assert (again["run"], again["flagged"], len(again["already_requested"])) == (None, [], 1)
    assert CountRequest.objects.get(run=directed).signal_count == 1


def test_flagging_a_run_that_is_not_on_the_watchlist_changes_nothing(manager_api, history):
    history.run("90", "100")
    quiet = history.run("100", "100")

    body = manager_api.post(f"/api/runs/{quiet.pk}/watchlist").json()

    assert (body["run"], body["flagged"]) == (None, [])
    assert not CountRequest.objects.exists()


# --- Access --------------------------------------------------------------------------------------------


def test_another_organizations_manager_gets_404(other_organization, reviewed_hard_run, store, history):
    history.run("90", "90")
    history.run("90", "90")
    outsider = signer(member(other_organization, Role.MANAGER, username="outsider"))
    variance = Variance.objects.filter(routing=Routing.PROPOSAL).first()
    line = CountLine.objects.filter(run=reviewed_hard_run).first()

    responses = [
        outsider.get(f"/api/runs/{reviewed_hard_run.pk}/review"),
        outsider.get(f"/api/runs/{reviewed_hard_run.pk}/uncounted/"),
        outsider.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero", {"all": True}, format="json"),
        outsider.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/recount", {"all": True}, format="json"),
        outsider.post(f"/api/runs/{reviewed_hard_run.pk}/extras/{line.pk}/include", {}, format="json"),
        outsider.post(f"/api/runs/{reviewed_hard_run.pk}/unmatched/{uuid.uuid4()}/match", {"item": "X"}),
        outsider.post(f"/api/runs/{history.runs[-1].pk}/watchlist"),
        _decide(outsider, variance, action="skip", reason_code="MANAGER_OVERRIDE", root_cause="miscount"),
    ]

    assert [response.status_code for response in responses] == [404] * len(responses)
    assert outsider.get("/api/watchlist/").json() == {"count": 0, "results": []}
    assert not CountEvent.objects.filter(mode="import").exists()
    assert not CountRequest.objects.exists()
    assert not Approval.objects.exists()


def test_associates_are_refused(associate, reviewed_hard_run, history):
    history.run("90", "90")
    client = token_client(associate)
    variance = Variance.objects.filter(routing=Routing.PROPOSAL).first()

    responses = [
        client.get(f"/api/runs/{reviewed_hard_run.pk}/review"),
        client.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero", {"all": True}, format="json"),
        client.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/recount", {"all": True}, format="json"),
        client.post(f"/api/runs/{history.runs[-1].pk}/watchlist"),
        client.post(
            f"/api/variances/{variance.pk}/decide",
            {"action": "apply", "reason_code": "MANAGER_OVERRIDE", "root_cause": "miscount"},
            format="json",
        ),
        client.get("/api/watchlist/"),
    ]

    assert [response.status_code for response in responses] == [403] * len(responses)
    assert not CountLine.objects.filter(counted_quantity=0).exists()


def test_finance_reads_the_review_but_does_not_decide_it(organization, reviewed_hard_run):
    finance = token_client(member(organization, Role.FINANCE, username="finance"))

    assert finance.get(f"/api/runs/{reviewed_hard_run.pk}/review").status_code == 200
    assert finance.get("/api/watchlist/").status_code == 200
    response = finance.post(f"/api/runs/{reviewed_hard_run.pk}/uncounted/accept-zero", {"all": True}, format="json")
    assert response.status_code == 403


# --- Query shape -----------------------------------------------------------------------------------------


def _review_queries(client, run) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/api/runs/{run.pk}/review").status_code == 200
    return len(queries)


def _unknown_scans(run, user, locations, numbers) -> None:
    session = CountSession.objects.get(run=run, user=user)
    CountEvent.objects.bulk_create(
        CountEvent(
            organization_id=run.organization_id, event_id=uuid.uuid4(), session=session, run=run, user=user,
            location=locations[n % len(locations)], barcode=f"UNKNOWN-{n}", quantity=Decimal("1"), kind="add",
            mode="scan", status=EventStatus.UNMATCHED, counted_at=COUNTED_AT, received_at=COUNTED_AT,
        )
        for n in numbers
    )  # fmt: skip


def test_the_review_page_does_not_grow_queries_with_rows(manager_api, manager, reviewed_directed_run, associate, store):
    _unknown_scans(reviewed_directed_run, associate, store.locations, range(1))
    few = _review_queries(manager_api, reviewed_directed_run)
    _unknown_scans(reviewed_directed_run, associate, store.locations, range(1, 12))
    extra = CountLine.objects.filter(run=reviewed_directed_run, is_extra=True).first()
    extra_include(run=reviewed_directed_run, line=extra, actor=manager)

    assert _review_queries(manager_api, reviewed_directed_run) == few
