"""Report benchmark: the dashboard tile and the variance report over 5,000,000 variances (2 years).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_report_bench \\
        .venv/bin/python bench/report_bench.py [--variances 5000000 --days 730 --rounds 20]

It creates the database when it is missing, migrates it, and builds (or reuses, for the same
parameters) one organization's two years of cycle counting with set-based SQL (generate_series,
never the ORM for bulk rows): 2 facilities in different time zones, 10 zones each, 100 bins per
zone, 100 items per bin (200,000 stocked item × locations, 10,000 items with ABC classes); one
cycle run per facility and day, three associates' sessions and a recount session each; count
lines (each item × location about every 29 days), their session tallies, their variances (8 %
off the book, small and large), the variances a recount superseded (2.5 %), proposals with
states by age, signatures with root causes, push batches and parity drifts. The variance rows,
current and superseded, add up to --variances.

The reports' rollup (`VarianceHourlyRollup`, kept by `run_reconcile` in the variances' own
transaction) is filled after the bulk load by `report_rollup_rebuild`, as operations would after
any load that bypasses the pipeline; a reused data set whose rollup is empty is rebuilt too.

Then it measures, --rounds times each after two warming rounds, on warm caches:

  (a) the dashboard tile, computed fresh on every round — the tile's 5-minute cache is bypassed:
      `reports.dashboard_figures` (all its queries, no cache involved), and the whole admin index
      page that shows it with REPORT_TILE_CACHE_SECONDS=0 (Django test client, a manager logged
      in); then, for comparison only, the index page served from that cache;
  (b) the variance report's default view: `GET /inventory/variances` (last 30 local days, all
      facilities, largest |value| first, page 1), the whole page (never cached);
  (c) the per-associate page for the same selection (`/inventory/variances/associates`), which
      reads every session tally behind it (not part of the target);

and prints p50/p95 of each (target p95 < 300 ms for (a) fresh and (b)), the p50/p95 of every
query they send, and the load average around each measurement (the machine may be shared).
Figures go to stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLUG_PREFIX = "report-bench"
FACILITIES = (("RB1", "America/Chicago"), ("RB2", "America/New_York"))
ZONES_PER_FACILITY = 10
LOCATIONS_PER_ZONE = 100
ITEMS_PER_LOCATION = 100
ITEMS = 10_000
ASSOCIATES = 12
PRIME = 1_000_003
OFF_SHARE = 0.08  # lines off the book
RECOUNT_SHARE = 0.025  # superseded variances per current one


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)  # noqa: S603


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


def _scalar(statement: str, params: dict | None = None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()[0]


def _step(label: str, statement: str, params: dict, *, analyze: str = "") -> None:
    """One set-based insert; then ANALYZE the table it filled (inside the build's transaction, so
    the next statements are planned on its real size, not on the empty table's statistics)."""
    started = time.perf_counter()
    rows = _execute(statement, params)
    if analyze:
        _execute(f"ANALYZE {analyze}")
    print(f"    {label}: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)


# --- The data set -------------------------------------------------------------------------------

_ITEMS_SQL = """
INSERT INTO inventory_item (organization_id, sku, name, unit_of_measure, average_cost, abc_class)
SELECT %(org)s, 'RP' || LPAD(g::text, 6, '0'), 'Report item ' || g, 'EA',
       (50 + (g * 2654435761) %% 19951) / 100.0,
       CASE WHEN g %% 10 = 0 THEN 'A' WHEN g %% 10 IN (1, 2) THEN 'B' ELSE 'C' END
FROM generate_series(1, %(items)s) AS g
"""

# Bin n holds items (n × 100 + k) mod ITEMS, k < 100: distinct within a bin, each item in 20 bins.
# On hand 1..500, zero for 5 % (a stocked-out balance is not "stocked").
_BALANCES_SQL = """
WITH it AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n FROM inventory_item WHERE organization_id = %(org)s),
loc AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n FROM inventory_location WHERE organization_id = %(org)s)
INSERT INTO inventory_inventorybalance (
    organization_id, item_id, location_id, on_hand, reserved, available, synced_at, sync_reference
)
SELECT %(org)s, it.id, loc.id, q.on_hand, 0, q.on_hand, NOW(), 'bench'
FROM loc
CROSS JOIN generate_series(0, %(per_location)s - 1) AS k
JOIN it ON it.n = (loc.n * %(per_location)s + k) %% %(items)s
CROSS JOIN LATERAL (
    SELECT CASE WHEN (loc.id * 7919 + it.id * 104729) %% 20 = 0 THEN 0
                ELSE 1 + (loc.id * 31 + it.id * 17) %% 500 END AS on_hand
) q
ORDER BY loc.id, it.id
"""

_RUNS_SQL = """
INSERT INTO counts_countrun (
    organization_id, facility_id, name, kind, state, source, start_date_local, start_time_local,
    due_date_local, due_time_local, starts_at, due_at, rotation_week, created_by_id, created_at, started_at,
    closed_at
)
SELECT %(org)s, f.id, 'Cycle day ' || LPAD(d::text, 4, '0'), 'cycle',
       CASE WHEN d < %(days)s - 3 THEN 'closed' ELSE 'in_review' END, 'rotation',
       t.day::date, '00:00', t.day::date, '23:59', t.day, t.day + INTERVAL '23 hours',
       NULL, NULL, t.day, t.day + INTERVAL '6 hours',
       CASE WHEN d < %(days)s - 3 THEN t.day + INTERVAL '23 hours' END
FROM generate_series(0, %(days)s - 1) AS d
CROSS JOIN LATERAL (SELECT %(base)s::timestamptz + d * INTERVAL '1 day' AS day) t
CROSS JOIN inventory_facility f
WHERE f.organization_id = %(org)s
ORDER BY d, f.id
"""

# Three associates' sessions per run (k = 0, 1, 2) and one recount session (k = 3).
_SESSIONS_SQL = """
WITH u AS (
    SELECT user_id AS id, ROW_NUMBER() OVER (ORDER BY user_id) - 1 AS n
    FROM accounts_membership WHERE organization_id = %(org)s AND role = 'associate'
),
r AS (
    SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n, started_at
    FROM counts_countrun WHERE organization_id = %(org)s
)
INSERT INTO counts_countsession (
    organization_id, run_id, user_id, state, device_id, is_recount, started_at, last_activity_at, submitted_at
)
SELECT %(org)s, r.id, u.id, 'submitted', 'phone-' || u.n, k = 3, r.started_at + k * INTERVAL '1 minute',
       r.started_at + INTERVAL '8 hours', r.started_at + INTERVAL '8 hours'
FROM r
CROSS JOIN generate_series(0, 3) AS k
JOIN u ON u.n = (r.n * 4 + k) %% %(associates)s
ORDER BY r.id, k
"""

# Line n (0 ≤ n < lines) counts balance n mod B on day ⌊n × days / lines⌋, in that day's run of the
# balance's facility; h (a hash of n) decides whether it is off, and by how much. Recounted lines
# (every stride-th, S of them) were first counted 12 over; the recount found the book.
_LINES_SQL = """
WITH b AS (
    SELECT b.id, b.location_id, b.item_id, b.on_hand, loc.facility_id, ROW_NUMBER() OVER (ORDER BY b.id) - 1 AS n
    FROM inventory_inventorybalance b JOIN inventory_location loc ON loc.id = b.location_id
    WHERE b.organization_id = %(org)s
),
r AS (
    SELECT id, facility_id, ROW_NUMBER() OVER (PARTITION BY facility_id ORDER BY id) - 1 AS d
    FROM counts_countrun WHERE organization_id = %(org)s
)
INSERT INTO counts_countline (
    organization_id, run_id, location_id, item_id, counted_quantity, book_quantity, is_extra,
    first_counted_at, last_counted_at
)
SELECT %(org)s, r.id, b.location_id, b.item_id,
       GREATEST(b.on_hand + CASE
           WHEN g.n %% %(stride)s = 7 AND g.n / %(stride)s < %(recounted)s THEN 0
           WHEN h.h >= %(threshold)s THEN 0
           WHEN h.h %% 2 = 0 THEN (1 + (h.h / 4) %% 2) * (CASE WHEN (h.h / 2) %% 2 = 0 THEN -1 ELSE 1 END)
           ELSE (5 + (h.h / 4) %% 36) * (CASE WHEN (h.h / 2) %% 2 = 0 THEN -1 ELSE 1 END)
       END, 0),
       b.on_hand, FALSE, t.at, t.at
FROM generate_series(0, %(lines)s - 1) AS g(n)
CROSS JOIN LATERAL (SELECT (g.n::bigint * 2654435761) %% %(prime)s AS h) h
CROSS JOIN LATERAL (SELECT g.n %% %(balances)s AS bn, (g.n::bigint * %(days)s) / %(lines)s AS d) p
JOIN b ON b.n = p.bn
JOIN r ON r.facility_id = b.facility_id AND r.d = p.d
CROSS JOIN LATERAL (
    SELECT %(base)s::timestamptz + p.d * INTERVAL '1 day' + INTERVAL '17 hours'
           + (g.n %% 10800) * INTERVAL '1 second' AS at
) t
ORDER BY g.n
"""

_RECOUNTED = "(l.id - %(first_line)s) %% %(stride)s = 7 AND (l.id - %(first_line)s) / %(stride)s < %(recounted)s"

# Regular tallies: the session of the bin (location mod 3); a recounted line's figure was 12 over.
_TALLIES_SQL = f"""
WITH s AS (
    SELECT id, run_id, ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY id) - 1 AS k
    FROM counts_countsession WHERE organization_id = %(org)s AND NOT is_recount
)
INSERT INTO counts_sessiontally (organization_id, session_id, run_id, location_id, item_id, quantity, updated_at)
SELECT %(org)s, s.id, l.run_id, l.location_id, l.item_id,
       CASE WHEN {_RECOUNTED} THEN l.book_quantity + 12 ELSE l.counted_quantity END, l.last_counted_at
FROM counts_countline l
JOIN s ON s.run_id = l.run_id AND s.k = l.location_id %% 3
WHERE l.organization_id = %(org)s
ORDER BY l.id
"""  # noqa: S608 - only our own fragments

_RECOUNT_TALLIES_SQL = f"""
INSERT INTO counts_sessiontally (organization_id, session_id, run_id, location_id, item_id, quantity, updated_at)
SELECT %(org)s, s.id, l.run_id, l.location_id, l.item_id, l.counted_quantity, l.last_counted_at + INTERVAL '1 hour'
FROM counts_countline l
JOIN counts_countsession s ON s.run_id = l.run_id AND s.is_recount
WHERE l.organization_id = %(org)s AND {_RECOUNTED}
ORDER BY l.id
"""  # noqa: S608 - only our own fragments

_VARIANCE_COLUMNS = """
    organization_id, run_id, line_id, item_id, location_id, facility_id, counted_quantity, book_at_count,
    book_current, book_moved, variance_units, variance_percent, variance_value, unit_cost, adjustment_units,
    adjustment_value, routing, guardrail_id, guardrail_version, computed_at, superseded_at
"""

# The variances as run_reconcile computes them (keep-the-difference policy, 2.00 % and $100).
_VARIANCES_SQL = f"""
INSERT INTO reconciliation_variance ({_VARIANCE_COLUMNS})
SELECT l.organization_id, l.run_id, l.id, l.item_id, l.location_id, r.facility_id, c.counted, l.book_quantity,
       l.book_quantity, FALSE, c.counted - l.book_quantity,
       CASE WHEN l.book_quantity = 0 THEN NULL
            ELSE ROUND((c.counted - l.book_quantity) * 100.0 / l.book_quantity, 2) END,
       ROUND((c.counted - l.book_quantity) * i.average_cost, 2), i.average_cost, c.counted - l.book_quantity,
       ROUND((c.counted - l.book_quantity) * i.average_cost, 2),
       CASE WHEN c.superseded THEN 'proposal'
            WHEN c.counted = l.book_quantity THEN 'none'
            WHEN l.book_quantity <> 0 AND ABS(c.counted - l.book_quantity) * 100 <= 2.00 * l.book_quantity
                 AND ABS(ROUND((c.counted - l.book_quantity) * i.average_cost, 2)) <= 100 THEN 'auto'
            ELSE 'proposal' END,
       %(guardrail)s, 1,
       l.last_counted_at + INTERVAL '2 hours' - CASE WHEN c.superseded THEN INTERVAL '1 hour' ELSE INTERVAL '0' END,
       CASE WHEN c.superseded THEN l.last_counted_at + INTERVAL '2 hours' END
FROM counts_countline l
JOIN counts_countrun r ON r.id = l.run_id
JOIN inventory_item i ON i.id = l.item_id
CROSS JOIN LATERAL (
    SELECT l.counted_quantity AS counted, FALSE AS superseded
    UNION ALL
    SELECT l.book_quantity + 12, TRUE WHERE {_RECOUNTED}
) c
WHERE l.organization_id = %(org)s
ORDER BY l.id, c.superseded DESC
"""  # noqa: S608 - only our own fragments

# States by age: decided long ago (mostly confirmed, some rejected or failed), open lately.
_PROPOSALS_SQL = """
INSERT INTO approvals_proposedaction (
    organization_id, action_type, risk, state, variance_id, run_id, facility_id, item_id, location_id, delta,
    value_abs, needs_finance, auto_approved, payload, external_id, created_at, decided_at
)
SELECT v.organization_id, 'inventory_adjustment', 3, s.state, v.id, v.run_id, v.facility_id, v.item_id,
       v.location_id, v.adjustment_units, ABS(v.adjustment_value), ABS(v.adjustment_value) > 1000,
       v.routing = 'auto', '{}'::jsonb, 'RB-' || v.id, v.computed_at,
       CASE WHEN s.state IN ('pending', 'awaiting_finance') THEN NULL ELSE v.computed_at + INTERVAL '1 day' END
FROM reconciliation_variance v
CROSS JOIN LATERAL (SELECT (v.id * 40503) %% 100 AS h) h
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN v.superseded_at IS NOT NULL THEN 'superseded'
        WHEN v.routing = 'auto' THEN CASE WHEN v.computed_at < %(now)s - INTERVAL '2 days' THEN 'confirmed'
                                          ELSE 'approved' END
        WHEN v.computed_at < %(now)s - INTERVAL '14 days' THEN
            CASE WHEN h.h < 80 THEN 'confirmed' WHEN h.h < 95 THEN 'rejected' ELSE 'failed' END
        ELSE CASE WHEN h.h < 50 THEN 'pending' WHEN h.h < 70 THEN 'awaiting_finance' ELSE 'confirmed' END
    END AS state
) s
WHERE v.organization_id = %(org)s AND v.routing IN ('auto', 'proposal')
ORDER BY v.id
"""

_APPROVALS_SQL = """
WITH rc AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n FROM reconciliation_rootcause
            WHERE organization_id = %(org)s),
rc_count AS (SELECT COUNT(*) AS n FROM rc)
INSERT INTO approvals_approval (
    organization_id, proposal_id, approver_id, role, decision, reason_code, root_cause_id, note, created_at
)
SELECT p.organization_id, p.id, %(manager)s, 'manager',
       CASE WHEN p.state = 'rejected' THEN 'reject' ELSE 'approve' END,
       CASE WHEN p.state = 'rejected' THEN 'CORRECTION_AFTER_REVIEW' ELSE 'ANNUAL_COUNT_ADJUSTMENT' END,
       rc.id, '', COALESCE(p.decided_at, p.created_at + INTERVAL '1 hour')
FROM approvals_proposedaction p
CROSS JOIN rc_count
JOIN rc ON rc.n = (p.id * 7) %% rc_count.n
WHERE p.organization_id = %(org)s AND NOT p.auto_approved AND p.state NOT IN ('pending', 'superseded')
ORDER BY p.id
"""


def _push_failures_and_drifts(organization, connection, now) -> None:
    """2,000 push batches (5 % rejected, 5 % failed for good) and 400 parity drifts (100 open), through
    the ORM (small tables; the models' defaults fill what the benchmark does not care about)."""
    from adapters.models import BatchState, ParityDrift, PushBatch
    from inventory.models import InventoryBalance

    states = {0: BatchState.REJECTED, 1: BatchState.FAILED}
    PushBatch.objects.bulk_create(
        PushBatch(
            organization=organization,
            connection=connection,
            external_id=f"RB-BATCH-{n}",
            location_external_id=f"L{n % 7}",
            request={},
            line_count=10,
            state=states.get(n % 20, BatchState.ACCEPTED),
            attempts=1,
            failures=8 if n % 20 == 1 else 0,
            created_at=now - timedelta(hours=n),
        )
        for n in range(1, 2001)
    )
    balances = InventoryBalance.objects.filter(organization=organization).order_by("pk")[:400]
    ParityDrift.objects.bulk_create(
        ParityDrift(
            organization=organization,
            connection=connection,
            item_id=balance.item_id,
            location_id=balance.location_id,
            expected_on_hand=balance.on_hand,
            backend_on_hand=balance.on_hand + 1,
            difference=1,
            detected_at=now - timedelta(days=1),
            resolved_at=None if balance.pk % 4 == 0 else now,
        )
        for balance in balances
    )
    print("    push batches and parity drifts: 2,000 + 400 rows", flush=True)


def build(*, variances: int, days: int) -> tuple[int, bool]:
    """The data set for these parameters (reused when complete): (organization id, built)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Organization
    from accounts.roles import Role
    from accounts.services import membership_grant
    from adapters.models import BackendConnection
    from inventory.models import Facility, Location, Zone
    from reconciliation.models import Variance
    from reconciliation.services import guardrail_for, root_causes_ensure

    slug = f"{SLUG_PREFIX}-{variances}-{days}"
    organization = Organization.objects.filter(slug=slug).first()
    if organization is not None:
        if Variance.objects.filter(organization=organization).count() == variances:
            return organization.pk, False
        sys.exit(f"organization {slug} holds an incomplete data set; drop the database and run again")

    balances = len(FACILITIES) * ZONES_PER_FACILITY * LOCATIONS_PER_ZONE * ITEMS_PER_LOCATION
    lines = round(variances / (1 + RECOUNT_SHARE))
    recounted = variances - lines
    now = timezone.now()
    base = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    print(f"building {slug}: {lines:,} count lines + {recounted:,} superseded variances over {days} days")
    # One transaction: an interrupted build leaves nothing behind.
    with transaction.atomic():
        organization = Organization.objects.create(name=f"Report bench {variances:,}", slug=slug)
        for code, zone_name in FACILITIES:
            facility = Facility.objects.create(organization=organization, code=code, name=code, time_zone=zone_name)
            guardrail_for(facility=facility)
            for z in range(ZONES_PER_FACILITY):
                zone = Zone.objects.create(organization=organization, facility=facility, code=f"Z{z:02d}")
                Location.objects.bulk_create(
                    Location(organization=organization, facility=facility, zone=zone,
                             code=f"{code}-Z{z:02d}-{n:03d}", barcode=f"{code}-Z{z:02d}-{n:03d}")
                    for n in range(LOCATIONS_PER_ZONE)
                )  # fmt: skip
        root_causes_ensure(organization=organization)
        users = get_user_model().objects
        manager = users.create_user(username=f"{slug}-manager")
        membership_grant(user=manager, organization=organization, role=Role.MANAGER)
        for n in range(ASSOCIATES):
            membership_grant(user=users.create_user(username=f"{slug}-associate-{n:02d}"), organization=organization,
                             role=Role.ASSOCIATE)  # fmt: skip
        connection = BackendConnection.objects.create(organization=organization, kind="file", name="erp")
        guardrail = guardrail_for(facility=Facility.objects.filter(organization=organization).first())
        params = {
            "org": organization.pk,
            "items": ITEMS,
            "per_location": ITEMS_PER_LOCATION,
            "days": days,
            "base": base,
            "now": now,
            "associates": ASSOCIATES,
            "lines": lines,
            "balances": balances,
            "prime": PRIME,
            "threshold": round(OFF_SHARE * PRIME),
            "stride": lines // max(recounted, 1),
            "recounted": recounted,
            "guardrail": guardrail.pk,
            "manager": manager.pk,
            "connection": connection.pk,
        }
        _execute("ANALYZE inventory_facility, inventory_zone, inventory_location, accounts_membership")
        # Fixture rows, written in bulk without history rows (the reports do not read history).
        _step("items", _ITEMS_SQL, params, analyze="inventory_item")
        _step("balances", _BALANCES_SQL, params, analyze="inventory_inventorybalance")
        _push_failures_and_drifts(organization, connection, now)
        _step("runs", _RUNS_SQL, params, analyze="counts_countrun")
        _step("sessions", _SESSIONS_SQL, params, analyze="counts_countsession")
        _step("count lines", _LINES_SQL, params, analyze="counts_countline")
        params["first_line"] = _scalar("SELECT MIN(id) FROM counts_countline WHERE organization_id = %(org)s", params)
        _step("tallies", _TALLIES_SQL, params, analyze="counts_sessiontally")
        _step("recount tallies", _RECOUNT_TALLIES_SQL, params, analyze="counts_sessiontally")
        _step("variances", _VARIANCES_SQL, params, analyze="reconciliation_variance")
        _step("proposals", _PROPOSALS_SQL, params, analyze="approvals_proposedaction")
        _step("signatures", _APPROVALS_SQL, params, analyze="approvals_approval")
    print(f"    built in {time.perf_counter() - started:.0f} s", flush=True)
    return organization.pk, True


def vacuum() -> None:
    started = time.perf_counter()
    _execute("VACUUM ANALYZE")
    print(f"    VACUUM ANALYZE: {time.perf_counter() - started:.0f} s", flush=True)


# --- Measurements -------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


_MAIN_TABLES = {
    "django_session": "session",
    "auth_user": "user",
    "accounts_membership": "membership",
    "auth_permission": "permissions",
    "auth_group": "permissions",
    "reconciliation_guardrail": "guardrail (tolerance)",
    "inventory_zone": "zones",
    "inventory_facility": "facilities",
    "reconciliation_rootcause": "root causes",
    "inventory_item": "items",
    "approvals_proposedaction": "approvals waiting",
    "adapters_pushbatch": "push failures",
    "adapters_paritydrift": "parity drift",
    "django_admin_log": "admin log (recent actions)",
}


def _label(text: str) -> str:
    """A readable name for one query of the tile or the report."""
    text = " ".join(text.split())
    if text.startswith("WITH report"):
        return "per-associate quality"
    if "stocked_out" in text:
        return "coverage: stocked, and counted in the window (last counts)"
    found = re.search(r'FROM "?(\w+)"?', text)
    table = found.group(1) if found else ""
    if table == "inventory_inventorybalance":
        return "coverage: stocked counted" if "EXISTS" in text else "coverage: stocked"
    if table == "approvals_approval":
        return "by root cause" if "GROUP BY" in text else "signatures of the page (prefetch)"
    if text.startswith("SELECT COUNT(*) FROM (SELECT DISTINCT"):
        return "coverage: stocked counted"
    if table == "reconciliation_counteditemlocation":
        return "coverage: a count after the window's end? (then the variances answer)"
    if table == "reconciliation_variancehourlyrollup":
        return "rollup: by zone × local day" if "zone_id" in text else "rollup: by period"
    if table == "reconciliation_variance" and "GROUP BY" in text and "<=" in text and "SUM(" not in text:
        return "within tolerance (differences only)"
    if table == "reconciliation_variance" and "GROUP BY" in text and " OR " in text:
        return "window edges (not whole hours)"
    if table == "reconciliation_variance":
        if "GROUP BY" in text and "inventory_location" in text:
            return "by zone × local day"
        if "GROUP BY" in text and "LIMIT" in text:
            return "top items"
        if "GROUP BY" in text:
            return "by period"
        if "LIMIT" in text:
            return "page ids (top-N by |value|)"
        if "SUM(" in text:
            return "totals"
        return "page rows"
    return _MAIN_TABLES.get(table, text[:60])


def measure(label: str, action, *, rounds: int, target: bool = True) -> None:
    """Run `action` (warm twice), then `rounds` times: wall time and each query's time."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    for _ in range(min(2, rounds)):
        action()
    totals: list[float] = []
    per_query: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            action()
            totals.append((time.perf_counter() - started) * 1000)
        seen: dict[str, float] = defaultdict(float)
        for query in captured.captured_queries:
            seen[_label(query["sql"])] += float(query["time"]) * 1000
        for name, ms in seen.items():
            per_query[name].append(ms)
    queries = len(captured.captured_queries)
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{label}: p50 {percentile(totals, 0.5):.0f} ms, p95 {percentile(totals, 0.95):.0f} ms"
          f"{' (target p95 < 300 ms)' if target else ''}, {queries} queries, {rounds} rounds; "
          f"load average after: {load}")  # fmt: skip
    for name, values in sorted(per_query.items(), key=lambda entry: -statistics.median(entry[1])):
        print(f"      p50 {percentile(values, 0.5):6.1f} ms  p95 {percentile(values, 0.95):6.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variances", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--associate-rounds", type=int, default=5, help="rounds of (c), a slower page")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark is for the production database).")

    ensure_database(url)
    _manage("migrate", "--noinput", "-v0")
    _django_setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment
    from django.utils import timezone

    from accounts.models import Organization
    from reconciliation import reports
    from reconciliation.models import Variance, VarianceHourlyRollup
    from reconciliation.services import report_rollup_rebuild

    organization_id, built = build(variances=args.variances, days=args.days)
    organization = Organization.objects.get(pk=organization_id)
    if built or not VarianceHourlyRollup.objects.filter(organization=organization).exists():
        started = time.perf_counter()
        rows = report_rollup_rebuild(organization=organization)
        print(f"    rollup: {rows:,} rows by report_rollup_rebuild after the bulk load "
              f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        vacuum()
    window = Variance.objects.filter(organization=organization, superseded_at__isnull=True).filter(
        computed_at__gte=timezone.now() - timedelta(days=reports.DASHBOARD_DAYS)
    )
    print(f"data set: {'built' if built else 'reused'} {Variance.objects.filter(organization=organization).count():,} "
          f"variances ({window.count():,} current in the last 30 days); PostgreSQL "
          f"{connection.pg_version // 10000}, {os.cpu_count()} CPU cores; rollup "
          f"{VarianceHourlyRollup.objects.filter(organization=organization).count():,} rows; "
          f"load average {' / '.join(f'{value:.2f}' for value in os.getloadavg())} (1, 5, 15 min)")  # fmt: skip

    setup_test_environment()  # the test client's host
    # Pages render without collectstatic's manifest (as in the tests); serving is not measured.
    override_settings(
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()
    client = Client()
    client.force_login(get_user_model().objects.get(username=f"{organization.slug}-manager"))

    def tile() -> None:
        reports.dashboard_figures(organization=organization)

    # The admin index computes the tile at most every REPORT_TILE_CACHE_SECONDS; measured here
    # with the cache off (every request computes it), then with it on (the landing page's usual case).
    override_settings(REPORT_TILE_CACHE_SECONDS=0).enable()

    def admin_index() -> None:
        response = client.get("/admin/")
        if response.status_code != 200 or b'id="report-tile"' not in response.content:
            sys.exit(f"GET /admin/ answered {response.status_code} without the tile")

    def variance_page() -> None:
        response = client.get("/inventory/variances")
        if response.status_code != 200 or b'id="report-rows"' not in response.content:
            sys.exit(f"GET /inventory/variances answered {response.status_code} without the rows")

    measure("(a) dashboard tile, fresh (no cache): reports.dashboard_figures", tile, rounds=args.rounds)
    measure("(a) dashboard tile, fresh (cache bypassed, REPORT_TILE_CACHE_SECONDS=0): GET /admin/ (whole page)",
            admin_index, rounds=args.rounds)  # fmt: skip
    override_settings(REPORT_TILE_CACHE_SECONDS=300).enable()
    measure("(a') for comparison only: GET /admin/, tile from its labelled 5-minute cache", admin_index,
            rounds=args.rounds, target=False)  # fmt: skip
    measure("(b) variance report default view: GET /inventory/variances", variance_page, rounds=args.rounds)

    def associates_page() -> None:
        response = client.get("/inventory/variances/associates")
        if response.status_code != 200 or b'id="report-associates"' not in response.content:
            sys.exit(f"GET /inventory/variances/associates answered {response.status_code}")

    # Not under the target (tile and default view); shown so its cost is known.
    measure("(c) per-associate quality, same default filters: GET /inventory/variances/associates", associates_page,
            rounds=args.associate_rounds, target=False)  # fmt: skip


if __name__ == "__main__":
    main()
