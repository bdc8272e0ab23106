"""The Content-Security-Policy in a real browser: the count app, the admin, the approval queue
and the API docs load with no CSP violation and no console error (headless Chromium at
/usr/bin/chromium driven by Playwright; setup as in tests/counts/test_count_browser.py).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection

from accounts.roles import Role
from counts.models import CountKind
from counts.services.planning import count_run_create
from reconciliation.services import root_causes_ensure
from tests.approvals.conftest import reconciled
from tests.factories import (
    TEST_PASSWORD,
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    LocationFactory,
    ZoneFactory,
    member,
)
from tests.reconciliation.conftest import LineMaker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
    pytest.mark.django_db(transaction=True),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install '.[dev]')")

# Installed in every page before its own scripts run, so nothing a page does escapes it.
LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `(${event.sourceFile}:${event.lineNumber}) ${event.sample}`
  );
});
"""

# On the embedded SQLite default the live server's threads share the test's in-memory
# connection; one request at a time keeps them from interleaving transactions on it.
DB_LOCK = threading.RLock()


@pytest.fixture(scope="module")
def browser():
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
    cache.clear()  # rate counters of earlier tests
    httpd = live_server.thread.httpd
    if connection.vendor == "sqlite" and connection.is_in_memory_db() and not getattr(httpd, "cc_serial", False):
        app = httpd.get_app()

        def one_at_a_time(environ, start_response):
            with DB_LOCK:
                return app(environ, start_response)

        httpd.set_app(one_at_a_time)
        httpd.cc_serial = True
    return live_server


class Watched:
    """A browser context whose pages report CSP violations, console errors and page errors."""

    def __init__(self, browser, base_url: str) -> None:
        self.context = browser.new_context(base_url=base_url)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.add_init_script(LISTEN_FOR_VIOLATIONS)
        self.page = self.context.new_page()
        self.problems: dict[str, list[str]] = {}
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self._note(f"page error: {error}"))
        self.page.on(
            "response",
            lambda response: response.status >= 400 and self._note(f"HTTP {response.status}: {response.url}"),
        )

    def _console(self, message) -> None:
        source = message.location.get("url", "")
        # Chromium asks for /favicon.ico on its own for pages without an icon (the admin's); its
        # 404 is not the page's doing.
        if message.type == "error" and not source.endswith("/favicon.ico"):
            self._note(f"console: {message.text} ({source})")

    def _note(self, problem: str) -> None:
        self.problems.setdefault(self.page.url, []).append(problem)

    def visit(self, url: str, ready: str) -> None:
        """Open `url`, wait for `ready` (a selector) and the network to settle, collect violations."""
        self.page.goto(url)
        self.settle(ready)

    def settle(self, ready: str) -> None:
        self.page.wait_for_selector(ready)
        self.page.wait_for_load_state("networkidle")
        for violation in self.page.evaluate("window.__cspViolations"):
            self._note(f"CSP: {violation}")
        self.problems.setdefault(self.page.url, [])

    def log_in(self, login_url: str, username: str) -> None:
        self.page.goto(login_url)
        self.settle("form")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(TEST_PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_load_state("load")


@pytest.fixture
def floor(organization, facility):
    """A manager and an associate, a hard count to start, and a proposal to review."""
    manager = member(organization, Role.MANAGER, username="manager")
    member(organization, Role.ASSOCIATE, username="associate")
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    location = LocationFactory(organization=organization, zone=zone, code="A-01-01", barcode="LOC-A-01-01")
    barcode = ItemBarcodeFactory(item__organization=organization)
    InventoryBalanceFactory(organization=organization, location=location, item=barcode.item)
    run = count_run_create(
        organization=organization, facility=facility, name="Hard count", kind=CountKind.HARD, actor=manager
    )
    root_causes_ensure(organization=organization)
    proposal = reconciled(LineMaker(organization, facility, manager), manager, book="10", counted="4")
    return {"run": run, "proposal": proposal, "location": location, "barcode": barcode}


def test_admin_queue_and_api_docs_load_without_csp_violations(browser, server, floor):
    watched = Watched(browser, server.url)
    run, proposal = floor["run"], floor["proposal"]

    watched.log_in("/admin/login/", "manager")
    watched.settle("#content")
    watched.visit("/admin/", "#content")
    watched.visit("/admin/counts/countrun/", "#result_list")
    watched.visit(f"/admin/counts/countrun/{run.pk}/change/", "#content-main form")
    watched.visit("/admin/approvals/proposedaction/", "#result_list")
    watched.visit(f"/admin/approvals/proposedaction/{proposal.pk}/change/", "#content-main")
    watched.visit("/admin/accounts/membership/", "#content-main")
    watched.visit("/proposed-actions/", "main")
    watched.visit("/api/docs/", ".swagger-ui .opblock")
    watched.context.close()

    assert len(watched.problems) >= 9
    assert {url: found for url, found in watched.problems.items() if found} == {}


def test_count_app_loads_without_csp_violations(browser, server, floor):
    watched = Watched(browser, server.url)

    watched.log_in("/accounts/login/?next=/count/", "associate")
    watched.settle("main")
    assert watched.page.url.endswith("/count/")
    watched.page.get_by_role("button", name="Start Hard count").click()
    watched.page.wait_for_url("**/count/session/*/")
    # Selectors, not wait_for_function: Playwright evaluates those strings with eval(), which
    # this very policy forbids.
    watched.page.wait_for_selector("html[data-count-ready='true'][data-offline-ready='true']", state="attached")
    watched.settle("#scan-input")
    for code in (floor["location"].barcode, floor["barcode"].value):  # a location, then an item
        watched.page.keyboard.type(code)
        watched.page.keyboard.press("Enter")
    watched.page.wait_for_selector("html[data-pending='0']", state="attached")
    watched.settle("#feedback[data-status='matched']")
    watched.visit("/count/", "main")
    watched.visit("/accounts/edit-token/", "main")
    watched.context.close()

    assert len(watched.problems) >= 3
    assert {url: found for url, found in watched.problems.items() if found} == {}


def test_the_watcher_reports_an_inline_script(browser, server):
    """The checks above can fail: an inline script is blocked, and reported."""
    watched = Watched(browser, server.url)
    watched.visit("/accounts/login/", "form")

    with pytest.raises(sync_api.Error):
        watched.page.add_script_tag(content="window.injected = true;")
    watched.settle("form")
    ran = watched.page.evaluate("window.injected === true")
    watched.context.close()

    assert not ran
    found = [problem for problems in watched.problems.values() for problem in problems]
    assert any(problem.startswith("CSP: script-src-elem blocked inline") for problem in found), found
