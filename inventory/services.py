"""The only writers of the on-hand mirror: sync (absolute) and accepted pushes (delta)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from accounts.models import Organization
from inventory.bulk import update_rows
from inventory.models import InventoryBalance, Item, Location


def _attach_history_user(balance: InventoryBalance, actor: AbstractBaseUser | None) -> None:
    # simple-history reads this attribute; tasks have no request, so the actor is explicit.
    balance._history_user = actor


@transaction.atomic
def balance_record_sync(
    *,
    organization: Organization,
    item: Item,
    location: Location,
    on_hand: Decimal,
    reserved: Decimal,
    synced_at: datetime,
    sync_reference: str = "",
    actor: AbstractBaseUser | None = None,
) -> InventoryBalance:
    """Set a balance to what the system of record reports; available follows on hand − reserved."""
    if item.organization_id != organization.pk or location.organization_id != organization.pk:
        raise ValueError("item and location must belong to the organization")
    if reserved < 0:
        raise ValueError("reserved cannot be negative")
    balance = InventoryBalance.objects.select_for_update().filter(item=item, location=location).first()
    if balance is None:
        balance = InventoryBalance(organization=organization, item=item, location=location)
    balance.on_hand = on_hand
    balance.reserved = reserved
    balance.available = on_hand - reserved
    balance.synced_at = synced_at
    balance.sync_reference = sync_reference
    _attach_history_user(balance, actor)
    balance.save()
    return balance


@transaction.atomic
def balance_apply_delta(
    *,
    balance_id: int,
    delta: Decimal,
    reference: str,
    actor: AbstractBaseUser | None = None,
) -> InventoryBalance:
    """Add an accepted adjustment to on hand, under a row lock, keeping available consistent."""
    balance = InventoryBalance.objects.select_for_update().get(pk=balance_id)
    balance.on_hand += delta
    balance.available = balance.on_hand - balance.reserved
    balance.synced_at = timezone.now()
    balance.sync_reference = reference
    balance._change_reason = f"adjustment {reference}: {delta:+}"
    _attach_history_user(balance, actor)
    balance.save(update_fields=["on_hand", "available", "synced_at", "sync_reference"])
    return balance


@dataclass(frozen=True)
class BalanceSnapshot:
    """What the system of record reports for one item × location."""

    item_id: int
    location_id: int
    on_hand: Decimal
    reserved: Decimal


@transaction.atomic
def balances_record_sync(
    *,
    organization_id: int,
    snapshots: list[BalanceSnapshot],
    synced_at: datetime,
    sync_reference: str,
    actor: AbstractBaseUser | None = None,
) -> int:
    """Set many balances to what the system of record reports, in bulk, with history.

    Only balances that differ are written (unchanged ones keep their history quiet); missing
    ones are created. Returns how many balances changed or were created.
    """
    by_key = {(snapshot.item_id, snapshot.location_id): snapshot for snapshot in snapshots}
    if any(snapshot.reserved < 0 for snapshot in by_key.values()):
        raise ValueError("reserved cannot be negative")
    existing = {
        (balance.item_id, balance.location_id): balance
        for balance in InventoryBalance.objects.select_for_update()
        .filter(organization_id=organization_id)
        .order_by("pk")
    }
    changed: list[InventoryBalance] = []
    created: list[InventoryBalance] = []
    for key, snapshot in by_key.items():
        balance = existing.get(key)
        if balance is None:
            created.append(
                InventoryBalance(
                    organization_id=organization_id,
                    item_id=snapshot.item_id,
                    location_id=snapshot.location_id,
                    on_hand=snapshot.on_hand,
                    reserved=snapshot.reserved,
                    available=snapshot.on_hand - snapshot.reserved,
                    synced_at=synced_at,
                    sync_reference=sync_reference,
                )
            )
        elif balance.on_hand != snapshot.on_hand or balance.reserved != snapshot.reserved:
            balance.on_hand = snapshot.on_hand
            balance.reserved = snapshot.reserved
            balance.available = snapshot.on_hand - snapshot.reserved
            balance.synced_at = synced_at
            balance.sync_reference = sync_reference
            changed.append(balance)
    reason = f"sync {sync_reference}"
    if created:
        bulk_create_with_history(
            created, InventoryBalance, batch_size=1000, default_user=actor, default_change_reason=reason
        )
    if changed:
        update_rows(InventoryBalance, changed, ["on_hand", "reserved", "available", "synced_at", "sync_reference"])
        InventoryBalance.history.bulk_history_create(
            changed, batch_size=1000, update=True, default_user=actor, default_change_reason=reason
        )
    return len(created) + len(changed)


@transaction.atomic
def balances_apply_deltas(
    *,
    organization_id: int,
    deltas: list[tuple[int, int, Decimal]],
    reference: str,
    actor: AbstractBaseUser | None = None,
) -> dict[tuple[int, int], Decimal]:
    """Add accepted adjustments (item id, location id, delta) to on hand, in bulk, under row locks.

    By delta, never by overwriting: a sale the ERP posted meanwhile stays in the mirror. A pair
    the mirror has no balance for starts from zero. Returns the new on hand per pair.
    """
    totals: dict[tuple[int, int], Decimal] = {}
    for item_id, location_id, delta in deltas:
        totals[(item_id, location_id)] = totals.get((item_id, location_id), Decimal("0")) + delta
    if not totals:
        return {}
    item_ids = {item_id for item_id, _ in totals}
    location_ids = {location_id for _, location_id in totals}
    now = timezone.now()
    balances = {
        (balance.item_id, balance.location_id): balance
        for balance in InventoryBalance.objects.select_for_update()
        .filter(organization_id=organization_id, item_id__in=item_ids, location_id__in=location_ids)
        .order_by("pk")
    }
    changed: list[InventoryBalance] = []
    created: list[InventoryBalance] = []
    for key, delta in totals.items():
        balance = balances.get(key)
        if balance is None:
            balance = InventoryBalance(organization_id=organization_id, item_id=key[0], location_id=key[1])
            created.append(balance)
        else:
            changed.append(balance)
        balance.on_hand += delta
        balance.available = balance.on_hand - balance.reserved
        balance.synced_at = now
        balance.sync_reference = reference
    reason = f"adjustment {reference}"
    if created:
        bulk_create_with_history(
            created, InventoryBalance, batch_size=1000, default_user=actor, default_change_reason=reason
        )
    if changed:
        update_rows(InventoryBalance, changed, ["on_hand", "available", "synced_at", "sync_reference"])
        InventoryBalance.history.bulk_history_create(
            changed, batch_size=1000, update=True, default_user=actor, default_change_reason=reason
        )
    return {(balance.item_id, balance.location_id): balance.on_hand for balance in (*created, *changed)}
