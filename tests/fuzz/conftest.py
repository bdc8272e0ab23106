"""A small seeded organization for the API fuzz run: one of everything the endpoints look up.

It is built once per module inside a transaction that is rolled back when the module ends; each
test's own transaction (pytest-django's `db`) nests inside it as a savepoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.roles import Role
from accounts.services import edit_token_rotate
from counts.models import CountKind
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.sessions import count_session_start, count_session_submit
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.counts.conftest import scan
from tests.factories import (
    FacilityFactory,
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    LocationFactory,
    OrganizationFactory,
    ZoneFactory,
    member,
)


@dataclass(frozen=True)
class FuzzWorld:
    manager_headers: dict[str, str]
    associate_headers: dict[str, str]


def _credentials(user) -> dict[str, str]:
    """API token and personal edit token (approvals need `X-Edit-Token`), as request headers."""
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}", "X-Edit-Token": edit_token_rotate(user=user)}


def _seed() -> FuzzWorld:
    """Facility, zone, locations, items with barcodes and balances; a hard run the associate has
    counted (one match, one unknown barcode) and the manager has reconciled into proposals; a
    cycle run the associate is counting (an active session)."""
    organization = OrganizationFactory(name="Fuzz", slug="fuzz")
    facility = FacilityFactory(organization=organization, code="WH1", time_zone="America/Chicago")
    manager = member(organization, Role.MANAGER, username="fuzz-manager")
    associate = member(organization, Role.ASSOCIATE, username="fuzz-associate")
    root_causes_ensure(organization=organization)
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    locations = [
        LocationFactory(organization=organization, zone=zone, code=f"A-{n:02d}", barcode=f"LOC-A-{n:02d}")
        for n in range(1, 4)
    ]
    barcodes = [ItemBarcodeFactory(item__organization=organization, item__name=f"Item {n}") for n in range(3)]
    for index, barcode in enumerate(barcodes):
        InventoryBalanceFactory(
            organization=organization, location=locations[index], item=barcode.item, on_hand=Decimal(10 * (index + 1))
        )
    run = count_run_create(
        organization=organization, facility=facility, name="Fuzzed hard count", kind=CountKind.HARD, actor=manager
    )
    session = count_session_start(run=run, user=associate, device_id="fuzz-device")
    count_events_ingest(
        session=session,
        actor=associate,
        events=[
            scan(locations[0].code, barcodes[0].value, quantity=7, kind="set"),
            scan(locations[1].code, "NO-SUCH-BARCODE"),
        ],
    )
    count_session_submit(session=session, actor=associate)
    run_reconcile(run=run, actor=manager)
    cycle = count_run_create(organization=organization, facility=facility, name="Cycle count", kind=CountKind.CYCLE,
                             actor=manager, zones=[zone])  # fmt: skip
    count_session_start(run=cycle, user=associate, device_id="fuzz-device")
    return FuzzWorld(manager_headers=_credentials(manager), associate_headers=_credentials(associate))


@pytest.fixture(scope="module")
def fuzz_world(django_db_setup, django_db_blocker) -> Iterator[FuzzWorld]:
    with django_db_blocker.unblock(), transaction.atomic():
        world = _seed()
        yield world
        transaction.set_rollback(True)
