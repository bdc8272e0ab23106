from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from inventory.models import InventoryBalance
from inventory.services import balance_apply_delta, balance_record_sync
from tests.factories import InventoryBalanceFactory, ItemFactory, LocationFactory

SYNCED_AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_sync_sets_available_to_on_hand_minus_reserved(organization):
    location = LocationFactory(organization=organization, zone__facility__organization=organization)
    item = ItemFactory(organization=organization)

    balance = balance_record_sync(
        organization=organization,
        item=item,
        location=location,
        on_hand=Decimal("40"),
        reserved=Decimal("15"),
        synced_at=SYNCED_AT,
        sync_reference="sync-1",
    )
    balance = balance_record_sync(
        organization=organization,
        item=item,
        location=location,
        on_hand=Decimal("38"),
        reserved=Decimal("5"),
        synced_at=SYNCED_AT,
        sync_reference="sync-2",
    )

    balance.refresh_from_db()
    assert (balance.on_hand, balance.reserved, balance.available) == (Decimal("38"), Decimal("5"), Decimal("33"))
    assert InventoryBalance.objects.count() == 1


def test_available_can_go_negative_when_reservations_exceed_on_hand(organization):
    # The ERP can be oversold; the mirror must say so rather than hide it.
    balance = InventoryBalanceFactory(organization=organization, on_hand=Decimal("2"), reserved=Decimal("5"))
    assert balance.available == Decimal("-3")


def test_database_refuses_an_available_that_disagrees(organization):
    balance = InventoryBalanceFactory(organization=organization, on_hand=Decimal("10"), reserved=Decimal("4"))

    with pytest.raises(IntegrityError), transaction.atomic():
        InventoryBalance.objects.filter(pk=balance.pk).update(available=Decimal("10"))


def test_delta_moves_on_hand_and_available_and_is_in_history(organization, manager):
    balance = InventoryBalanceFactory(organization=organization, on_hand=Decimal("10"), reserved=Decimal("4"))

    balance_apply_delta(balance_id=balance.pk, delta=Decimal("-3"), reference="ADJ-1", actor=manager)

    balance.refresh_from_db()
    assert (balance.on_hand, balance.available) == (Decimal("7"), Decimal("3"))
    latest = balance.history.latest()
    assert latest.history_type == "~"
    assert latest.history_user == manager
    assert latest.on_hand == Decimal("7")
    assert "ADJ-1" in latest.history_change_reason
    assert balance.history.count() == 2


def test_sync_refuses_rows_of_another_organization(organization, other_organization):
    location = LocationFactory(organization=other_organization, zone__facility__organization=other_organization)
    item = ItemFactory(organization=organization)

    with pytest.raises(ValueError, match="organization"):
        balance_record_sync(
            organization=organization,
            item=item,
            location=location,
            on_hand=Decimal("1"),
            reserved=Decimal("0"),
            synced_at=SYNCED_AT,
        )
    assert not InventoryBalance.objects.exists()
