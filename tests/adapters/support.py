"""NetSuite-fake fixtures and helpers shared by the adapter tests and the ledger tests (a pytest plugin
registered in tests/conftest.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.models import BackendConnection
from adapters.services import backend_connect, backend_sync
from counts.models import CountKind, CountLine
from counts.services.planning import count_run_create, count_run_start
from inventory.models import Facility, InventoryBalance
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.fakes.netsuite import FakeNetSuite
from tests.reconciliation.conftest import COUNTED_AT

CREDENTIALS = {
    "consumer_key": "ck-" + "a" * 61,
    "consumer_secret": "cs-" + "b" * 61,
    "token_id": "tk-" + "c" * 61,
    "token_secret": "ts-" + "d" * 61,
}
ACCOUNT = "1234567_SB1"
SUBSIDIARY = 1
ADJUSTMENT_ACCOUNT = 215


@pytest.fixture(autouse=True)
def _quick_retries(settings):
    settings.ADAPTER_RETRY_BASE_SECONDS = 0.01
    settings.ADAPTER_RETRY_CAP_SECONDS = 0.05


def fake_netsuite(**options) -> FakeNetSuite:
    fake = FakeNetSuite(account_id=ACCOUNT, **CREDENTIALS, **options)
    fake.add_account(ADJUSTMENT_ACCOUNT)
    return fake


@pytest.fixture
def netsuite():
    with fake_netsuite() as fake:
        yield fake


def warehouse(fake: FakeNetSuite, *, locations: int = 2, items: int = 5, on_hand: int = 100) -> None:
    """A NetSuite warehouse: one top location with `locations` bins, `items` items stocked everywhere."""
    fake.add_location(1, "Dallas DC")
    for index in range(locations):
        fake.add_location(10 + index, f"Dallas Aisle {index + 1}", parent=1)
    for index in range(items):
        fake.add_item(100 + index, f"NS-{index:04d}", upccode=f"0{index:011d}", averagecost=Decimal("4.50"))
        for location in range(locations):
            fake.set_on_hand(100 + index, 10 + location, Decimal(on_hand))


def connect(organization, fake: FakeNetSuite, *, name: str = "netsuite", **overrides) -> BackendConnection:
    values = {
        "account_id": ACCOUNT,
        "subsidiary_id": str(SUBSIDIARY),
        "adjustment_account_id": str(ADJUSTMENT_ACCOUNT),
        "concurrency": 5,
        "restlet_url": fake.restlet_url,
        "rest_url": fake.rest_url,
        "time_zone": "America/Chicago",
        **CREDENTIALS,
        **overrides,
    }
    connection, _ = backend_connect(organization=organization, kind="netsuite", name=name, values=values, actor=None)
    return connection


@pytest.fixture
def synced(organization, netsuite):
    """The organization connected to the fake, its warehouse synced into the mirror."""
    warehouse(netsuite)
    connection = connect(organization, netsuite)
    backend_sync(connection=connection)
    return connection


def approve_adjustments(organization, manager, deltas: dict[tuple[str, str], Decimal | int]) -> list[int]:
    """Count (sku, location code) pairs off by `delta` from the mirror and reconcile: small
    differences are approved by the guardrail, with their outbox rows. Returns proposal ids."""
    root_causes_ensure(organization=organization)
    balances = {
        (balance.item.sku, balance.location.code): balance
        for balance in InventoryBalance.objects.filter(organization=organization).select_related("item", "location")
    }
    facility = Facility.objects.filter(organization=organization).order_by("pk").first()
    run = count_run_start(
        run=count_run_create(
            organization=organization, facility=facility, name="Count", kind=CountKind.HARD, actor=manager
        ),
        actor=manager,
    )
    CountLine.objects.bulk_create(
        CountLine(
            organization=organization,
            run=run,
            location=balances[key].location,
            item=balances[key].item,
            counted_quantity=balances[key].on_hand + Decimal(delta),
            book_quantity=balances[key].on_hand,
            first_counted_at=COUNTED_AT,
            last_counted_at=COUNTED_AT,
        )
        for key, delta in deltas.items()
    )
    run_reconcile(run=run, actor=manager)
    return list(run.proposals.values_list("pk", flat=True))
