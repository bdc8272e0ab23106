"""The associates' count pages (/count/): login, run picker, session page, catalog, service worker."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from accounts.roles import Role
from counts.models import CountKind, CountSession, SessionState
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create, directed_request_add
from counts.services.preferences import facility_count_settings_update
from counts.services.sessions import count_session_start
from tests.counts.conftest import scan
from tests.factories import TEST_PASSWORD, FacilityFactory, InventoryBalanceFactory, ZoneFactory, member

BOOK = Decimal("4242")


@pytest.fixture
def counted_session(hard_run, warehouse, associate):
    """A session with one item counted at a bin whose book quantity is distinctive (4242)."""
    InventoryBalanceFactory(
        organization=hard_run.organization, location=warehouse.locations[1], item=warehouse.items[0], on_hand=BOOK
    )
    session = count_session_start(run=hard_run, user=associate, device_id="phone-1")
    count_events_ingest(
        session=session,
        actor=associate,
        events=[scan(warehouse.locations[1].code, warehouse.barcodes[0].value, quantity=3)],
    )
    return session


def _logged_in(client, user):
    client.force_login(user)
    return client


def test_count_pages_send_anonymous_people_to_the_login_with_next(client, counted_session):
    for path in (
        "/count/",
        f"/count/session/{counted_session.pk}/",
        f"/count/session/{counted_session.pk}/catalog.json",
    ):
        response = client.get(path)

        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={path}"


def test_login_page_is_our_own_and_next_brings_the_associate_back(client, associate):
    page = client.get("/accounts/login/?next=/count/")
    logged_in = client.post("/accounts/login/", {"username": "associate", "password": TEST_PASSWORD, "next": "/count/"})

    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="next" value="/count/"' in html
    assert "admin" not in page.templates[0].name
    assert '<label for="id_username">' in html
    assert logged_in.status_code == 302
    assert logged_in["Location"] == "/count/"
    assert client.get("/count/").status_code == 200


def test_login_without_next_lands_on_the_count_views(client, associate):
    response = client.post("/accounts/login/", {"username": "associate", "password": TEST_PASSWORD})

    assert response["Location"] == "/count/"


def test_admin_login_still_goes_to_the_admin(client, manager):
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "manager", "password": TEST_PASSWORD, "next": "/admin/"}
    )

    assert response["Location"] == "/admin/"


def test_run_picker_lists_runs_i_may_count_with_their_open_session(
    client, organization, warehouse, manager, associate, second_associate, hard_run
):
    mine = count_run_create(
        organization=organization, facility=warehouse.facility, name="Mine", kind="hard", actor=manager,
        assignees=[associate],
    )  # fmt: skip
    count_run_create(
        organization=organization, facility=warehouse.facility, name="Theirs", kind="hard", actor=manager,
        assignees=[second_associate],
    )  # fmt: skip
    draft = count_run_create(
        organization=organization, facility=warehouse.facility, name="Draft", kind="hard", actor=manager,
        schedule=False,
    )  # fmt: skip
    session = count_session_start(run=hard_run, user=associate, device_id="phone-1")

    response = _logged_in(client, associate).get("/count/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Mine" in html
    assert "Hard count" in html
    assert "Theirs" not in html
    assert draft.name not in html
    assert f'action="/count/session/{session.pk}/resume"' in html
    assert f'action="/count/runs/{mine.pk}/start"' in html
    assert html.count('name="device_id"') == 3  # continue (session), continue (its run), start (mine)
    assert "<script>" not in html
    assert " onclick=" not in html


def test_start_opens_a_session_for_this_device_then_continues_it(client, associate, hard_run):
    client = _logged_in(client, associate)

    first = client.post(f"/count/runs/{hard_run.pk}/start", {"device_id": "phone-A"})
    again = client.post(f"/count/runs/{hard_run.pk}/start", {"device_id": "tablet-B"})

    session = CountSession.objects.get(run=hard_run, user=associate)
    assert first["Location"] == f"/count/session/{session.pk}/"
    assert again["Location"] == f"/count/session/{session.pk}/"
    assert (session.state, session.device_id) == (SessionState.ACTIVE, "tablet-B")
    hard_run.refresh_from_db()
    assert hard_run.state == "in_progress"


def test_start_while_counting_another_run_explains_and_creates_nothing(
    client, organization, warehouse, manager, associate, hard_run
):
    count_session_start(run=hard_run, user=associate, device_id="phone-A")
    other = count_run_create(
        organization=organization, facility=warehouse.facility, name="Other", kind="hard", actor=manager
    )

    response = _logged_in(client, associate).post(f"/count/runs/{other.pk}/start", {"device_id": "x"}, follow=True)

    assert "You are already counting “Hard count”" in response.content.decode()
    assert CountSession.objects.filter(user=associate).count() == 1
    assert not CountSession.objects.filter(run=other).exists()


def test_runs_assigned_to_other_associates_cannot_be_started(
    client, organization, warehouse, manager, associate, second_associate
):
    run = count_run_create(
        organization=organization, facility=warehouse.facility, name="Theirs", kind="hard", actor=manager,
        assignees=[second_associate],
    )  # fmt: skip

    response = _logged_in(client, associate).post(f"/count/runs/{run.pk}/start", {"device_id": "x"})

    assert response.status_code == 403
    assert not CountSession.objects.exists()


def test_start_and_resume_need_post(client, associate, counted_session, hard_run):
    client = _logged_in(client, associate)

    assert client.get(f"/count/runs/{hard_run.pk}/start").status_code == 405
    assert client.get(f"/count/session/{counted_session.pk}/resume").status_code == 405


def test_resume_moves_the_session_to_this_device(client, associate, counted_session):
    CountSession.objects.filter(pk=counted_session.pk)  # the session starts on phone-1
    client = _logged_in(client, associate)
    client.post(f"/count/session/{counted_session.pk}/pause")

    response = client.post(f"/count/session/{counted_session.pk}/resume", {"device_id": "tablet-2"})

    counted_session.refresh_from_db()
    assert response["Location"] == f"/count/session/{counted_session.pk}/"
    assert (counted_session.state, counted_session.device_id) == (SessionState.ACTIVE, "tablet-2")


def test_session_page_shows_the_count_and_the_book_when_not_blind(client, associate, counted_session, warehouse):
    response = _logged_in(client, associate).get(f"/count/session/{counted_session.pk}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="scan-input"' in html
    assert "autofocus" in html
    assert '<label for="scan-input"' in html
    assert f'data-state-url="/api/sessions/{counted_session.pk}"' in html
    assert 'data-capture-url="/api/inventory/count"' in html
    assert 'data-blind="false"' in html
    assert warehouse.locations[1].code in html
    assert ">Book</th>" in html
    assert ">4242<" in html
    assert "<script>" not in html
    assert '<script type="module">' not in html
    assert " onclick=" not in html
    assert " onsubmit=" not in html
    assert "no-cache" in response["Cache-Control"]


def test_blind_session_page_and_catalog_never_carry_the_book(client, associate, manager, counted_session, warehouse):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"blind_count": True})
    client = _logged_in(client, associate)

    page = client.get(f"/count/session/{counted_session.pk}/")
    catalog = client.get(f"/count/session/{counted_session.pk}/catalog.json")

    html = page.content.decode()
    assert 'data-blind="true"' in html
    assert "Blind count" in html
    assert "4242" not in html
    assert "Book" not in html
    assert "3" in html  # the counted quantity is still there
    body = catalog.content.decode()
    assert "4242" not in body
    assert "book" not in body.lower()
    assert "on_hand" not in body


def test_blind_counts_still_show_the_book_to_a_manager_counting(client, manager, warehouse, hard_run):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"blind_count": True})
    session = count_session_start(run=hard_run, user=manager, device_id="phone-1")
    count_events_ingest(
        session=session, actor=manager, events=[scan(warehouse.locations[0].code, warehouse.barcodes[0].value)]
    )

    html = _logged_in(client, manager).get(f"/count/session/{session.pk}/").content.decode()

    assert 'data-blind="false"' in html
    assert ">Book</th>" in html


def test_other_organizations_and_other_associates_get_404(
    client, counted_session, hard_run, other_organization, second_associate
):
    outsider = member(other_organization, Role.MANAGER, username="outsider")
    paths_get = [f"/count/session/{counted_session.pk}/", f"/count/session/{counted_session.pk}/catalog.json"]
    paths_post = [
        f"/count/runs/{hard_run.pk}/start",
        f"/count/session/{counted_session.pk}/resume",
        f"/count/session/{counted_session.pk}/pause",
    ]

    for user in (outsider, second_associate):
        client.force_login(user)
        for path in paths_get:
            assert client.get(path).status_code == 404, (user, path)
        for path in paths_post[1:]:
            assert client.post(path, {"device_id": "x"}).status_code == 404, (user, path)
    client.force_login(outsider)
    assert client.post(paths_post[0], {"device_id": "x"}).status_code == 404
    picker = client.get("/count/").content.decode()
    assert hard_run.name not in picker
    counted_session.refresh_from_db()
    assert counted_session.state == SessionState.ACTIVE


def test_catalog_names_locations_and_items_by_the_facility_preference(
    client, associate, manager, counted_session, warehouse
):
    facility_count_settings_update(
        facility=warehouse.facility, actor=manager,
        changes={"primary_identifier": "name", "secondary_identifier": "upc", "require_scan": True},
    )  # fmt: skip
    other_facility = FacilityFactory(organization=warehouse.facility.organization, code="WH9")
    ZoneFactory(organization=other_facility.organization, facility=other_facility, code="Z")

    body = _logged_in(client, associate).get(f"/count/session/{counted_session.pk}/catalog.json").json()

    assert {location["code"] for location in body["locations"]} == {location.code for location in warehouse.locations}
    assert body["locations"][0]["barcode"] == warehouse.locations[0].barcode
    by_sku = {item["sku"]: item for item in body["items"]}
    first = warehouse.items[0]
    assert by_sku[first.sku]["primary"] == first.name
    assert by_sku[first.sku]["secondary"] == warehouse.barcodes[0].value
    assert by_sku[first.sku]["barcodes"] == [warehouse.barcodes[0].value]
    assert body["preferences"]["require_scan"] is True
    assert body["truncated"] is False
    assert body["requested"] == []


def test_directed_catalog_lists_only_the_requested_items(client, organization, associate, manager, warehouse):
    request = directed_request_add(
        organization=organization, item=warehouse.items[1], location=warehouse.locations[2], reason="pick_short",
        actor=manager,
    )  # fmt: skip
    session = count_session_start(run=request.run, user=associate, device_id="phone-1")
    assert request.run.kind == CountKind.DIRECTED

    client = _logged_in(client, associate)
    body = client.get(f"/count/session/{session.pk}/catalog.json").json()
    html = client.get(f"/count/session/{session.pk}/").content.decode()

    assert [item["sku"] for item in body["items"]] == [warehouse.items[1].sku]
    assert body["requested"] == [[warehouse.locations[2].code, warehouse.items[1].sku]]
    assert 'Still to count (<span id="requests-left-count">1</span>)' in html
    assert warehouse.items[1].name in html


def test_catalog_reads_a_fixed_number_of_queries(client, associate, counted_session, django_assert_max_num_queries):
    client = _logged_in(client, associate)
    with django_assert_max_num_queries(12):
        response = client.get(f"/count/session/{counted_session.pk}/catalog.json")

    assert response.status_code == 200


def test_service_worker_is_served_under_count_with_its_shell(client):
    response = client.get("/count/sw.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert response["Service-Worker-Allowed"] == "/count/"
    assert response["Cache-Control"] == "no-cache"
    body = response.content.decode()
    config = json.loads(body.split("self.CC_SW_CONFIG = ", 1)[1].split(";\n", 1)[0])
    assert config["scope"] == "/count/"
    assert "/static/count/core.js" in config["assets"]
    assert "/static/count/session.js" in config["assets"]
    assert len(config["version"]) == 16
    assert 'addEventListener("fetch"' in body


def test_pause_from_the_picker_keeps_the_scans(client, associate, counted_session):
    response = _logged_in(client, associate).post(f"/count/session/{counted_session.pk}/pause", follow=True)

    counted_session.refresh_from_db()
    assert counted_session.state == SessionState.PAUSED
    assert "Your scans are saved" in response.content.decode()
    assert counted_session.events.count() == 1


def test_people_without_an_organization_see_no_runs(client, hard_run, django_user_model):
    loner = django_user_model.objects.create_user("loner", password=TEST_PASSWORD)

    response = _logged_in(client, loner).get("/count/")

    assert response.status_code == 200
    assert hard_run.name not in response.content.decode()
    assert "No counts are assigned to you right now." in response.content.decode()
