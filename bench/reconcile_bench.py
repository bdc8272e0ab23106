"""Reconciliation benchmark: a hard count of 1,000,000 lines on PostgreSQL, against the physical floor.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_recon_bench \\
        .venv/bin/python bench/reconcile_bench.py [--items 100000 --locations 10 --variance-share 0.05]

It creates the database when it is missing, migrates it, and builds (or reuses, for the same
parameters) one organization with items × locations balances and one hard run in progress whose
count lines match the book except for a share of them, off by a few units (small differences
that the default guardrail auto-approves, and large ones that become proposals). The data set is
built with set-based SQL (generate_series), not the ORM; the run is created and started through
the planning services. Then it measures, each twice, best of two reported:

  (a) the project's reconciliation: `run_reconcile(run=..., actor=None)` end to end, wall clock,
      commit included (variances, routing, proposals, their history, the auto-approved outbox);
  (b) the floor: one bare `INSERT … SELECT` computing the same variance columns (a constant
      routing) over the same tables, into the same reconciliation_variance table with its
      indexes and constraints, committed the same way (the foreign keys are deferred, so their
      checks run at COMMIT: rolling back would skip them and flatter the floor);

and prints their ratio (target (a)/(b) ≤ 2.0) and the process's peak memory (target < 500 MB:
every row stays in PostgreSQL, nothing is streamed into Python). Before each measurement the
previous one's rows are deleted, the run is put back in progress and the tables are vacuumed and
analyzed, so both start from the same state on warm caches. That state is a warehouse's steady
state: an earlier, small count of the facility has been reconciled, so reconciliation_variance
is not empty (see --empty-table for why that matters).

Options that look further:

  --proposed {materialized,on-conflict}
                 also measures (a′): run_reconcile with its variance statement changed, patched into
                 this process only: `materialized` reads the run's current variances once, in a
                 MATERIALIZED CTE, before inserting; `on-conflict` drops the NOT EXISTS and lets the
                 one-current-variance-per-line index skip lines (ON CONFLICT DO NOTHING);
  --empty-table  removes every variance first (the earlier count's too) and vacuums, as on a
                 database whose variance table was vacuumed or analyzed while still empty: the
                 planner then expects no rows and runs the NOT EXISTS as a nested loop that
                 re-scans, for every line, the table the statement is filling (quadratic); the
                 shipped statement gets --timeout seconds, then (a′) runs in the same state;
  --rerun        finally reconciles the reconciled run once more (an idempotent no-op that must
                 create nothing) and reports its time and the peak memory it reached.

Figures go to stdout; nothing is asserted (targets live here, not in unit tests).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN_NAME = "Reconcile bench"
EARLIER_RUN_NAME = "Earlier cycle count"
EARLIER_LINES = 1_000
PRIME = 1_000_003  # lines are picked for a variance by a multiplicative hash modulo this prime
BENCH_TABLES = (
    "inventory_item",
    "inventory_inventorybalance",
    "counts_countline",
    "reconciliation_variance",
    "approvals_proposedaction",
    "approvals_historicalproposedaction",
    "adapters_pendingpush",
)
RESULT_TABLES = BENCH_TABLES[3:]

# The floor: the variance columns the service computes, without the anti-join on current
# variances, the routing rules, the proposals, their history or the outbox.
FLOOR_SQL = """
INSERT INTO reconciliation_variance (
    organization_id, run_id, line_id, item_id, location_id, facility_id, counted_quantity, book_at_count,
    book_current, book_moved, variance_units, variance_percent, variance_value, unit_cost, adjustment_units,
    adjustment_value, routing, guardrail_id, guardrail_version, computed_at
)
SELECT l.organization_id, l.run_id, l.id, l.item_id, l.location_id, %(facility)s, l.counted_quantity,
       l.book_quantity, COALESCE(b.on_hand, 0), COALESCE(b.on_hand, 0) <> l.book_quantity,
       l.counted_quantity - l.book_quantity,
       CASE WHEN l.book_quantity = 0 THEN NULL
            ELSE ROUND((l.counted_quantity - l.book_quantity) * 100.0 / l.book_quantity, 2) END,
       ROUND((l.counted_quantity - l.book_quantity) * i.average_cost, 2), i.average_cost,
       l.counted_quantity - l.book_quantity, ROUND((l.counted_quantity - l.book_quantity) * i.average_cost, 2),
       'none', %(guardrail)s, %(guardrail_version)s, %(now)s
FROM counts_countline l
JOIN inventory_item i ON i.id = l.item_id
LEFT JOIN inventory_inventorybalance b ON b.item_id = l.item_id AND b.location_id = l.location_id
WHERE l.run_id = %(run)s AND l.is_extra = FALSE
"""

# The floor's SELECT alone, once before measuring, so that neither side pays for cold caches.
WARM_SQL = """
SELECT COUNT(*), SUM(COALESCE(b.on_hand, 0) + i.average_cost)
FROM counts_countline l
JOIN inventory_item i ON i.id = l.item_id
LEFT JOIN inventory_inventorybalance b ON b.item_id = l.item_id AND b.location_id = l.location_id
WHERE l.run_id = %(run)s AND l.is_extra = FALSE
"""

# Changes to reconciliation.services._VARIANCES_SQL, measured with --proposed. Both stop the
# statement from probing, line by line, the very table it inserts into.
_NOT_EXISTS = re.compile(
    r"\s*AND NOT EXISTS \(\s*SELECT 1 FROM reconciliation_variance v"
    r" WHERE v\.line_id = l\.id AND v\.superseded_at IS NULL\s*\)"
)
_DONE_CTE = """WITH
done AS MATERIALIZED (
    SELECT line_id FROM reconciliation_variance WHERE run_id = %(run)s AND superseded_at IS NULL
),"""
_NOT_DONE = "\n      AND NOT EXISTS (SELECT 1 FROM done WHERE done.line_id = l.id)"
_ON_CONFLICT = "\nON CONFLICT (line_id) WHERE superseded_at IS NULL DO NOTHING\n"


def proposed_statement(shipped: str, variant: str) -> str:
    """The shipped variance statement with the change `variant`."""
    if variant == "materialized":
        proposed, replaced = _NOT_EXISTS.subn(_NOT_DONE, shipped)
        if replaced == 1 and proposed.startswith("WITH\n"):
            return _DONE_CTE + proposed.removeprefix("WITH")
    else:
        proposed, replaced = _NOT_EXISTS.subn("", shipped)
        if replaced == 1 and proposed.rstrip().endswith("WHERE TRUE"):
            return proposed.rstrip() + _ON_CONFLICT
    sys.exit(f"the change {variant!r} no longer applies to reconciliation.services._VARIANCES_SQL")


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)  # noqa: S603


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def ensure_database(url: str) -> None:
    """Create the benchmark database when it does not exist yet (connecting to `postgres`)."""
    name = psycopg.conninfo.conninfo_to_dict(url).get("dbname")
    if not name:
        sys.exit("DATABASE_URL names no database")
    with psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def _execute(statement: str, params: dict | None = None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def _scalar(statement: str, params: dict) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()[0]


def _vacuum(tables: tuple[str, ...], *, full: bool = False) -> None:
    """VACUUM ANALYZE, outside any transaction (Django's connection is in autocommit here)."""
    _execute(f"VACUUM ({'FULL, ' if full else ''}ANALYZE) " + ", ".join(tables))


def build(*, items: int, locations: int, share: float) -> tuple[int, float, bool]:
    """The data set for these parameters (reused when it is complete): (run id, seconds, built)."""
    from django.db import transaction

    from accounts.models import Organization
    from counts.models import CountKind, CountLine, CountRun
    from counts.services.planning import count_run_create, count_run_start
    from inventory.models import Facility, Location, Zone
    from reconciliation.services import guardrail_for

    slug = f"recon-bench-{items}x{locations}-{round(share * 10_000)}"
    existing = CountRun.objects.filter(organization__slug=slug, name=RUN_NAME).first()
    if existing is not None and CountLine.objects.filter(run=existing).count() == items * locations:
        return existing.pk, 0.0, False
    if existing is not None:
        sys.exit(f"organization {slug} holds an incomplete data set; drop the database and run again")

    started = time.perf_counter()
    with transaction.atomic():
        organization = Organization.objects.create(name=f"Reconcile bench {items}×{locations}", slug=slug)
        facility = Facility.objects.create(organization=organization, code="RB1", name="Bench DC", time_zone="UTC")
        zone = Zone.objects.create(organization=organization, facility=facility, code="Z1", name="Zone 1")
        Location.objects.bulk_create(
            Location(organization=organization, facility=facility, zone=zone, code=f"L{n:03d}", barcode=f"RBL{n:03d}")
            for n in range(1, locations + 1)
        )
        guardrail_for(facility=facility)  # the organization default: 2.00 %, $100.00, keep the difference
        params = {
            "organization": organization.pk,
            "facility": facility.pk,
            "items": items,
            "prime": PRIME,
            "threshold": round(share * PRIME),
        }
        # Fixture data: written in bulk without history rows, which the benchmark does not read.
        # average_cost from 0.50 to 200.00, by a hash of the item number.
        _execute(
            """
            INSERT INTO inventory_item (organization_id, sku, name, unit_of_measure, average_cost, abc_class)
            SELECT %(organization)s, 'RB' || LPAD(g::text, 7, '0'), 'Bench item ' || g, 'EA',
                   (50 + (g * 2654435761) %% 19951) / 100.0, 'C'
            FROM generate_series(1, %(items)s) AS g
            """,
            params,
        )
        # On hand from 20 to 499, available = on hand.
        _execute(
            """
            INSERT INTO inventory_inventorybalance (
                organization_id, item_id, location_id, on_hand, reserved, available, synced_at, sync_reference
            )
            SELECT %(organization)s, i.id, loc.id, q.on_hand, 0, q.on_hand, NOW(), 'bench'
            FROM inventory_item i
            CROSS JOIN inventory_location loc
            CROSS JOIN LATERAL (SELECT 20 + (i.id * 31 + loc.id * 17) %% 480 AS on_hand) q
            WHERE i.organization_id = %(organization)s AND loc.facility_id = %(facility)s
            ORDER BY loc.id, i.id
            """,
            params,
        )
        run = count_run_create(
            organization=organization, facility=facility, name=RUN_NAME, kind=CountKind.HARD, actor=None
        )
        run = count_run_start(run=run, actor=None)
        _copy_lines(run_id=run.pk, params=params, limit=None)
    return run.pk, time.perf_counter() - started, True


def _copy_lines(*, run_id: int, params: dict, limit: int | None) -> None:
    """Count lines from the balances: book = on hand; a line whose hash h falls under the share is
    off, even h by 1–2 units (mostly auto-approved), odd h by 10–40 units (a proposal), either sign."""
    _execute(
        """
        INSERT INTO counts_countline (
            organization_id, run_id, location_id, item_id, counted_quantity, book_quantity, is_extra,
            first_counted_at, last_counted_at
        )
        SELECT b.organization_id, %(run)s, b.location_id, b.item_id,
               b.on_hand + CASE
                   WHEN h.h >= %(threshold)s THEN 0
                   WHEN h.h %% 2 = 0 THEN (1 + (h.h / 4) %% 2) * (CASE WHEN (h.h / 2) %% 2 = 0 THEN -1 ELSE 1 END)
                   ELSE (10 + (h.h / 4) %% 31) * (CASE WHEN (h.h / 2) %% 2 = 0 THEN -1 ELSE 1 END)
               END,
               b.on_hand, FALSE, NOW(), NOW()
        FROM inventory_inventorybalance b
        CROSS JOIN LATERAL (SELECT (b.item_id * 2654435761 + b.location_id * 40503) %% %(prime)s AS h) h
        WHERE b.organization_id = %(organization)s
        ORDER BY b.location_id, b.item_id
        LIMIT %(limit)s
        """,
        {**params, "run": run_id, "limit": limit},
    )


def ensure_earlier_run(run_id: int, *, share: float) -> int:
    """A small count of the same facility, reconciled: the variance table a warehouse has in use."""
    from django.db import transaction

    from counts.models import CountKind, CountRun
    from counts.services.planning import count_run_create, count_run_start
    from reconciliation.services import run_reconcile

    run = CountRun.objects.select_related("organization", "facility").get(pk=run_id)
    earlier = CountRun.objects.filter(facility=run.facility, name=EARLIER_RUN_NAME).first()
    if earlier is None:
        with transaction.atomic():
            earlier = count_run_create(
                organization=run.organization,
                facility=run.facility,
                name=EARLIER_RUN_NAME,
                kind=CountKind.CYCLE,
                actor=None,
            )
            earlier = count_run_start(run=earlier, actor=None)
            params = {"organization": run.organization_id, "prime": PRIME, "threshold": round(share * PRIME)}
            _copy_lines(run_id=earlier.pk, params=params, limit=EARLIER_LINES)
    if not earlier.variances.exists():
        _reset_run(earlier.pk)
        run_reconcile(run=earlier, actor=None)
    return earlier.pk


def _reset_run(run_id: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        params = {"run": run_id}
        _execute(
            """DELETE FROM adapters_pendingpush p USING approvals_proposedaction a
               WHERE p.proposal_id = a.id AND a.run_id = %(run)s""",
            params,
        )
        _execute("DELETE FROM approvals_historicalproposedaction WHERE run_id = %(run)s", params)
        _execute("DELETE FROM approvals_proposedaction WHERE run_id = %(run)s", params)
        _execute("DELETE FROM reconciliation_variance WHERE run_id = %(run)s", params)
        # The state field is protected (transitions only); a benchmark may rewind it in SQL.
        _execute("UPDATE counts_countrun SET state = 'in_progress' WHERE id = %(run)s", params)


def reset(run_id: int) -> None:
    """Remove what a previous measurement wrote for the run and put it back in progress; VACUUM FULL
    the result tables (they hold only the earlier count then) so every measurement starts from the
    same compact heap and freshly built indexes."""
    _reset_run(run_id)
    _vacuum(RESULT_TABLES, full=True)


def _service_params(run_id: int) -> dict:
    """The parameters run_reconcile gives its variance statement (for EXPLAIN)."""
    from django.utils import timezone

    from counts.bulk import adapt
    from counts.models import CountRun
    from reconciliation.services import guardrail_for

    run = CountRun.objects.select_related("facility").get(pk=run_id)
    guardrail = guardrail_for(facility=run.facility)
    return {
        "run": run.pk,
        "facility": run.facility_id,
        "policy": guardrail.moved_book_policy,
        "auto_percent": guardrail.auto_max_percent,
        "auto_value": guardrail.auto_max_value,
        "recount_min": guardrail.recount_min_value,
        "finance_min": guardrail.finance_min_value,
        "guardrail": guardrail.pk,
        "guardrail_version": guardrail.version,
        "now": adapt(timezone.now()),
    }


def anti_join_plan(run_id: int) -> str:
    """How the planner means to skip lines that have a current variance (EXPLAIN, not run)."""
    from django.db import connection

    from reconciliation import services

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + services._VARIANCES_SQL, _service_params(run_id))
        plan = [row[0] for row in cursor.fetchall()]
    nodes = [line.strip().removeprefix("->").strip().split("  ")[0] for line in plan]
    for index, node in enumerate(nodes):
        if "Anti Join" in node:
            inner = next((scan for scan in nodes[index + 1 :] if "Scan" in scan and "countline" not in scan), "?")
            return f"{node} over {inner}"
    arbiter = next((line.strip() for line in plan if "Arbiter" in line), "")
    return f"no anti-join; {arbiter}" if arbiter else "no anti-join"


@contextlib.contextmanager
def proposed_variance_sql(variant: str):
    """run_reconcile with the changed variance statement, in this process only."""
    from reconciliation import services

    shipped = services._VARIANCES_SQL
    services._VARIANCES_SQL = proposed_statement(shipped, variant)
    try:
        yield
    finally:
        services._VARIANCES_SQL = shipped


def measure_service(run_id: int, *, timeout: int = 0) -> dict | None:
    """(a) run_reconcile end to end, with the time of each statement it sent; None on timeout."""
    from django.db import OperationalError, connection
    from django.test.utils import CaptureQueriesContext

    from counts.models import CountRun
    from reconciliation.services import run_reconcile

    run = CountRun.objects.get(pk=run_id)
    _execute(f"SET statement_timeout = {int(timeout) * 1000}")
    try:
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = run_reconcile(run=run, actor=None)
            seconds = time.perf_counter() - started
    except OperationalError as error:
        if "statement timeout" not in str(error):
            raise
        return None
    finally:
        _execute("SET statement_timeout = 0")
    steps: dict[str, float] = {}
    for query in captured.captured_queries:
        label = _step_label(" ".join(query["sql"].split()))
        steps[label] = steps.get(label, 0.0) + float(query["time"])
    steps["Python and round trips"] = seconds - sum(steps.values())
    return {
        "seconds": seconds,
        "variances": result.variances,
        "proposals": result.proposals,
        "auto_approved": result.auto_approved,
        "superseded": result.superseded,
        "steps": steps,
    }


def _step_label(text: str) -> str:
    if text == "COMMIT":  # Django logs it with the queries
        return "COMMIT (deferred foreign-key checks)"
    if text.startswith("WITH") and "INSERT INTO reconciliation_variance" in text:
        return "variances: INSERT … SELECT with routing"
    if text.startswith("INSERT INTO approvals_proposedaction"):
        return "proposals: INSERT … SELECT with payload"
    if text.startswith("INSERT INTO approvals_historicalproposedaction"):
        return "proposal history: INSERT … SELECT"
    if text.startswith("INSERT INTO adapters_pendingpush"):
        return "outbox for the auto-approved: INSERT … SELECT"
    if text.startswith('SELECT COUNT(*) AS "__count" FROM "reconciliation_variance"'):
        return "counting the variances"
    if text.startswith('SELECT COUNT(*) AS "__count" FROM "approvals_proposedaction"'):
        return "counting the proposals (twice)"
    return "other statements (lock, guardrail, supersede check, run, audit)"


def measure_floor(run_id: int) -> dict:
    """(b) the bare INSERT … SELECT, committed (its deferred foreign-key checks run at COMMIT)."""
    from django.db import transaction
    from django.utils import timezone

    from counts.models import CountRun
    from reconciliation.models import Guardrail

    run = CountRun.objects.get(pk=run_id)
    guardrail = Guardrail.objects.get(organization_id=run.organization_id, facility=None)
    params = {
        "run": run.pk,
        "facility": run.facility_id,
        "guardrail": guardrail.pk,
        "guardrail_version": guardrail.version,
        "now": timezone.now(),
    }
    started = time.perf_counter()
    with transaction.atomic():
        inserted = _execute(FLOOR_SQL, params)
        inserted_at = time.perf_counter()
    seconds = time.perf_counter() - started
    insert = inserted_at - started
    return {"seconds": seconds, "rows": inserted, "insert": insert, "commit": seconds - insert}


def _print_service(label: str, measured: dict, *, rounds: int, lines: int) -> None:
    print(f"{label}, best of {rounds}: {measured['seconds']:.2f} s ({lines / measured['seconds']:,.0f} lines/s)")
    print(f"    {measured['variances']:,} variances, {measured['proposals']:,} proposals: "
          f"{measured['auto_approved']:,} auto-approved (with outbox rows), "
          f"{measured['proposals'] - measured['auto_approved']:,} pending")  # fmt: skip
    for step, seconds in measured["steps"].items():
        print(f"      {seconds:7.2f} s  {step}")


def empty_table_scenario(run_id: int, earlier_id: int, *, timeout: int, share: float, variant: str) -> None:
    """The variance table empty and vacuumed: the shipped statement against the proposed one."""
    print("--empty-table: every variance of the organization removed, VACUUM ANALYZE")
    _reset_run(earlier_id)
    reset(run_id)
    print(f"    planner: {anti_join_plan(run_id)}")
    shipped = measure_service(run_id, timeout=timeout)
    if shipped is None:
        print(f"    (a) run_reconcile: cancelled by statement_timeout after {timeout} s (rolled back)")
    else:
        print(f"    (a) run_reconcile: {shipped['seconds']:.2f} s")
    reset(run_id)
    with proposed_variance_sql(variant):
        print(f"    planner, with the change {variant!r}: {anti_join_plan(run_id)}")
        proposed = measure_service(run_id)
    print(f"    (a′) with the change {variant!r}: {proposed['seconds']:.2f} s, "
          f"{proposed['variances']:,} variances")  # fmt: skip
    reset(run_id)
    ensure_earlier_run(run_id, share=share)
    _vacuum(RESULT_TABLES)


def measure_rerun(run_id: int) -> None:
    """Reconcile the run, then reconcile it again: nothing may be created; report time and memory."""
    from counts.models import CountRun
    from reconciliation.services import run_reconcile

    reset(run_id)
    first = measure_service(run_id)
    print(f"--rerun: run_reconcile once more: {first['seconds']:.2f} s; then on the reconciled run:")
    before = _peak_mb()
    started = time.perf_counter()
    result = run_reconcile(run=CountRun.objects.get(pk=run_id), actor=None)
    seconds = time.perf_counter() - started
    print(f"    {seconds:.2f} s; created {result.variances} variances, {result.proposals} proposals; "
          f"superseded {result.superseded}")  # fmt: skip
    print(f"    peak memory {before:,.0f} MB before, {_peak_mb():,.0f} MB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--variance-share", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each side; the best is reported")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed to one statement of (a)")
    parser.add_argument("--proposed", choices=["materialized", "on-conflict"], help="also measure this change")
    parser.add_argument("--empty-table", action="store_true", help="also reconcile into an empty variance table")
    parser.add_argument("--rerun", action="store_true", help="finally reconcile the reconciled run again")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark is for the production database).")

    ensure_database(url)
    _manage("migrate", "--noinput", "-v0")
    _django_setup()
    from django.db import connection

    started = time.perf_counter()
    run_id, build_seconds, built = build(items=args.items, locations=args.locations, share=args.variance_share)
    lines = args.items * args.locations
    off = _scalar(
        "SELECT COUNT(*) FROM counts_countline WHERE run_id = %(run)s AND counted_quantity <> book_quantity",
        {"run": run_id},
    )
    if built:
        print(f"data set: built {args.items:,} items × {args.locations} locations = {lines:,} balances and "
              f"{lines:,} count lines in {build_seconds:.1f} s (set-based SQL, one transaction)")  # fmt: skip
    else:
        print(f"data set: reused {lines:,} count lines ({args.items:,} items × {args.locations} locations)")
    print(f"    run {run_id}, hard, in progress; {off:,} lines off the book ({off / lines:.2%}); "
          f"PostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} CPU cores")  # fmt: skip
    started = time.perf_counter()
    earlier_id = ensure_earlier_run(run_id, share=args.variance_share)
    reset(run_id)
    _vacuum(BENCH_TABLES)
    _scalar(WARM_SQL, {"run": run_id})
    print(f"    with an earlier count of {EARLIER_LINES:,} lines reconciled (run {earlier_id}); reset, "
          f"VACUUM ANALYZE and a warming read: {time.perf_counter() - started:.1f} s")  # fmt: skip
    print(f"    planner, for the lines that already have a variance: {anti_join_plan(run_id)}")

    services, proposals, floors = [], [], []
    for round_ in range(1, args.rounds + 1):
        reset(run_id)
        measured = measure_service(run_id, timeout=args.timeout)
        if measured is None:
            sys.exit(f"(a) run_reconcile: cancelled by statement_timeout after {args.timeout} s")
        services.append(measured)
        print(f"    round {round_}: (a) {services[-1]['seconds']:.2f} s", end="", flush=True)
        if args.proposed:
            reset(run_id)
            with proposed_variance_sql(args.proposed):
                proposals.append(measure_service(run_id))
            print(f", (a′) {proposals[-1]['seconds']:.2f} s", end="", flush=True)
        reset(run_id)
        floors.append(measure_floor(run_id))
        print(f", (b) {floors[-1]['seconds']:.2f} s")
    service = min(services, key=lambda measured: measured["seconds"])
    floor = min(floors, key=lambda measured: measured["seconds"])

    _print_service("(a) run_reconcile (variances, routing, proposals)", service, rounds=args.rounds, lines=lines)
    print(f"(b) floor, a bare INSERT … SELECT of the variance columns, best of {args.rounds}: "
          f"{floor['seconds']:.2f} s ({floor['rows']:,} rows)")  # fmt: skip
    print(f"      {floor['insert']:7.2f} s  INSERT … SELECT")
    print(f"      {floor['commit']:7.2f} s  COMMIT (deferred foreign-key checks)")
    print(f"ratio (a)/(b): {service['seconds'] / floor['seconds']:.2f} (target ≤ 2.0)")
    if proposals:
        proposal = min(proposals, key=lambda measured: measured["seconds"])
        label = f"(a′) run_reconcile with the change {args.proposed!r}"
        _print_service(label, proposal, rounds=args.rounds, lines=lines)
        print(f"ratio (a′)/(b): {proposal['seconds'] / floor['seconds']:.2f}")
    print(f"peak memory of this process: {_peak_mb():,.0f} MB (target < 500 MB); "
          "no row is read into Python, all the work is SQL")  # fmt: skip

    if args.empty_table:
        variant = args.proposed or "materialized"
        empty_table_scenario(run_id, earlier_id, timeout=args.timeout, share=args.variance_share, variant=variant)
    if args.rerun:
        measure_rerun(run_id)


if __name__ == "__main__":
    main()
