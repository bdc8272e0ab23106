"""Capture: storing scans exactly once and deriving tallies and count lines from them.

An event is validated on its own: a malformed event is rejected with its reasons and the rest
of the batch is stored. Stored events are never dropped — unknown barcodes are kept as
unmatched, unrequested items as extra, typed quantities a facility forbids as refused — and
only matched and extra events move the counts. Replaying a batch stores nothing new.

A scanner sends one event per request, so the path keeps to a fixed, small number of queries
whatever the batch size: everything capture needs of the session, its run and its facility's
count rules is read in one query that also takes the session's lock; for a single scan the
insert itself tells a new event from a stored one, and a new event's outcome is known from
classifying it, so only replayed events are read back. A one-scan request's statements are
prepared on the server (config.prepared): they are the same all day, and planning them anew
cost as much as running them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.selectors import organization_for_user
from config.prepared import prepared_cursor
from counts.bulk import adapt, insert_rows
from counts.models import (
    CountEvent,
    CountKind,
    CountRequest,
    CountRun,
    CountSession,
    EventKind,
    EventMode,
    EventStatus,
    FacilityCountSettings,
    SessionState,
)
from inventory.barcodes import is_valid_gs1
from inventory.models import Item, ItemBarcode, Location

MAX_BATCH = 1000
EVENT_FIELDS = [
    "organization_id", "event_id", "session_id", "run_id", "user_id", "device_id", "location_id", "item_id",
    "barcode", "sku", "quantity", "kind", "mode", "status", "refusal_reason", "counted_by", "counted_at",
]  # fmt: skip
EVENT_COLUMNS = [*EVENT_FIELDS, "received_at"]
MAX_QUANTITY = Decimal("99999999999")  # 14 digits with 3 decimals
# "Last activity" is for people watching sessions; a minute's precision spares a write per scan.
ACTIVITY_RESOLUTION = timedelta(minutes=1)
COUNTING_STATUSES = (EventStatus.MATCHED, EventStatus.EXTRA)
# What a device is told about a stored event: status, refusal reason, item SKU and item name.
Outcome = tuple[str, str, str, str]


class SessionNotCapturing(Exception):
    """The session is paused, submitted or voided: nothing can be added to it."""


class SessionNotYours(Exception):
    """Scans go into the scanning associate's own session only."""


@dataclass
class CaptureResult:
    accepted: int = 0
    duplicates: int = 0
    unmatched: int = 0
    extra: int = 0
    refused: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "extra": self.extra,
            "refused": self.refused,
            "rejected": self.rejected,
            "events": self.events,
        }


@dataclass
class _Parsed:
    index: int
    event_id: uuid.UUID
    location_code: str
    barcode: str
    sku: str
    quantity: Decimal
    kind: str
    mode: str
    counted_at: datetime
    counted_by: str


def _parse(index: int, raw: Any, *, allowed_modes: set[str]) -> tuple[_Parsed | None, dict[str, str]]:
    if not isinstance(raw, dict):
        return None, {"non_field_errors": "an event is a JSON object"}
    errors: dict[str, str] = {}
    event_id = None
    try:
        event_id = uuid.UUID(str(raw.get("event_id") or ""))
    except ValueError:
        errors["event_id"] = "required: a UUID made on the device"
    location = raw.get("location")
    if not isinstance(location, str) or not location.strip():
        errors["location"] = "required: the location code or barcode"
    barcode, sku = raw.get("barcode"), raw.get("sku")
    if bool(barcode) == bool(sku) or not isinstance(barcode or sku, str):
        errors["barcode"] = "give exactly one of barcode or sku"
    kind = raw.get("kind", EventKind.ADD)
    if kind not in EventKind.values:
        errors["kind"] = 'must be "add" or "set"'
    mode = raw.get("mode", EventMode.SCAN)
    if mode not in allowed_modes:
        errors["mode"] = f"must be one of: {', '.join(sorted(allowed_modes))}"
    quantity = None
    raw_quantity = raw.get("quantity", 1)
    if isinstance(raw_quantity, bool):
        raw_quantity = None
    try:
        quantity = Decimal(str(raw_quantity))
        if not quantity.is_finite() or quantity.as_tuple().exponent < -3 or abs(quantity) > MAX_QUANTITY:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors["quantity"] = "a number with at most 3 decimals"
        quantity = None
    if quantity is not None and kind == EventKind.ADD and quantity <= 0:
        errors["quantity"] = "an add must be positive (use a set to correct a count)"
    if quantity is not None and kind == EventKind.SET and quantity < 0:
        errors["quantity"] = "a set cannot be negative"
    counted_at = None
    raw_counted_at = raw.get("counted_at")
    try:
        counted_at = parse_datetime(raw_counted_at) if isinstance(raw_counted_at, str) else None
    except ValueError:
        counted_at = None
    if counted_at is None or counted_at.tzinfo is None:
        errors["counted_at"] = "required: an ISO-8601 time with its UTC offset"
    counted_by = raw.get("counted_by") or ""
    if errors:
        return None, errors
    return (
        _Parsed(
            index=index,
            event_id=event_id,
            location_code=location.strip(),
            barcode=(barcode or "").strip(),
            sku=(sku or "").strip(),
            quantity=quantity,
            kind=kind,
            mode=mode,
            counted_at=counted_at,
            counted_by=str(counted_by)[:150],
        ),
        {},
    )


def _barcode_refusal(barcode: str, preferences: _CountRules | None) -> str:
    if not barcode or preferences is None:
        return ""
    if preferences.barcode_format == "gs1" and not is_valid_gs1(barcode):
        return "barcode is not a valid GS1 code (check digit)"
    pattern = preferences.barcode_pattern if preferences.barcode_format == "pattern" else ""
    if pattern and not re.fullmatch(pattern, barcode):
        return "barcode does not match the facility's expected format"
    return ""


def count_events_ingest(
    *,
    session: CountSession | int,
    actor: AbstractBaseUser,
    events: list[Any],
    allowed_modes: frozenset[str] = frozenset({EventMode.SCAN, EventMode.MANUAL}),
    own_session_of: AbstractBaseUser | None = None,
) -> CaptureResult:
    """Store each valid event once (by its event id) and bring tallies and lines up to date.

    Guarantees: a replayed event is counted as a duplicate and changes nothing; every valid
    event is stored, whatever its status; malformed events are listed in `rejected` by index
    with their field errors and nothing of them is stored. Batches of one session are
    serialised by its row lock; batches of different sessions never wait for each other.

    `session` is a session or its id: what capture needs of it is read again under its lock.
    With `own_session_of` (an associate scanning), the session must be theirs: one of another
    organization is `CountSession.DoesNotExist`, another associate's is `SessionNotYours`.
    """
    if not 1 <= len(events) <= MAX_BATCH:
        raise ValueError(f"send between 1 and {MAX_BATCH} events")
    result = CaptureResult()
    parsed: list[_Parsed] = []
    for index, raw in enumerate(events):
        event, errors = _parse(index, raw, allowed_modes=set(allowed_modes))
        if errors:
            result.rejected.append({"index": index, "errors": errors})
        else:
            parsed.append(event)

    session_id = session if isinstance(session, int) else session.pk
    stored_ids: set[uuid.UUID] = set()
    outcomes: dict[uuid.UUID, Outcome] = {}
    one_scan = len(events) == 1
    with transaction.atomic(), prepared_cursor() if one_scan else connection.cursor() as cursor:
        # The session lock serialises batches of one session, so duplicate checks and tally
        # updates never race each other; what can change while counting (pause, submit, a
        # resume on another device) is read under it.
        capturing = _lock_for_capture(session_id, cursor)
        if own_session_of is not None:
            _check_own_session(capturing, own_session_of)
        if capturing.state != SessionState.ACTIVE:
            raise SessionNotCapturing(f"session {session_id} is {SessionState(capturing.state).label.lower()}")
        if parsed:
            stored_ids = _store(capturing, parsed, actor, result, outcomes)
    _describe_events(result, events, parsed, stored_ids, outcomes)
    return result


@dataclass(frozen=True)
class _CountRules:
    """The facility's count settings that decide an event's status."""

    require_scan: bool
    barcode_format: str
    barcode_pattern: str


@dataclass(frozen=True)
class _Capturing:
    """What capture needs of a session, its run and its facility, read under the session's lock."""

    session_id: int
    organization_id: int
    user_id: int
    state: str
    device_id: str
    activity_stale: bool  # last activity older than ACTIVITY_RESOLUTION (or none yet)
    run_id: int
    run_kind: str
    facility_id: int
    rules: _CountRules | None  # None: the facility keeps the default settings
    cursor: CursorWrapper  # every statement of the capture; a prepared one for a single scan


def _check_own_session(capturing: _Capturing, user: AbstractBaseUser) -> None:
    organization = organization_for_user(user)
    if organization is None or capturing.organization_id != organization.pk:
        raise CountSession.DoesNotExist(f"no session {capturing.session_id}")
    if capturing.user_id != user.pk:
        raise SessionNotYours("Scans go into your own session.")


def _lock_for_capture(session_id: int, cursor: CursorWrapper) -> _Capturing:
    """Lock the session's row and read, in the same query, what capturing into it needs.

    Plain SQL and plain values: a scanner sends one scan per request, and composing the query
    and building session, run, facility and settings objects cost more than running it.
    """
    lock = " FOR UPDATE OF s" if connection.features.has_select_for_update_of else ""
    sql = (
        "SELECT s.organization_id, s.user_id, s.state, s.device_id, "  # noqa: S608 - names are ours
        "       CASE WHEN s.last_activity_at IS NULL OR s.last_activity_at < %s THEN 1 ELSE 0 END, "
        "       s.run_id, r.kind, r.facility_id, c.id, c.require_scan, c.barcode_format, c.barcode_pattern "
        f"FROM {CountSession._meta.db_table} s "
        f"JOIN {CountRun._meta.db_table} r ON r.id = s.run_id "
        f"LEFT JOIN {FacilityCountSettings._meta.db_table} c ON c.facility_id = r.facility_id "
        f"WHERE s.id = %s{lock}"
    )
    cursor.execute(sql, [adapt(timezone.now() - ACTIVITY_RESOLUTION), session_id])
    row = cursor.fetchone()
    if row is None:
        raise CountSession.DoesNotExist(f"no session {session_id}")
    organization_id, user_id, state, device_id, stale, run_id, kind, facility_id, rules_id, *rules = row
    return _Capturing(
        session_id=session_id,
        organization_id=organization_id,
        user_id=user_id,
        state=state,
        device_id=device_id,
        activity_stale=bool(stale),
        run_id=run_id,
        run_kind=kind,
        facility_id=facility_id,
        rules=None
        if rules_id is None
        else _CountRules(require_scan=bool(rules[0]), barcode_format=rules[1], barcode_pattern=rules[2]),
        cursor=cursor,
    )


def _stored_outcomes(event_ids: list[uuid.UUID]) -> dict[uuid.UUID, Outcome]:
    """The outcome of each of these events that is already stored, by event id."""
    if not event_ids:
        return {}
    stored = (
        CountEvent.objects.filter(event_id__in=event_ids)
        .order_by()
        .values_list("event_id", "status", "refusal_reason", "item__sku", "item__name")
    )
    return {event_id: (status, reason, sku or "", name or "") for event_id, status, reason, sku, name in stored}


def _store(
    capturing: _Capturing,
    parsed: list[_Parsed],
    actor: AbstractBaseUser,
    result: CaptureResult,
    outcomes: dict[uuid.UUID, Outcome],
) -> set[uuid.UUID]:
    """Store the new events of a batch and update the counts; returns the ids stored now.

    Fills `outcomes` with the outcome of every event of the batch that is stored, now or before.
    """
    locations = _resolve_locations(capturing, {event.location_code for event in parsed})
    if len(parsed) > 1:
        # A device that lost a response sends the whole batch again: finding its stored events
        # first spares classifying and inserting them. A single scan is nearly always new, and
        # the insert alone tells.
        outcomes.update(_stored_outcomes([event.event_id for event in parsed]))
    candidates: list[_Parsed] = []
    seen = set(outcomes)
    for event in parsed:
        if event.location_code not in locations:
            result.rejected.append(
                {"index": event.index, "errors": {"location": f"no location {event.location_code!r} here"}}
            )
        elif event.event_id in seen:
            result.duplicates += 1
        else:
            seen.add(event.event_id)
            candidates.append(event)
    result.rejected.sort(key=lambda rejection: rejection["index"])
    if not candidates:
        return set()

    rows, items = _classify(capturing, candidates, locations, actor)
    received_at = timezone.now()
    # ON CONFLICT DO NOTHING … RETURNING names exactly the rows stored now: an event stored
    # before (a single scan sent again, or the same event from another session committed a
    # moment ago) comes back as a duplicate, not a count.
    stored_ids = {
        uuid.UUID(str(value))
        for value in insert_rows(
            CountEvent,
            EVENT_COLUMNS,
            ([getattr(row, column) for column in EVENT_FIELDS] + [received_at] for row in rows),
            conflict_columns=["event_id"],
            returning="event_id",
            cursor=capturing.cursor,
        )
    }
    stored = [row for row in rows if row.event_id in stored_ids]
    for row in stored:
        outcomes[row.event_id] = (row.status, row.refusal_reason, *items.get(row.item_id, ("", "")))
    # Events stored before report what was stored then.
    outcomes.update(_stored_outcomes([row.event_id for row in rows if row.event_id not in stored_ids]))
    result.duplicates += len(rows) - len(stored)
    result.accepted = len(stored)
    if not stored:
        return stored_ids
    for row in stored:
        if row.status == EventStatus.UNMATCHED:
            result.unmatched += 1
        elif row.status == EventStatus.EXTRA:
            result.extra += 1
        elif row.status == EventStatus.REFUSED:
            result.refused += 1

    keys = {(row.location_id, row.item_id) for row in stored if row.status in COUNTING_STATUSES}
    if keys:
        tallies_rebuild(
            session_id=capturing.session_id,
            organization_id=capturing.organization_id,
            run_id=capturing.run_id,
            keys=keys,
            now=received_at,
            cursor=capturing.cursor,
        )
        lines_rebuild(
            run_id=capturing.run_id,
            organization_id=capturing.organization_id,
            directed=capturing.run_kind == CountKind.DIRECTED,
            keys=keys,
            now=received_at,
            cursor=capturing.cursor,
        )
    if capturing.activity_stale:
        capturing.cursor.execute(
            f"UPDATE {CountSession._meta.db_table} SET last_activity_at = %s WHERE id = %s",  # noqa: S608
            [adapt(received_at), capturing.session_id],
        )
    return stored_ids


def _describe_events(
    result: CaptureResult,
    events: list[Any],
    parsed: list[_Parsed],
    stored_ids: set[uuid.UUID],
    known: dict[uuid.UUID, Outcome],
) -> None:
    """One outcome per event sent, in order, so a device can label every scan it queued.

    A replayed event reports the status it was stored with the first time, marked duplicate.
    """
    rejected = {rejection["index"]: rejection["errors"] for rejection in result.rejected}
    by_index = {event.index: event for event in parsed}
    seen: set[uuid.UUID] = set()
    for index, raw in enumerate(events):
        event = by_index.get(index)
        if index in rejected or event is None or event.event_id not in known:
            raw_id = raw.get("event_id") if isinstance(raw, dict) else None
            result.events.append(
                {"index": index, "event_id": raw_id, "status": "rejected", "errors": rejected.get(index, {})}
            )
            continue
        status, reason, sku, name = known[event.event_id]
        result.events.append(
            {
                "index": index,
                "event_id": str(event.event_id),
                "status": status,
                "duplicate": event.event_id not in stored_ids or event.event_id in seen,
                "reason": reason,
                "item": sku,
                "item_name": name,
            }
        )
        seen.add(event.event_id)


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def _resolve_locations(capturing: _Capturing, codes: set[str]) -> dict[str, int]:
    """Location id by code or by its barcode (a scanned bin label)."""
    wanted = sorted(codes)
    sql = (
        f"SELECT id, code, barcode FROM {Location._meta.db_table} "  # noqa: S608 - names are ours
        f"WHERE facility_id = %s AND (code IN ({_placeholders(wanted)}) OR barcode IN ({_placeholders(wanted)}))"
    )
    by_key: dict[str, int] = {}
    cursor = capturing.cursor
    cursor.execute(sql, [capturing.facility_id, *wanted, *wanted])
    for location_id, code, barcode in cursor.fetchall():
        by_key[barcode] = location_id
        by_key[code] = location_id
    return by_key


def _items_by_barcode(capturing: _Capturing, barcodes: set[str]) -> list[tuple[str, int, str, str]]:
    """(barcode, item id, SKU, name) of each of these barcodes the organization knows."""
    wanted = sorted(barcodes)
    sql = (
        f"SELECT b.value, b.item_id, i.sku, i.name FROM {ItemBarcode._meta.db_table} b "  # noqa: S608
        f"JOIN {Item._meta.db_table} i ON i.id = b.item_id "
        f"WHERE b.organization_id = %s AND b.value IN ({_placeholders(wanted)})"
    )
    capturing.cursor.execute(sql, [capturing.organization_id, *wanted])
    return capturing.cursor.fetchall()


def _items_by_sku(capturing: _Capturing, skus: set[str]) -> list[tuple[str, int, str]]:
    """(SKU, item id, name) of each of these SKUs the organization knows."""
    wanted = sorted(skus)
    sql = (
        f"SELECT sku, id, name FROM {Item._meta.db_table} "  # noqa: S608 - names are ours
        f"WHERE organization_id = %s AND sku IN ({_placeholders(wanted)})"
    )
    capturing.cursor.execute(sql, [capturing.organization_id, *wanted])
    return capturing.cursor.fetchall()


def _run_rows(capturing: _Capturing, sql: str) -> list[tuple]:
    capturing.cursor.execute(sql, [capturing.run_id])
    return capturing.cursor.fetchall()


def _classify(
    capturing: _Capturing, events: list[_Parsed], locations: dict[str, int], actor: AbstractBaseUser
) -> tuple[list[CountEvent], dict[int, tuple[str, str]]]:
    """The event rows to store, and the SKU and name of each item they matched, by item id."""
    organization_id, preferences = capturing.organization_id, capturing.rules
    barcodes = {event.barcode for event in events if event.barcode}
    skus = {event.sku for event in events if event.sku}
    item_by_barcode: dict[str, int] = {}
    item_by_sku: dict[str, int] = {}
    items: dict[int, tuple[str, str]] = {}
    if barcodes:
        for value, item_id, sku, name in _items_by_barcode(capturing, barcodes):
            item_by_barcode[value] = item_id
            items[item_id] = (sku, name)
    if skus:
        for sku, item_id, name in _items_by_sku(capturing, skus):
            item_by_sku[sku] = item_id
            items[item_id] = (sku, name)
    requested: set[tuple[int, int]] | None = None
    if capturing.run_kind == CountKind.DIRECTED:
        table = CountRequest._meta.db_table
        requested = set(_run_rows(capturing, f"SELECT location_id, item_id FROM {table} WHERE run_id = %s"))  # noqa: S608
    scoped_location_ids: set[int] | None = None
    if capturing.run_kind == CountKind.CYCLE:
        table = CountRun.locations.through._meta.db_table
        in_scope = _run_rows(capturing, f"SELECT location_id FROM {table} WHERE countrun_id = %s")  # noqa: S608
        scoped_location_ids = {location_id for (location_id,) in in_scope} or None

    rows = []
    for event in events:
        location_id = locations[event.location_code]
        item_id = item_by_barcode.get(event.barcode) if event.barcode else item_by_sku.get(event.sku)
        status, refusal = EventStatus.MATCHED, ""
        if event.mode == EventMode.MANUAL and preferences is not None and preferences.require_scan:
            status, refusal = EventStatus.REFUSED, "this facility requires scanning; typed quantities are refused"
        elif refusal := _barcode_refusal(event.barcode, preferences):
            status = EventStatus.REFUSED
        elif item_id is None:
            status = EventStatus.UNMATCHED
        elif requested is not None and (location_id, item_id) not in requested:
            if event.mode == EventMode.MANUAL:
                status, refusal = EventStatus.REFUSED, "items that were not requested can't be added by hand"
            else:
                status = EventStatus.EXTRA
        elif scoped_location_ids is not None and location_id not in scoped_location_ids:
            status = EventStatus.EXTRA
        rows.append(
            CountEvent(
                organization_id=organization_id,
                event_id=event.event_id,
                session_id=capturing.session_id,
                run_id=capturing.run_id,
                user_id=capturing.user_id,
                device_id=capturing.device_id,
                location_id=location_id,
                item_id=item_id,
                barcode=event.barcode,
                sku=event.sku,
                quantity=event.quantity,
                kind=event.kind,
                mode=event.mode,
                status=status,
                refusal_reason=refusal,
                counted_by=event.counted_by,
                counted_at=event.counted_at,
            )
        )
    return rows, items


def _touched_keys_sql(keys: set[tuple[int, int]]) -> tuple[str, list[int]]:
    """A VALUES list of (location_id, item_id) pairs usable as a CTE on PostgreSQL and SQLite."""
    ordered = sorted(keys)
    rows = ", ".join(["(%s, %s)"] * len(ordered))
    return f"touched (location_id, item_id) AS (VALUES {rows})", [value for key in ordered for value in key]


_COUNTING_STATUS_SQL = "('" + "', '".join(COUNTING_STATUSES) + "')"

_TALLIES_SQL = """
WITH {touched},
replay AS (
    SELECT e.location_id, e.item_id, e.kind, e.quantity,
           SUM(CASE WHEN e.kind = 'set' THEN 1 ELSE 0 END) OVER (
               PARTITION BY e.location_id, e.item_id
               ORDER BY e.counted_at DESC, e.id DESC
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS sets_from_newest
    FROM counts_countevent e
    JOIN touched t ON t.location_id = e.location_id AND t.item_id = e.item_id
    WHERE e.session_id = %s AND e.status IN {statuses}
)
INSERT INTO counts_sessiontally (organization_id, session_id, run_id, location_id, item_id, quantity, updated_at)
SELECT %s, %s, %s, location_id, item_id, SUM(quantity), %s
FROM replay
WHERE sets_from_newest = 0 OR (sets_from_newest = 1 AND kind = 'set')
GROUP BY location_id, item_id
ON CONFLICT (session_id, location_id, item_id) DO UPDATE
SET quantity = excluded.quantity, updated_at = excluded.updated_at
"""


def tallies_rebuild(
    *,
    session_id: int,
    organization_id: int,
    run_id: int,
    keys: set[tuple[int, int]],
    now: datetime,
    cursor: CursorWrapper | None = None,
) -> None:
    """Recompute the session's tally for each item × location from its stored events, in SQL.

    Events are replayed newest first: the tally is the latest `set` plus every `add` after it
    (by counted-at time, then arrival), so an offline device's older scans arriving late land
    where they belong.
    """
    touched, touched_params = _touched_keys_sql(keys)
    sql = _TALLIES_SQL.format(touched=touched, statuses=_COUNTING_STATUS_SQL)
    params = [*touched_params, session_id, organization_id, session_id, run_id, adapt(now)]
    _execute(cursor, sql, params)


_LINES_SQL = """
WITH {touched},
tallies AS (
    SELECT t.location_id, t.item_id, t.quantity,
           CASE WHEN s.is_recount THEN 1 ELSE 0 END AS recount,
           ROW_NUMBER() OVER (
               PARTITION BY t.location_id, t.item_id
               ORDER BY CASE WHEN s.is_recount THEN 1 ELSE 0 END DESC, s.started_at DESC, s.id DESC
           ) AS latest_first
    FROM counts_sessiontally t
    JOIN touched k ON k.location_id = t.location_id AND k.item_id = t.item_id
    JOIN counts_countsession s ON s.id = t.session_id
    WHERE t.run_id = %s AND s.state <> 'voided'
),
counted AS (
    SELECT location_id, item_id,
           CASE WHEN MAX(recount) = 1 THEN SUM(CASE WHEN latest_first = 1 THEN quantity ELSE 0 END)
                ELSE SUM(quantity) END AS quantity
    FROM tallies
    GROUP BY location_id, item_id
)
INSERT INTO counts_countline (
    organization_id, run_id, location_id, item_id, counted_quantity, book_quantity, is_extra,
    first_counted_at, last_counted_at
)
SELECT %s, %s, c.location_id, c.item_id, c.quantity, COALESCE(b.on_hand, 0),
       CASE WHEN %s AND NOT EXISTS (
           SELECT 1 FROM counts_countrequest r
           WHERE r.run_id = %s AND r.location_id = c.location_id AND r.item_id = c.item_id
       ) THEN %s ELSE %s END,
       %s, %s
FROM counted c
LEFT JOIN inventory_inventorybalance b ON b.location_id = c.location_id AND b.item_id = c.item_id
WHERE TRUE
ON CONFLICT (run_id, location_id, item_id) DO UPDATE
SET counted_quantity = excluded.counted_quantity, last_counted_at = excluded.last_counted_at,
    is_extra = excluded.is_extra
"""


def lines_rebuild(
    *,
    run_id: int,
    organization_id: int,
    directed: bool,
    keys: set[tuple[int, int]],
    now: datetime,
    cursor: CursorWrapper | None = None,
) -> None:
    """Bring the run's count lines for `keys` up to date with the sessions' tallies, in SQL.

    Counted = the latest recount session's tally when one exists, else the sum over sessions
    (several associates may share a bin). The book quantity and first-count time are set when
    a line is created — the mirror's on hand at that moment — and never touched again.
    """
    touched, touched_params = _touched_keys_sql(keys)
    moment = adapt(now)
    params = [
        *touched_params,
        run_id,
        organization_id,
        run_id,
        directed,
        run_id,
        True,
        False,
        moment,
        moment,
    ]
    _execute(cursor, _LINES_SQL.format(touched=touched), params)


def _execute(cursor: CursorWrapper | None, sql: str, params: list[Any]) -> None:
    if cursor is not None:
        cursor.execute(sql, params)
        return
    with connection.cursor() as own:
        own.execute(sql, params)
