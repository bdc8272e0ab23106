"""The mirror in the admin: searchable and filterable, but read-only.

Only sync and accepted pushes write the mirror; the one admin edit is a facility's name or
time zone, which are ours, not the ERP's.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from accounts.scoping import OrganizationScopedAdminMixin
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode, Location, Zone


class MirrorAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Facility)
class FacilityAdmin(OrganizationScopedAdminMixin, SimpleHistoryAdmin):
    list_display = ["code", "name", "time_zone"]
    search_fields = ["code", "name"]
    list_filter = ["time_zone"]
    readonly_fields = ["code"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Zone)
class ZoneAdmin(MirrorAdmin):
    list_display = ["code", "name", "facility"]
    list_filter = [("facility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name"]
    list_select_related = ["facility"]


@admin.register(Location)
class LocationAdmin(MirrorAdmin):
    list_display = ["code", "barcode", "zone", "facility"]
    list_filter = [("facility", admin.RelatedOnlyFieldListFilter), ("zone", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "barcode"]
    list_select_related = ["facility", "zone", "zone__facility"]


class ItemBarcodeInline(admin.TabularInline):
    model = ItemBarcode
    fields = ["value", "kind"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Item)
class ItemAdmin(MirrorAdmin):
    list_display = ["sku", "name", "unit_of_measure", "average_cost", "abc_class"]
    list_filter = ["abc_class", "unit_of_measure"]
    search_fields = ["sku", "name", "=barcodes__value"]
    inlines = [ItemBarcodeInline]


@admin.register(ItemBarcode)
class ItemBarcodeAdmin(MirrorAdmin):
    list_display = ["value", "kind", "item"]
    list_filter = ["kind"]
    search_fields = ["=value", "item__sku", "item__name"]
    list_select_related = ["item"]


@admin.register(InventoryBalance)
class InventoryBalanceAdmin(MirrorAdmin):
    list_display = ["item", "location", "on_hand", "reserved", "available", "synced_at"]
    list_filter = [
        ("location__facility", admin.RelatedOnlyFieldListFilter),
        ("location__zone", admin.RelatedOnlyFieldListFilter),
        "item__abc_class",
        "synced_at",
    ]
    search_fields = ["item__sku", "item__name", "location__code"]
    list_select_related = ["item", "location"]
    date_hierarchy = "synced_at"
