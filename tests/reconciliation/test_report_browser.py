"""The dashboard tile and the variance report in real headless Chromium (/usr/bin/chromium, Playwright).

A live server serves the pages on the hand-computed floor of test_reports.py; the test reads the
figures the browser shows and checks them against the database (computed here from the rows,
not through the report's selectors). Screenshots go to var/screenshots/ (not committed).
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.db import connection

from approvals.models import ProposedAction
from inventory.models import InventoryBalance
from reconciliation.models import Guardrail, Variance
from tests.factories import TEST_PASSWORD
from tests.reconciliation.test_reports import NOW, build_floor

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
DESKTOP = {"width": 1400, "height": 1000}
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
    pytest.mark.django_db(transaction=True),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install '.[dev]')")

# On SQLite the in-memory test database is shared with the live server's threads: one request at
# a time, and the test's own reads between them (as in tests/counts/test_count_browser.py).
DB_LOCK = threading.RLock()


@pytest.fixture(autouse=True)
def _tile_computed_on_every_request(settings):
    settings.REPORT_TILE_CACHE_SECONDS = 0


@pytest.fixture(scope="module")
def browser():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
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
def page(browser, live_server):
    httpd = live_server.thread.httpd
    if connection.vendor == "sqlite" and connection.is_in_memory_db() and not getattr(httpd, "cc_serial", False):
        app = httpd.get_app()

        def one_at_a_time(environ, start_response):
            with DB_LOCK:
                return app(environ, start_response)

        httpd.set_app(one_at_a_time)
        httpd.cc_serial = True
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def money(value: Decimal, *, signed: bool = False) -> str:
    text = f"${abs(value):,.2f}"
    return f"−{text}" if value < 0 else (f"+{text}" if signed and value > 0 else text)


def share(numerator, denominator) -> str:
    return f"{Decimal(numerator) / Decimal(denominator) * 100:.1f}%"


def expected_figures(organization, variances) -> dict[str, str]:
    """What the pages must show, from the rows themselves (not the report's selectors)."""
    with DB_LOCK:
        rows = list(variances.values("variance_units", "variance_value", "book_at_count", "unit_cost"))
        tolerance = Guardrail.objects.get(organization=organization, facility=None).auto_max_percent
    within = sum(1 for row in rows if abs(row["variance_units"]) * 100 <= tolerance * abs(row["book_at_count"]))
    absolute = sum((abs(row["variance_value"]) for row in rows), Decimal("0"))
    book = sum((row["book_at_count"] * row["unit_cost"] for row in rows), Decimal("0"))
    return {
        "lines": str(len(rows)),
        "variances": str(sum(1 for row in rows if row["variance_units"] != 0)),
        "net": money(sum((row["variance_value"] for row in rows), Decimal("0")), signed=True),
        "absolute": money(absolute),
        "accuracy": share(within, len(rows)),
        "value_accuracy": f"{(1 - (absolute / book).quantize(Decimal('0.0001'))) * 100:.1f}%",
    }


def test_the_dashboard_and_the_variance_report_show_the_databases_figures(
    page, organization, facility, manager, other_organization
):
    with time_machine.travel(NOW, tick=True):
        with DB_LOCK:
            floor = build_floor(organization, facility, manager, other_organization)
        window = Variance.objects.filter(
            organization=organization, superseded_at__isnull=True, computed_at__gte=NOW - timedelta(days=30)
        )
        expected = expected_figures(organization, window)

        page.goto("/admin/login/?next=/admin/")
        page.get_by_label("Username").fill("manager")
        page.get_by_label("Password").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#report-tile")
        page.screenshot(path=str(SCREENSHOTS / "report-01-dashboard.png"), full_page=True)

        kpi = {name: page.locator(f"[data-kpi='{name}'] .kpi-value").inner_text() for name in
               ("record_accuracy", "value_accuracy", "coverage", "approvals_waiting", "push_failures",
                "parity_drifts")}  # fmt: skip
        assert kpi["record_accuracy"] == expected["accuracy"] == "60.0%"
        assert kpi["value_accuracy"] == expected["value_accuracy"] == "98.3%"
        with DB_LOCK:
            stocked = InventoryBalance.objects.filter(organization=organization).exclude(on_hand=0)
            counted = sum(
                1 for balance in stocked if window.filter(item=balance.item, location=balance.location).exists()
            )
            waiting = ProposedAction.objects.filter(
                organization=organization, state__in=["pending", "awaiting_finance"]
            )
            waiting_value = sum((proposal.value_abs for proposal in waiting), Decimal("0"))
            waiting_count = waiting.count()
        assert kpi["coverage"] == share(counted, stocked.count())
        assert kpi["approvals_waiting"] == str(waiting_count)
        assert page.locator("[data-kpi='approvals_waiting_value']").inner_text() == money(waiting_value)
        assert (kpi["push_failures"], kpi["parity_drifts"]) == ("2", "1")

        totals = page.locator("#report-zones tfoot tr")
        for column in ("lines", "variances", "net", "absolute", "accuracy"):
            assert totals.locator(f"[data-col='{column}']").inner_text() == expected[column]
        for code, zone in floor.zones.items():
            in_zone = expected_figures(organization, window.filter(location__zone=zone))
            row = page.locator(f"#report-zones tbody tr[data-zone='{code}']")
            assert row.locator("[data-col='lines']").inner_text() == in_zone["lines"]
            assert row.locator("[data-col='net']").inner_text() == in_zone["net"]
            assert row.locator("svg rect").count() >= 1  # the day with a difference has a bar
        top = page.locator("#report-top-items tbody tr").first
        assert top.get_attribute("data-sku") == "A3"
        assert top.locator("[data-col='absolute']").inner_text() == "$20.00"

        page.locator("#report-tile a", has_text="Variance report").click()
        page.wait_for_selector("#report-rows")
        page.screenshot(path=str(SCREENSHOTS / "report-02-variances.png"), full_page=True)
        for name in ("lines", "variances", "net", "absolute", "accuracy", "value_accuracy"):
            assert page.locator(f"#report-totals [data-figure='{name}'] .value").inner_text() == expected[name]
        rows = page.locator("#report-rows tbody tr")
        assert rows.count() == 5
        with DB_LOCK:
            largest = max(window, key=lambda variance: (abs(variance.variance_value), variance.pk))
            proposal = ProposedAction.objects.get(variance=largest)
        first = rows.first
        assert first.get_attribute("data-variance") == str(largest.pk)
        assert first.locator("[data-col='value']").inner_text() == money(largest.variance_value, signed=True)
        assert first.get_by_role("link", name="trace").get_attribute("href") == f"/trace/?proposal={proposal.pk}"
        assert "2026-11-19 21:30 CST" in first.inner_text()  # the facility's time zone
        assert page.locator("#chart-periods svg rect").count() == 1
        assert page.locator("#chart-root-causes [data-root-cause='Miscount']").count() == 1

        page.locator("#id_zone").select_option(label="WH1 · B")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**zone=*")
        zone_b = expected_figures(organization, window.filter(location__zone=floor.zones["B"]))
        assert page.locator("#report-totals [data-figure='lines'] .value").inner_text() == zone_b["lines"]
        assert page.locator("#report-totals [data-figure='net'] .value").inner_text() == zone_b["net"]

        page.locator("#report-rows thead").get_by_role("link", name="Item", exact=True).click()
        page.wait_for_url("**sort=*")
        skus = [text.split()[0] for text in page.locator("#report-rows tbody tr td:nth-child(4)").all_inner_texts()]
        assert skus == ["B2", "B1"]  # descending by SKU on the first click, within zone B
        page.screenshot(path=str(SCREENSHOTS / "report-03-zone-b-by-sku.png"), full_page=True)
