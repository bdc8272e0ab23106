"""Tests of the HotWax Commerce OMS fake itself, driven over real HTTP with requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.fakes.hotwax import FakeHotWax

TOKEN = "jwt-cyclecount"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = 5


@pytest.fixture
def oms() -> Iterator[FakeHotWax]:
    with FakeHotWax(token=TOKEN) as fake:
        fake.add_facility("WH", "Warehouse")
        fake.add_facility("STORE_1", "Store 1", locations=("FLOOR", "BACK"))
        for index in range(1, 6):
            fake.add_product(f"1000{index}", sku=f"SKU-{index}", upc=f"00000000000{index}")
            fake.set_inventory(
                f"1000{index}",
                "WH",
                available_to_promise=Decimal(index),
                quantity_on_hand=Decimal(index + 1),
                location_seq_id="TLTLTLLL01",
            )
        fake.set_inventory("10001", "STORE_1", available_to_promise=Decimal("3"), quantity_on_hand=Decimal("4.5"))
        yield fake


def _inventory(oms: FakeHotWax, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(
        f"{oms.base_url}oms/productFacilities/inventory",
        params=params,
        headers=AUTH if headers is None else headers,
        timeout=TIMEOUT,
    )


def _update(oms: FakeHotWax, headers: dict[str, str] | None = None, **overrides: Any) -> requests.Response:
    body = {
        "facilityId": "WH",
        "availableDelta": -2,
        "idType": "SKU",
        "idValue": "SKU-3",
        "locationSeqId": "TLTLTLLL01",
        "varianceReasonId": "VAR_MANUAL",
    } | overrides
    body = {key: value for key, value in body.items() if value is not ...}
    return requests.post(
        oms.update_inventory_url, json=body, headers=AUTH if headers is None else headers, timeout=TIMEOUT
    )


# --- authentication -----------------------------------------------------------------------


def test_bearer_token_is_required_with_moquis_json_error_body(oms: FakeHotWax) -> None:
    missing = _inventory(oms, headers={}, facilityId="WH")
    assert missing.status_code == 401
    entity = "co.hotwax.product.ProductFacilityInventoryItemView"
    assert missing.json() == {
        "errorCode": 401,
        "errors": f"User must be logged in for operaton list on entity {entity}",
    }
    for headers in ({"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}):
        wrong = _inventory(oms, headers=headers, facilityId="WH")
        assert wrong.status_code == 401
        assert wrong.json()["errorCode"] == 401
        assert isinstance(wrong.json()["errors"], str)
    refused_update = _update(oms, headers={})
    assert refused_update.status_code == 401
    assert refused_update.json()["errorCode"] == 401
    assert oms.updates == []
    assert oms.on_hand("10003", "WH") == Decimal("4")


# --- productFacilities/inventory ----------------------------------------------------------


def test_inventory_pages_with_moqui_headers(oms: FakeHotWax) -> None:
    seen = []
    for page_index in range(3):
        response = _inventory(oms, facilityId="WH", pageSize=2, pageIndex=page_index)
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == "5"
        assert response.headers["X-Page-Index"] == str(page_index)
        assert response.headers["X-Page-Size"] == "2"
        assert response.headers["X-Page-Max-Index"] == "2"
        assert response.headers["X-Page-Range-Low"] == str(page_index * 2 + 1)
        assert response.headers["X-Page-Range-High"] == str(min(5, page_index * 2 + 2))
        seen.extend(row["productId"] for row in response.json())
    assert seen == ["10001", "10002", "10003", "10004", "10005"]
    assert _inventory(oms, facilityId="WH", pageSize=2, pageIndex=3).json() == []


def test_inventory_rows_carry_quantities_as_six_decimal_numbers(oms: FakeHotWax) -> None:
    response = _inventory(oms, facilityId="STORE_1")
    assert (
        response.text
        == '[{"productId":"10001","facilityId":"STORE_1","availableToPromise":3.000000,"quantityOnHand":4.500000}]'
    )
    [row] = json.loads(response.text, parse_float=Decimal)
    assert row["quantityOnHand"] == Decimal("4.5")


def test_inventory_defaults_and_filters(oms: FakeHotWax) -> None:
    everything = _inventory(oms)
    assert everything.headers["X-Page-Size"] == "100"  # Moqui never lists without a limit
    assert len(everything.json()) == 6
    assert _inventory(oms, pageIndex=0).headers["X-Page-Size"] == "20"
    chosen = _inventory(oms, facilityId="WH", productId="10002,10004", productId_op="in").json()
    assert [row["productId"] for row in chosen] == ["10002", "10004"]
    count = requests.get(
        f"{oms.base_url}oms/productFacilities/inventory/count",
        params={"facilityId": "WH"},
        headers=AUTH,
        timeout=TIMEOUT,
    )
    assert count.json() == {"count": 5}
    bad = _inventory(oms, pageSize="ten")
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == 400


# --- updateInventoryByIdentification -------------------------------------------------------


def test_update_applies_the_delta_to_on_hand_and_atp(oms: FakeHotWax) -> None:
    response = _update(oms)
    assert response.status_code == 200
    assert response.json() == {
        "facilityId": "WH",
        "availableDelta": -2,
        "idType": "SKU",
        "idValue": "SKU-3",
        "locationSeqId": "TLTLTLLL01",
        "varianceReasonId": "VAR_MANUAL",
        "webSiteId": "API",
    }
    assert oms.on_hand("10003", "WH") == Decimal("2")
    assert oms.available_to_promise("10003", "WH") == Decimal("1")
    assert oms.updates == [
        {
            "facilityId": "WH",
            "availableDelta": Decimal("-2"),
            "idType": "SKU",
            "idValue": "SKU-3",
            "locationSeqId": "TLTLTLLL01",
            "varianceReasonId": "VAR_MANUAL",
            "productId": "10003",
        }
    ]
    [row] = _inventory(oms, facilityId="WH", productId="10003").json()
    assert row["quantityOnHand"] == 2


def test_update_by_upca_with_a_decimal_delta(oms: FakeHotWax) -> None:
    assert _update(oms, idType="UPCA", idValue="000000000005", availableDelta="1.5").status_code == 200
    assert oms.on_hand("10005", "WH") == Decimal("7.5")


def test_update_lives_outside_rest_s1(oms: FakeHotWax) -> None:
    wrong = requests.post(
        f"{oms.base_url}api/service/updateInventoryByIdentification", json={}, headers=AUTH, timeout=TIMEOUT
    )
    assert wrong.status_code == 404
    assert requests.get(oms.update_inventory_url, headers=AUTH, timeout=TIMEOUT).status_code == 405


def test_a_resend_applies_twice_because_there_is_no_idempotency(oms: FakeHotWax) -> None:
    assert _update(oms).status_code == 200
    assert _update(oms).status_code == 200
    assert oms.on_hand("10003", "WH") == Decimal("0")
    assert len(oms.updates) == 2


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"idValue": "SKU-404"}, "No product found"),
        ({"facilityId": "NOWHERE"}, "Facility NOWHERE not found"),
        ({"locationSeqId": ...}, "locationSeqId"),
        ({"varianceReasonId": ...}, "varianceReasonId"),
        ({"availableDelta": "two"}, "availableDelta"),
        ({"availableDelta": True}, "availableDelta"),
        ({"idType": "HOTWAX_ID"}, "Unsupported idType"),
        ({"varianceReasonId": "STOCKTAKE"}, "varianceReasonId"),
        ({"facilityId": "STORE_1", "idValue": "SKU-1", "locationSeqId": "ATTIC"}, "Location ATTIC"),
    ],
)
def test_invalid_updates_are_400s_that_change_nothing(oms: FakeHotWax, overrides: dict[str, Any], needle: str) -> None:
    response = _update(oms, **overrides)
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == 400
    assert needle in body["errors"]
    assert oms.updates == []
    assert oms.on_hand("10003", "WH") == Decimal("4")


def test_update_body_must_be_json(oms: FakeHotWax) -> None:
    as_form = requests.post(oms.update_inventory_url, data={"facilityId": "WH"}, headers=AUTH, timeout=TIMEOUT)
    assert as_form.status_code == 400
    broken = requests.post(
        oms.update_inventory_url,
        data=b"{not json",
        headers=AUTH | {"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert broken.status_code == 400
    assert broken.json()["errorCode"] == 400
    assert oms.updates == []


# --- faults -------------------------------------------------------------------------------


def test_dropped_response_after_commit_leaves_the_update_applied(oms: FakeHotWax) -> None:
    oms.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        _update(oms)
    assert oms.on_hand("10003", "WH") == Decimal("2")
    [row] = _inventory(oms, facilityId="WH", productId="10003").json()
    assert row["quantityOnHand"] == 2  # what a careful client reads back before resending
    assert len(oms.updates) == 1


def test_edge_failures_happen_before_authentication_and_effect(oms: FakeHotWax) -> None:
    oms.fail_next(1, status=503)
    failed = _update(oms, headers={})
    assert failed.status_code == 503
    assert failed.headers["Content-Type"].startswith("text/html")
    assert oms.updates == []
    assert _update(oms).status_code == 200
    assert oms.requests_made == 2


def test_setup_mistakes_raise() -> None:
    fake = FakeHotWax(token=TOKEN)
    with pytest.raises(ValueError, match="before setting"):
        fake.set_inventory("P", "F", available_to_promise=Decimal(1), quantity_on_hand=Decimal(1))
    with pytest.raises(ValueError, match="fail_next"):
        fake.fail_next(1, status=200)
