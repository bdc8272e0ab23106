from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.roles import Role
from counts.models import CountKind
from counts.services.planning import count_run_create
from tests.conftest import token_client
from tests.factories import InventoryBalanceFactory, ItemBarcodeFactory, LocationFactory, ZoneFactory, member


@dataclass
class Warehouse:
    facility: object
    zone: object
    locations: list
    items: list
    barcodes: list


@pytest.fixture
def warehouse(organization, facility) -> Warehouse:
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    locations = [
        LocationFactory(organization=organization, zone=zone, code=f"A-01-{n:02d}", barcode=f"LOC-A-01-{n:02d}")
        for n in range(1, 4)
    ]
    barcodes = [ItemBarcodeFactory(item__organization=organization, item__name=f"Item {n}") for n in range(3)]
    items = [barcode.item for barcode in barcodes]
    for index, item in enumerate(items):
        InventoryBalanceFactory(
            organization=organization, location=locations[index], item=item, on_hand=Decimal(10 * (index + 1))
        )
    return Warehouse(facility=facility, zone=zone, locations=locations, items=items, barcodes=barcodes)


@pytest.fixture
def hard_run(organization, warehouse, manager):
    return count_run_create(
        organization=organization, facility=warehouse.facility, name="Hard count", kind=CountKind.HARD, actor=manager
    )


@pytest.fixture
def associate_api(associate):
    return token_client(associate)


@pytest.fixture
def second_associate(organization):
    return member(organization, Role.ASSOCIATE, username="associate2")


_BASE_TIME = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def scan(location: str, barcode: str, *, quantity=1, kind="add", mode="scan", offset=0, **extra) -> dict:
    """One capture event as a device sends it, with its own fresh id."""
    event = {
        "event_id": str(uuid.uuid4()),
        "location": location,
        "barcode": barcode,
        "quantity": quantity,
        "kind": kind,
        "mode": mode,
        "counted_at": (_BASE_TIME + timedelta(seconds=offset)).isoformat(),
    }
    event.update(extra)
    return event
