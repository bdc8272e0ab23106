"""The count views in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A live server serves the pages, the static files and the service worker; each test is one
associate (or two devices of one) doing what they do on the floor. Screenshots go to
var/screenshots/ (not committed).
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from counts.models import CountEvent, CountSession, EventStatus, SessionState, SessionTally
from counts.services.preferences import facility_count_settings_update
from counts.services.sessions import count_session_pause
from tests.factories import TEST_PASSWORD, InventoryBalanceFactory

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 780}
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
    pytest.mark.django_db(transaction=True),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install '.[dev]')")


# On the embedded SQLite default the test database lives in memory and the live server's threads
# share this thread's connection; one request at a time (and the tests' own reads) keeps them
# from interleaving transactions on it. PostgreSQL gives every thread its own connection.
DB_LOCK = threading.RLock()


@pytest.fixture(scope="module")
def browser():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API keeps an event loop on this thread; the ORM calls the tests make
    # between browser steps (and the database teardown after each) are still synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def server(live_server):
    httpd = live_server.thread.httpd
    if connection.vendor == "sqlite" and connection.is_in_memory_db() and not getattr(httpd, "cc_serial", False):
        app = httpd.get_app()

        def one_at_a_time(environ, start_response):
            with DB_LOCK:
                return app(environ, start_response)

        httpd.set_app(one_at_a_time)
        httpd.cc_serial = True
    return live_server


@pytest.fixture
def new_device(browser, server):
    """A fresh phone: its own browser context (cookies, IndexedDB, service worker)."""
    contexts = []

    def make():
        context = browser.new_context(viewport=PHONE, base_url=server.url, has_touch=True, is_mobile=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def shot(page, name: str, *, full_page: bool = False) -> None:
    """What the phone shows (the viewport), or the whole page."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def log_in(page, username: str = "associate") -> None:
    page.goto("/count/")
    assert "/accounts/login/?next=/count/" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/count/")


def open_session(page, run_name: str, action: str = "Start") -> int:
    page.get_by_role("button", name=f"{action} {run_name}").first.click()
    page.wait_for_url("**/count/session/*/")
    wait_ready(page)
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def wait_ready(page) -> None:
    # Selectors, not wait_for_function: the page's CSP forbids the eval that would need.
    page.wait_for_selector("html[data-count-ready='true']", state="attached")
    page.wait_for_selector("html[data-offline-ready='true']", state="attached")


def scan(page, code: str) -> None:
    """A keyboard-wedge scanner: types into whatever has focus, then Enter."""
    assert page.evaluate("document.activeElement && document.activeElement.id") == "scan-input"
    page.keyboard.type(code)
    page.keyboard.press("Enter")


def feedback_is(page, status: str) -> None:
    page.wait_for_selector(f"#feedback[data-status='{status}']")


def wait_synced(page) -> None:
    page.wait_for_selector("html[data-pending='0']", state="attached")


def device_event_ids(page, session_id: int) -> list[str]:
    return page.evaluate("(id) => CC.sessionEvents(id).then((events) => events.map((e) => e.event_id))", session_id)


def tally(session_id: int, location, item) -> Decimal | None:
    with DB_LOCK:
        found = SessionTally.objects.filter(session_id=session_id, location=location, item=item).first()
        return found.quantity if found else None


def stored_events(session_id: int) -> list[dict]:
    """What the server holds for the session, read while no request is being served."""
    with DB_LOCK:
        return list(
            CountEvent.objects.filter(session_id=session_id).values("event_id", "status", "mode", "refusal_reason")
        )


def stored_session(session_id: int) -> CountSession:
    with DB_LOCK:
        return CountSession.objects.get(pk=session_id)


def test_scan_a_location_then_items_correct_and_submit(new_device, warehouse, manager, associate, hard_run):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"primary_identifier": "name"})
    loc1, loc2 = warehouse.locations[0], warehouse.locations[1]
    page = new_device().new_page()

    log_in(page)
    shot(page, "01-run-picker")
    session_id = open_session(page, "Hard count")
    first_paint = page.evaluate(
        "performance.getEntriesByName('first-contentful-paint').map((entry) => entry.startTime)[0]"
    )
    assert first_paint is not None
    assert first_paint < 1000
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    scan(page, loc1.barcode)
    feedback_is(page, "location")
    assert page.locator("#current-location").inner_text() == loc1.code
    scan(page, warehouse.barcodes[0].value)
    scan(page, warehouse.barcodes[0].value)
    page.wait_for_selector("#feedback-detail:has-text('2 counted at')")
    assert page.locator("#feedback-title").inner_text() == warehouse.items[0].name  # the facility's preference
    scan(page, "000000000000")
    feedback_is(page, "checking")
    wait_synced(page)
    feedback_is(page, "unmatched")
    shot(page, "02-scan-unmatched")

    page.get_by_role("button", name=f"Correct the count of {warehouse.items[0].name}").click()
    page.get_by_label("Quantity here").fill("5")
    page.get_by_role("button", name="Save count").click()
    assert page.evaluate("document.activeElement.id") == "scan-input"
    page.wait_for_selector("#here-lines .line__qty:text-is('5')")

    page.get_by_role("button", name="Next location").click()
    scan(page, loc2.code)
    scan(page, warehouse.barcodes[1].value)
    feedback_is(page, "matched")
    wait_synced(page)
    shot(page, "03-scan-matched")

    assert page.locator("#synced-count").inner_text() == "5"
    statuses = sorted(event["status"] for event in stored_events(session_id))
    assert statuses == ["matched"] * 4 + ["unmatched"]
    assert tally(session_id, loc1, warehouse.items[0]) == Decimal("5")
    assert tally(session_id, loc2, warehouse.items[1]) == Decimal("1")

    page.get_by_role("button", name="Submit", exact=True).click()
    page.get_by_role("button", name="Tap again to submit").click()
    feedback_is(page, "submitted")
    page.wait_for_selector("#session-state:text-is('submitted')")
    assert stored_session(session_id).state == SessionState.SUBMITTED
    shot(page, "04-submitted")


def test_offline_scans_survive_a_reload_and_reach_the_server_once(new_device, warehouse, associate, hard_run):
    context = new_device()
    page = context.new_page()
    log_in(page)
    session_id = open_session(page, "Hard count")
    scan(page, warehouse.locations[0].barcode)
    feedback_is(page, "location")

    context.set_offline(True)
    for n in range(50):
        scan(page, warehouse.barcodes[n % 3].value)
    page.wait_for_selector("#pending-count:text-is('50')")
    queued = device_event_ids(page, session_id)
    shot(page, "05-offline-50-waiting")

    reloaded = page.reload()
    wait_ready(page)
    assert reloaded is not None
    assert reloaded.from_service_worker
    page.wait_for_selector("#pending-count:text-is('50')")
    assert page.locator("#network-state").inner_text() == "Offline"
    assert sorted(device_event_ids(page, session_id)) == sorted(queued)
    assert page.locator("#current-location").inner_text() == warehouse.locations[0].code
    assert stored_events(session_id) == []
    shot(page, "06-offline-after-reload", full_page=True)

    context.set_offline(False)
    wait_synced(page)
    page.wait_for_selector("#synced-count:text-is('50')")

    stored = [str(event["event_id"]) for event in stored_events(session_id)]
    assert len(stored) == 50
    assert sorted(stored) == sorted(queued)
    counted = sum(tally(session_id, warehouse.locations[0], item) for item in warehouse.items)
    assert counted == Decimal("50")
    shot(page, "07-back-online-synced")


def test_two_devices_resume_one_session_without_duplicates(new_device, warehouse, associate, hard_run):
    location, barcode, item = warehouse.locations[0], warehouse.barcodes[0].value, warehouse.items[0]
    device_a, device_b = new_device(), new_device()
    phone = device_a.new_page()
    log_in(phone)
    session_id = open_session(phone, "Hard count")
    scan(phone, location.barcode)
    for _ in range(3):
        scan(phone, barcode)
    wait_synced(phone)

    tablet = device_b.new_page()
    log_in(tablet)
    assert open_session(tablet, "Hard count", action="Continue") == session_id
    assert stored_session(session_id).device_id.startswith("web-")
    scan(tablet, location.code)
    tablet.wait_for_selector("#here-lines .line__qty:text-is('3')")  # rebuilt from the server
    scan(tablet, barcode)
    scan(tablet, barcode)
    wait_synced(tablet)

    device_a.set_offline(True)
    scan(phone, barcode)
    scan(phone, barcode)
    phone.wait_for_selector("#pending-count:text-is('2')")
    device_a.set_offline(False)
    wait_synced(phone)

    # The phone replays everything it ever sent, as a flaky network would make it do.
    phone.evaluate(
        """(id) => CC.sessionEvents(id).then((events) => CC.updateEvents(events.map((e) => e.event_id),
               (e) => { e.sync = 'pending'; return true; }))""",
        session_id,
    )
    replay = phone.evaluate(
        "(id) => CC.flush(id, {captureUrl: '/api/inventory/count', csrf: CC.cookie('csrftoken')})", session_id
    )
    assert replay["status"] == "ok"
    assert replay["counts"]["duplicates"] == 5
    assert replay["counts"]["accepted"] == 0

    tablet.reload()
    wait_ready(tablet)
    tablet.wait_for_selector("#here-lines .line__qty:text-is('7')")
    shot(tablet, "08-second-device-sees-all")
    events = stored_events(session_id)
    assert len(events) == 7
    assert len({event["event_id"] for event in events}) == 7
    assert tally(session_id, location, item) == Decimal("7")


def test_a_session_paused_elsewhere_keeps_the_queue_until_resumed_here(new_device, warehouse, associate, hard_run):
    context = new_device()
    phone = context.new_page()
    log_in(phone)
    session_id = open_session(phone, "Hard count")
    scan(phone, warehouse.locations[0].barcode)
    context.set_offline(True)
    scan(phone, warehouse.barcodes[0].value)
    scan(phone, warehouse.barcodes[1].value)
    phone.wait_for_selector("#pending-count:text-is('2')")
    with DB_LOCK:  # meanwhile the session is paused on another device
        count_session_pause(session=stored_session(session_id), actor=associate)

    context.set_offline(False)
    phone.wait_for_selector("#banner:has-text('This session is paused. 2 scan(s) are kept on this device.')")
    shot(phone, "11-paused-elsewhere-queue-kept")
    assert phone.locator("#pending-count").inner_text() == "2"
    assert stored_events(session_id) == []

    phone.get_by_role("button", name="Resume here").click()
    wait_synced(phone)
    assert phone.locator("#banner").is_hidden()
    assert len(stored_events(session_id)) == 2
    assert stored_session(session_id).state == SessionState.ACTIVE


def test_blind_count_shows_no_book_quantity_anywhere(new_device, warehouse, manager, associate, hard_run, organization):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"blind_count": True})
    InventoryBalanceFactory(
        organization=organization, location=warehouse.locations[1], item=warehouse.items[0], on_hand=Decimal("4242")
    )
    page = new_device().new_page()
    bodies: list[str] = []
    page.on(
        "response",
        lambda response: (
            bodies.append(response.text())
            if response.request.resource_type in {"fetch", "xhr", "document"} and response.status == 200
            else None
        ),
    )
    log_in(page)
    open_session(page, "Hard count")
    scan(page, warehouse.locations[1].barcode)
    scan(page, warehouse.barcodes[0].value)
    wait_synced(page)
    page.locator("#all-lines-block summary").click()
    page.reload()
    wait_ready(page)
    page.locator("#all-lines-block summary").click()
    page.wait_for_selector("#all-lines td:text-is('1')")
    shot(page, "09-blind-count", full_page=True)

    html = page.content()
    assert "Blind count" in html
    assert "4242" not in html
    assert "book" not in page.locator("body").inner_text().lower()
    assert bodies
    assert not any("4242" in body or '"book"' in body for body in bodies)


def test_force_scan_refuses_typed_quantities_with_a_visible_message(
    new_device, warehouse, manager, associate, hard_run
):
    facility_count_settings_update(facility=warehouse.facility, actor=manager, changes={"require_scan": True})
    location, item = warehouse.locations[0], warehouse.items[0]
    page = new_device().new_page()
    log_in(page)
    session_id = open_session(page, "Hard count")
    scan(page, location.barcode)
    scan(page, warehouse.barcodes[0].value)
    wait_synced(page)

    page.get_by_label("Item name, SKU or barcode").fill(item.name)
    page.locator("#manual-results").get_by_role("button", name=item.sku).click()
    assert page.evaluate("document.activeElement.id") == "manual-quantity"
    page.keyboard.type("5")
    page.get_by_role("button", name="Add", exact=True).click()

    feedback_is(page, "refused")
    assert "requires scanning" in page.locator("#feedback").inner_text()
    assert page.evaluate("document.activeElement.id") == "scan-input"
    wait_synced(page)
    feedback_is(page, "refused")
    page.wait_for_selector("#attention .badge--refused")
    shot(page, "10-force-scan-refused")

    (typed,) = [event for event in stored_events(session_id) if event["mode"] == "manual"]
    assert typed["status"] == EventStatus.REFUSED
    assert "requires scanning" in typed["refusal_reason"]
    assert tally(session_id, location, item) == Decimal("1")
