"""API error shapes that hold for every endpoint (found by the API fuzz run, tests/fuzz)."""

from __future__ import annotations

import pytest

from tests.factories import ItemFactory, ZoneFactory


def test_an_unknown_api_url_answers_json_404(manager_api):
    response = manager_api.get("/api/runs/-1/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_page_keeps_the_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/items/", {"q": "A\x00"}),
        ("/api/zones/", {"facility": "WH1\x00"}),
        ("/api/locations/", {"barcode": "\x00"}),
        ("/api/balances/", {"item": "\x00"}),
        ("/api/runs/", {"q": "\x00"}),
        ("/api/sessions/", {"state": "\x00"}),
        ("/api/proposals/", {"state": "\x00"}),
        ("/api/imports/results/template/", {"mapping": "\x00"}),
    ],
)
def test_a_nul_character_in_a_filter_is_400_naming_it(manager_api, facility, path, params):
    # PostgreSQL text cannot hold NUL: the lookup failed as a server error before.
    ZoneFactory(organization=facility.organization, facility=facility, code="A")

    response = manager_api.get(path, params)

    assert response.status_code == 400
    assert response.json() == {"errors": {name: ["must not contain NUL characters"] for name in params}}


HUGE_ID = "9" * 30  # beyond any database integer


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/runs/{HUGE_ID}"),
        ("get", f"/api/runs/{HUGE_ID}/lines"),
        ("get", f"/api/runs/{HUGE_ID}/review"),
        ("post", f"/api/runs/{HUGE_ID}/start"),
        ("post", f"/api/runs/{HUGE_ID}/reconcile"),
        ("get", f"/api/sessions/{HUGE_ID}"),
        ("post", f"/api/variances/{HUGE_ID}/decide"),
        ("get", f"/api/items/{HUGE_ID}/"),
    ],
)
def test_an_id_beyond_any_database_integer_is_not_found(manager_api, method, path):
    response = getattr(manager_api, method)(path, format="json")

    assert response.status_code == 404


def test_a_body_django_refuses_answers_json_400(manager_api):
    # More form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django refuses the body before DRF.
    body = "&".join(["session=1", *["events=" for _ in range(1001)]])

    response = manager_api.post("/api/inventory/count", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": {"detail": "The request could not be read: too many fields, or malformed."}}


def test_a_page_size_beyond_the_ceiling_is_served_as_the_ceiling(manager_api, organization):
    # A limit beyond a database integer failed as a server error; any limit read a whole table.
    ItemFactory.create_batch(3, organization=organization)

    huge = manager_api.get("/api/items/", {"limit": "106782628723428123738112"})
    beyond_the_end = manager_api.get("/api/items/", {"offset": "106782628723428123738112"})

    assert huge.status_code == 200
    assert huge.json()["count"] == 3
    assert len(huge.json()["results"]) == 3
    assert huge.json()["next"] is None
    assert (beyond_the_end.status_code, beyond_the_end.json()["results"]) == (200, [])
