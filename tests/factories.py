from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Organization
from accounts.roles import Role
from accounts.services import membership_grant
from inventory.barcodes import upc_a
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode, Location, Zone

TEST_PASSWORD = "correct-horse-battery-staple"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def member(organization: Organization, role: str = Role.MANAGER, **user_fields: object):
    """A saved user with a membership (and its role group) in `organization`."""
    user = UserFactory(**user_fields)
    membership_grant(user=user, organization=organization, role=role)
    return user


class FacilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Facility

    organization = factory.SubFactory(OrganizationFactory)
    code = factory.Sequence(lambda n: f"WH{n}")
    name = factory.LazyAttribute(lambda o: f"Facility {o.code}")
    time_zone = "America/Chicago"


class ZoneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Zone

    facility = factory.SubFactory(FacilityFactory)
    organization = factory.SelfAttribute("facility.organization")
    code = factory.Sequence(lambda n: f"Z{n}")


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location

    zone = factory.SubFactory(ZoneFactory)
    facility = factory.SelfAttribute("zone.facility")
    organization = factory.SelfAttribute("zone.organization")
    code = factory.Sequence(lambda n: f"BIN-{n:04d}")
    barcode = factory.LazyAttribute(lambda o: f"LOC-{o.code}")


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    organization = factory.SubFactory(OrganizationFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Widget {n}")
    average_cost = Decimal("12.5000")


class ItemBarcodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ItemBarcode

    item = factory.SubFactory(ItemFactory)
    organization = factory.SelfAttribute("item.organization")
    value = factory.Sequence(lambda n: upc_a(f"7{n:010d}"))
    kind = "upc_a"


class InventoryBalanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InventoryBalance

    location = factory.SubFactory(LocationFactory)
    organization = factory.SelfAttribute("location.organization")
    item = factory.SubFactory(ItemFactory, organization=factory.SelfAttribute("..organization"))
    on_hand = Decimal("10")
    reserved = Decimal("0")
    available = factory.LazyAttribute(lambda o: o.on_hand - o.reserved)
    synced_at = datetime(2026, 1, 1, tzinfo=UTC)
