"""The only writers of the on-hand mirror: sync (absolute) and accepted pushes (delta)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
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
