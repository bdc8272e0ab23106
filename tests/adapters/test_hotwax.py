"""The HotWax adapter against the strict OMS fake: the mirror, and variances applied exactly
once by a backend that has no idempotency — a lost answer is read back, never re-sent."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from adapters.hotwax import client as hotwax_client
from adapters.hotwax import validate_settings
from adapters.hotwax.backend import VARIANCE_REASONS, HotWaxBackend
from adapters.interface import (
    AdjustmentBatch,
    AdjustmentLine,
    OutcomeUnknown,
    PermanentBackendError,
    TransientBackendError,
    backend_for,
)
from adapters.models import BackendConnection, BatchState, ExternalKind, ExternalRecord, PushBatch
from adapters.secrets import secrets_decrypt
from adapters.services import ConnectionInvalid, backend_connect, backend_sync, push_drain
from adapters.services.drain import stale_work_reclaim
from approvals.models import ProposalState, ProposedAction
from inventory.models import Facility, InventoryBalance, Item, Location
from tests.adapters.support import approve_adjustments
from tests.fakes import hotwax as fake_module
from tests.fakes.hotwax import FakeHotWax

pytestmark = pytest.mark.django_db

TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "x" * 40
BIN = "TLTLTLLL01"
PRODUCTS = ("WIDGET-1", "WIDGET-2", "WIDGET-3")


def stock(fake: FakeHotWax) -> None:
    """A warehouse with one location and three products (product id = SKU), a store with one."""
    fake.add_facility("WH", "Warehouse", locations=(BIN,))
    fake.add_facility("STORE_1", "Store 1")
    for product_id in PRODUCTS:
        fake.add_product(product_id, sku=product_id, upc="")
        fake.set_inventory(
            product_id, "WH", available_to_promise=Decimal(98), quantity_on_hand=Decimal(100), location_seq_id=BIN
        )
    fake.set_inventory("WIDGET-1", "STORE_1", available_to_promise=Decimal("7.5"), quantity_on_hand=Decimal("7.5"))


@pytest.fixture
def oms():
    with FakeHotWax(token=TOKEN) as fake:
        stock(fake)
        yield fake


def connect(organization, fake: FakeHotWax, *, name: str = "hotwax", **overrides) -> BackendConnection:
    values = {
        "base_url": fake.base_url,
        "token": TOKEN,
        "facility_ids": ["WH", "STORE_1"],
        "time_zone": "America/Chicago",
        **overrides,
    }
    connection, _ = backend_connect(organization=organization, kind="hotwax", name=name, values=values, actor=None)
    return connection


@pytest.fixture
def synced(organization, oms):
    connection = connect(organization, oms)
    backend_sync(connection=connection)
    return connection


def mirror(organization) -> dict[tuple[str, str], Decimal]:
    return {
        (sku, code): on_hand
        for sku, code, on_hand in InventoryBalance.objects.filter(organization=organization).values_list(
            "item__sku", "location__code", "on_hand"
        )
    }


def assert_mirror_matches_oms(organization, connection, fake: FakeHotWax) -> None:
    records = ExternalRecord.objects.filter(connection=connection).select_related("item", "location")
    items = {r.item.sku: r.external_id for r in records if r.item_id}
    locations = {r.location.code: r.external_id for r in records if r.location_id}
    compared = 0
    for (sku, code), on_hand in mirror(organization).items():
        if sku in items and code in locations:
            assert fake.on_hand(items[sku], locations[code]) == on_hand, (sku, code)
            compared += 1
    assert compared


# --- settings -----------------------------------------------------------------------------


def test_settings_validation_names_each_bad_field():
    errors = validate_settings(
        {
            "base_url": "https://acme-oms.hotwax.io/api/",
            "facility_ids": [],
            "variance_reason_id": "STOCKTAKE",
            "location_seq_id": "",
            "timeout_seconds": 0,
        }
    )
    assert set(errors) == {"base_url", "facility_ids", "variance_reason_id", "location_seq_id", "timeout_seconds"}
    assert validate_settings({"base_url": "https://acme-oms.hotwax.io/rest/s1/", "facility_ids": ["WH"]}) == {}
    assert "facility_ids" in validate_settings({"base_url": "https://h/rest/s1", "facility_ids": ["WH", "WH"]})


def test_bad_connection_values_are_refused_by_field(organization):
    with pytest.raises(ConnectionInvalid) as invalid:
        backend_connect(
            organization=organization,
            kind="hotwax",
            name="oms",
            values={"base_url": "http://oms.example.com/rest/s1/", "facility_ids": "WH", "colour": "blue"},
            actor=None,
        )
    assert set(invalid.value.errors) == {"base_url", "facility_ids", "colour", "token"}
    assert not BackendConnection.objects.exists()


def test_the_command_connects_an_oms_from_json(organization, monkeypatch):
    values = {"base_url": "https://acme-oms.hotwax.io/rest/s1/", "token": TOKEN, "facility_ids": ["WH", "STORE_1"]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(values)))
    out = io.StringIO()

    call_command("backend_connect", "--org", "acme", "--kind", "hotwax", "--name", "oms", stdout=out)

    connection = BackendConnection.objects.get()
    assert out.getvalue().strip() == "created hotwax connection oms for acme (push target)"
    assert connection.settings == {"base_url": values["base_url"], "facility_ids": ["WH", "STORE_1"]}
    assert secrets_decrypt(connection.secrets_encrypted) == {"token": TOKEN}
    backend = backend_for(connection)
    assert backend.client.update_url == "https://acme-oms.hotwax.io/api/service/updateInventoryByIdentification"
    assert (backend.max_batch_lines, backend.concurrency) == (1, 1)


def test_the_variance_reasons_are_hotwaxs_documented_ones():
    assert set(VARIANCE_REASONS) == fake_module.VARIANCE_REASONS


def test_the_token_stays_secret(organization, oms):
    connection = connect(organization, oms)
    assert TOKEN not in str(connection.settings)
    backend = backend_for(connection)
    assert TOKEN not in repr(backend.client)
    assert backend.client.update_url == oms.update_inventory_url  # at the host, not under /rest/s1/
    connection = connect(organization, oms, token="expired")
    with pytest.raises(TransientBackendError) as refused:
        list(backend_for(connection).fetch_items())
    assert not refused.value.retry_soon
    assert "expired" not in str(refused.value)


# --- sync ---------------------------------------------------------------------------------


def test_sync_makes_each_facility_a_facility_with_one_location(organization, oms, monkeypatch):
    monkeypatch.setattr(hotwax_client, "PAGE_SIZE", 2)  # three rows at WH: two pages
    connection = connect(organization, oms)

    result = backend_sync(connection=connection)

    assert set(Facility.objects.values_list("code", "time_zone")) == {
        ("WH", "America/Chicago"),
        ("STORE_1", "America/Chicago"),
    }
    assert {
        (loc.facility.code, loc.code, loc.zone.code) for loc in Location.objects.select_related("facility", "zone")
    } == {
        ("WH", "WH", "MAIN"),
        ("STORE_1", "STORE_1", "MAIN"),
    }
    assert sorted(Item.objects.values_list("sku", flat=True)) == list(PRODUCTS)
    balance = InventoryBalance.objects.get(item__sku="WIDGET-2", location__code="WH")
    assert (balance.on_hand, balance.reserved, balance.available) == (Decimal(100), Decimal(2), Decimal(98))
    assert mirror(organization)[("WIDGET-1", "STORE_1")] == Decimal("7.5")
    assert ExternalRecord.objects.get(kind=ExternalKind.ITEM, item__sku="WIDGET-3").external_id == "WIDGET-3"
    assert ExternalRecord.objects.get(kind=ExternalKind.LOCATION, location__code="STORE_1").external_id == "STORE_1"
    assert (result.items_created, result.balances_changed, result.balances_unmapped) == (3, 4, 0)
    assert_mirror_matches_oms(organization, connection, oms)


# --- pushes -------------------------------------------------------------------------------


def test_each_approved_line_is_one_variance_applied_once(organization, manager, oms, synced):
    proposals = approve_adjustments(organization, manager, {("WIDGET-1", "WH"): -2, ("WIDGET-2", "WH"): 1})

    result = push_drain(connection=synced)

    assert (result.batches_formed, result.accepted, result.lines_accepted) == (2, 2, 2)
    assert sorted(oms.updates, key=lambda update: update["productId"]) == [
        {
            "facilityId": "WH",
            "availableDelta": Decimal(delta),
            "idType": "SKU",
            "idValue": product_id,
            "locationSeqId": BIN,
            "varianceReasonId": "MISMATCH",
            "productId": product_id,
        }
        for product_id, delta in (("WIDGET-1", -2), ("WIDGET-2", 1))
    ]
    assert (oms.on_hand("WIDGET-1", "WH"), oms.on_hand("WIDGET-2", "WH")) == (Decimal(98), Decimal(101))
    assert mirror(organization)[("WIDGET-1", "WH")] == Decimal(98)
    assert_mirror_matches_oms(organization, synced, oms)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"pushed"}
    assert all(batch.line_count == 1 for batch in PushBatch.objects.all())

    assert push_drain(connection=synced).sent == 0
    parity = backend_sync(connection=synced)

    assert (parity.confirmed, parity.drifts) == (2, 0)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"confirmed"}
    assert len(oms.updates) == 2


def test_a_lost_answer_is_read_back_and_never_resent(organization, manager, oms, synced):
    approve_adjustments(organization, manager, {("WIDGET-1", "WH"): -2})
    oms.drop_next(1)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert len(oms.updates) == 1
    assert oms.on_hand("WIDGET-1", "WH") == Decimal(98)
    batch = PushBatch.objects.get()
    assert "found by external id" in batch.history.first().history_change_reason
    assert mirror(organization)[("WIDGET-1", "WH")] == Decimal(98)
    assert_mirror_matches_oms(organization, synced, oms)


def test_a_lost_answer_that_cannot_be_proven_goes_to_a_person(organization, manager, oms, synced, monkeypatch):
    approve_adjustments(organization, manager, {("WIDGET-1", "WH"): -2})
    oms.drop_next(1)
    read_back = HotWaxBackend.find_batch

    def after_a_sale(self, external_id):
        # A store sale lands between the lost answer and the read-back.
        oms.set_inventory(
            "WIDGET-1", "WH", available_to_promise=Decimal(95), quantity_on_hand=Decimal(97), location_seq_id=BIN
        )
        return read_back(self, external_id)

    monkeypatch.setattr(HotWaxBackend, "find_batch", after_a_sale)

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "OUTCOME_UNPROVABLE" in batch.last_error
    assert "WIDGET-1 at facility WH" in batch.last_error
    assert "was 100 before the send and is 97 now (applied would be 98)" in batch.last_error
    assert len(oms.updates) == 1  # never sent again
    assert ProposedAction.objects.get().state == ProposalState.FAILED
    assert mirror(organization)[("WIDGET-1", "WH")] == Decimal(100)  # the mirror waits for a person and the sync


def test_a_line_a_killed_worker_sent_is_never_sent_blind(organization, manager, oms, synced, monkeypatch):
    approve_adjustments(organization, manager, {("WIDGET-1", "WH"): -2})

    def die_after_sending(backend, batch_id, batch, in_doubt, backoff):
        backend.push_adjustments(batch)
        raise SystemExit("killed")

    monkeypatch.setattr("adapters.services.drain._deliver", die_after_sending)
    with pytest.raises(SystemExit):
        push_drain(connection=synced)
    monkeypatch.undo()
    BackendConnection.objects.filter(pk=synced.pk).update(
        worker_lease_owner="drain:dead", worker_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert stale_work_reclaim() == 1

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "OUTCOME_UNPROVABLE" in batch.last_error
    assert "WIDGET-1 at facility WH, delta -2" in batch.last_error
    assert len(oms.updates) == 1
    assert oms.on_hand("WIDGET-1", "WH") == Decimal(98)


def test_refusals_before_any_effect_are_retried(organization, manager, oms, synced, monkeypatch):
    approve_adjustments(organization, manager, {("WIDGET-3", "WH"): 2})
    read = HotWaxBackend._row
    refused = []

    def read_then_refuse(self, product_id, facility_id):
        row = read(self, product_id, facility_id)
        if not refused:
            refused.append(True)
            oms.fail_next(1, status=503)  # the load balancer refuses the POST: the OMS never saw it
        return row

    monkeypatch.setattr(HotWaxBackend, "_row", read_then_refuse)
    oms.fail_next(1, status=429)  # the first read: retried inline

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert refused
    assert len(oms.updates) == 1
    assert oms.on_hand("WIDGET-3", "WH") == Decimal(102)


def test_a_line_only_ever_refused_outright_goes_out_again(organization, manager, oms, synced):
    # Refusals prove nothing happened, so the batch is not in doubt: the next drain sends it.
    approve_adjustments(organization, manager, {("WIDGET-3", "WH"): 2})
    sent_before = oms.requests_made
    oms.fail_next(25, status=503)  # five tries of the drain, each read tried five times inline
    assert push_drain(connection=synced).failed == 1
    assert oms.requests_made == sent_before + 25  # the outage is over
    PushBatch.objects.update(next_attempt_at=timezone.now())

    before = oms.on_hand("WIDGET-3", "WH")
    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.accepted, batch.state, batch.outcome_unknown) == (1, BatchState.ACCEPTED, False)
    assert len(oms.updates) == 1
    assert oms.on_hand("WIDGET-3", "WH") == before + 2


def test_a_product_hotwax_knows_by_another_sku_is_refused_and_unchanged(organization, manager, oms, synced):
    oms.add_product("10099", sku="SKU-99")
    oms.set_inventory("10099", "WH", available_to_promise=Decimal(50), quantity_on_hand=Decimal(50))
    backend_sync(connection=synced)
    approve_adjustments(organization, manager, {("10099", "WH"): -1})

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "No product found with SKU identification 10099" in batch.last_error
    assert oms.updates == []
    assert oms.on_hand("10099", "WH") == Decimal(50)


# --- the backend on its own ---------------------------------------------------------------


def batch(external_id: str, product_id: str, delta: str, facility_id: str = "WH") -> AdjustmentBatch:
    return AdjustmentBatch(
        external_id=external_id,
        location_external_id=facility_id,
        tran_date=date(2026, 11, 22),
        memo="test",
        lines=(AdjustmentLine(product_id, facility_id, Decimal(delta), "line"),),
    )


def test_a_decimal_delta_and_a_product_new_to_the_facility(organization, oms):
    backend = backend_for(connect(organization, oms))

    backend.push_adjustments(batch("CC-1-B1", "WIDGET-1", "1.25", "STORE_1"))
    backend.push_adjustments(batch("CC-1-B2", "WIDGET-2", "3", "STORE_1"))

    assert oms.on_hand("WIDGET-1", "STORE_1") == Decimal("8.75")
    assert oms.on_hand("WIDGET-2", "STORE_1") == Decimal(3)
    assert oms.updates[1]["locationSeqId"] == "TLTLTLLL01"  # no row yet: the configured default
    with pytest.raises(PermanentBackendError, match="exactly one line"):
        backend.push_adjustments(
            AdjustmentBatch("CC-1-B3", "WH", date(2026, 11, 22), "two", (*batch("x", "WIDGET-1", "1").lines,) * 2)
        )


def test_a_lost_answer_is_outcome_unknown_until_read_back(organization, oms):
    backend = backend_for(connect(organization, oms))
    oms.drop_next(1)

    with pytest.raises(OutcomeUnknown):
        backend.push_adjustments(batch("CC-1-B4", "WIDGET-3", "-1"))
    with pytest.raises(PermanentBackendError, match="OUTCOME_UNPROVABLE"):
        backend.push_adjustments(batch("CC-1-B4", "WIDGET-3", "-1"))  # never re-sent
    found = backend.find_batch("CC-1-B4")

    assert found.duplicate
    assert len(oms.updates) == 1
    assert oms.on_hand("WIDGET-3", "WH") == Decimal(99)
    assert backend_for(connect(organization, oms)).find_batch("CC-1-B4") is None  # another process: it can't know
