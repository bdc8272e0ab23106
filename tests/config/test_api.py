from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def test_schema_and_docs_are_served(manager_api):
    schema = manager_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = manager_api.get("/api/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/items/", "/api/balances/", "/api/me/"} <= set(paths)
    assert docs.status_code == 200


def test_drf_create_token_gives_a_working_token(manager):
    call_command("drf_create_token", manager.username, stdout=StringIO())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=manager).key}")

    response = client.get("/api/me/")

    assert response.status_code == 200
    assert response.json() == {"username": "manager", "organization": "acme", "role": "manager"}


def test_session_authentication_works_for_the_browser(client, manager):
    client.force_login(manager)
    assert client.get("/api/me/").json()["role"] == "manager"


@pytest.mark.django_db
def test_errors_are_json():
    response = APIClient().get("/api/items/", HTTP_AUTHORIZATION="Token not-a-token")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Invalid token."}


def test_item_search_by_sku_name_or_barcode(manager_api, organization):
    from tests.factories import ItemBarcodeFactory, ItemFactory

    wanted = ItemBarcodeFactory(item__organization=organization, item__name="Granite Canvas Tent", value="036000291452")
    ItemFactory(organization=organization, name="Cedar Socks")

    by_name = manager_api.get("/api/items/", {"q": "granite"}).json()["results"]
    by_barcode = manager_api.get("/api/items/", {"q": "036000291452"}).json()["results"]

    assert [row["sku"] for row in by_name] == [wanted.item.sku]
    assert [row["barcodes"] for row in by_barcode] == [["036000291452"]]
