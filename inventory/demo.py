"""Deterministic demo data: one organization, facility WH1, a catalogue, balances and people.

The same seed always describes the same warehouse; seeding only inserts what is missing, so a
second run changes nothing.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from simple_history.utils import bulk_create_with_history

from accounts.models import Organization
from accounts.roles import Role
from accounts.services import membership_grant
from inventory.barcodes import upc_a
from inventory.models import AbcClass, BarcodeKind, Facility, InventoryBalance, Item, ItemBarcode, Location, Zone

DEMO_ORGANIZATION = ("Demo Outfitters", "demo")
DEMO_FACILITY = ("WH1", "Chicago Distribution Center", "America/Chicago")
DEMO_ZONES = ("A", "B", "C", "D")
AISLES_PER_ZONE = 5
BAYS_PER_AISLE = 10
# A fixed instant keeps the data identical between runs and machines.
DEMO_SYNCED_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DEMO_USERS: tuple[tuple[str, str], ...] = (
    ("planner", Role.PLANNER),
    ("associate1", Role.ASSOCIATE),
    ("associate2", Role.ASSOCIATE),
    ("manager1", Role.MANAGER),
    ("manager2", Role.MANAGER),
    ("finance", Role.FINANCE),
    ("admin", Role.ADMIN),
)

_ADJECTIVES = (
    "Trail",
    "Summit",
    "Harbor",
    "Prairie",
    "Granite",
    "Cedar",
    "Alpine",
    "Coastal",
    "Urban",
    "Canyon",
    "Polar",
    "Desert",
    "Ridge",
    "Meadow",
    "Timber",
    "Glacier",
    "River",
    "Storm",
    "Sierra",
    "Aurora",
)
_MATERIALS = ("Nylon", "Merino", "Steel", "Canvas", "Fleece", "Leather", "Titanium", "Cotton", "Carbon", "Gore")
_PRODUCTS = (
    ("Socks", "PR", 2.5, 18),
    ("Water Bottle", "EA", 6, 40),
    ("Headlamp", "EA", 15, 90),
    ("Backpack", "EA", 40, 320),
    ("Tent", "EA", 120, 1400),
    ("Sleeping Bag", "EA", 60, 700),
    ("Carabiner", "EA", 0.8, 12),
    ("Rope 50m", "EA", 90, 400),
    ("Stove", "EA", 35, 260),
    ("Fuel Canister", "EA", 3, 9),
    ("Jacket", "EA", 45, 650),
    ("Gloves", "PR", 8, 120),
    ("Trekking Poles", "PR", 30, 220),
    ("Tarp", "EA", 12, 150),
    ("GPS Unit", "EA", 150, 3200),
    ("Zip Ties 100ct", "BX", 0.05, 4),
    ("Paracord 30m", "EA", 4, 25),
    ("First Aid Kit", "EA", 10, 95),
    ("Ice Axe", "EA", 70, 380),
    ("Kayak", "EA", 400, 4000),
)


@dataclass
class SeedResult:
    created: dict[str, int] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or bool(self.passwords)


def _money(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _upc_for(index: int) -> str:
    # "8" + a 10-digit serial keeps every demo UPC unique and valid for up to 10^10 items.
    return upc_a(f"8{index:010d}")


def _item_rows(rng: random.Random, skus: int) -> list[dict]:
    rows = []
    for index in range(1, skus + 1):
        product, uom, low, high = rng.choice(_PRODUCTS)
        # Log-uniform within the product's band spreads costs from cents to thousands.
        cost = math.exp(rng.uniform(math.log(low), math.log(high)))
        rows.append(
            {
                "sku": f"SKU-{index:06d}",
                "name": f"{rng.choice(_ADJECTIVES)} {rng.choice(_MATERIALS)} {product}",
                "unit_of_measure": uom,
                "average_cost": _money(cost),
                "upc": _upc_for(index),
            }
        )
    # ABC by cost rank: top 20% A, next 30% B, the rest C (a value proxy; velocity comes later).
    ranked = sorted(range(len(rows)), key=lambda i: (-rows[i]["average_cost"], rows[i]["sku"]))
    for rank, row_index in enumerate(ranked):
        share = rank / max(len(rows), 1)
        rows[row_index]["abc_class"] = AbcClass.A if share < 0.2 else AbcClass.B if share < 0.5 else AbcClass.C
    return rows


def _balance_rows(rng: random.Random, item_count: int, location_count: int) -> list[tuple[int, int, int, int]]:
    """(item index, location index, on hand, reserved) — each item in one bin, 20% in a second."""
    rows = []
    for item_index in range(item_count):
        bins = [rng.randrange(location_count)]
        if rng.random() < 0.2:
            second = rng.randrange(location_count)
            if second != bins[0]:
                bins.append(second)
        for location_index in bins:
            on_hand = 0 if rng.random() < 0.05 else rng.randint(1, 400)
            reserved = rng.randint(1, on_hand) if on_hand and rng.random() < 0.15 else 0
            rows.append((item_index, location_index, on_hand, reserved))
    return rows


@transaction.atomic
def demo_seed(*, skus: int = 2000, seed: int = 1, password: str | None = None) -> SeedResult:
    """Insert whatever part of the demo data set is missing; never modify what exists.

    Passwords are set only for users this call creates (or for all, when `password` is given)
    and are returned so the command can print them once.
    """
    if skus < 1:
        raise ValueError("skus must be at least 1")
    rng = random.Random(seed)
    result = SeedResult()

    name, slug = DEMO_ORGANIZATION
    organization, created = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
    result.created["organizations"] = int(created)

    code, facility_name, time_zone = DEMO_FACILITY
    facility, created = Facility.objects.get_or_create(
        organization=organization, code=code, defaults={"name": facility_name, "time_zone": time_zone}
    )
    result.created["facilities"] = int(created)

    zones = {}
    for zone_code in DEMO_ZONES:
        zones[zone_code], created = Zone.objects.get_or_create(
            organization=organization, facility=facility, code=zone_code, defaults={"name": f"Zone {zone_code}"}
        )
        result.created["zones"] = result.created.get("zones", 0) + int(created)

    location_codes = [
        (zone_code, f"{zone_code}-{aisle:02d}-{bay:02d}")
        for zone_code in DEMO_ZONES
        for aisle in range(1, AISLES_PER_ZONE + 1)
        for bay in range(1, BAYS_PER_AISLE + 1)
    ]
    existing_locations = set(Location.objects.filter(facility=facility).values_list("code", flat=True))
    new_locations = [
        Location(
            organization=organization,
            facility=facility,
            zone=zones[zone_code],
            code=location_code,
            barcode=f"LOC-{code}-{location_code}",
        )
        for zone_code, location_code in location_codes
        if location_code not in existing_locations
    ]
    bulk_create_with_history(new_locations, Location, batch_size=1000)
    result.created["locations"] = len(new_locations)

    item_rows = _item_rows(rng, skus)
    existing_skus = set(Item.objects.filter(organization=organization).values_list("sku", flat=True))
    new_items = [
        Item(
            organization=organization,
            sku=row["sku"],
            name=row["name"],
            unit_of_measure=row["unit_of_measure"],
            average_cost=row["average_cost"],
            abc_class=row["abc_class"],
        )
        for row in item_rows
        if row["sku"] not in existing_skus
    ]
    bulk_create_with_history(new_items, Item, batch_size=1000)
    result.created["items"] = len(new_items)

    item_ids = dict(Item.objects.filter(organization=organization).values_list("sku", "pk"))
    existing_barcodes = set(ItemBarcode.objects.filter(organization=organization).values_list("value", flat=True))
    new_barcodes = [
        ItemBarcode(organization=organization, item_id=item_ids[row["sku"]], value=row["upc"], kind=BarcodeKind.UPC_A)
        for row in item_rows
        if row["upc"] not in existing_barcodes
    ]
    bulk_create_with_history(new_barcodes, ItemBarcode, batch_size=1000)
    result.created["barcodes"] = len(new_barcodes)

    location_ids = dict(Location.objects.filter(facility=facility).values_list("code", "pk"))
    existing_pairs = set(
        InventoryBalance.objects.filter(organization=organization).values_list("item_id", "location_id")
    )
    new_balances = []
    for item_index, location_index, on_hand, reserved in _balance_rows(rng, len(item_rows), len(location_codes)):
        item_id = item_ids[item_rows[item_index]["sku"]]
        location_id = location_ids[location_codes[location_index][1]]
        if (item_id, location_id) in existing_pairs:
            continue
        new_balances.append(
            InventoryBalance(
                organization=organization,
                item_id=item_id,
                location_id=location_id,
                on_hand=Decimal(on_hand),
                reserved=Decimal(reserved),
                available=Decimal(on_hand - reserved),
                synced_at=DEMO_SYNCED_AT,
                sync_reference="seed_demo",
            )
        )
    bulk_create_with_history(new_balances, InventoryBalance, batch_size=1000)
    result.created["balances"] = len(new_balances)

    result.created["users"] = 0
    User = get_user_model()
    for username, role in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, email=f"{username}@demo.invalid", is_superuser=(role == Role.ADMIN))
            result.created["users"] += 1
            result.passwords[username] = password or secrets.token_urlsafe(9)
        elif password:
            result.passwords[username] = password
        if username in result.passwords:
            user.set_password(result.passwords[username])
            user.save()
        membership_grant(user=user, organization=organization, role=role)
    return result
