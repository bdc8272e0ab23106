"""The mirror of the system of record.

Cyclecount never owns on-hand: these rows are written by sync and by accepted pushes only,
always through inventory.services, and every change is kept in history.
"""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from accounts.models import OrganizationOwned

QUANTITY = {"max_digits": 14, "decimal_places": 3}


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (for example America/Chicago)")


class Facility(OrganizationOwned):
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone], help_text="IANA name")

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "facilities"
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["organization", "code"], name="facility_code_unique")]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"

    @property
    def zone_info(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Zone(OrganizationOwned):
    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="zones")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["facility__code", "code"]
        constraints = [models.UniqueConstraint(fields=["facility", "code"], name="zone_code_unique")]

    def __str__(self) -> str:
        # Not "facility/code": filters list zones by str(), and that would load each facility.
        return self.code


class Location(OrganizationOwned):
    """A bin. The facility is kept beside the zone so codes are unique per facility."""

    facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="locations")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="locations")
    code = models.CharField(max_length=64)
    barcode = models.CharField(max_length=128)

    history = HistoricalRecords()

    class Meta:
        ordering = ["facility__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["facility", "code"], name="location_code_unique"),
            models.UniqueConstraint(fields=["organization", "barcode"], name="location_barcode_unique"),
        ]

    def __str__(self) -> str:
        return self.code


class AbcClass(models.TextChoices):
    A = "A", "A (highest value/velocity)"
    B = "B", "B"
    C = "C", "C"


class Item(OrganizationOwned):
    sku = models.CharField("SKU", max_length=64)
    name = models.CharField(max_length=255)
    unit_of_measure = models.CharField(max_length=16, default="EA")
    average_cost = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    abc_class = models.CharField("ABC class", max_length=1, choices=AbcClass.choices, default=AbcClass.C)

    history = HistoricalRecords()

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sku"], name="item_sku_unique"),
            models.CheckConstraint(condition=Q(average_cost__gte=0), name="item_average_cost_not_negative"),
        ]
        indexes = [models.Index(fields=["organization", "name"])]

    def __str__(self) -> str:
        return f"{self.sku} · {self.name}"


class BarcodeKind(models.TextChoices):
    UPC_A = "upc_a", "UPC-A"
    EAN_13 = "ean_13", "EAN-13"
    GTIN_14 = "gtin_14", "GTIN-14"
    CUSTOM = "custom", "Custom"


class ItemBarcode(OrganizationOwned):
    """An item may carry several barcodes; a barcode names one item per organization."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="barcodes")
    value = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=BarcodeKind.choices, default=BarcodeKind.CUSTOM)

    history = HistoricalRecords()

    class Meta:
        ordering = ["value"]
        constraints = [models.UniqueConstraint(fields=["organization", "value"], name="item_barcode_unique")]

    def __str__(self) -> str:
        return self.value


class InventoryBalance(OrganizationOwned):
    """On hand for one item at one location, as the system of record last told us.

    `available` is stored (reports filter and sort on it) and the database guarantees it
    equals on hand − reserved.
    """

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="balances")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="balances")
    on_hand = models.DecimalField(**QUANTITY, default=Decimal("0"))
    reserved = models.DecimalField(**QUANTITY, default=Decimal("0"))
    available = models.DecimalField(**QUANTITY, default=Decimal("0"))
    synced_at = models.DateTimeField(help_text="When the system of record last reported this balance")
    sync_reference = models.CharField(max_length=128, blank=True, help_text="Sync run or push that set it")

    history = HistoricalRecords()

    class Meta:
        ordering = ["item__sku", "location__code"]
        constraints = [
            models.UniqueConstraint(fields=["item", "location"], name="balance_item_location_unique"),
            models.CheckConstraint(condition=Q(available=F("on_hand") - F("reserved")), name="balance_available"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="balance_reserved_not_negative"),
        ]
        indexes = [models.Index(fields=["organization", "location"])]

    def __str__(self) -> str:
        return f"{self.item.sku} @ {self.location.code}: {self.on_hand}"
