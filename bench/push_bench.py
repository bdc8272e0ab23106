"""Push benchmark: 10,000 approved adjustments drained into the NetSuite fake.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_push_bench .venv/bin/python bench/push_bench.py

It creates the database when missing and migrates it, starts the strict NetSuite fake
(tests/fakes/netsuite.py) with 200 ms latency per request and a concurrency limit of 5, gives it
a warehouse of 4 locations × 2,500 items, syncs that into a fresh organization's mirror, counts
every item × location one unit off and reconciles (the guardrail approves each, writing its
outbox row), then measures one `push_drain`:

  batches sent, requests made (target ≤ 25), wall time, duplicates (target 0: every adjustment
  in NetSuite exactly once, checked line by line against the fake's on-hand), concurrency
  breaches (target 0), and whether the mirror equals NetSuite afterwards. A following sync
  shows the parity check (proposals confirmed).

Options: --items, --locations, --latency, --limit. Figures go to stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2500)
    parser.add_argument("--locations", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=5)
    options = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL database (it is created when missing)")
    _ensure_database(url)
    _django_setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)

    from accounts.models import Organization
    from adapters.models import ExternalRecord, PushBatch
    from adapters.services import backend_connect, backend_sync, push_drain
    from counts.models import CountKind, CountLine
    from counts.services.planning import count_run_create, count_run_start
    from inventory.models import Facility, InventoryBalance
    from reconciliation.services import root_causes_ensure, run_reconcile
    from tests.fakes.netsuite import FakeNetSuite

    credentials = {
        "consumer_key": "k" * 64,
        "consumer_secret": "s" * 64,
        "token_id": "t" * 64,
        "token_secret": "x" * 64,
    }
    fake = FakeNetSuite(account_id="1234567", concurrency_limit=options.limit, **credentials).start()
    fake.add_location(1, "Bench DC")
    for location in range(options.locations):
        fake.add_location(10 + location, f"Zone {location + 1}", parent=1)
    for item in range(options.items):
        fake.add_item(1000 + item, f"B-{item:06d}", averagecost=Decimal("3.00"))
        for location in range(options.locations):
            fake.set_on_hand(1000 + item, 10 + location, Decimal(100))

    slug = f"pushbench-{int(time.time())}"
    organization = Organization.objects.create(name=slug, slug=slug)
    connection, _ = backend_connect(
        organization=organization,
        kind="netsuite",
        name="netsuite",
        values={
            "account_id": "1234567",
            "subsidiary_id": "1",
            "adjustment_account_id": "1",
            "concurrency": options.limit,
            "restlet_url": fake.restlet_url,
            "rest_url": fake.rest_url,
            **credentials,
        },
        actor=None,
    )
    started = time.perf_counter()
    backend_sync(connection=connection)
    print(f"sync: {InventoryBalance.objects.filter(organization=organization).count():,} balances mirrored "
          f"in {time.perf_counter() - started:.1f} s (no latency yet)")  # fmt: skip

    root_causes_ensure(organization=organization)
    facility = Facility.objects.get(organization=organization)
    run = count_run_start(
        run=count_run_create(
            organization=organization, facility=facility, name="Bench", kind=CountKind.HARD, actor=None
        ),
        actor=None,
    )
    balances = InventoryBalance.objects.filter(organization=organization).order_by("pk")
    now = run.created_at
    CountLine.objects.bulk_create(
        (
            CountLine(
                organization=organization,
                run=run,
                location_id=balance.location_id,
                item_id=balance.item_id,
                counted_quantity=balance.on_hand - 1,
                book_quantity=balance.on_hand,
                first_counted_at=now,
                last_counted_at=now,
            )
            for balance in balances.iterator()
            if balance.on_hand
        ),
        batch_size=2000,
    )
    started = time.perf_counter()
    outcome = run_reconcile(run=run, actor=None)
    print(f"reconcile: {outcome.auto_approved:,} adjustments approved by the guardrail "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

    fake.latency = options.latency
    requests_before, posts_before = fake.requests_made, fake.adjustment_posts
    connection.refresh_from_db()
    started = time.perf_counter()
    result = push_drain(connection=connection)
    wall = time.perf_counter() - started
    requests = fake.requests_made - requests_before

    # Duplicates, counted from the backend's side: every (item, location) must have moved by
    # exactly its one adjustment, and every external id must exist once.
    ids = {
        (record.kind, record.external_id): record.item_id or record.location_id
        for record in ExternalRecord.objects.filter(connection=connection)
    }
    item_of = {pk: int(external) for (kind, external), pk in ids.items() if kind == "item"}
    location_of = {pk: int(external) for (kind, external), pk in ids.items() if kind == "location"}
    wrong = sum(
        1
        for balance in InventoryBalance.objects.filter(organization=organization).iterator()
        if balance.item_id in item_of
        and fake.on_hand(item_of[balance.item_id], location_of[balance.location_id]) != balance.on_hand
    )
    moved_twice = sum(
        1
        for item in range(options.items)
        for location in range(options.locations)
        if fake.on_hand(1000 + item, 10 + location) < 99
    )
    batches = PushBatch.objects.filter(connection=connection)
    external_ids = [adjustment["externalId"] for adjustment in fake.adjustments.values()]

    print(f"drain: {result.lines_accepted:,} adjustments in {result.batches_formed} batches "
          f"({batches.filter(state='accepted').count()} accepted), wall {wall:.2f} s")  # fmt: skip
    print(f"  requests made: {requests} (POSTs {fake.adjustment_posts - posts_before}; target ≤ 25)")
    print(f"  duplicates: {moved_twice + len(external_ids) - len(set(external_ids))} (target 0); "
          f"duplicate POSTs refused by the RESTlet: {fake.duplicates_refused}")  # fmt: skip
    print(f"  concurrency: at most {fake.max_concurrent_seen} at once, limit {options.limit}, "
          f"breaches {fake.limit_breaches} (target 0)")  # fmt: skip
    print(f"  mirror differs from NetSuite on {wrong} item × locations (target 0)")

    fake.latency = 0
    started = time.perf_counter()
    synced = backend_sync(connection=connection)
    print(f"parity sync: {synced.confirmed:,} confirmed, {synced.drifts} drifts, "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    fake.stop()


if __name__ == "__main__":
    main()
