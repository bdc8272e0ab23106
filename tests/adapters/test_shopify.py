"""The Shopify adapter against the strict Admin GraphQL fake: the mirror, exactly-once pushes,
moved stock, throttling — and every query valid against Shopify's own 2026-01 schema."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from graphql import parse, validate

from adapters.interface import (
    AdjustmentBatch,
    AdjustmentLine,
    PermanentBackendError,
    TransientBackendError,
    backend_for,
)
from adapters.models import BackendConnection, BatchState, ExternalKind, ExternalRecord, PushBatch
from adapters.secrets import secrets_decrypt
from adapters.services import ConnectionInvalid, backend_connect, backend_sync, push_drain
from adapters.services.drain import stale_work_reclaim
from adapters.shopify import validate_settings
from adapters.shopify.backend import (
    ADJUST_MUTATION,
    ITEMS_QUERY,
    LEVELS_QUERY,
    LOCATIONS_QUERY,
    MOVED_STOCK_POLICIES,
    ShopifyBackend,
    available_query,
    idempotency_key,
)
from adapters.shopify.client import ShopifyClient, throttle_wait
from approvals.models import ProposalState, ProposedAction
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode, Location
from reconciliation.models import MovedBookPolicy
from tests.adapters.support import approve_adjustments
from tests.fakes.shopify import FakeShopify, admin_schema

pytestmark = pytest.mark.django_db

TOKEN = "shpat_" + "5" * 32
ASTORIA, BROOKLYN, CLOSED = 1, 2, 3
STORE = "ASTORIA-STORE"
ITEMS = {101: "SH-101", 102: "SH-102", 103: "SH-103"}


def stock(fake: FakeShopify) -> None:
    """Two active stores and a closed one; three items stocked at Astoria, one at Brooklyn."""
    fake.add_location(ASTORIA, "Astoria Store")
    fake.add_location(BROOKLYN, "Brooklyn Store")
    fake.add_location(CLOSED, "Closed Store", active=False)
    for item_id, sku in ITEMS.items():
        fake.add_item(item_id, sku, barcode=f"0{item_id:011d}", unit_cost=Decimal("4.50"))
        fake.set_quantity(item_id, ASTORIA, "available", 100)
    fake.add_item(199, "")  # no SKU: Cyclecount cannot know it
    fake.set_quantity(199, ASTORIA, "available", 5)
    fake.set_quantity(101, ASTORIA, "committed", 2)
    fake.set_quantity(101, ASTORIA, "reserved", 1)
    fake.set_quantity(102, BROOKLYN, "available", 40)


@pytest.fixture
def shop():
    with FakeShopify(access_token=TOKEN) as fake:
        stock(fake)
        yield fake


def connect(organization, fake: FakeShopify, *, name: str = "shopify", **overrides) -> BackendConnection:
    values = {
        "shop_url": fake.base_url,
        "api_version": "2026-01",
        "access_token": TOKEN,
        "time_zone": "America/New_York",
        **overrides,
    }
    connection, _ = backend_connect(organization=organization, kind="shopify", name=name, values=values, actor=None)
    return connection


@pytest.fixture
def synced(organization, shop):
    connection = connect(organization, shop)
    backend_sync(connection=connection)
    return connection


@pytest.fixture
def graphql_errors(monkeypatch):
    """Every `errors` list Shopify answered with (throttling included), in order."""
    seen: list[list[dict]] = []
    send = ShopifyClient._post

    def spy(self, query, variables):
        response = send(self, query, variables)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("errors"):
            seen.append(body["errors"])
        return response

    monkeypatch.setattr(ShopifyClient, "_post", spy)
    return seen


def not_throttling(errors: list[list[dict]]) -> list[list[dict]]:
    return [found for found in errors if any((e.get("extensions") or {}).get("code") != "THROTTLED" for e in found)]


def mirror(organization) -> dict[tuple[str, str], Decimal]:
    return {
        (sku, code): on_hand
        for sku, code, on_hand in InventoryBalance.objects.filter(organization=organization).values_list(
            "item__sku", "location__code", "on_hand"
        )
    }


def assert_mirror_matches_shop(organization, connection, fake: FakeShopify) -> None:
    records = ExternalRecord.objects.filter(connection=connection).select_related("item", "location")
    items = {r.item.sku: int(r.external_id.rsplit("/", 1)[1]) for r in records if r.item_id}
    locations = {r.location.code: int(r.external_id.rsplit("/", 1)[1]) for r in records if r.location_id}
    compared = 0
    for (sku, code), on_hand in mirror(organization).items():
        if sku in items and code in locations:
            assert fake.quantity(items[sku], locations[code], "on_hand") == on_hand, (sku, code)
            compared += 1
    assert compared


# --- queries and settings -------------------------------------------------------------------


def test_every_operation_the_adapter_sends_is_valid_against_the_vendored_schema():
    schema = admin_schema()
    for document in (
        LOCATIONS_QUERY,
        ITEMS_QUERY,
        LEVELS_QUERY,
        ADJUST_MUTATION,
        available_query(1),
        available_query(250),
    ):
        assert validate(schema, parse(document)) == [], document


def test_settings_validation_names_each_bad_field():
    errors = validate_settings(
        {
            "shop_url": "ftp://acme.myshopify.com",
            "api_version": "2026-02",
            "location_ids": ["Main"],
            "moved_stock_policy": "shrug",
            "concurrency": 0,
        }
    )
    assert set(errors) == {"shop_url", "api_version", "location_ids", "moved_stock_policy", "concurrency"}
    assert validate_settings({"shop_url": "https://acme.myshopify.com", "api_version": "2026-01"}) == {}
    assert (
        validate_settings({"shop_url": "https://a.myshopify.com", "api_version": "2026-04", "location_ids": ["12", 13]})
        == {}
    )


def test_bad_connection_values_are_refused_by_field(organization):
    with pytest.raises(ConnectionInvalid) as invalid:
        backend_connect(
            organization=organization,
            kind="shopify",
            name="shop",
            values={"shop_url": "acme", "location_ids": "all", "colour": "blue"},
            actor=None,
        )
    assert set(invalid.value.errors) == {"shop_url", "api_version", "location_ids", "colour", "access_token"}
    assert not BackendConnection.objects.exists()


def test_the_command_connects_a_shop_from_json(organization, monkeypatch):
    values = {
        "shop_url": "https://acme.myshopify.com",
        "api_version": "2026-01",
        "access_token": TOKEN,
        "location_ids": ["71234"],
        "moved_stock_policy": "require_recount",
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(values)))
    out = io.StringIO()

    call_command("backend_connect", "--org", "acme", "--kind", "shopify", "--name", "acme-shop", stdout=out)

    connection = BackendConnection.objects.get()
    assert out.getvalue().strip() == "created shopify connection acme-shop for acme (push target)"
    assert connection.settings == {key: value for key, value in values.items() if key != "access_token"}
    assert secrets_decrypt(connection.secrets_encrypted) == {"access_token": TOKEN}
    backend = backend_for(connection)
    assert backend.client.graphql_url == "https://acme.myshopify.com/admin/api/2026-01/graphql.json"
    assert (backend.location_ids, backend.moved_stock_policy) == (("gid://shopify/Location/71234",), "require_recount")


def test_the_moved_stock_policies_are_the_guardrails():
    assert set(MOVED_STOCK_POLICIES) == set(MovedBookPolicy.values)


def test_the_access_token_stays_secret(organization, shop):
    connection = connect(organization, shop)
    assert TOKEN not in str(connection.settings)
    backend = backend_for(connection)
    assert TOKEN not in repr(backend.client)
    assert TOKEN not in repr(backend)
    connection = connect(organization, shop, access_token="shpat_wrong")
    with pytest.raises(TransientBackendError) as refused:
        list(backend_for(connection).fetch_locations())
    assert not refused.value.retry_soon
    assert "shpat_" not in str(refused.value)


# --- sync ---------------------------------------------------------------------------------


def test_sync_makes_each_shopify_location_a_facility_with_one_location(organization, shop, graphql_errors):
    connection = connect(organization, shop)

    result = backend_sync(connection=connection)

    assert set(Facility.objects.values_list("code", "time_zone")) == {
        ("ASTORIA-STORE", "America/New_York"),
        ("BROOKLYN-STORE", "America/New_York"),
    }
    assert {
        (loc.facility.code, loc.code, loc.zone.code) for loc in Location.objects.select_related("facility", "zone")
    } == {
        ("ASTORIA-STORE", "ASTORIA-STORE", "MAIN"),
        ("BROOKLYN-STORE", "BROOKLYN-STORE", "MAIN"),
    }
    assert sorted(Item.objects.values_list("sku", "average_cost")) == [(sku, Decimal("4.5")) for sku in ITEMS.values()]
    assert ItemBarcode.objects.filter(value="000000000101", item__sku="SH-101").exists()
    balance = InventoryBalance.objects.get(item__sku="SH-101", location__code=STORE)
    # on_hand = available 100 + committed 2 + reserved 1; reserved = committed + reserved
    assert (balance.on_hand, balance.reserved, balance.available) == (Decimal(103), Decimal(3), Decimal(100))
    assert mirror(organization)[("SH-102", "BROOKLYN-STORE")] == Decimal(40)
    assert ExternalRecord.objects.get(kind=ExternalKind.LOCATION, location__code=STORE).external_id == (
        "gid://shopify/Location/1"
    )
    assert ExternalRecord.objects.get(kind=ExternalKind.ITEM, item__sku="SH-103").external_id == (
        "gid://shopify/InventoryItem/103"
    )
    assert result.balances_unmapped == 1  # the item without a SKU
    assert graphql_errors == []
    assert_mirror_matches_shop(organization, connection, shop)


def test_location_ids_choose_what_is_mirrored(organization, shop):
    connection = connect(organization, shop, location_ids=["2"])

    backend_sync(connection=connection)

    assert list(Facility.objects.values_list("code", flat=True)) == ["BROOKLYN-STORE"]
    assert set(mirror(organization)) == {("SH-102", "BROOKLYN-STORE")}

    connection = connect(organization, shop, location_ids=["gid://shopify/Location/404"])
    with pytest.raises(PermanentBackendError, match="Location/404"):
        backend_sync(connection=connection)


def test_a_throttled_sync_waits_for_the_bucket_and_reads_everything(organization):
    # 300 items: a page of 250 costs 752 points of an 800-point bucket restoring 2,000 a second.
    with FakeShopify(access_token=TOKEN, bucket_size=800, restore_rate=2000.0) as fake:
        fake.add_location(ASTORIA, "Astoria Store")
        for item_id in range(1000, 1300):
            fake.add_item(item_id, f"BULK-{item_id}")
            fake.set_quantity(item_id, ASTORIA, "available", item_id % 7)
        connection = connect(organization, fake)

        result = backend_sync(connection=connection)

        assert fake.throttled >= 1
        assert result.items_created == 300
        assert InventoryBalance.objects.filter(organization=organization).count() == 300
        assert_mirror_matches_shop(organization, connection, fake)


# --- pushes -------------------------------------------------------------------------------


def test_approved_adjustments_reach_shopify_once_and_the_mirror_follows(
    organization, manager, shop, synced, graphql_errors
):
    proposals = approve_adjustments(organization, manager, {("SH-101", STORE): -2, ("SH-102", STORE): 2})

    result = push_drain(connection=synced)

    assert (result.batches_formed, result.accepted, result.lines_accepted) == (1, 1, 2)
    batch = PushBatch.objects.get()
    [adjustment] = shop.adjustments
    assert adjustment["idempotency_key"] == idempotency_key(batch.external_id, 0)
    assert (adjustment["name"], adjustment["reason"]) == ("available", "cycle_count_available")
    assert adjustment["referenceDocumentUri"] == f"gid://cyclecount/Batch/{batch.external_id}"
    assert sorted((c["inventoryItemId"], c["delta"], c["changeFromQuantity"]) for c in adjustment["changes"]) == [
        ("gid://shopify/InventoryItem/101", -2, 100),
        ("gid://shopify/InventoryItem/102", 2, 100),
    ]
    assert batch.record_id == adjustment["group_id"]
    assert (shop.quantity(101, ASTORIA), shop.quantity(102, ASTORIA)) == (98, 102)
    assert mirror(organization)[("SH-101", STORE)] == Decimal(101)
    assert_mirror_matches_shop(organization, synced, shop)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"pushed"}
    assert graphql_errors == []

    assert push_drain(connection=synced).sent == 0
    parity = backend_sync(connection=synced)

    assert (parity.confirmed, parity.drifts) == (2, 0)
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"confirmed"}
    assert shop.mutations_applied == 1


def test_a_lost_answer_is_replayed_under_the_same_key_not_applied_twice(organization, manager, shop, synced):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2})
    shop.drop_next(1)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert (shop.mutations_applied, shop.idempotent_replays) == (1, 1)
    assert shop.quantity(101, ASTORIA) == 98
    assert PushBatch.objects.get().record_id == shop.adjustments[0]["group_id"]
    assert mirror(organization)[("SH-101", STORE)] == Decimal(101)
    assert_mirror_matches_shop(organization, synced, shop)


def kill_after_sending(monkeypatch, connection, then=None):
    """Send the batch, let Shopify commit it, and kill the worker before it records anything;
    then expire its lease and reclaim, as the beat sweep would."""

    def die(backend, batch_id, batch, in_doubt, backoff):
        backend.push_adjustments(batch)
        raise SystemExit("killed")

    monkeypatch.setattr("adapters.services.drain._deliver", die)
    with pytest.raises(SystemExit):
        push_drain(connection=connection)
    monkeypatch.undo()
    if then is not None:
        then()
    BackendConnection.objects.filter(pk=connection.pk).update(
        worker_lease_owner="drain:dead", worker_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert stale_work_reclaim() == 1


def test_a_new_worker_recognises_what_a_killed_one_sent(organization, manager, shop, synced, monkeypatch):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2, ("SH-103", STORE): 1})
    kill_after_sending(monkeypatch, synced)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert shop.mutations_applied == 1
    assert (shop.quantity(101, ASTORIA), shop.quantity(103, ASTORIA)) == (98, 101)
    batch = PushBatch.objects.get()
    assert batch.record_id == shop.adjustments[0]["group_id"]
    assert "found by external id" in batch.history.first().history_change_reason
    assert_mirror_matches_shop(organization, synced, shop)


def test_what_a_killed_worker_sent_cannot_be_proven_once_stock_moved(organization, manager, shop, synced, monkeypatch):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2})
    kill_after_sending(monkeypatch, synced, then=lambda: shop.move_stock(101, ASTORIA, -1))

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "OUTCOME_UNPROVABLE" in batch.last_error
    assert "gid://cyclecount/Batch/" in batch.last_error
    assert shop.mutations_applied == 1  # never sent a second time
    assert shop.quantity(101, ASTORIA) == 97
    assert ProposedAction.objects.get().state == ProposalState.FAILED


def test_a_batch_that_never_landed_is_sent_by_the_next_drain(organization, manager, shop, synced, monkeypatch):
    approve_adjustments(organization, manager, {("SH-102", STORE): 2})

    def unreachable(self, batch):
        raise TransientBackendError("Shopify could not be reached: ConnectTimeout")

    monkeypatch.setattr(ShopifyBackend, "push_adjustments", unreachable)
    assert push_drain(connection=synced).failed == 1
    monkeypatch.undo()
    PushBatch.objects.update(next_attempt_at=timezone.now())

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert shop.mutations_applied == 1
    assert shop.quantity(102, ASTORIA) == 102


def test_a_5xx_to_the_mutation_is_sent_again_as_the_same_request(organization, manager, shop, synced, monkeypatch):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2})
    read = ShopifyBackend._now
    failed = []

    def read_then_fail(self, changes):
        quantities = read(self, changes)
        if not failed:
            failed.append(True)
            shop.fail_next(1, status=502)  # the mutation: its outcome unknown to us
        return quantities

    monkeypatch.setattr(ShopifyBackend, "_now", read_then_fail)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert failed
    assert shop.mutations_applied == 1
    assert shop.adjustments[0]["idempotency_key"] == idempotency_key(PushBatch.objects.get().external_id, 0)
    assert shop.quantity(101, ASTORIA) == 98


def moving_stock_once(monkeypatch, shop: FakeShopify, item_id: int, delta: int) -> None:
    """Someone sells between our read of `available` and our mutation, once."""
    read = ShopifyBackend._now
    moved = []

    def read_then_sell(self, changes):
        quantities = read(self, changes)
        if not moved:
            moved.append(True)
            shop.move_stock(item_id, ASTORIA, delta)
        return quantities

    monkeypatch.setattr(ShopifyBackend, "_now", read_then_sell)


def test_stale_stock_keeps_the_difference_under_a_new_key(organization, manager, shop, synced, monkeypatch):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2, ("SH-102", STORE): 1})
    moving_stock_once(monkeypatch, shop, 101, -1)

    result = push_drain(connection=synced)

    assert result.accepted == 1
    batch = PushBatch.objects.get()
    [adjustment] = shop.adjustments
    assert adjustment["idempotency_key"] == idempotency_key(batch.external_id, 1)
    assert {c["inventoryItemId"]: c["changeFromQuantity"] for c in adjustment["changes"]} == {
        "gid://shopify/InventoryItem/101": 99,
        "gid://shopify/InventoryItem/102": 100,
    }
    assert (shop.quantity(101, ASTORIA), shop.quantity(102, ASTORIA)) == (97, 101)  # the difference kept
    assert shop.mutations_applied == 1


@pytest.mark.parametrize("policy", ["require_recount", "keep_count"])
def test_stale_stock_goes_to_a_person_when_the_policy_says_so(organization, manager, shop, synced, monkeypatch, policy):
    connect(organization, shop, moved_stock_policy=policy)
    synced.refresh_from_db()
    approve_adjustments(organization, manager, {("SH-101", STORE): -2})
    moving_stock_once(monkeypatch, shop, 101, -1)

    result = push_drain(connection=synced)

    batch = PushBatch.objects.get()
    assert (result.rejected, batch.state) == (1, BatchState.REJECTED)
    assert "STOCK_MOVED" in batch.last_error
    assert policy in batch.last_error
    assert shop.mutations_applied == 0
    assert shop.quantity(101, ASTORIA) == 99
    assert mirror(organization)[("SH-101", STORE)] == Decimal(103)  # the mirror waits for the next sync


def test_throttling_is_waited_out(organization, manager, shop, synced, graphql_errors, monkeypatch):
    approve_adjustments(organization, manager, {("SH-101", STORE): -2})
    read = ShopifyBackend._now

    def read_then_throttle(self, changes):
        quantities = read(self, changes)
        shop.throttle_next(1)  # the mutation: THROTTLED in a 200
        shop.throttle_next(1, as_429=True)  # its next try: HTTP 429 with Retry-After
        return quantities

    monkeypatch.setattr(ShopifyBackend, "_now", read_then_throttle)
    shop.throttle_next(1)  # the read of available, retried inline

    result = push_drain(connection=synced)

    assert result.accepted == 1
    assert shop.throttled == 3
    assert shop.mutations_applied == 1
    assert shop.quantity(101, ASTORIA) == 98
    assert graphql_errors
    assert not_throttling(graphql_errors) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_retry_wait_comes_from_shopifys_cost_report():
    assert throttle_wait(
        {
            "requestedQueryCost": 752,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 352, "restoreRate": 100.0},
        }
    ) == pytest.approx(4.0)
    assert throttle_wait(None) is None
    with FakeShopify(access_token=TOKEN, bucket_size=50, restore_rate=10.0, clock=Clock()) as fake:
        stock(fake)
        client = ShopifyClient(graphql_url=fake.graphql_url, access_token=TOKEN)
        client.query("{ inventoryItems(first: 40) { nodes { id } } }")  # 42 asked, 6 used: 44 left
        with pytest.raises(TransientBackendError) as throttled:
            client.mutate("{ inventoryItems(first: 48) { nodes { id } } }", {})  # 50 asked: sent once
        assert throttled.value.retry_after == pytest.approx((50 - 44) / 10.0)
        fake.throttle_next(1, as_429=True)
        with pytest.raises(TransientBackendError) as refused:
            client.mutate("{ inventoryItems(first: 1) { nodes { id } } }", {})
        assert refused.value.retry_after == 1.0


# --- the backend on its own ---------------------------------------------------------------


def batch(external_id: str, *lines: tuple[int, str]) -> AdjustmentBatch:
    location = f"gid://shopify/Location/{ASTORIA}"
    return AdjustmentBatch(
        external_id=external_id,
        location_external_id=location,
        tran_date=date(2026, 11, 22),
        memo="test",
        lines=tuple(
            AdjustmentLine(f"gid://shopify/InventoryItem/{item}", location, Decimal(delta), "line")
            for item, delta in lines
        ),
    )


def test_a_second_process_sending_the_same_batch_gets_the_first_result(organization, shop):
    connection = connect(organization, shop)

    first = backend_for(connection).push_adjustments(batch("CC-1-B7", (101, "-3"), (102, "2")))
    find = backend_for(connection).find_batch("CC-1-B7")
    second = backend_for(connection).push_adjustments(batch("CC-1-B7", (101, "-3"), (102, "2")))

    assert find is None  # Shopify cannot be asked by our id: the replay is the lookup
    assert second.record_id == first.record_id
    assert (first.duplicate, second.duplicate) == (False, True)
    assert (shop.quantity(101, ASTORIA), shop.quantity(102, ASTORIA)) == (97, 102)
    assert shop.mutations_applied == 1


def test_what_shopify_cannot_take_is_refused_before_anything_is_sent(organization, shop):
    backend = backend_for(connect(organization, shop))
    shop.add_item(150, "SH-150")  # known to the shop, stocked nowhere

    with pytest.raises(PermanentBackendError, match="whole units"):
        backend.push_adjustments(batch("CC-1-B8", (101, "1.5")))
    with pytest.raises(PermanentBackendError, match="ITEM_NOT_STOCKED_AT_LOCATION"):
        backend.push_adjustments(batch("CC-1-B9", (101, "1"), (150, "1")))
    assert shop.mutations_applied == 0
    assert shop.adjustments == []
    assert backend.push_adjustments(batch("CC-1-B10", (101, "2"), (101, "-2"))).record_id.endswith("nothing sent")
