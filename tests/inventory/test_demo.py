from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Membership
from accounts.roles import Role
from inventory.barcodes import is_valid_gs1
from inventory.demo import DEMO_USERS, demo_seed
from inventory.models import Facility, InventoryBalance, Item, ItemBarcode, Location, Zone

MODELS = (Facility, Zone, Location, Item, ItemBarcode, InventoryBalance)


def _fingerprint() -> str:
    """A digest of the business content of the demo data (no ids, no timestamps of creation)."""
    digest = hashlib.sha256()
    for row in Item.objects.order_by("sku").values_list("sku", "name", "unit_of_measure", "average_cost", "abc_class"):
        digest.update(repr(row).encode())
    for row in ItemBarcode.objects.order_by("value").values_list("value", "item__sku", "kind"):
        digest.update(repr(row).encode())
    for row in InventoryBalance.objects.order_by("item__sku", "location__code").values_list(
        "item__sku", "location__code", "on_hand", "reserved", "available", "synced_at"
    ):
        digest.update(repr(row).encode())
    for row in Location.objects.order_by("code").values_list("code", "barcode", "zone__code"):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def _row_counts() -> dict[str, int]:
    counts = {model.__name__: model.objects.count() for model in MODELS}
    counts |= {f"history:{model.__name__}": model.history.count() for model in MODELS}
    return counts


@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing_the_second_time():
    out = StringIO()
    call_command("seed_demo", "--skus", "60", "--seed", "7", stdout=out)
    first = (_row_counts(), _fingerprint())

    out = StringIO()
    call_command("seed_demo", "--skus", "60", "--seed", "7", stdout=out)

    assert (_row_counts(), _fingerprint()) == first
    assert "nothing changed" in out.getvalue()
    assert "password" not in out.getvalue().lower()


@pytest.mark.django_db
def test_seed_demo_is_deterministic_for_a_seed():
    demo_seed(skus=60, seed=7)
    seven = _fingerprint()
    for model in (InventoryBalance, ItemBarcode, Item):
        model.objects.all().delete()

    demo_seed(skus=60, seed=7)
    again = _fingerprint()
    for model in (InventoryBalance, ItemBarcode, Item):
        model.objects.all().delete()

    demo_seed(skus=60, seed=8)
    assert again == seven
    assert _fingerprint() != seven


@pytest.mark.django_db
def test_seed_demo_builds_the_demo_warehouse():
    result = demo_seed(skus=120, seed=1)

    facility = Facility.objects.get()
    assert (facility.code, facility.time_zone) == ("WH1", "America/Chicago")
    assert sorted(Zone.objects.values_list("code", flat=True)) == ["A", "B", "C", "D"]
    assert Item.objects.count() == 120
    assert all(is_valid_gs1(code) for code in ItemBarcode.objects.values_list("value", flat=True))
    costs = list(Item.objects.values_list("average_cost", flat=True))
    assert min(costs) < 5 < 500 < max(costs)
    assert InventoryBalance.objects.filter(reserved__gt=0).exists()
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {username: str(role) for username, role in DEMO_USERS}
    assert roles["manager1"] == Role.MANAGER
    assert set(result.passwords) == {username for username, _ in DEMO_USERS}


@pytest.mark.django_db
def test_seed_demo_refuses_nonsense():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="skus"):
        call_command("seed_demo", "--skus", "0", stdout=StringIO())
