"""On-hand files for the file backend: a shop without an API syncs by uploading a CSV.

The file (a NetSuite saved-search export, say) lists item, location, on hand, and optionally
reserved and unit cost. It is staged like every import (counts.services.imports): the whole
file is parsed and every row validated against the organization's data, one query per kind of
identifier; problems are reported as (row, column, message), rows counted from 1 at the first
data row. Only a valid file is applied, and applying is the connection's normal sync
(adapters.services.backend_sync) reading the file through the file backend — so balances, costs
and parity behave exactly as for an API, in one transaction.

A file names known items (SKU or item barcode) and known locations (code or location barcode)
only: it never creates either. The file backend knows a location by its code, as in the
adjustment files it exports, so a location whose code two facilities share cannot be named.
What a file leaves out: an item × location pair missing from it is zero when the file names both
that item and that location elsewhere; items or locations the file never names keep their
balances (list them with 0 to zero them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Organization
from adapters.file.backend import OnHandRow, onhand_rows_applying
from adapters.file.models import OnHandColumnMapping, OnHandSnapshot, SnapshotState
from adapters.models import BackendConnection, BackendKind
from adapters.services.sync import backend_sync
from audit.services import audit_log_write

# The staged-import conventions are the counts imports' own: same report shape, same decoding
# and header rules, same item resolution (SKU, then barcode).
from counts.services.imports import (
    MAX_IMPORT_BYTES,
    MAX_REPORTED_ERRORS,
    ROW_NUMBERING,
    ImportField,
    RowError,
    _decode,
    _delimiter,
    _fold,
    _item_error,
    _resolve_items,
)
from inventory.models import QUANTITY, InventoryBalance, Item, Location

MAX_FILE_BYTES = MAX_IMPORT_BYTES
# An on-hand export has a row per item × location: larger than a count plan, but bounded.
MAX_ROWS = 100_000
COST_DECIMALS = Item._meta.get_field("average_cost").decimal_places
MAX_COST = Decimal(10) ** (Item._meta.get_field("average_cost").max_digits - COST_DECIMALS) - 1
MAX_QUANTITY = Decimal(10) ** (QUANTITY["max_digits"] - QUANTITY["decimal_places"]) - 1
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")

ONHAND_FIELDS: tuple[ImportField, ...] = (
    ImportField("item", "item", True, "SKU or any barcode of the item", "EXAMPLE-SKU"),
    ImportField("location", "location", True, "location code or location barcode", "A-01-01"),
    ImportField("on_hand", "on hand", True, "quantity on hand, at most 3 decimals (may be negative)", "12"),
    ImportField("reserved", "reserved", False, "quantity committed or reserved, 0 or more; blank: 0", "0"),
    ImportField(
        "unit_cost", "unit cost", False, "the item's average cost, 0 or more; blank: keep the current cost", "4.25"
    ),
)
_SPECS = {spec.key: spec for spec in ONHAND_FIELDS}


# --- column mappings and the template ----------------------------------------------------------


def onhand_column_mapping_clean(*, columns: Any) -> dict[str, str]:
    """A mapping's {field: header} with headers trimmed; raises ValidationError naming the problem.

    Only our fields may be mapped, each to a non-blank header, no two fields to the same header
    (compared case-insensitively). Fields left out keep the template's header.
    """
    if not isinstance(columns, Mapping):
        raise ValidationError({"columns": 'a JSON object {"field": "column header in the file"}'})
    problems: list[str] = []
    cleaned: dict[str, str] = {}
    for key, header in columns.items():
        if key not in _SPECS:
            problems.append(f"{key!r} is not a field; fields are: {', '.join(_SPECS)}")
        elif not isinstance(header, str) or not header.strip():
            problems.append(f"{key!r} needs a column header (text)")
        else:
            cleaned[key] = header.strip()
    seen: dict[str, str] = {}
    for key, header in _effective_columns(cleaned).items():
        if (other := seen.setdefault(_fold(header), key)) != key:
            problems.append(f"{other!r} and {key!r} both read column {header!r}")
    if problems:
        raise ValidationError({"columns": problems})
    return cleaned


def _effective_columns(columns: Mapping[str, str]) -> dict[str, str]:
    return {spec.key: columns.get(spec.key, spec.header) for spec in ONHAND_FIELDS}


@transaction.atomic
def onhand_column_mapping_save(
    *, organization: Organization, actor: AbstractBaseUser | None, name: str, columns: Any
) -> tuple[OnHandColumnMapping, bool]:
    """Save a named mapping for the organization, replacing the columns of one with that name.

    Returns (mapping, created); the (organization, name) constraint decides, so two people
    saving the same name at once both succeed and the last one wins.
    """
    cleaned = onhand_column_mapping_clean(columns=columns)
    name = (name or "").strip()
    if not name or len(name) > OnHandColumnMapping._meta.get_field("name").max_length:
        raise ValidationError({"name": "required, at most 100 characters"})
    try:
        with transaction.atomic():
            mapping = OnHandColumnMapping(organization=organization, name=name, columns=cleaned, created_by=actor)
            mapping._history_user = actor
            mapping.save()
            return mapping, True
    except IntegrityError:
        pass
    mapping = OnHandColumnMapping.objects.select_for_update().get(organization=organization, name=name)
    mapping.columns = cleaned
    mapping._history_user = actor
    mapping.save(update_fields=["columns", "updated_at"])
    return mapping, False


@transaction.atomic
def onhand_column_mapping_delete(*, mapping: OnHandColumnMapping, actor: AbstractBaseUser | None) -> None:
    """Forget a saved mapping (its history stays); files already uploaded keep the columns they used."""
    mapping._history_user = actor
    mapping.delete()


def onhand_column_mapping_list(*, organization: Organization | None) -> QuerySet[OnHandColumnMapping]:
    return OnHandColumnMapping.objects.for_organization(organization).order_by("name")


def onhand_template_csv(*, columns: Mapping[str, str] | None = None) -> str:
    """The CSV to fill in: our headers (or the mapping's), then one example row to overwrite.

    The example names an item that does not exist, so a template uploaded unchanged is refused.
    """
    headers = _effective_columns(onhand_column_mapping_clean(columns=columns or {}))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([headers[spec.key] for spec in ONHAND_FIELDS])
    writer.writerow([spec.example for spec in ONHAND_FIELDS])
    return out.getvalue()


# --- the report ----------------------------------------------------------------------------------


@dataclass
class SnapshotReport:
    """What a check or an apply found and did. `snapshot` is set only by an apply."""

    connection: str
    filename: str
    dry_run: bool
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    preview: dict[str, Any] = field(default_factory=dict)
    snapshot: OnHandSnapshot | None = None
    sync: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def applied(self) -> bool:
        return self.snapshot is not None and self.snapshot.state == SnapshotState.APPLIED

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "filename": self.filename,
            "dry_run": self.dry_run,
            "valid": self.valid,
            "applied": self.applied,
            "rows": self.rows,
            "row_numbering": ROW_NUMBERING,
            "error_count": len(self.errors),
            "errors": [error.as_dict() for error in self.errors[:MAX_REPORTED_ERRORS]],
            "preview": self.preview,
            "snapshot": self.snapshot.pk if self.snapshot else None,
            "sync": self.sync,
        }


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    number: int
    values: dict[str, str]


@dataclass(frozen=True)
class _Parsed:
    headers: dict[str, str]  # field key -> the header as the file spells it
    rows: list[_Row]
    row_count: int  # non-blank data rows


def _parse(content: bytes, columns: Mapping[str, str]) -> tuple[_Parsed | None, list[RowError]]:
    if len(content) > MAX_FILE_BYTES:
        return None, [RowError(None, None, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it")]
    text, errors = _decode(content)
    if text is None:
        return None, errors
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    reader = csv.reader(io.StringIO(normalised, newline=""), delimiter=_delimiter(normalised))
    try:
        file_headers = next(reader, None)
    except csv.Error as error:
        return None, [RowError(None, None, f"the header row is not valid CSV: {error}")]
    if not file_headers or not any(header.strip() for header in file_headers):
        return None, [RowError(None, None, "the file has no header row")]

    positions: dict[str, list[int]] = {}
    for position, header in enumerate(file_headers):
        if header.strip():
            positions.setdefault(_fold(header), []).append(position)
    wanted = _effective_columns(columns)
    missing = [spec for spec in ONHAND_FIELDS if spec.required and _fold(wanted[spec.key]) not in positions]
    if missing:
        named = "; ".join(f"{spec.key} (column {wanted[spec.key]!r})" for spec in missing)
        found = ", ".join(repr(header.strip()) for header in file_headers if header.strip())
        return None, [RowError(None, None, f"missing required column(s): {named}. Headers found: {found}")]
    index: dict[str, int] = {}
    headers: dict[str, str] = {}
    for spec in ONHAND_FIELDS:
        found_at = positions.get(_fold(wanted[spec.key]), [])
        if len(found_at) > 1:
            errors.append(
                RowError(None, wanted[spec.key], f"the header {wanted[spec.key]!r} appears {len(found_at)} times")
            )
        elif found_at:
            index[spec.key] = found_at[0]
            headers[spec.key] = file_headers[found_at[0]].strip()
    if errors:
        return None, errors

    rows: list[_Row] = []
    number = row_count = 0
    try:
        for cells in reader:
            number += 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are skipped but keep their number, so rows match the file
            row_count += 1
            if row_count > MAX_ROWS:
                return None, [RowError(number, None, f"the file has more than {MAX_ROWS} rows; split it")]
            if len(cells) > len(file_headers) and any(cell.strip() for cell in cells[len(file_headers) :]):
                errors.append(
                    RowError(
                        number,
                        None,
                        f"the row has {len(cells)} cells but the header has {len(file_headers)} columns "
                        "(an unquoted comma in a value?)",
                    )
                )
                continue
            rows.append(_Row(number, {key: cells[at].strip() if at < len(cells) else "" for key, at in index.items()}))
    except csv.Error as error:
        return None, [RowError(number, None, f"the row is not valid CSV: {error}")]
    if not row_count:
        errors.append(RowError(None, None, "the file has a header but no data rows"))
    return _Parsed(headers=headers, rows=rows, row_count=row_count), errors


def _number(value: str, *, decimals: int, largest: Decimal, negative: bool) -> tuple[Decimal | None, str]:
    if not _PLAIN_NUMBER.match(value):
        return None, f"{value!r} is not a number (write 12 or 12.5, without thousands separators)"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None, f"{value!r} is not a number"
    if number < 0 and not negative:
        return None, "cannot be negative"
    if number.as_tuple().exponent < -decimals:
        return None, f"at most {decimals} decimals"
    if abs(number) > largest:
        return None, "the number is too large"
    return number, ""


# --- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    row: int
    item_id: int
    location_id: int
    remote: OnHandRow


class _RowErrors:
    """Collects errors for one parsed file, naming columns as the file does."""

    def __init__(self, parsed: _Parsed) -> None:
        self.parsed = parsed
        self.errors: list[RowError] = []
        self.bad_rows: set[int] = set()

    def add(self, row: _Row, key: str | None, message: str) -> None:
        self.errors.append(RowError(row.number, self.parsed.headers.get(key) if key else None, message))
        self.bad_rows.add(row.number)


def _resolve_locations(organization_id: int, values: set[str]) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """({file value: (location id, code)}, {file value: why it names no single location}).

    A code wins over another location's barcode; a code two facilities share names neither, as
    the file backend knows locations by code.
    """
    if not values:
        return {}, {}
    rows = list(
        Location.objects.filter(organization_id=organization_id)
        .filter(Q(code__in=values) | Q(barcode__in=values))
        .values_list("pk", "code", "barcode", "facility__code")
    )
    by_code: dict[str, list[tuple[int, str]]] = defaultdict(list)
    by_barcode: dict[str, tuple[int, str]] = {}
    for pk, code, barcode, facility_code in rows:
        by_code[code].append((pk, facility_code))
        by_barcode[barcode] = (pk, code)
    resolved: dict[str, tuple[int, str]] = {}
    for value in values:
        if value in by_code:
            resolved[value] = (by_code[value][0][0], value)
        elif value in by_barcode:
            resolved[value] = by_barcode[value]
    # A location named by its barcode may share its code with a location elsewhere.
    codes_elsewhere = {code for value, (_pk, code) in resolved.items() if code != value} - set(by_code)
    if codes_elsewhere:
        for pk, code, facility_code in Location.objects.filter(
            organization_id=organization_id, code__in=codes_elsewhere
        ).values_list("pk", "code", "facility__code"):
            by_code[code].append((pk, facility_code))
    problems: dict[str, str] = {}
    for value, (_pk, code) in list(resolved.items()):
        if len(by_code[code]) > 1:
            facilities = " and ".join(sorted(facility for _pk, facility in by_code[code]))
            problems[value] = (
                f"location code {code!r} is used at {facilities}; the file backend knows locations by code, "
                "so it cannot tell them apart"
            )
            del resolved[value]
    return resolved, problems


def _validate(connection: BackendConnection, parsed: _Parsed) -> tuple[list[_Resolved], list[RowError]]:
    organization_id = connection.organization_id
    collected = _RowErrors(parsed)
    items, ambiguous = _resolve_items(connection.organization, {row.values["item"] for row in parsed.rows} - {""})
    skus = dict(Item.objects.filter(pk__in={pk for pk, _kind in items.values()}).values_list("pk", "sku"))
    locations, location_problems = _resolve_locations(
        organization_id, {row.values["location"] for row in parsed.rows} - {""}
    )
    seen_pairs: dict[tuple[int, int], int] = {}
    costs: dict[int, tuple[Decimal, int]] = {}
    resolved: list[_Resolved] = []
    for row in parsed.rows:
        values = {key: row.values.get(key, "") for key in _SPECS}
        for key in ("item", "location", "on_hand"):
            if not values[key]:
                collected.add(row, key, f"required: {_SPECS[key].help}")
        if values["item"] and values["item"] not in items:
            collected.add(row, "item", _item_error(values["item"], ambiguous))
        if values["location"] and values["location"] not in locations:
            unknown = f"no location with code or barcode {values['location']!r}"
            collected.add(row, "location", location_problems.get(values["location"], unknown))
        on_hand = reserved = unit_cost = None
        if values["on_hand"]:
            on_hand, problem = _number(
                values["on_hand"], decimals=QUANTITY["decimal_places"], largest=MAX_QUANTITY, negative=True
            )
            if problem:
                collected.add(row, "on_hand", problem)
        if values["reserved"]:
            reserved, problem = _number(
                values["reserved"], decimals=QUANTITY["decimal_places"], largest=MAX_QUANTITY, negative=False
            )
            if problem:
                collected.add(row, "reserved", f"reserved {problem}" if problem == "cannot be negative" else problem)
        if values["unit_cost"]:
            unit_cost, problem = _number(values["unit_cost"], decimals=COST_DECIMALS, largest=MAX_COST, negative=False)
            if problem:
                collected.add(row, "unit_cost", f"unit cost {problem}" if problem == "cannot be negative" else problem)
        if row.number in collected.bad_rows:
            continue

        item_id, location = items[values["item"]][0], locations[values["location"]]
        first = seen_pairs.setdefault((item_id, location[0]), row.number)
        if first != row.number:
            collected.add(row, "location", f"row {first} already gives this item at this location")
            continue
        if unit_cost is not None:
            cost, cost_row = costs.setdefault(item_id, (unit_cost, row.number))
            if cost != unit_cost:
                collected.add(
                    row,
                    "unit_cost",
                    f"{unit_cost} differs from {cost} given for this item at row {cost_row}; "
                    "an item has one average cost",
                )
                continue
        resolved.append(
            _Resolved(
                row=row.number,
                item_id=item_id,
                location_id=location[0],
                remote=OnHandRow(
                    sku=skus[item_id],
                    location_code=location[1],
                    on_hand=on_hand,
                    reserved=reserved if reserved is not None else Decimal("0"),
                    unit_cost=unit_cost,
                ),
            )
        )
    return resolved, sorted(collected.errors, key=lambda error: error.row or 0)


def _preview(organization_id: int, resolved: list[_Resolved]) -> dict[str, Any]:
    """What applying would change in the mirror, counted as the sync will count it."""
    item_ids = {row.item_id for row in resolved}
    location_ids = {row.location_id for row in resolved}
    mirror = {
        (item_id, location_id): (on_hand, reserved)
        for item_id, location_id, on_hand, reserved in InventoryBalance.objects.filter(
            organization_id=organization_id, item_id__in=item_ids, location_id__in=location_ids
        ).values_list("item_id", "location_id", "on_hand", "reserved")
    }
    in_file = {(row.item_id, row.location_id) for row in resolved}
    changing = sum(
        1 for row in resolved if mirror.get((row.item_id, row.location_id)) != (row.remote.on_hand, row.remote.reserved)
    )
    zeroed = sum(1 for pair, quantities in mirror.items() if pair not in in_file and quantities != (0, 0))
    costs = dict(Item.objects.filter(pk__in=item_ids).values_list("pk", "average_cost"))
    new_costs = {row.item_id: row.remote.unit_cost for row in resolved if row.remote.unit_cost is not None}
    return {
        "items": len(item_ids),
        "locations": len(location_ids),
        "balances_changing": changing,
        "balances_zeroed": zeroed,
        "costs_changing": sum(1 for item_id, cost in new_costs.items() if costs.get(item_id) != cost),
    }


def _check(
    *, connection: BackendConnection, content: bytes, filename: str, columns: Mapping[str, str], dry_run: bool
) -> tuple[SnapshotReport, list[_Resolved]]:
    if connection.kind != BackendKind.FILE:
        raise ValueError(f"connection {connection.name} is a {connection.kind} connection, not a file connection")
    report = SnapshotReport(connection=connection.name, filename=filename, dry_run=dry_run)
    if not connection.active:
        report.errors = [RowError(None, None, f"connection {connection.name} is inactive; activate it first")]
        return report, []
    try:
        cleaned = onhand_column_mapping_clean(columns=columns)
    except ValidationError as error:
        report.errors = [RowError(None, None, message) for message in error.messages]
        return report, []
    parsed, report.errors = _parse(content, cleaned)
    if parsed is None:
        return report, []
    report.rows = parsed.row_count
    resolved, row_errors = _validate(connection, parsed)
    report.errors = sorted([*report.errors, *row_errors], key=lambda error: error.row or 0)
    report.preview = _preview(connection.organization_id, resolved)
    return report, resolved


# --- services ----------------------------------------------------------------------------------


def onhand_snapshot_check(
    *,
    connection: BackendConnection,
    content: bytes,
    filename: str,
    columns: Mapping[str, str],
    actor: AbstractBaseUser | None,
) -> SnapshotReport:
    """Dry run: every problem of the file by (row, column, message), and what applying would
    change. Writes nothing."""
    report, _resolved = _check(connection=connection, content=content, filename=filename, columns=columns, dry_run=True)
    return report


class _NotApplied(Exception):
    pass


def onhand_snapshot_apply(
    *,
    connection: BackendConnection,
    content: bytes,
    filename: str,
    columns: Mapping[str, str],
    actor: AbstractBaseUser | None,
) -> SnapshotReport:
    """Validate the file again and, only if every row is valid, sync the connection from it.

    Guarantees: the upload is kept as an OnHandSnapshot — `invalid` with its errors, `validated`
    with the reason it was not applied (the connection was busy, the mirror changed), or
    `applied`. Applying is one transaction: the snapshot, the balances and item costs the sync
    writes (with history), the parity check of imported adjustments and the `import_applied`
    reason-log row; an unexpected error rolls all of it back and propagates. The file never
    creates items or locations.
    """
    report, resolved = _check(connection=connection, content=content, filename=filename, columns=columns, dry_run=False)

    def store(state: str) -> OnHandSnapshot:
        return _snapshot_store(connection, content=content, columns=columns, report=report, state=state, actor=actor)

    if not report.valid:
        report.snapshot = store(SnapshotState.INVALID)
        return report
    try:
        with transaction.atomic():
            snapshot = store(SnapshotState.VALIDATED)
            with onhand_rows_applying([row.remote for row in resolved]):
                result = backend_sync(connection=connection, actor=actor)
            if result.skipped:
                raise _NotApplied(result.skipped)
            if result.balances_unmapped:
                raise _NotApplied(
                    f"{result.balances_unmapped} row(s) no longer name a known item or location "
                    "(the mirror changed since the file was checked); check it again"
                )
            snapshot.mark_applied()
            snapshot.applied_at = timezone.now()
            snapshot.applied_by = actor
            snapshot.sync_summary = result.as_json()
            snapshot._history_user = actor
            snapshot._change_reason = "applied"
            snapshot.save(update_fields=["state", "applied_at", "applied_by", "sync_summary"])
            audit_log_write(
                organization_id=connection.organization_id,
                tag="import_applied",
                actor=actor,
                subject=snapshot,
                reason=f"on-hand file {filename} applied to {connection.name} ({report.rows} rows)",
                data={"sha256": snapshot.content_sha256, "rows": report.rows, "sync": result.as_json()},
            )
    except _NotApplied as refused:
        report.errors = [RowError(None, None, f"not applied, nothing changed: {refused}")]
        report.snapshot = store(SnapshotState.VALIDATED)
        return report
    report.snapshot = snapshot
    report.sync = result.as_json()
    return report


def _snapshot_store(
    connection: BackendConnection,
    *,
    content: bytes,
    columns: Mapping[str, str],
    report: SnapshotReport,
    state: str,
    actor: AbstractBaseUser | None,
) -> OnHandSnapshot:
    text = ""
    if len(content) <= MAX_FILE_BYTES:
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
    snapshot = OnHandSnapshot(
        organization_id=connection.organization_id,
        connection=connection,
        filename=report.filename[: OnHandSnapshot._meta.get_field("filename").max_length],
        content=text,
        content_sha256=hashlib.sha256(content).hexdigest(),
        columns=dict(columns),
        row_count=report.rows,
        state=state,
        errors=[error.as_dict() for error in report.errors[:MAX_REPORTED_ERRORS]],
        uploaded_by=actor if actor is not None and actor.is_authenticated else None,
        uploaded_at=timezone.now(),
    )
    snapshot._history_user = actor
    snapshot._change_reason = f"uploaded ({state})"
    snapshot.save()
    return snapshot
