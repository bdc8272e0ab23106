"""Admin changelists run a fixed number of queries, however many rows they show."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import InventoryBalanceFactory, ItemBarcodeFactory, LocationFactory, ZoneFactory


def _make_rows(organization, count: int) -> None:
    zone = ZoneFactory(organization=organization, facility__organization=organization)
    for _ in range(count):
        location = LocationFactory(organization=organization, zone=zone)
        balance = InventoryBalanceFactory(organization=organization, location=location)
        ItemBarcodeFactory(item=balance.item)


def _queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("model", ["facility", "zone", "location", "item", "itembarcode", "inventorybalance"])
def test_changelist_queries_do_not_grow_with_rows(client, organization, manager, model):
    client.force_login(manager)
    url = reverse(f"admin:inventory_{model}_changelist")
    _make_rows(organization, 3)
    few = _queries_for(client, url)

    _make_rows(organization, 30)
    many = _queries_for(client, url)

    assert many == few


def test_item_change_page_shows_barcodes_and_history_link(client, organization, manager):
    barcode = ItemBarcodeFactory(item__organization=organization)
    client.force_login(manager)

    page = client.get(reverse("admin:inventory_item_change", args=[barcode.item.pk])).content.decode()

    assert barcode.value in page
    assert reverse("admin:inventory_item_history", args=[barcode.item.pk]) in page


def test_admin_site_is_branded_with_a_dashboard(client, manager):
    client.force_login(manager)

    page = client.get(reverse("admin:index")).content.decode()

    assert "Cyclecount" in page
    assert 'id="dashboard"' in page
