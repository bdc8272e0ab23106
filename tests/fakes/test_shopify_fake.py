"""Tests of the Shopify Admin GraphQL fake itself, driven over real HTTP with requests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.fakes.shopify import INVALID_TOKEN_MESSAGE, REASONS, FakeShopify

TOKEN = "shpat_cyclecount"
TIMEOUT = 5
LOCATION = "gid://shopify/Location/1"
ITEM_1 = "gid://shopify/InventoryItem/101"
ITEM_2 = "gid://shopify/InventoryItem/102"

ADJUST = """
mutation Adjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup {
      id createdAt reason referenceDocumentUri
      changes { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { field message code }
  }
}
"""

LEVELS = """
query Levels($id: ID!, $after: String) {
  location(id: $id) {
    inventoryLevels(first: 2, after: $after) {
      edges {
        cursor
        node { item { id sku } quantities(names: ["available", "committed", "on_hand"]) { name quantity } }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _seed(shop: FakeShopify) -> None:
    shop.add_location(1, "Main")
    shop.add_location(2, "Back room")
    shop.add_location(3, "Closed store", active=False)
    shop.add_item(101, "SKU-101", barcode="0123456789012", unit_cost=Decimal("2.50"))
    shop.add_item(102, "SKU-102")
    shop.add_item(103, "SKU-103", tracked=False)
    shop.add_item(104, "SKU-104")
    shop.add_item(105, "SKU-105")
    for item_id, available in ((101, 10), (102, 5), (103, 0), (104, 7), (105, 1)):
        shop.set_quantity(item_id, 1, "available", available)
    shop.set_quantity(101, 1, "committed", 2)
    shop.set_quantity(102, 2, "available", 3)


@pytest.fixture
def shop() -> Iterator[FakeShopify]:
    with FakeShopify(access_token=TOKEN) as fake:
        _seed(fake)
        yield fake


def _post(shop: FakeShopify, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", {"X-Shopify-Access-Token": TOKEN})
    return requests.post(
        shop.graphql_url,
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=TIMEOUT,
        **kwargs,
    )


def _gql(shop: FakeShopify, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = _post(shop, query, variables)
    assert response.status_code == 200, response.text
    return response.json()


def _adjust_input(*changes: dict[str, Any], reason: str = "cycle_count_available") -> dict[str, Any]:
    return {
        "name": "available",
        "reason": reason,
        "referenceDocumentUri": "gid://cyclecount/CountSession/42",
        "changes": list(changes),
    }


def _change(item: str = ITEM_1, delta: int = -3, change_from: int | None = 10) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": LOCATION, "delta": delta, "changeFromQuantity": change_from}


# --- transport and authentication ---------------------------------------------------------


def test_missing_or_wrong_access_token_is_refused_with_shopifys_401_body(shop: FakeShopify) -> None:
    for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
        response = _post(shop, "{ locations(first: 1) { nodes { id } } }", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"errors": INVALID_TOKEN_MESSAGE}
    assert shop.requests_made == 2


def test_only_post_of_json_to_the_served_version_is_accepted(shop: FakeShopify) -> None:
    headers = {"X-Shopify-Access-Token": TOKEN}
    other_version = shop.graphql_url.replace("2026-01", "2025-10")
    assert (
        requests.post(other_version, json={"query": "{ shop { id } }"}, headers=headers, timeout=TIMEOUT).status_code
        == 404
    )
    assert requests.get(shop.graphql_url, headers=headers, timeout=TIMEOUT).status_code == 405
    as_form = requests.post(shop.graphql_url, data={"query": "{ shop { id } }"}, headers=headers, timeout=TIMEOUT)
    assert as_form.status_code == 400
    assert as_form.json() == {"errors": {"query": "Required parameter missing or invalid"}}
    no_query = requests.post(shop.graphql_url, json={"variables": {}}, headers=headers, timeout=TIMEOUT)
    assert no_query.status_code == 400


def test_responses_carry_the_api_version_header(shop: FakeShopify) -> None:
    response = _post(shop, "{ locations(first: 1) { nodes { id } } }")
    assert response.headers["X-Shopify-API-Version"] == "2026-01"


# --- schema validation --------------------------------------------------------------------


def test_unknown_field_is_rejected_by_schema_validation_without_charge(shop: FakeShopify) -> None:
    body = _gql(shop, '{ location(id: "gid://shopify/Location/1") { id nickname } }')
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "Field 'nickname' doesn't exist on type 'Location'"
    assert error["extensions"] == {"code": "undefinedField", "typeName": "Location", "fieldName": "nickname"}
    assert error["locations"] == [{"line": 1, "column": 49}]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 0


def test_wrong_argument_types_and_missing_input_fields_are_rejected(shop: FakeShopify) -> None:
    bad_literal = _gql(shop, "{ location(id: 1.5) { id } }")
    assert bad_literal["errors"][0]["extensions"]["code"] == "argumentLiteralsIncompatible"
    missing = _gql(
        shop,
        'mutation { inventoryAdjustQuantities(input: {name: "available", changes: []}) @idempotent(key: "k") '
        "{ userErrors { code } } }",
    )
    assert any("reason" in error["message"] for error in missing["errors"])
    assert shop.mutations_applied == 0


def test_syntax_errors_report_their_location(shop: FakeShopify) -> None:
    body = _gql(shop, "{ locations(first: 1) { nodes { id }")
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 37}]
    assert "data" not in body


def test_bad_variable_values_are_errors_and_change_nothing(shop: FakeShopify) -> None:
    bad = _adjust_input(_change()) | {"changes": [{"inventoryItemId": ITEM_1, "locationId": LOCATION, "delta": "x"}]}
    body = _gql(shop, ADJUST, {"input": bad, "key": "k-bad"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
    assert shop.quantity(101, 1) == 10


# --- reads --------------------------------------------------------------------------------


def test_inventory_levels_page_through_cursors_with_consistent_quantities(shop: FakeShopify) -> None:
    seen: list[tuple[str, dict[str, int]]] = []
    after = None
    pages = 0
    while True:
        body = _gql(shop, LEVELS, {"id": LOCATION, "after": after})
        connection = body["data"]["location"]["inventoryLevels"]
        for edge in connection["edges"]:
            quantities = {q["name"]: q["quantity"] for q in edge["node"]["quantities"]}
            seen.append((edge["node"]["item"]["sku"], quantities))
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == 3
    assert [sku for sku, _ in seen] == ["SKU-101", "SKU-102", "SKU-103", "SKU-104", "SKU-105"]
    assert seen[0][1] == {"available": 10, "committed": 2, "on_hand": 12}


def test_locations_lists_active_ones_by_name_unless_inactive_are_asked_for(shop: FakeShopify) -> None:
    query = "query($all: Boolean) { locations(first: 10, includeInactive: $all) { nodes { id name isActive } } }"
    active = _gql(shop, query, {"all": False})["data"]["locations"]["nodes"]
    assert [loc["name"] for loc in active] == ["Back room", "Main"]
    everything = _gql(shop, query, {"all": True})["data"]["locations"]["nodes"]
    assert {"id": "gid://shopify/Location/3", "name": "Closed store", "isActive": False} in everything


def test_inventory_items_expose_sku_tracking_cost_and_variant_barcode(shop: FakeShopify) -> None:
    query = """{ inventoryItems(first: 2) {
        nodes { id sku tracked unitCost { amount currencyCode } variant { sku barcode } }
        pageInfo { hasNextPage } } }"""
    body = _gql(shop, query)
    first = body["data"]["inventoryItems"]["nodes"][0]
    assert first == {
        "id": ITEM_1,
        "sku": "SKU-101",
        "tracked": True,
        "unitCost": {"amount": "2.5", "currencyCode": "USD"},
        "variant": {"sku": "SKU-101", "barcode": "0123456789012"},
    }
    assert body["data"]["inventoryItems"]["nodes"][1]["unitCost"] is None
    assert body["data"]["inventoryItems"]["pageInfo"]["hasNextPage"] is True


def test_connections_need_a_page_size_of_at_most_250(shop: FakeShopify) -> None:
    missing = _gql(shop, "{ inventoryItems { nodes { id } } }")
    assert missing["errors"][0]["message"] == "you must provide one of first or last"
    too_big = _gql(shop, "{ inventoryItems(first: 251) { nodes { id } } }")
    assert "maximum page size of 250" in too_big["errors"][0]["message"]


def test_an_unmodelled_field_is_an_explicit_error_not_a_null(shop: FakeShopify) -> None:
    body = _gql(shop, f'{{ location(id: "{LOCATION}") {{ id fulfillsOnlineOrders }} }}')
    assert body["errors"][0]["extensions"]["code"] == "FAKE_NOT_MODELED"


# --- inventoryAdjustQuantities ------------------------------------------------------------


def test_adjustment_applies_and_reports_available_and_on_hand(shop: FakeShopify) -> None:
    body = _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-1"})
    result = body["data"]["inventoryAdjustQuantities"]
    assert result["userErrors"] == []
    group = result["inventoryAdjustmentGroup"]
    assert group["reason"] == "cycle_count_available"
    assert group["referenceDocumentUri"] == "gid://cyclecount/CountSession/42"
    assert [(c["name"], c["delta"], c["quantityAfterChange"]) for c in group["changes"]] == [
        ("available", -3, 7),
        ("on_hand", -3, 9),
    ]
    assert shop.quantity(101, 1) == 7
    assert shop.quantity(101, 1, "on_hand") == 9
    assert shop.mutations_applied == 1
    [adjustment] = shop.adjustments
    assert adjustment["idempotency_key"] == "key-1"
    assert adjustment["changes"] == [
        {
            "inventoryItemId": ITEM_1,
            "locationId": LOCATION,
            "delta": -3,
            "changeFromQuantity": 10,
            "ledgerDocumentUri": None,
        }
    ]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10


def test_same_key_and_input_replays_the_first_result_without_a_second_change(shop: FakeShopify) -> None:
    variables = {"input": _adjust_input(_change()), "key": "key-replay"}
    first = _gql(shop, ADJUST, variables)["data"]["inventoryAdjustQuantities"]
    second = _gql(shop, ADJUST, variables)["data"]["inventoryAdjustQuantities"]
    assert second == first
    assert shop.quantity(101, 1) == 7
    assert shop.idempotent_replays == 1
    assert shop.mutations_applied == 1
    assert len(shop.adjustments) == 1


def test_same_key_with_different_input_is_a_parameter_mismatch(shop: FakeShopify) -> None:
    _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-reused"})
    other = _adjust_input(_change(delta=-1, change_from=7))
    result = _gql(shop, ADJUST, {"input": other, "key": "key-reused"})["data"]["inventoryAdjustQuantities"]
    assert result["inventoryAdjustmentGroup"] is None
    assert [e["code"] for e in result["userErrors"]] == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    assert shop.quantity(101, 1) == 7
    assert shop.mutations_applied == 1


def test_idempotent_directive_is_required_and_must_not_be_blank(shop: FakeShopify) -> None:
    without = ADJUST.replace(", $key: String!", "").replace(" @idempotent(key: $key)", "")
    body = _gql(shop, without, {"input": _adjust_input(_change())})
    assert body["data"] == {"inventoryAdjustQuantities": None}
    assert body["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    blank = _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "   "})
    assert blank["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert shop.quantity(101, 1) == 10
    assert shop.mutations_applied == 0


def test_idempotency_can_be_optional_as_in_2026_01() -> None:
    with FakeShopify(access_token=TOKEN, require_idempotency=False) as fake:
        _seed(fake)
        without = ADJUST.replace(", $key: String!", "").replace(" @idempotent(key: $key)", "")
        body = _gql(fake, without, {"input": _adjust_input(_change())})
        assert body["data"]["inventoryAdjustQuantities"]["userErrors"] == []
        assert fake.adjustments[0]["idempotency_key"] is None


def test_stale_change_from_quantity_rejects_the_whole_adjustment(shop: FakeShopify) -> None:
    shop.move_stock(101, 1, -1)  # a sale happened after our read
    changes = (_change(ITEM_2, delta=2, change_from=5), _change(ITEM_1, delta=-3, change_from=10))
    result = _gql(shop, ADJUST, {"input": _adjust_input(*changes), "key": "key-stale"})["data"][
        "inventoryAdjustQuantities"
    ]
    assert result["inventoryAdjustmentGroup"] is None
    assert result["userErrors"] == [
        {
            "field": ["input", "changes", "1", "changeFromQuantity"],
            "message": "The changeFromQuantity argument no longer matches the persisted quantity.",
            "code": "CHANGE_FROM_QUANTITY_STALE",
        }
    ]
    assert shop.quantity(101, 1) == 9
    assert shop.quantity(102, 1) == 5  # the valid change was not applied either
    assert shop.adjustments == []


def test_null_change_from_quantity_skips_the_compare_and_swap(shop: FakeShopify) -> None:
    shop.move_stock(101, 1, -1)
    result = _gql(shop, ADJUST, {"input": _adjust_input(_change(change_from=None)), "key": "key-nocas"})
    assert result["data"]["inventoryAdjustQuantities"]["userErrors"] == []
    assert shop.quantity(101, 1) == 6


def test_reason_must_be_on_shopifys_documented_list(shop: FakeShopify) -> None:
    result = _gql(shop, ADJUST, {"input": _adjust_input(_change(), reason="stocktake"), "key": "key-reason"})
    errors = result["data"]["inventoryAdjustQuantities"]["userErrors"]
    assert errors == [
        {"field": ["input", "reason"], "message": "The specified reason is invalid.", "code": "INVALID_REASON"}
    ]
    quantity = 10
    for index, reason in enumerate(sorted(REASONS)):
        change = _change(delta=1, change_from=quantity)
        ok = _gql(shop, ADJUST, {"input": _adjust_input(change, reason=reason), "key": f"key-{index}"})
        assert ok["data"]["inventoryAdjustQuantities"]["userErrors"] == [], reason
        quantity += 1
    assert {"correction", "cycle_count_available", "damaged", "shrinkage", "received"} <= REASONS


def test_unknown_items_locations_and_unstocked_pairs_are_user_errors(shop: FakeShopify) -> None:
    changes = (
        {"inventoryItemId": "gid://shopify/InventoryItem/999", "locationId": LOCATION, "delta": 1},
        {"inventoryItemId": ITEM_1, "locationId": "gid://shopify/Location/999", "delta": 1},
        {"inventoryItemId": ITEM_1, "locationId": "gid://shopify/Location/2", "delta": 1},
    )
    result = _gql(shop, ADJUST, {"input": _adjust_input(*changes), "key": "key-unknown"})
    codes = [e["code"] for e in result["data"]["inventoryAdjustQuantities"]["userErrors"]]
    assert codes == ["INVALID_INVENTORY_ITEM", "INVALID_LOCATION", "ITEM_NOT_STOCKED_AT_LOCATION"]
    assert shop.mutations_applied == 0


def test_quantity_names_and_ledger_documents_follow_the_reference(shop: FakeShopify) -> None:
    committed = _adjust_input(_change()) | {"name": "committed"}
    codes = _gql(shop, ADJUST, {"input": committed, "key": "key-committed"})["data"]["inventoryAdjustQuantities"]
    assert [e["code"] for e in codes["userErrors"]] == ["INVALID_QUANTITY_NAME"]
    damaged = _adjust_input(_change(change_from=None)) | {"name": "damaged"}
    needs_ledger = _gql(shop, ADJUST, {"input": damaged, "key": "key-damaged"})["data"]["inventoryAdjustQuantities"]
    assert [e["code"] for e in needs_ledger["userErrors"]] == ["INVALID_QUANTITY_DOCUMENT"]
    damaged["changes"][0] |= {"delta": 2, "ledgerDocumentUri": "gid://cyclecount/Damage/7"}
    ok = _gql(shop, ADJUST, {"input": damaged, "key": "key-damaged-2"})["data"]["inventoryAdjustQuantities"]
    assert ok["userErrors"] == []
    assert shop.quantity(101, 1, "damaged") == 2
    assert shop.quantity(101, 1, "on_hand") == 14  # damaged units are on hand but not available
    assert shop.quantity(101, 1) == 10


def test_an_unparseable_reference_document_uri_is_refused(shop: FakeShopify) -> None:
    bad = _adjust_input(_change()) | {"referenceDocumentUri": "gid://cyclecount/only-two"}
    result = _gql(shop, ADJUST, {"input": bad, "key": "key-uri"})["data"]["inventoryAdjustQuantities"]
    assert [e["code"] for e in result["userErrors"]] == ["INVALID_REFERENCE_DOCUMENT"]


# --- cost and throttling ------------------------------------------------------------------


def test_small_bucket_throttles_by_calculated_cost_and_restores_over_time() -> None:
    clock = Clock()
    with FakeShopify(access_token=TOKEN, bucket_size=50, restore_rate=10.0, clock=clock) as fake:
        _seed(fake)
        query = "{ inventoryItems(first: 30) { nodes { id sku } } }"  # 2 + 30 x 1 = 32 points
        first = _gql(fake, query)
        cost = first["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 32
        assert cost["actualQueryCost"] == 7  # five items returned: 2 + 5 x 1, the rest refunded
        assert cost["throttleStatus"] == {"maximumAvailable": 50.0, "currentlyAvailable": 43, "restoreRate": 10.0}
        big = "{ inventoryItems(first: 45) { nodes { id } } }"  # 47 points > 43 available
        throttled = _gql(fake, big)
        assert throttled["errors"][0]["message"] == "Throttled"
        assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert "data" not in throttled
        assert throttled["extensions"]["cost"]["requestedQueryCost"] == 47
        assert throttled["extensions"]["cost"]["actualQueryCost"] is None
        assert fake.throttled == 1
        clock.now += 0.5  # +5 points: 48 available
        assert "data" in _gql(fake, big)


def test_throttled_mutation_changes_nothing() -> None:
    clock = Clock()
    with FakeShopify(access_token=TOKEN, bucket_size=15, restore_rate=1.0, clock=clock) as fake:
        _seed(fake)
        _gql(fake, "{ inventoryItems(first: 10) { pageInfo { hasNextPage } } }")  # 2 points: 13 left
        _gql(fake, ADJUST, {"input": _adjust_input(_change()), "key": "key-a"})  # 10 points: 3 left
        body = _gql(fake, ADJUST, {"input": _adjust_input(_change(delta=-1, change_from=7)), "key": "key-b"})
        assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert fake.quantity(101, 1) == 7
        assert fake.mutations_applied == 1


def test_query_over_the_single_query_limit_is_refused(shop: FakeShopify) -> None:
    query = "{ inventoryItems(first: 250) { nodes { inventoryLevels(first: 250) { nodes { id } } } } }"
    body = _gql(shop, query)
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert body["errors"][0]["message"].startswith("Query cost is 63252, which exceeds the single query max cost")


def test_injected_throttle_and_429_with_retry_after(shop: FakeShopify) -> None:
    shop.throttle_next(1)
    body = _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-t"})
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10
    shop.throttle_next(1, as_429=True)
    response = _post(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-t"})
    assert response.status_code == 429
    assert float(response.headers["Retry-After"]) > 0
    assert shop.throttled == 2
    assert shop.quantity(101, 1) == 10
    assert _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-t"})["data"]
    assert shop.quantity(101, 1) == 7


# --- faults -------------------------------------------------------------------------------


def test_dropped_response_after_commit_then_retry_with_same_key_replays(shop: FakeShopify) -> None:
    shop.drop_next(1)
    variables = {"input": _adjust_input(_change()), "key": "key-drop"}
    with pytest.raises(requests.ConnectionError):
        _post(shop, ADJUST, variables)
    assert shop.quantity(101, 1) == 7  # it happened, though the client never heard
    retry = _gql(shop, ADJUST, variables)["data"]["inventoryAdjustQuantities"]
    assert retry["userErrors"] == []
    assert shop.quantity(101, 1) == 7
    assert shop.idempotent_replays == 1
    assert shop.mutations_applied == 1


def test_edge_failures_happen_before_authentication_and_effect(shop: FakeShopify) -> None:
    shop.fail_next(2, status=503)
    for _ in range(2):
        response = _post(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-503"}, headers={})
        assert response.status_code == 503
    assert shop.quantity(101, 1) == 10
    assert _gql(shop, ADJUST, {"input": _adjust_input(_change()), "key": "key-503"})["data"]
    assert shop.requests_made == 3


def test_setup_mistakes_raise() -> None:
    fake = FakeShopify(access_token=TOKEN)
    with pytest.raises(ValueError, match="before setting"):
        fake.set_quantity(1, 1, "available", 3)
    fake.add_location(1, "Main")
    fake.add_item(1, "A")
    with pytest.raises(ValueError, match="unknown quantity name"):
        fake.set_quantity(1, 1, "sellable", 3)
    fake.set_quantity(1, 1, "reserved", 2)
    fake.set_quantity(1, 1, "on_hand", 10)
    assert (fake.quantity(1, 1), fake.quantity(1, 1, "on_hand")) == (8, 10)


def test_concurrent_retries_with_one_key_apply_once(shop: FakeShopify) -> None:
    variables = {"input": _adjust_input(_change()), "key": "key-race"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(lambda _: _gql(shop, ADJUST, variables), range(8)))
    groups = {body["data"]["inventoryAdjustQuantities"]["inventoryAdjustmentGroup"]["id"] for body in bodies}
    assert len(groups) == 1
    assert shop.quantity(101, 1) == 7
    assert (shop.mutations_applied, shop.idempotent_replays) == (1, 7)
