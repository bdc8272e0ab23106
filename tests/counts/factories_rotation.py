"""A generated warehouse for the rotation tests: uneven zones, mixed ABC items, empty bins."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from accounts.models import Organization
from inventory.models import AbcClass, Facility, InventoryBalance, Item, Location, Zone

SYNCED_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class GeneratedWarehouse:
    zones: list[Zone]
    locations: list[Location]
    lines_by_location: dict[int, int]  # stocked locations only: balances with on hand ≠ 0
    a_class_location_ids: frozenset[int]  # stocked locations holding a stocked A item

    @property
    def stocked_location_ids(self) -> frozenset[int]:
        return frozenset(self.lines_by_location)


def warehouse_generate(
    *,
    organization: Organization,
    facility: Facility,
    zone_sizes: tuple[int, ...] = (140, 90, 60, 40, 25, 15),
    item_count: int = 400,
    empty_share: float = 0.12,
    seed: int = 20260105,
) -> GeneratedWarehouse:
    """Zones of the given sizes; each stocked bin holds 1–6 items (a few rows at zero on hand).

    Written with bulk_create (test data, not mirror syncs) so a few hundred bins take well
    under a second.
    """
    rng = random.Random(seed)
    zones = Zone.objects.bulk_create(
        Zone(organization=organization, facility=facility, code=f"Z{index + 1}", name=f"Zone {index + 1}")
        for index in range(len(zone_sizes))
    )
    locations = Location.objects.bulk_create(
        Location(
            organization=organization,
            facility=facility,
            zone=zone,
            code=f"{zone.code}-{aisle:03d}",
            barcode=f"LOC-{facility.code}-{zone.code}-{aisle:03d}",
        )
        for zone, size in zip(zones, zone_sizes, strict=True)
        for aisle in range(1, size + 1)
    )
    classes = rng.choices([AbcClass.A, AbcClass.B, AbcClass.C], weights=[12, 28, 60], k=item_count)
    items = Item.objects.bulk_create(
        Item(organization=organization, sku=f"ROT-{index:05d}", name=f"Rotation item {index}", abc_class=abc)
        for index, abc in enumerate(classes)
    )

    balances: list[InventoryBalance] = []
    lines_by_location: dict[int, int] = {}
    a_class: set[int] = set()
    for location in locations:
        empty = rng.random() < empty_share
        for item in rng.sample(items, rng.randint(1, 6)):
            on_hand = Decimal(0) if empty or rng.random() < 0.05 else Decimal(rng.randint(1, 200))
            balances.append(
                InventoryBalance(
                    organization=organization,
                    item=item,
                    location=location,
                    on_hand=on_hand,
                    available=on_hand,
                    synced_at=SYNCED_AT,
                )
            )
            if on_hand:
                lines_by_location[location.pk] = lines_by_location.get(location.pk, 0) + 1
                if item.abc_class == AbcClass.A:
                    a_class.add(location.pk)
    InventoryBalance.objects.bulk_create(balances, batch_size=500)
    return GeneratedWarehouse(
        zones=zones,
        locations=locations,
        lines_by_location=lines_by_location,
        a_class_location_ids=frozenset(a_class),
    )
