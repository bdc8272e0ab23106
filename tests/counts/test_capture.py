"""Capture: every scan stored once, never lost; counts derived from scans."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from accounts.roles import Role
from counts.models import CountEvent, CountKind, CountLine, CountSession, EventStatus, SessionTally
from counts.services.capture import SessionNotCapturing, count_events_ingest
from counts.services.planning import count_run_create, directed_request_add
from counts.services.preferences import facility_count_settings_update
from counts.services.sessions import (
    count_session_pause,
    count_session_resume,
    count_session_start,
    count_session_submit,
)
from tests.counts.conftest import scan
from tests.factories import FacilityFactory, InventoryBalanceFactory, ItemBarcodeFactory, OrganizationFactory, member


@pytest.fixture
def session(hard_run, associate):
    return count_session_start(run=hard_run, user=associate, device_id="scanner-1")


def _post(api, session, events):
    return api.post("/api/inventory/count", {"session": session.pk, "events": events}, format="json")


def test_same_batch_three_times_has_one_effect(associate_api, session, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    batch = [scan(location, barcode, offset=i) for i in range(5)]

    responses = [_post(associate_api, session, batch).json() for _ in range(3)]

    totals = {key: value for key, value in responses[0].items() if key != "events"}
    assert totals == {"accepted": 5, "duplicates": 0, "unmatched": 0, "extra": 0, "refused": 0, "rejected": []}
    assert [event["status"] for event in responses[0]["events"]] == ["matched"] * 5
    assert not any(event["duplicate"] for event in responses[0]["events"])
    assert all(event["duplicate"] for event in responses[2]["events"])
    assert responses[2]["events"][0]["item"] == warehouse.barcodes[0].item.sku
    assert responses[1]["accepted"] == responses[2]["accepted"] == 0
    assert responses[1]["duplicates"] == responses[2]["duplicates"] == 5
    assert CountEvent.objects.count() == 5
    line = CountLine.objects.get()
    assert line.counted_quantity == Decimal("5")


def test_duplicate_ids_inside_one_batch_count_once(session, associate, warehouse):
    event = scan(warehouse.locations[0].code, warehouse.barcodes[0].value)

    result = count_events_ingest(session=session, actor=associate, events=[event, dict(event)])

    assert (result.accepted, result.duplicates) == (1, 1)
    assert [outcome["duplicate"] for outcome in result.events] == [False, True]


def test_set_replaces_and_later_adds_add(session, associate, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    events = [
        scan(location, barcode, offset=0),
        scan(location, barcode, offset=1),
        scan(location, barcode, quantity=7, kind="set", mode="manual", offset=2),
        scan(location, barcode, offset=3),
    ]

    count_events_ingest(session=session, actor=associate, events=events)

    assert SessionTally.objects.get().quantity == Decimal("8")


def test_offline_scans_arriving_late_are_replayed_in_counted_order(session, associate, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    count_events_ingest(
        session=session, actor=associate, events=[scan(location, barcode, quantity=4, kind="set", offset=100)]
    )

    # Scans made before the correction, synced afterwards, must not inflate the corrected count.
    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode, offset=10)])

    assert SessionTally.objects.get().quantity == Decimal("4")


def test_unknown_barcodes_are_kept_as_unmatched(session, associate, warehouse):
    result = count_events_ingest(
        session=session, actor=associate, events=[scan(warehouse.locations[0].code, "999999999999")]
    )

    assert (result.accepted, result.unmatched) == (1, 1)
    event = CountEvent.objects.get()
    assert (event.status, event.item_id, event.barcode) == (EventStatus.UNMATCHED, None, "999999999999")
    assert not CountLine.objects.exists()


def test_malformed_events_are_rejected_one_by_one_and_the_rest_stored(associate_api, session, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    good = scan(location, barcode)
    events = [
        good,
        scan(location, barcode, quantity=-2),
        {**scan(location, barcode), "event_id": None},
        scan(location, barcode, counted_at="yesterday-ish"),
        scan("NO-SUCH-BIN", barcode),
        scan(location, barcode, counted_at="2026-11-20T10:00:00"),
    ]

    body = _post(associate_api, session, events).json()

    assert body["accepted"] == 1
    assert [rejection["index"] for rejection in body["rejected"]] == [1, 2, 3, 4, 5]
    assert "quantity" in body["rejected"][0]["errors"]
    assert "event_id" in body["rejected"][1]["errors"]
    assert "counted_at" in body["rejected"][2]["errors"]
    assert "location" in body["rejected"][3]["errors"]
    assert "counted_at" in body["rejected"][4]["errors"]
    assert [event["status"] for event in body["events"]] == ["matched"] + ["rejected"] * 5
    assert list(CountEvent.objects.values_list("event_id", flat=True)) == [uuid.UUID(good["event_id"])]


def test_book_quantity_is_frozen_when_first_counted(session, associate, warehouse):
    location, item = warehouse.locations[0], warehouse.items[0]
    barcode = warehouse.barcodes[0].value
    count_events_ingest(session=session, actor=associate, events=[scan(location.code, barcode)])
    balance = item.balances.get(location=location)
    balance.on_hand = Decimal("3")
    balance.available = Decimal("3")
    balance.save()

    count_events_ingest(session=session, actor=associate, events=[scan(location.code, barcode, offset=5)])

    line = CountLine.objects.get()
    assert (line.book_quantity, line.counted_quantity) == (Decimal("10"), Decimal("2"))


def test_location_barcode_is_accepted_for_the_location(session, associate, warehouse):
    count_events_ingest(
        session=session,
        actor=associate,
        events=[scan(warehouse.locations[1].barcode, warehouse.barcodes[1].value)],
    )
    assert CountLine.objects.get().location == warehouse.locations[1]


def test_paused_session_refuses_scans(session, associate, warehouse, associate_api):
    count_session_pause(session=session, actor=associate)

    with pytest.raises(SessionNotCapturing):
        count_events_ingest(
            session=session, actor=associate, events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
        )
    response = _post(associate_api, session, [scan(warehouse.locations[0].code, warehouse.barcodes[0].value)])
    assert response.status_code == 409
    assert not CountEvent.objects.exists()


def test_directed_runs_keep_extras_and_refuse_unrequested_manual_entry(organization, warehouse, associate, manager):
    requested_item, other_item = warehouse.items[0], warehouse.items[1]
    result = directed_request_add(
        organization=organization,
        item=requested_item,
        location=warehouse.locations[0],
        reason="pick_short",
        actor=manager,
    )
    session = count_session_start(run=result.run, user=associate, device_id="d1")
    location = warehouse.locations[0].code
    other_barcode = warehouse.barcodes[1].value

    outcome = count_events_ingest(
        session=session,
        actor=associate,
        events=[
            scan(location, warehouse.barcodes[0].value),
            scan(location, other_barcode),
            scan(location, other_barcode, mode="manual", kind="set", quantity=4),
        ],
    )

    assert (outcome.accepted, outcome.extra, outcome.refused) == (3, 1, 1)
    extra_line = CountLine.objects.get(item=other_item)
    assert extra_line.is_extra
    assert extra_line.counted_quantity == Decimal("1")
    refused = CountEvent.objects.get(status=EventStatus.REFUSED)
    assert "requested" in refused.refusal_reason


def test_require_scan_refuses_typed_quantities_but_keeps_them(session, associate, warehouse, manager):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"require_scan": True})
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value

    result = count_events_ingest(
        session=session,
        actor=associate,
        events=[scan(location, barcode), scan(location, barcode, kind="set", mode="manual", quantity=9)],
    )

    assert (result.accepted, result.refused) == (2, 1)
    assert SessionTally.objects.get().quantity == Decimal("1")
    assert CountEvent.objects.filter(status=EventStatus.REFUSED, quantity=9).exists()


def test_gs1_format_refuses_bad_check_digits(session, associate, warehouse, manager):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"barcode_format": "gs1"})

    result = count_events_ingest(
        session=session, actor=associate, events=[scan(warehouse.locations[0].code, "036000291453")]
    )

    assert result.refused == 1
    assert "check digit" in CountEvent.objects.get().refusal_reason


def test_two_associates_in_one_run_add_up_and_a_recount_replaces(
    organization, warehouse, manager, associate, second_associate
):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Shared", kind=CountKind.HARD, actor=manager
    )
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    first = count_session_start(run=run, user=associate, device_id="a")
    second = count_session_start(run=run, user=second_associate, device_id="b")
    count_events_ingest(session=first, actor=associate, events=[scan(location, barcode, quantity=3)])
    count_events_ingest(session=second, actor=second_associate, events=[scan(location, barcode, quantity=4)])
    assert CountLine.objects.get(run=run).counted_quantity == Decimal("7")

    count_session_submit(session=first, actor=associate)
    recount = count_session_start(run=run, user=associate, device_id="a", is_recount=True)
    count_events_ingest(session=recount, actor=associate, events=[scan(location, barcode, quantity=6, kind="set")])

    assert CountLine.objects.get(run=run).counted_quantity == Decimal("6")


def test_items_without_a_balance_have_book_zero(session, associate, warehouse, organization):
    stray = InventoryBalanceFactory(organization=organization, location=warehouse.locations[2]).item
    barcode = ItemBarcodeFactory(item=stray).value
    count_events_ingest(session=session, actor=associate, events=[scan(warehouse.locations[0].code, barcode)])

    assert CountLine.objects.get().book_quantity == Decimal("0")


def test_a_single_scan_costs_a_fixed_number_of_queries(associate_api, session, warehouse, django_assert_num_queries):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    _post(associate_api, session, [scan(location, barcode)])

    # Token and membership, savepoint, the session locked with its run and the facility's count
    # rules, locations, items, insert, tallies, lines, release: nothing is read back, and last
    # activity is written at most once a minute.
    with django_assert_num_queries(9):
        response = _post(associate_api, session, [scan(location, barcode, offset=1)])

    assert response.json()["accepted"] == 1


def test_last_activity_is_written_at_most_once_a_minute(session, associate, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode)])
    session.refresh_from_db()
    first = session.last_activity_at
    assert first is not None

    count_events_ingest(session=session.pk, actor=associate, events=[scan(location, barcode, offset=1)])
    session.refresh_from_db()
    assert session.last_activity_at == first

    CountSession.objects.filter(pk=session.pk).update(last_activity_at=first - timedelta(minutes=2))
    count_events_ingest(session=session.pk, actor=associate, events=[scan(location, barcode, offset=2)])
    session.refresh_from_db()
    assert session.last_activity_at > first


def test_a_scan_into_another_associates_session_is_refused_and_an_unknown_one_is_404(
    associate_api, hard_run, second_associate, warehouse
):
    theirs = count_session_start(run=hard_run, user=second_associate, device_id="scanner-9")
    event = scan(warehouse.locations[0].code, warehouse.barcodes[0].value)

    refused = _post(associate_api, theirs, [event])
    body = {"session": theirs.pk + 1000, "events": [event]}
    missing = associate_api.post("/api/inventory/count", body, format="json")

    assert (refused.status_code, missing.status_code) == (403, 404)
    assert refused.json()["detail"] == "Scans go into your own session."
    assert not CountEvent.objects.exists()


def test_a_session_of_another_organization_is_404(associate_api, warehouse):
    elsewhere = OrganizationFactory()
    other_run = count_run_create(
        organization=elsewhere,
        facility=FacilityFactory(organization=elsewhere),
        name="Theirs",
        kind=CountKind.HARD,
        actor=None,
    )
    stranger = member(elsewhere, Role.ASSOCIATE, username="stranger")
    theirs = count_session_start(run=other_run, user=stranger, device_id="elsewhere")

    response = _post(associate_api, theirs, [scan(warehouse.locations[0].code, warehouse.barcodes[0].value)])

    assert response.status_code == 404
    assert not CountEvent.objects.exists()


def test_outcomes_name_the_item_for_new_and_replayed_events(associate_api, session, warehouse):
    location, item = warehouse.locations[0].code, warehouse.items[1]
    batch = [
        scan(location, warehouse.barcodes[1].value),
        {**scan(location, ""), "barcode": None, "sku": item.sku},
        scan(location, "999999999999"),
    ]

    first = _post(associate_api, session, batch).json()["events"]
    replay = _post(associate_api, session, batch).json()["events"]

    expected = [
        ("matched", item.sku, item.name),
        ("matched", item.sku, item.name),
        ("unmatched", "", ""),
    ]
    assert [(event["status"], event["item"], event["item_name"]) for event in first] == expected
    assert [(event["status"], event["item"], event["item_name"]) for event in replay] == expected
    assert [event["duplicate"] for event in first + replay] == [False] * 3 + [True] * 3


def test_a_single_scan_sent_again_is_a_duplicate_reporting_what_was_stored(associate_api, session, warehouse):
    location, item = warehouse.locations[0].code, warehouse.items[0]
    matched, unmatched = scan(location, warehouse.barcodes[0].value), scan(location, "999999999999")
    for event in (matched, unmatched):
        _post(associate_api, session, [event])

    replies = [_post(associate_api, session, [event]).json() for event in (matched, unmatched)]

    assert [(reply["accepted"], reply["duplicates"], reply["unmatched"]) for reply in replies] == [(0, 1, 0)] * 2
    outcomes = [reply["events"][0] for reply in replies]
    assert [(o["status"], o["duplicate"], o["item"], o["item_name"]) for o in outcomes] == [
        ("matched", True, item.sku, item.name),
        ("unmatched", True, "", ""),
    ]
    assert CountEvent.objects.count() == 2
    assert SessionTally.objects.get().quantity == Decimal("1")


def test_the_per_scan_rebuilds_have_only_their_composite_indexes_to_choose(db):
    # A single-column run (or session) index looks as cheap to the planner while a new run is
    # missing from its statistics, and rebuilding one line then reads every tally of the run.
    with connection.cursor() as cursor:
        tally_indexes = connection.introspection.get_constraints(cursor, "counts_sessiontally")
        event_indexes = connection.introspection.get_constraints(cursor, "counts_countevent")
    tally_columns = [index["columns"] for index in tally_indexes.values() if index["index"]]
    event_columns = [index["columns"] for index in event_indexes.values() if index["index"]]

    assert ["run_id", "location_id", "item_id"] in tally_columns
    assert ["run_id"] not in tally_columns
    assert ["session_id", "location_id", "item_id"] in event_columns
    assert ["session_id"] not in event_columns


def test_what_changes_while_counting_is_read_under_the_session_lock(session, associate, warehouse):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    # `session` is the caller's copy; the associate moves to a tablet after it was loaded.
    count_session_pause(session=session, actor=associate)
    count_session_resume(session=session, actor=associate, device_id="tablet-2")

    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode)])

    assert session.device_id == "scanner-1"
    assert CountEvent.objects.get().device_id == "tablet-2"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_another_session_stores_meanwhile_is_a_duplicate_with_its_stored_outcome(
    hard_run, warehouse, associate, second_associate
):
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    ours = count_session_start(run=hard_run, user=associate, device_id="a")
    theirs = count_session_start(run=hard_run, user=second_associate, device_id="b")
    event = scan(location, barcode)
    stored_by_them = threading.Event()
    release_them = threading.Event()

    def store_and_hold() -> None:
        try:
            with transaction.atomic():
                count_events_ingest(session=theirs, actor=second_associate, events=[event])
                stored_by_them.set()
                release_them.wait(timeout=30)
        finally:
            connection.close()

    def release_once_our_insert_waits() -> None:
        # Commit theirs only when our INSERT waits on their uncommitted row, so the insert
        # itself finds the conflict once they commit.
        try:
            for _ in range(300):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                        ['INSERT INTO "counts_countevent"%'],
                    )
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.05)
            release_them.set()
        finally:
            connection.close()

    holder = threading.Thread(target=store_and_hold)
    holder.start()
    assert stored_by_them.wait(timeout=30)
    releaser = threading.Thread(target=release_once_our_insert_waits)
    releaser.start()
    result = count_events_ingest(session=ours, actor=associate, events=[event])
    releaser.join(timeout=30)
    holder.join(timeout=30)

    assert (result.accepted, result.duplicates) == (0, 1)
    outcome = result.events[0]
    assert (outcome["status"], outcome["duplicate"], outcome["item"]) == ("matched", True, warehouse.items[0].sku)
    assert CountEvent.objects.get().session_id == theirs.pk
    assert not SessionTally.objects.filter(session=ours).exists()
