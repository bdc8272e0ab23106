"""A one-scan request (its statements prepared on the server) and a batch (the ordinary cursor)
store the same outcomes, tallies and lines, in every kind of run and under every count rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from counts.models import CountEvent, CountKind, CountLine, CountSession, SessionTally
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create, directed_request_add
from counts.services.preferences import facility_count_settings_update
from counts.services.sessions import count_session_start
from tests.counts.conftest import scan

ONE_PER_REQUEST, ONE_BATCH = "one scan per request", "one batch"


def _ingest(path, session, actor, events) -> list[tuple[str, str, str]]:
    """(status, item SKU, refusal reason) of each event, sent as `path` says."""
    if path == ONE_PER_REQUEST:
        outcomes = []
        for event in events:
            outcomes += count_events_ingest(session=session, actor=actor, events=[event]).events
    else:
        outcomes = count_events_ingest(session=session, actor=actor, events=events).events
    return [(outcome["status"], outcome["item"], outcome["reason"]) for outcome in outcomes]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


@pytest.mark.parametrize("path", [ONE_PER_REQUEST, ONE_BATCH])
def test_a_hard_count_by_barcode_sku_and_set(path, organization, warehouse, associate, manager):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Hard", kind=CountKind.HARD, actor=manager
    )
    session = count_session_start(run=run, user=associate, device_id="d1")
    first, second = warehouse.locations[0].code, warehouse.locations[1].code
    item, other = warehouse.items[0], warehouse.items[1]
    events = [
        scan(first, warehouse.barcodes[0].value, offset=0),
        scan(warehouse.locations[1].barcode, "", sku=other.sku, mode="manual", quantity=2, offset=1),
        scan(first, "0000-NOT-A-BARCODE", offset=2),
        scan(first, warehouse.barcodes[0].value, kind="set", quantity=5, mode="manual", offset=3),
        scan(first, warehouse.barcodes[0].value, offset=4),
    ]
    del events[1]["barcode"]

    outcomes = _ingest(path, session, associate, events)

    assert outcomes == [
        ("matched", item.sku, ""),
        ("matched", other.sku, ""),
        ("unmatched", "", ""),
        ("matched", item.sku, ""),
        ("matched", item.sku, ""),
    ]
    tallies = dict(SessionTally.objects.filter(session=session).values_list("location__code", "quantity"))
    assert tallies == {first: Decimal("6"), second: Decimal("2")}
    lines = CountLine.objects.filter(run=run).order_by("location__code")
    assert [(line.location.code, line.counted_quantity, line.book_quantity) for line in lines] == [
        (first, Decimal("6"), Decimal("10")),
        (second, Decimal("2"), Decimal("20")),
    ]
    assert CountEvent.objects.filter(session=session).count() == 5
    assert CountSession.objects.get(pk=session.pk).last_activity_at is not None


@pytest.mark.parametrize("path", [ONE_PER_REQUEST, ONE_BATCH])
def test_a_cycle_count_keeps_scans_outside_its_locations_as_extra(path, organization, warehouse, associate, manager):
    run = count_run_create(
        organization=organization,
        facility=warehouse.facility,
        name="Cycle",
        kind=CountKind.CYCLE,
        actor=manager,
        locations=[warehouse.locations[0]],
    )
    session = count_session_start(run=run, user=associate, device_id="d1")
    barcode = warehouse.barcodes[0].value

    outcomes = _ingest(
        path,
        session,
        associate,
        [scan(warehouse.locations[0].code, barcode), scan(warehouse.locations[2].code, barcode)],
    )

    assert [status for status, _, _ in outcomes] == ["matched", "extra"]
    assert sorted(CountLine.objects.filter(run=run).values_list("counted_quantity", flat=True)) == [1, 1]


@pytest.mark.parametrize("path", [ONE_PER_REQUEST, ONE_BATCH])
def test_a_directed_count_under_the_facilitys_rules(path, organization, warehouse, associate, manager):
    requested = directed_request_add(
        organization=organization,
        item=warehouse.items[0],
        location=warehouse.locations[0],
        reason="pick_short",
        actor=manager,
    )
    facility_count_settings_update(
        facility=warehouse.facility, actor=manager, changes={"require_scan": True, "barcode_format": "gs1"}
    )
    session = count_session_start(run=requested.run, user=associate, device_id="d1")
    location = warehouse.locations[0].code
    requested_barcode, other_barcode = warehouse.barcodes[0].value, warehouse.barcodes[1].value

    outcomes = _ingest(
        path,
        session,
        associate,
        [
            scan(location, requested_barcode),
            scan(location, other_barcode),
            scan(location, requested_barcode, mode="manual", kind="set", quantity=4),
            scan(location, "036000291453"),  # a bad GS1 check digit
        ],
    )

    statuses = [status for status, _, _ in outcomes]
    assert statuses == ["matched", "extra", "refused", "refused"]
    assert "requires scanning" in outcomes[2][2]
    assert "check digit" in outcomes[3][2]
    lines = dict(CountLine.objects.filter(run=requested.run).values_list("item_id", "is_extra"))
    assert lines == {warehouse.items[0].pk: False, warehouse.items[1].pk: True}


@pytest.mark.postgres
def test_only_a_one_scan_request_prepares_its_statements(organization, warehouse, associate, manager):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Hard", kind=CountKind.HARD, actor=manager
    )
    session = count_session_start(run=run, user=associate, device_id="d1")
    location, barcode = warehouse.locations[0].code, warehouse.barcodes[0].value
    before = set(_prepared_statements())

    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode), scan(location, barcode)])
    assert set(_prepared_statements()) == before

    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode)])
    prepared = set(_prepared_statements()) - before
    assert any("FOR UPDATE OF s" in statement for statement in prepared)
    assert any(statement.startswith("INSERT INTO") and "counts_countevent" in statement for statement in prepared)

    count_events_ingest(session=session, actor=associate, events=[scan(location, barcode)])
    assert set(_prepared_statements()) - before == prepared  # the next scan reuses them
