"""Read-only API over the mirror (it is written by sync, never by clients)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from accounts.scoping import request_organization
from config.api_errors import checked_query_params
from inventory import selectors
from inventory.models import Facility, InventoryBalance, Item, Location, Zone


class FacilityOutput(serializers.ModelSerializer):
    class Meta:
        model = Facility
        fields = ["id", "code", "name", "time_zone"]


class ZoneOutput(serializers.ModelSerializer):
    facility = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Zone
        fields = ["id", "code", "name", "facility"]


class LocationOutput(serializers.ModelSerializer):
    facility = serializers.SlugRelatedField(slug_field="code", read_only=True)
    zone = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Location
        fields = ["id", "code", "barcode", "zone", "facility"]


class ItemOutput(serializers.ModelSerializer):
    barcodes = serializers.SlugRelatedField(slug_field="value", many=True, read_only=True)

    class Meta:
        model = Item
        fields = ["id", "sku", "name", "unit_of_measure", "average_cost", "abc_class", "barcodes"]


class BalanceOutput(serializers.ModelSerializer):
    item = serializers.SlugRelatedField(slug_field="sku", read_only=True)
    location = serializers.SlugRelatedField(slug_field="code", read_only=True)
    facility = serializers.CharField(source="location.facility.code", read_only=True)

    class Meta:
        model = InventoryBalance
        fields = ["id", "item", "location", "facility", "on_hand", "reserved", "available", "synced_at"]


class FacilityViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = FacilityOutput

    def get_queryset(self) -> QuerySet[Facility]:
        return selectors.facility_list(organization=request_organization(self.request))


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("facility", str, description="facility code")]))
class ZoneViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ZoneOutput

    def get_queryset(self) -> QuerySet[Zone]:
        zones = selectors.zone_list(organization=request_organization(self.request))
        if facility := checked_query_params(self.request).get("facility"):
            zones = zones.filter(facility__code=facility)
        return zones


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("facility", str, description="facility code"),
            OpenApiParameter("zone", str, description="zone code"),
            OpenApiParameter("barcode", str, description="exact location barcode"),
        ]
    )
)
class LocationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = LocationOutput

    def get_queryset(self) -> QuerySet[Location]:
        locations = selectors.location_list(organization=request_organization(self.request))
        params = checked_query_params(self.request)
        if facility := params.get("facility"):
            locations = locations.filter(facility__code=facility)
        if zone := params.get("zone"):
            locations = locations.filter(zone__code=zone)
        if barcode := params.get("barcode"):
            locations = locations.filter(barcode=barcode)
        return locations


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("q", str, description="SKU or name contains, or exact barcode")])
)
class ItemViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ItemOutput

    def get_queryset(self) -> QuerySet[Item]:
        return selectors.item_list(
            organization=request_organization(self.request),
            search=checked_query_params(self.request).get("q", "").strip(),
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("item", str, description="SKU"),
            OpenApiParameter("location", str, description="location code"),
            OpenApiParameter("facility", str, description="facility code"),
        ]
    )
)
class BalanceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = BalanceOutput

    def get_queryset(self) -> QuerySet[InventoryBalance]:
        balances = selectors.balance_list(organization=request_organization(self.request))
        params = checked_query_params(self.request)
        if sku := params.get("item"):
            balances = balances.filter(item__sku=sku)
        if location := params.get("location"):
            balances = balances.filter(location__code=location)
        if facility := params.get("facility"):
            balances = balances.filter(location__facility__code=facility)
        return balances
