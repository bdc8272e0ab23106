from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from counts.models import CountKind, CountLine
from counts.services.planning import count_run_create, count_run_start
from tests.factories import InventoryBalanceFactory, ItemFactory, LocationFactory, ZoneFactory

COUNTED_AT = datetime(2026, 11, 20, 15, tzinfo=UTC)


class LineMaker:
    """Count lines with chosen book, counted and cost, on one started hard run."""

    def __init__(self, organization, facility, manager) -> None:
        self.organization = organization
        self.zone = ZoneFactory(organization=organization, facility=facility, code="Z")
        self.run = count_run_start(
            run=count_run_create(
                organization=organization, facility=facility, name="Reconcile me", kind=CountKind.HARD, actor=manager
            ),
            actor=manager,
        )

    def line(self, *, book, counted, cost="10.00", on_hand=None) -> CountLine:
        location = LocationFactory(organization=self.organization, zone=self.zone)
        item = ItemFactory(organization=self.organization, average_cost=Decimal(cost))
        InventoryBalanceFactory(
            organization=self.organization,
            location=location,
            item=item,
            on_hand=Decimal(on_hand if on_hand is not None else book),
        )
        return CountLine.objects.create(
            organization=self.organization,
            run=self.run,
            location=location,
            item=item,
            counted_quantity=Decimal(counted),
            book_quantity=Decimal(book),
            first_counted_at=COUNTED_AT,
            last_counted_at=COUNTED_AT,
        )


@pytest.fixture
def lines(organization, facility, manager) -> LineMaker:
    return LineMaker(organization, facility, manager)
