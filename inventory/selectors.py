"""Reads of the mirror, shaped once here so the admin and the API never loop into N+1."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Organization
from inventory.models import Facility, InventoryBalance, Item, Location, Zone


def facility_list(*, organization: Organization | None) -> QuerySet[Facility]:
    return Facility.objects.for_organization(organization)


def zone_list(*, organization: Organization | None) -> QuerySet[Zone]:
    return Zone.objects.for_organization(organization).select_related("facility")


def location_list(*, organization: Organization | None) -> QuerySet[Location]:
    return Location.objects.for_organization(organization).select_related("facility", "zone")


def item_list(*, organization: Organization | None, search: str = "") -> QuerySet[Item]:
    items = Item.objects.for_organization(organization).prefetch_related("barcodes")
    if search:
        items = items.filter(
            Q(sku__icontains=search) | Q(name__icontains=search) | Q(barcodes__value=search)
        ).distinct()
    return items


def balance_list(*, organization: Organization | None) -> QuerySet[InventoryBalance]:
    return InventoryBalance.objects.for_organization(organization).select_related(
        "item", "location", "location__facility", "location__zone"
    )
