"""Reads for reviewing a run before posting, and the recount watchlist.

Review decisions live where the pipeline already keeps facts, so no table of their own is
needed: an accepted zero and a matched barcode are count events (with deterministic ids, see
`accept_zero_event_id` and `match_event_id`), an extra's inclusion is its line's `is_extra`
flag, and every decision has its row in the reason log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    CharField,
    DecimalField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, Coalesce
from django.utils.dateparse import parse_datetime

from accounts.models import Organization
from audit.models import AuditLog
from counts.models import (
    OPEN_RUN_STATES,
    CountEvent,
    CountKind,
    CountLine,
    CountRequest,
    CountRun,
    EventStatus,
    SessionState,
)
from counts.selectors import run_scope_balances
from inventory.models import QUANTITY, InventoryBalance, Item, Location
from reconciliation.models import Guardrail, Variance

REVIEW_LIST_LIMIT = 200
REVIEW_NAMESPACE = uuid.UUID("0c9a3a52-5f0e-4a7d-9a43-5d1f6c0b7e21")
LINE_LABEL = CountLine._meta.label_lower
EXTRA_INCLUDED = "extra_included"
EXTRA_DISCARDED = "extra_discarded"
EXTRA_DECISION_TAGS = (EXTRA_INCLUDED, EXTRA_DISCARDED)


def accept_zero_event_id(*, run_id: int, location_id: int, item_id: int) -> uuid.UUID:
    """The id of the `set 0` event that accepts zero for an uncounted item: the same for every
    attempt, so a repeated request stores nothing new."""
    return uuid.uuid5(REVIEW_NAMESPACE, f"{run_id}:{location_id}:{item_id}:accept-zero")


def match_event_id(original: uuid.UUID) -> uuid.UUID:
    """The id of the event that re-reads an unmatched scan as the item a manager chose."""
    return uuid.uuid5(original, "match")


# --- Uncounted -------------------------------------------------------------------------------


def run_uncounted(*, run: CountRun) -> QuerySet:
    """What the run had to count and has no line for, as dict rows in a stable order.

    Hard and cycle runs: the stocked balances in scope; directed runs: the requests. One query
    (NOT EXISTS against the run's lines); `follow_up_run` names an open directed run that already
    asks for the item × location, if any.
    """
    counted = CountLine.objects.filter(run_id=run.pk, location_id=OuterRef("location_id"), item_id=OuterRef("item_id"))
    follow_up = (
        CountRequest.objects.filter(
            item_id=OuterRef("item_id"),
            location_id=OuterRef("location_id"),
            run__kind=CountKind.DIRECTED,
            run__state__in=OPEN_RUN_STATES,
        )
        .exclude(run_id=run.pk)
        .order_by("run_id")
        .values("run_id")[:1]
    )
    if run.kind == CountKind.DIRECTED:
        on_hand = InventoryBalance.objects.filter(
            item_id=OuterRef("item_id"), location_id=OuterRef("location_id")
        ).values("on_hand")[:1]
        rows = CountRequest.objects.filter(run_id=run.pk).annotate(
            book=Coalesce(Subquery(on_hand), Value(Decimal("0")), output_field=DecimalField(**QUANTITY))
        )
        request_fields: tuple[str, ...] = ("reason", "signal_count", "expected")
    else:
        rows = run_scope_balances(run=run).annotate(book=F("on_hand"))
        request_fields = ()
    return (
        rows.filter(~Exists(counted))
        .annotate(follow_up_run=Subquery(follow_up))
        .order_by("location__code", "item__sku", "pk")
        .values(
            "location_id",
            "item_id",
            "book",
            "follow_up_run",
            *request_fields,
            item_sku=F("item__sku"),
            item_name=F("item__name"),
            location_code=F("location__code"),
        )
    )


def run_uncounted_among(*, run: CountRun, keys: set[tuple[int, int]] | None) -> list[dict[str, Any]]:
    """The rows of `run_uncounted` for `keys` ((location id, item id) pairs), or all of them."""
    rows = run_uncounted(run=run)
    if keys is None:
        return list(rows)
    if not keys:
        return []
    rows = rows.filter(location_id__in={key[0] for key in keys}, item_id__in={key[1] for key in keys})
    return [row for row in rows if (row["location_id"], row["item_id"]) in keys]


@dataclass(frozen=True)
class ResolvedKeys:
    keys: set[tuple[int, int]]
    errors: dict[int, dict[str, str]]


def item_locations_resolve(*, run: CountRun, pairs: list[tuple[str, str]]) -> ResolvedKeys:
    """(SKU, location code) pairs → (location id, item id) keys in the run's organization and
    facility; unknown ones are reported by index. Two queries, whatever the number of pairs."""
    skus = {sku for sku, _ in pairs}
    codes = {code for _, code in pairs}
    item_ids = dict(Item.objects.filter(organization_id=run.organization_id, sku__in=skus).values_list("sku", "pk"))
    location_ids = dict(Location.objects.filter(facility_id=run.facility_id, code__in=codes).values_list("code", "pk"))
    keys: set[tuple[int, int]] = set()
    errors: dict[int, dict[str, str]] = {}
    for index, (sku, code) in enumerate(pairs):
        problems = {}
        if sku not in item_ids:
            problems["item"] = f"no item with SKU {sku!r}"
        if code not in location_ids:
            problems["location"] = f"no location {code!r} in this run's facility"
        if problems:
            errors[index] = problems
        else:
            keys.add((location_ids[code], item_ids[sku]))
    return ResolvedKeys(keys=keys, errors=errors)


# --- Extras ----------------------------------------------------------------------------------


def _decisions_on_lines(organization_id: int, line_ids: Iterable[int]) -> dict[int, AuditLog]:
    rows = (
        AuditLog.objects.filter(
            organization_id=organization_id,
            tag__in=EXTRA_DECISION_TAGS,
            object_type=LINE_LABEL,
            object_id__in=[str(pk) for pk in line_ids],
        )
        .select_related("actor")
        .order_by("created_at", "pk")
    )
    return {int(row.object_id): row for row in rows}


def extra_decision(*, line: CountLine) -> AuditLog | None:
    """The include/discard decision already taken on an extra line, if any."""
    return _decisions_on_lines(line.organization_id, [line.pk]).get(line.pk)


def run_extras(*, run: CountRun) -> list[CountLine]:
    """A directed run's extra lines — undecided, discarded, or included since — each with
    `decision` (its reason-log row or None) and its current variance id and routing. Two queries."""
    included = AuditLog.objects.filter(
        tag=EXTRA_INCLUDED, object_type=LINE_LABEL, object_id=Cast(OuterRef("pk"), output_field=CharField())
    )
    current = Variance.objects.filter(line_id=OuterRef("pk"), superseded_at__isnull=True)
    lines = list(
        CountLine.objects.filter(run_id=run.pk)
        .filter(Q(is_extra=True) | Exists(included))
        .select_related("item", "location")
        .annotate(
            variance_id=Subquery(current.values("pk")[:1]),
            variance_routing=Subquery(current.values("routing")[:1]),
        )
        .order_by("location__code", "item__sku")
    )
    decisions = _decisions_on_lines(run.organization_id, [line.pk for line in lines])
    for line in lines:
        line.decision = decisions.get(line.pk)
    return lines


# --- Unmatched barcodes ----------------------------------------------------------------------


def run_unmatched(*, run: CountRun, limit: int = REVIEW_LIST_LIMIT) -> list[CountEvent]:
    """The run's unmatched scans (voided sessions aside), oldest first, each with `match`: the
    event that re-read it as an item, or None while unresolved. Two queries."""
    events = list(
        CountEvent.objects.filter(run_id=run.pk, status=EventStatus.UNMATCHED)
        .exclude(session__state=SessionState.VOIDED)
        .select_related("location", "user")
        .order_by("counted_at", "pk")[:limit]
    )
    matches = matches_of(events)
    for event in events:
        event.match = matches.get(event.event_id)
    return events


def matches_of(events: Iterable[CountEvent]) -> dict[uuid.UUID, CountEvent]:
    """Original event id → the event that matched it, found by the derived ids in one query."""
    derived = {match_event_id(event.event_id): event.event_id for event in events}
    if not derived:
        return {}
    found = CountEvent.objects.filter(event_id__in=list(derived)).select_related("item", "user")
    return {derived[match.event_id]: match for match in found}


def run_unmatched_count(*, run: CountRun) -> int:
    return (
        CountEvent.objects.filter(run_id=run.pk, status=EventStatus.UNMATCHED)
        .exclude(session__state=SessionState.VOIDED)
        .count()
    )


# --- Watchlist -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchlistEntry:
    item_id: int
    location_id: int
    facility_id: int
    item_sku: str
    item_name: str
    location_code: str
    facility_code: str
    hits: int
    counts: int
    hits_needed: int
    window: int
    last_computed_at: datetime
    directed_run: int | None


# The last `window` current variances of each item × location (ROW_NUMBER, newest first), judged
# against the guardrail of the location's facility (its override, else the organization's
# default, else the model defaults). Exceeding tolerance = routed to a person or to a recount.
_WATCHLIST_SQL = """
WITH ranked AS (
    SELECT v.item_id, v.location_id, v.facility_id, v.routing, v.computed_at,
           ROW_NUMBER() OVER (
               PARTITION BY v.item_id, v.location_id ORDER BY v.computed_at DESC, v.id DESC
           ) AS recency
    FROM reconciliation_variance v
    WHERE v.organization_id = %(organization)s AND v.superseded_at IS NULL
),
rules AS (
    SELECT f.id AS facility_id,
           COALESCE(own.watchlist_hits, dflt.watchlist_hits, %(default_hits)s) AS hits_needed,
           COALESCE(own.watchlist_window, dflt.watchlist_window, %(default_window)s) AS window_size
    FROM inventory_facility f
    LEFT JOIN reconciliation_guardrail own ON own.facility_id = f.id
    LEFT JOIN reconciliation_guardrail dflt ON dflt.organization_id = f.organization_id AND dflt.facility_id IS NULL
    WHERE f.organization_id = %(organization)s
),
flagged AS (
    SELECT r.item_id, r.location_id, r.facility_id, rules.hits_needed, rules.window_size,
           COUNT(*) AS counts,
           SUM(CASE WHEN r.routing IN ('proposal', 'recount') THEN 1 ELSE 0 END) AS hits,
           MAX(r.computed_at) AS last_computed_at
    FROM ranked r
    JOIN rules ON rules.facility_id = r.facility_id
    WHERE r.recency <= rules.window_size
    GROUP BY r.item_id, r.location_id, r.facility_id, rules.hits_needed, rules.window_size
    HAVING SUM(CASE WHEN r.routing IN ('proposal', 'recount') THEN 1 ELSE 0 END) >= rules.hits_needed
)
SELECT fl.item_id, fl.location_id, fl.facility_id, i.sku, i.name, loc.code, f.code,
       fl.hits, fl.counts, fl.hits_needed, fl.window_size, fl.last_computed_at,
       (SELECT MIN(rq.run_id) FROM counts_countrequest rq
        JOIN counts_countrun rr ON rr.id = rq.run_id
        WHERE rq.item_id = fl.item_id AND rq.location_id = fl.location_id
          AND rr.kind = 'directed' AND rr.state IN {open_states}) AS directed_run
FROM flagged fl
JOIN inventory_item i ON i.id = fl.item_id
JOIN inventory_location loc ON loc.id = fl.location_id
JOIN inventory_facility f ON f.id = fl.facility_id
WHERE %(run)s IS NULL OR EXISTS (
    SELECT 1 FROM reconciliation_variance rv
    WHERE rv.run_id = %(run)s AND rv.item_id = fl.item_id AND rv.location_id = fl.location_id
      AND rv.superseded_at IS NULL
)
ORDER BY f.code, loc.code, i.sku
""".format(open_states="(" + ", ".join(f"'{state}'" for state in OPEN_RUN_STATES) + ")")  # noqa: S608 - only our own constants are interpolated


def _aware(value: datetime | str) -> datetime:
    # SQLite hands aggregated datetimes back as text in UTC.
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def watchlist_list(*, organization: Organization | None, run: CountRun | None = None) -> list[WatchlistEntry]:
    """Item × locations whose variance exceeded tolerance (routed to a proposal or a recount) in
    at least `watchlist_hits` of their last `watchlist_window` current variances, across runs.

    Computed, never stored: one query (window function, portable to SQLite and PostgreSQL).
    With `run`, only the item × locations that run has a current variance for.
    """
    if organization is None:
        return []
    params = {
        "organization": organization.pk,
        "default_hits": Guardrail._meta.get_field("watchlist_hits").default,
        "default_window": Guardrail._meta.get_field("watchlist_window").default,
        "run": run.pk if run is not None else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(_WATCHLIST_SQL, params)
        rows = cursor.fetchall()
    return [
        WatchlistEntry(
            item_id=item_id,
            location_id=location_id,
            facility_id=facility_id,
            item_sku=sku,
            item_name=name,
            location_code=location_code,
            facility_code=facility_code,
            hits=int(hits),
            counts=int(counts),
            hits_needed=int(hits_needed),
            window=int(window),
            last_computed_at=_aware(last),
            directed_run=directed_run,
        )
        for (
            item_id, location_id, facility_id, sku, name, location_code, facility_code,
            hits, counts, hits_needed, window, last, directed_run,
        ) in rows
    ]  # fmt: skip
