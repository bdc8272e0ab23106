"""Sync pulls NetSuite into the mirror; the first sync after a push checks parity."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.interface import TransientBackendError
from adapters.models import ExternalKind, ExternalRecord, ParityDrift
from adapters.services import backend_sync, push_drain
from adapters.services.sync import parity_drift_resolve
from approvals.models import ProposalState, ProposedAction
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode, Location, Zone
from tests.adapters.support import approve_adjustments, connect, warehouse

pytestmark = pytest.mark.django_db


def test_first_sync_builds_the_mirror_with_backend_ids(organization, netsuite):
    warehouse(netsuite, locations=2, items=3)
    netsuite.set_on_hand(101, 11, Decimal("7.5"), committed=Decimal(2))
    connection = connect(organization, netsuite)

    result = backend_sync(connection=connection)

    facility = Facility.objects.get(organization=organization)
    assert (facility.code, facility.time_zone) == ("DALLAS-DC", "America/Chicago")
    assert set(Location.objects.values_list("code", flat=True)) == {"DALLAS-DC", "DALLAS-AISLE-1", "DALLAS-AISLE-2"}
    assert set(Zone.objects.values_list("code", flat=True)) == {"MAIN", "DALLAS-AISLE-1", "DALLAS-AISLE-2"}
    assert list(Item.objects.order_by("sku").values_list("sku", "average_cost")) == [
        ("NS-0000", Decimal("4.5")),
        ("NS-0001", Decimal("4.5")),
        ("NS-0002", Decimal("4.5")),
    ]
    assert ItemBarcode.objects.filter(value="000000000001", item__sku="NS-0001").exists()
    balance = InventoryBalance.objects.get(item__sku="NS-0001", location__code="DALLAS-AISLE-2")
    assert (balance.on_hand, balance.reserved, balance.available) == (Decimal("7.5"), Decimal(2), Decimal("5.5"))
    assert InventoryBalance.objects.count() == 6
    assert ExternalRecord.objects.filter(connection=connection, kind=ExternalKind.ITEM).count() == 3
    assert ExternalRecord.objects.get(location__code="DALLAS-AISLE-1").external_id == "10"
    assert (result.items_created, result.locations_created, result.balances_changed) == (3, 3, 6)


def test_a_second_sync_changes_only_what_changed(organization, netsuite):
    warehouse(netsuite, locations=2, items=3)
    connection = connect(organization, netsuite)
    backend_sync(connection=connection)
    history_rows = InventoryBalance.history.count()
    netsuite.set_on_hand(100, 10, Decimal(60))

    result = backend_sync(connection=connection)

    assert (result.items_created, result.locations_created, result.balances_changed) == (0, 0, 1)
    assert InventoryBalance.history.count() == history_rows + 1
    assert InventoryBalance.objects.get(item__sku="NS-0000", location__code="DALLAS-AISLE-1").on_hand == Decimal(60)


def test_existing_mirror_rows_are_matched_not_duplicated(organization, netsuite, facility):
    warehouse(netsuite, locations=1, items=1)
    Item.objects.create(organization=organization, sku="NS-0000", name="Known widget", average_cost=Decimal(1))

    backend_sync(connection=connect(organization, netsuite))

    item = Item.objects.get(sku="NS-0000")
    assert item.name == "Known widget"
    assert item.average_cost == Decimal("4.5")  # the ERP's average cost is the one we value variances at
    assert ExternalRecord.objects.get(kind=ExternalKind.ITEM).item == item


def test_a_failed_read_changes_nothing(organization, netsuite):
    warehouse(netsuite, locations=1, items=2)
    connection = connect(organization, netsuite)
    backend_sync(connection=connection)
    netsuite.set_on_hand(100, 10, Decimal(1))
    netsuite.fail_next(20, status=503)

    with pytest.raises(TransientBackendError):
        backend_sync(connection=connection)

    assert InventoryBalance.objects.get(item__sku="NS-0000", location__code="DALLAS-AISLE-1").on_hand == Decimal(100)


def test_a_balance_the_backend_no_longer_reports_is_zero(organization, netsuite):
    warehouse(netsuite, locations=1, items=2)
    connection = connect(organization, netsuite)
    backend_sync(connection=connection)
    netsuite.clear_stock(101, 10)

    backend_sync(connection=connection)

    assert InventoryBalance.objects.get(item__sku="NS-0001", location__code="DALLAS-AISLE-1").on_hand == Decimal(0)
    assert InventoryBalance.objects.get(item__sku="NS-0000", location__code="DALLAS-AISLE-1").on_hand == Decimal(100)


def test_parity_confirms_adjustments_netsuite_shows(organization, manager, netsuite, synced):
    proposals = approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    push_drain(connection=synced)

    result = backend_sync(connection=synced)

    assert (result.confirmed, result.drifts) == (1, 0)
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.CONFIRMED
    assert not ParityDrift.objects.exists()


def test_a_difference_after_a_push_is_a_drift_for_managers(organization, manager, netsuite, synced):
    proposals = approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    push_drain(connection=synced)
    netsuite.set_on_hand(100, 10, Decimal(95))  # someone posted a move in NetSuite meanwhile

    result = backend_sync(connection=synced)

    drift = ParityDrift.objects.get()
    assert (result.confirmed, result.drifts) == (0, 1)
    assert (drift.expected_on_hand, drift.backend_on_hand, drift.difference) == (Decimal(99), Decimal(95), Decimal(-4))
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.PUSHED
    # The ERP stays the truth: the mirror takes its figure.
    assert InventoryBalance.objects.get(item__sku="NS-0000", location__code="DALLAS-AISLE-1").on_hand == Decimal(95)
    # Checked once: the next sync does not re-flag the same push.
    assert backend_sync(connection=synced).drifts == 0

    parity_drift_resolve(drift=drift, actor=manager, note="move posted by receiving")

    drift.refresh_from_db()
    assert drift.resolved_by == manager
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.CONFIRMED
