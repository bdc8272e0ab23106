"""Staged CSV imports: count plans (runs of directed requests) and count results (set events).

Every import runs in two stages. First the whole file is parsed and every row validated
against the organization's data (one query per kind of identifier, whatever the row count);
problems are reported as (row, column, message). Only when no row has a problem, and only
when it is not a dry run, is anything written — in one transaction, so a file is applied
completely or not at all.

Rows are numbered from 1 at the first data row: the header is not counted (so spreadsheet
row N is data row N - 1). Columns are named by the file's own header.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import tablib
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Organization
from accounts.roles import Role
from counts.models import (
    ColumnMapping,
    CountEvent,
    CountKind,
    CountRequest,
    CountRun,
    CountSession,
    EventKind,
    EventMode,
    ImportKind,
    RunSource,
    SessionState,
    SignalKind,
)
from counts.services.planning import DEFAULT_DUE_TIME, DEFAULT_START_TIME, count_run_create
from counts.timezones import local_to_utc
from inventory.models import QUANTITY, Facility, InventoryBalance, Item, ItemBarcode, Location

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 1_000
ROW_NUMBERING = "rows are numbered from 1 at the first data row; the header row is not counted"
# A counted-at this far ahead of the server clock is a typo, not clock drift.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_QUANTITY = Decimal(10) ** (QUANTITY["max_digits"] - QUANTITY["decimal_places"]) - 1
# Event ids of imported results: uuid5(namespace, "<content sha256>:<row>"), stable across uploads.
RESULTS_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cyclecount.invalid/imports/results")
_LOCAL_DATE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}:\d{2}))?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


# Who may run (and save mappings for) each kind of import.
IMPORT_ROLES: dict[str, frozenset[str]] = {
    ImportKind.PLAN: frozenset({Role.PLANNER, Role.MANAGER, Role.ADMIN}),
    ImportKind.RESULTS: frozenset({Role.MANAGER, Role.ADMIN}),
}


def import_kinds_for(role: str | None) -> list[str]:
    """The import kinds a role may run and keep mappings for."""
    return [kind for kind, roles in IMPORT_ROLES.items() if role in roles]


# --- Fields and mappings ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImportField:
    """One of our fields: `key` is used in mappings, `header` is the template's column name."""

    key: str
    header: str
    required: bool
    help: str
    example: str


PLAN_FIELDS: tuple[ImportField, ...] = (
    ImportField("item", "item", True, "SKU or any barcode of the item", "EXAMPLE-SKU"),
    ImportField("facility", "facility", True, "facility code", "WH1"),
    ImportField("count_name", "count name", True, "name of the run; rows with the same name form one run", "Spring"),
    ImportField("start", "start", True, "facility-local: YYYY-MM-DD or YYYY-MM-DD HH:MM", "2026-03-02 08:00"),
    ImportField("due", "due", True, "facility-local: YYYY-MM-DD (23:59) or YYYY-MM-DD HH:MM", "2026-03-06"),
    ImportField(
        "location", "location", False, "location code; blank: every location in the facility holding it", "A-01-01"
    ),
)
RESULTS_FIELDS: tuple[ImportField, ...] = (
    ImportField("item", "item", True, "SKU or any barcode of the item", "EXAMPLE-SKU"),
    ImportField("location", "location", True, "location code or location barcode", "A-01-01"),
    ImportField("quantity", "quantity", True, "counted quantity, 0 or more, at most 3 decimals", "12"),
    ImportField("counted_by", "counted by", False, "who counted (free text)", "J. Smith"),
    ImportField(
        "counted_at",
        "counted at",
        True,
        "ISO-8601 with offset, or YYYY-MM-DD HH:MM in the facility's time",
        "2026-03-02 14:30",
    ),
)
IMPORT_FIELDS: dict[str, tuple[ImportField, ...]] = {ImportKind.PLAN: PLAN_FIELDS, ImportKind.RESULTS: RESULTS_FIELDS}


def _fold(header: str) -> str:
    return header.strip().casefold()


def column_mapping_clean(*, kind: str, columns: Any) -> dict[str, str]:
    """A mapping's {field: header} with headers trimmed; raises ValidationError naming the problem.

    Only our fields may be mapped, each to a non-blank header, and no two fields to the same
    header (headers compare case-insensitively). Fields left out keep the template's header.
    """
    if kind not in IMPORT_FIELDS:
        raise ValidationError({"kind": f"unknown import kind {kind!r}; expected one of {', '.join(IMPORT_FIELDS)}"})
    known = [spec.key for spec in IMPORT_FIELDS[kind]]
    if not isinstance(columns, Mapping) or not columns:
        raise ValidationError({"columns": 'a JSON object {"field": "column header in the file"}'})
    problems: list[str] = []
    cleaned: dict[str, str] = {}
    for key, header in columns.items():
        if key not in known:
            problems.append(f"{key!r} is not a field; fields are: {', '.join(known)}")
        elif not isinstance(header, str) or not header.strip():
            problems.append(f"{key!r} needs a column header (text)")
        else:
            cleaned[key] = header.strip()
    seen: dict[str, str] = {}
    for key, header in _effective_columns(kind, cleaned).items():
        if (other := seen.setdefault(_fold(header), key)) != key:
            problems.append(f"{other!r} and {key!r} both read column {header!r}")
    if problems:
        raise ValidationError({"columns": problems})
    return cleaned


def _effective_columns(kind: str, columns: Mapping[str, str]) -> dict[str, str]:
    return {spec.key: columns.get(spec.key, spec.header) for spec in IMPORT_FIELDS[kind]}


@transaction.atomic
def column_mapping_save(
    *, organization: Organization, actor: AbstractBaseUser | None, kind: str, name: str, columns: Any
) -> tuple[ColumnMapping, bool]:
    """Save a named mapping for the organization, replacing the columns of one with that name.

    Returns (mapping, created). The (organization, kind, name) constraint decides between
    create and replace, so two planners saving the same name at once both succeed, last wins.
    """
    cleaned = column_mapping_clean(kind=kind, columns=columns)
    name = (name or "").strip()
    if not name or len(name) > ColumnMapping._meta.get_field("name").max_length:
        raise ValidationError({"name": "required, at most 100 characters"})
    try:
        with transaction.atomic():
            mapping = ColumnMapping(organization=organization, kind=kind, name=name, columns=cleaned, created_by=actor)
            mapping._history_user = actor
            mapping.save()
            return mapping, True
    except IntegrityError:
        pass
    mapping = ColumnMapping.objects.select_for_update().get(organization=organization, kind=kind, name=name)
    mapping.columns = cleaned
    mapping._history_user = actor
    mapping.save(update_fields=["columns", "updated_at"])
    return mapping, False


@transaction.atomic
def column_mapping_delete(*, mapping: ColumnMapping, actor: AbstractBaseUser | None) -> None:
    """Forget a saved mapping (its history stays); imports already applied are unaffected."""
    mapping._history_user = actor
    mapping.delete()


def column_mapping_list(*, organization: Organization | None, kinds: Sequence[str]) -> QuerySet[ColumnMapping]:
    return ColumnMapping.objects.for_organization(organization).filter(kind__in=kinds).order_by("kind", "name")


def column_mapping_find(*, organization: Organization | None, kind: str, name: str) -> ColumnMapping | None:
    return column_mapping_list(organization=organization, kinds=[kind]).filter(name=name.strip()).first()


def import_template_csv(*, kind: str, mapping: ColumnMapping | Mapping[str, str] | None = None) -> str:
    """The CSV a user fills in: our headers (or the mapping's), then one example row to overwrite.

    The example row names an item that does not exist, so a template uploaded unchanged is
    refused rather than imported.
    """
    columns = _effective_columns(kind, _mapping_columns(kind, mapping))
    specs = IMPORT_FIELDS[kind]
    dataset = tablib.Dataset(headers=[columns[spec.key] for spec in specs])
    dataset.append([spec.example for spec in specs])
    return dataset.export("csv")


def _mapping_columns(kind: str, mapping: ColumnMapping | Mapping[str, str] | None) -> dict[str, str]:
    if not mapping:
        return {}
    if isinstance(mapping, ColumnMapping):
        if mapping.kind != kind:
            raise ValueError(f"mapping {mapping.name!r} is for {mapping.kind} imports, not {kind}")
        return column_mapping_clean(kind=kind, columns=mapping.columns)
    return column_mapping_clean(kind=kind, columns=mapping)


# --- Reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """A problem at a data row (1 = first row after the header; None = the whole file) and column."""

    row: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportReport:
    """What an import found and did. `created` is empty unless the file was applied."""

    kind: str
    dry_run: bool
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    preview: dict[str, Any] = field(default_factory=dict)
    created: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "valid": self.valid,
            "rows": self.rows,
            "row_numbering": ROW_NUMBERING,
            "error_count": len(self.errors),
            "errors": [error.as_dict() for error in self.errors[:MAX_REPORTED_ERRORS]],
            "preview": self.preview,
            "created": self.created,
        }


# --- Parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    number: int
    values: dict[str, str]


@dataclass(frozen=True)
class _Parsed:
    headers: dict[str, str]  # field key -> the header as the file spells it
    rows: list[_Row]
    row_count: int  # non-blank data rows, including those too malformed to read
    digest: str  # sha256 of the text, BOM removed and line endings normalised


def _decode(file_bytes: bytes) -> tuple[str | None, list[RowError]]:
    if not file_bytes.strip():
        return None, [RowError(None, None, "the file is empty")]
    if len(file_bytes) > MAX_IMPORT_BYTES:
        return None, [RowError(None, None, f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it")]
    try:
        return file_bytes.decode("utf-8-sig"), []
    except UnicodeDecodeError as error:
        line = file_bytes[: error.start].count(b"\n") + 1
        where = "in the header" if line == 1 else f"at data row {line - 1}"
        return None, [
            RowError(
                line - 1 if line > 1 else None,
                None,
                f"the file is not UTF-8 text (byte 0x{file_bytes[error.start]:02x} {where}); "
                'save it as "CSV UTF-8" and upload it again',
            )
        ]


def _delimiter(text: str) -> str:
    header_line = text.split("\n", 1)[0]
    if "," not in header_line:
        for candidate in (";", "\t"):
            if candidate in header_line:
                return candidate
    return ","


def _parse(kind: str, file_bytes: bytes, columns: Mapping[str, str]) -> tuple[_Parsed | None, list[RowError]]:
    text, errors = _decode(file_bytes)
    if text is None:
        return None, errors
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(normalised.encode("utf-8")).hexdigest()
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
    wanted = _effective_columns(kind, columns)
    specs = IMPORT_FIELDS[kind]
    missing = [spec for spec in specs if spec.required and _fold(wanted[spec.key]) not in positions]
    if missing:
        named = "; ".join(f"{spec.key} (column {wanted[spec.key]!r})" for spec in missing)
        found = ", ".join(repr(header.strip()) for header in file_headers if header.strip())
        return None, [RowError(None, None, f"missing required column(s): {named}. Headers found: {found}")]
    index: dict[str, int] = {}
    headers: dict[str, str] = {}
    for spec in specs:
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
            if row_count > MAX_IMPORT_ROWS:
                return None, [RowError(number, None, f"the file has more than {MAX_IMPORT_ROWS} rows; split it")]
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
            values = {key: cells[at].strip() if at < len(cells) else "" for key, at in index.items()}
            rows.append(_Row(number=number, values=values))
    except csv.Error as error:
        return None, [RowError(number, None, f"the row is not valid CSV: {error}")]
    if not row_count:
        errors.append(RowError(None, None, "the file has a header but no data rows"))
    return _Parsed(headers=headers, rows=rows, row_count=row_count, digest=digest), errors


class _RowErrors:
    """Collects errors for one parsed file, naming columns as the file does."""

    def __init__(self, parsed: _Parsed) -> None:
        self.parsed = parsed
        self.errors: list[RowError] = []
        self.bad_rows: set[int] = set()

    def add(self, row: _Row, key: str | None, message: str) -> None:
        self.errors.append(RowError(row.number, self.parsed.headers.get(key) if key else None, message))
        self.bad_rows.add(row.number)

    def require(self, row: _Row, spec: ImportField) -> str:
        value = row.values.get(spec.key, "")
        if spec.required and not value:
            self.add(row, spec.key, f"required: {spec.help}")
        return value

    def in_order(self) -> list[RowError]:
        return sorted(self.errors, key=lambda error: error.row or 0)


def _resolve_items(organization: Organization, values: set[str]) -> tuple[dict[str, tuple[int, str]], set[str]]:
    """{file value: (item id, "sku" | "barcode")} in two queries; values naming two items are ambiguous."""
    if not values:
        return {}, set()
    by_sku = dict(Item.objects.filter(organization=organization, sku__in=values).values_list("sku", "pk"))
    by_barcode = dict(
        ItemBarcode.objects.filter(organization=organization, value__in=values).values_list("value", "item_id")
    )
    resolved: dict[str, tuple[int, str]] = {}
    ambiguous: set[str] = set()
    for value in values:
        sku_item, barcode_item = by_sku.get(value), by_barcode.get(value)
        if sku_item and barcode_item and sku_item != barcode_item:
            ambiguous.add(value)
        elif sku_item:
            resolved[value] = (sku_item, "sku")
        elif barcode_item:
            resolved[value] = (barcode_item, "barcode")
    return resolved, ambiguous


def _item_error(value: str, ambiguous: set[str]) -> str:
    if value in ambiguous:
        return f"{value!r} is the SKU of one item and a barcode of another; use the SKU of the one you mean"
    return f"no item with SKU or barcode {value!r}"


def _locations_by_key(locations: QuerySet[Location]) -> dict[tuple[int, str], int]:
    """{(facility id, code or barcode): location id}; a code wins over another bin's barcode."""
    by_key: dict[tuple[int, str], int] = {}
    rows = list(locations.values_list("pk", "facility_id", "code", "barcode"))
    for pk, facility_id, _code, barcode in rows:
        by_key[(facility_id, barcode)] = pk
    for pk, facility_id, code, _barcode in rows:
        by_key[(facility_id, code)] = pk
    return by_key


# --- Plan import -----------------------------------------------------------------------------


@dataclass
class _PlannedRun:
    facility: Facility
    name: str
    first_row: int
    start: tuple[date, time]
    due: tuple[date, time]
    pairs: dict[tuple[int, int], None] = field(default_factory=dict)  # (item, location), in file order
    rows: int = 0


def _parse_local(value: str, default_time: time) -> tuple[date, time] | None:
    match = _LOCAL_DATE_TIME.match(value)
    if not match:
        return None
    try:
        day = date.fromisoformat(match[1])
        clock = time.fromisoformat(match[2].zfill(5)) if match[2] else default_time
    except ValueError:
        return None
    return day, clock


def _format_local(moment: tuple[date, time]) -> str:
    return f"{moment[0].isoformat()} {moment[1].strftime('%H:%M')}"


def _validate_plan(organization: Organization, parsed: _Parsed) -> tuple[list[_PlannedRun], list[RowError]]:
    specs = {spec.key: spec for spec in PLAN_FIELDS}
    rows = parsed.rows
    collected = _RowErrors(parsed)
    facilities = {
        facility.code: facility
        for facility in Facility.objects.for_organization(organization).filter(
            code__in={row.values["facility"] for row in rows}
        )
    }
    items, ambiguous = _resolve_items(organization, {row.values["item"] for row in rows} - {""})
    location_keys = _locations_by_key(
        Location.objects.filter(organization=organization, facility__in=facilities.values()).filter(
            Q(code__in={row.values.get("location", "") for row in rows} - {""})
            | Q(barcode__in={row.values.get("location", "") for row in rows} - {""})
        )
    )
    stocked: dict[tuple[int, int], list[int]] = {}
    needs_stock = {
        items[value][0] for row in rows if not row.values.get("location") and (value := row.values["item"]) in items
    }
    if needs_stock:
        for item_id, facility_id, location_id in (
            InventoryBalance.objects.filter(
                organization=organization, item_id__in=needs_stock, location__facility__in=facilities.values()
            )
            .exclude(on_hand=0)
            .order_by("location__code")
            .values_list("item_id", "location__facility_id", "location_id")
        ):
            stocked.setdefault((item_id, facility_id), []).append(location_id)
    existing = set(
        CountRun.objects.filter(
            facility__in=facilities.values(), name__in={row.values["count_name"] for row in rows}
        ).values_list("facility_id", "name")
    )

    runs: dict[tuple[int, str], _PlannedRun] = {}
    name_limit = CountRun._meta.get_field("name").max_length
    for row in rows:
        values = {key: collected.require(row, spec) for key, spec in specs.items()}
        facility = facilities.get(values["facility"])
        if values["facility"] and facility is None:
            collected.add(row, "facility", f"no facility with code {values['facility']!r} in this organization")
        if values["item"] and values["item"] not in items:
            collected.add(row, "item", _item_error(values["item"], ambiguous))
        if len(values["count_name"]) > name_limit:
            collected.add(row, "count_name", f"at most {name_limit} characters")
        start = _parse_local(values["start"], DEFAULT_START_TIME) if values["start"] else None
        due = _parse_local(values["due"], DEFAULT_DUE_TIME) if values["due"] else None
        for key, moment in (("start", start), ("due", due)):
            if values[key] and moment is None:
                collected.add(row, key, f"{values[key]!r} is not a date: use YYYY-MM-DD or YYYY-MM-DD HH:MM (local)")
        if start and due and due < start:
            collected.add(row, "due", f"due {_format_local(due)} is before start {_format_local(start)}")
        if facility is None or row.number in collected.bad_rows:
            continue

        item_id = items[values["item"]][0]
        if values["location"]:
            location_id = location_keys.get((facility.pk, values["location"]))
            if location_id is None:
                collected.add(row, "location", f"no location {values['location']!r} at {facility.code}")
                continue
            location_ids = [location_id]
        else:
            location_ids = stocked.get((item_id, facility.pk), [])
            if not location_ids:
                collected.add(
                    row,
                    "location",
                    f"{values['item']!r} has no stock at any location in {facility.code}; name the location",
                )
                continue

        key = (facility.pk, values["count_name"])
        run = runs.get(key)
        if run is None:
            run = runs[key] = _PlannedRun(facility, values["count_name"], row.number, start, due)
            if key in existing:
                collected.add(row, "count_name", f"a run named {run.name!r} already exists at {facility.code}")
        for field_key, mine, theirs in (("start", start, run.start), ("due", due, run.due)):
            if mine != theirs:
                collected.add(
                    row,
                    field_key,
                    f"{_format_local(mine)} differs from {_format_local(theirs)} given for run {run.name!r} "
                    f"at row {run.first_row}; every row of a run has the same {field_key}",
                )
        run.rows += 1
        for location_id in location_ids:
            run.pairs[(item_id, location_id)] = None
    return list(runs.values()), collected.in_order()


def _plan_preview(runs: list[_PlannedRun]) -> dict[str, Any]:
    return {
        "runs": [
            {
                "facility": run.facility.code,
                "name": run.name,
                "start": _format_local(run.start),
                "due": _format_local(run.due),
                "time_zone": run.facility.time_zone,
                "rows": run.rows,
                "requests": len(run.pairs),
            }
            for run in runs
        ],
        "requests": sum(len(run.pairs) for run in runs),
    }


class _RolledBack(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("import rolled back")
        self.errors = errors


def plan_import(
    *,
    organization: Organization,
    actor: AbstractBaseUser | None,
    file_bytes: bytes,
    mapping: ColumnMapping | Mapping[str, str] | None,
    dry_run: bool,
) -> ImportReport:
    """Plan directed runs from a CSV: rows sharing (facility, count name) form one run.

    Guarantees: nothing is written on a dry run or when any row has an error; otherwise every
    run and every requested item × location is created in one transaction (all or nothing).
    A run name already used at the facility is a row error, so uploading a file twice never
    duplicates runs. Start and due are kept as the facility-local intent; UTC follows from it.
    """
    report = ImportReport(kind=ImportKind.PLAN, dry_run=dry_run)
    try:
        columns = _mapping_columns(ImportKind.PLAN, mapping)
    except ValidationError as error:
        report.errors = [RowError(None, None, message) for message in error.messages]
        return report
    if isinstance(mapping, ColumnMapping) and mapping.organization_id != organization.pk:
        raise ValueError("the mapping belongs to another organization")
    parsed, report.errors = _parse(ImportKind.PLAN, file_bytes, columns)
    if parsed is None:
        return report
    report.rows = parsed.row_count
    runs, row_errors = _validate_plan(organization, parsed)
    report.errors = sorted([*report.errors, *row_errors], key=lambda error: error.row or 0)
    report.preview = _plan_preview(runs)
    if dry_run or report.errors:
        return report
    try:
        report.created = _plan_apply(organization=organization, actor=actor, runs=runs)
    except IntegrityError:
        # Another upload created one of these runs since we looked: validate again to name it.
        _runs, report.errors = _validate_plan(organization, parsed)
        if not report.errors:
            raise
    except _RolledBack as rolled_back:
        report.errors = rolled_back.errors
    return report


@transaction.atomic
def _plan_apply(*, organization: Organization, actor: AbstractBaseUser | None, runs: list[_PlannedRun]) -> dict:
    requests: list[CountRequest] = []
    created_runs: list[dict[str, Any]] = []
    for planned in runs:
        try:
            run = count_run_create(
                organization=organization,
                facility=planned.facility,
                name=planned.name,
                kind=CountKind.DIRECTED,
                actor=actor,
                source=RunSource.IMPORT,
                start_date_local=planned.start[0],
                start_time_local=planned.start[1],
                due_date_local=planned.due[0],
                due_time_local=planned.due[1],
            )
        except ValidationError as error:
            raise _RolledBack([RowError(planned.first_row, None, message) for message in error.messages]) from None
        requests.extend(
            CountRequest(
                organization=organization, run=run, item_id=item_id, location_id=location_id, reason=SignalKind.PLANNED
            )
            for item_id, location_id in planned.pairs
        )
        created_runs.append(
            {"id": run.pk, "facility": planned.facility.code, "name": run.name, "requests": len(planned.pairs)}
        )
    CountRequest.objects.bulk_create(requests, batch_size=1000)
    return {"runs": created_runs, "requests": len(requests)}


# --- Results import --------------------------------------------------------------------------


def _parse_counted_at(value: str, time_zone: str) -> datetime | None:
    try:
        moment = parse_datetime(value)
    except ValueError:
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        return local_to_utc(moment.date(), moment.time(), time_zone)
    return moment.astimezone(UTC)


def _parse_quantity(value: str) -> tuple[Decimal | None, str]:
    if not _PLAIN_NUMBER.match(value):
        return None, f"{value!r} is not a number (write 12 or 12.5, without thousands separators)"
    try:
        quantity = Decimal(value)
    except InvalidOperation:
        return None, f"{value!r} is not a number"
    if quantity < 0:
        return None, "a counted quantity cannot be negative"
    if quantity.as_tuple().exponent < -QUANTITY["decimal_places"]:
        return None, f"at most {QUANTITY['decimal_places']} decimals"
    if quantity > MAX_QUANTITY:
        return None, "the quantity is too large"
    return quantity, ""


def _validate_results(session: CountSession, parsed: _Parsed) -> tuple[list[dict[str, Any]], list[RowError]]:
    run = session.run
    facility = run.facility
    specs = {spec.key: spec for spec in RESULTS_FIELDS}
    rows = parsed.rows
    collected = _RowErrors(parsed)
    items, ambiguous = _resolve_items(run.organization, {row.values["item"] for row in rows} - {""})
    location_values = {row.values["location"] for row in rows} - {""}
    locations = _locations_by_key(
        Location.objects.filter(facility=facility).filter(Q(code__in=location_values) | Q(barcode__in=location_values))
    )
    latest = timezone.now() + FUTURE_TOLERANCE
    counted_by_limit = CountEvent._meta.get_field("counted_by").max_length
    events: list[dict[str, Any]] = []
    for row in rows:
        values = {key: collected.require(row, spec) for key, spec in specs.items()}
        if values["item"] and values["item"] not in items:
            collected.add(row, "item", _item_error(values["item"], ambiguous))
        if values["location"] and (facility.pk, values["location"]) not in locations:
            collected.add(row, "location", f"no location {values['location']!r} at {facility.code}")
        quantity = None
        if values["quantity"]:
            quantity, problem = _parse_quantity(values["quantity"])
            if problem:
                collected.add(row, "quantity", problem)
        counted_at = None
        if values["counted_at"]:
            counted_at = _parse_counted_at(values["counted_at"], facility.time_zone)
            if counted_at is None:
                collected.add(
                    row,
                    "counted_at",
                    f"{values['counted_at']!r} is not a time: use YYYY-MM-DD HH:MM ({facility.time_zone}) "
                    "or ISO-8601 with an offset",
                )
            elif counted_at > latest:
                collected.add(row, "counted_at", f"{values['counted_at']!r} is in the future")
        if len(values["counted_by"]) > counted_by_limit:
            collected.add(row, "counted_by", f"at most {counted_by_limit} characters")
        if row.number in collected.bad_rows:
            continue
        _item_id, identified_by = items[values["item"]]
        events.append(
            {
                "event_id": str(uuid.uuid5(RESULTS_EVENT_NAMESPACE, f"{parsed.digest}:{row.number}")),
                "location": values["location"],
                identified_by: values["item"],
                "quantity": quantity,
                "kind": EventKind.SET,
                "mode": EventMode.IMPORT,
                "counted_at": counted_at.isoformat(),
                "counted_by": values["counted_by"],
                "_row": row.number,
            }
        )
    return events, collected.in_order()


# capture's event fields, back to the import field (and so the file's column) they came from
_EVENT_FIELD_TO_KEY = {
    "location": "location",
    "sku": "item",
    "barcode": "item",
    "quantity": "quantity",
    "counted_at": "counted_at",
    "counted_by": "counted_by",
}


def results_import(
    *,
    session: CountSession,
    actor: AbstractBaseUser,
    file_bytes: bytes,
    mapping: ColumnMapping | Mapping[str, str] | None,
    dry_run: bool,
) -> ImportReport:
    """Record counted quantities from a CSV as `set` events in an active session.

    Guarantees: nothing is written on a dry run or when any row has an error; otherwise all
    rows are ingested in one transaction (all or nothing). Each row's event id derives from the
    file's content and the row number, so importing the same file again adds nothing.
    """
    from counts.services import capture  # the capture module imports more of the app; keep it lazy

    report = ImportReport(kind=ImportKind.RESULTS, dry_run=dry_run)
    try:
        columns = _mapping_columns(ImportKind.RESULTS, mapping)
    except ValidationError as error:
        report.errors = [RowError(None, None, message) for message in error.messages]
        return report
    session = CountSession.objects.select_related("run", "run__facility", "run__organization").get(pk=session.pk)
    if isinstance(mapping, ColumnMapping) and mapping.organization_id != session.organization_id:
        raise ValueError("the mapping belongs to another organization")
    parsed, report.errors = _parse(ImportKind.RESULTS, file_bytes, columns)
    if parsed is None:
        return report
    report.rows = parsed.row_count
    if session.state != SessionState.ACTIVE:
        report.errors.insert(
            0, RowError(None, None, f"session {session.pk} is {session.get_state_display().lower()}; resume it first")
        )
    events, row_errors = _validate_results(session, parsed)
    report.errors = sorted([*report.errors, *row_errors], key=lambda error: error.row or 0)
    already = set(
        CountEvent.objects.filter(event_id__in=[event["event_id"] for event in events]).values_list(
            "event_id", flat=True
        )
    )
    report.preview = {
        "session": session.pk,
        "run": session.run.name,
        "events": len(events),
        "already_imported": len(already),
    }
    if dry_run or report.errors:
        return report

    row_numbers = [event.pop("_row") for event in events]
    totals = capture.CaptureResult()
    try:
        with transaction.atomic():
            rejected: list[RowError] = []
            for start in range(0, len(events), capture.MAX_BATCH):
                result = capture.count_events_ingest(
                    session=session,
                    actor=actor,
                    events=events[start : start + capture.MAX_BATCH],
                    allowed_modes=frozenset({EventMode.IMPORT}),
                )
                for rejection in result.rejected:
                    row = row_numbers[start + rejection["index"]]
                    for event_field, message in rejection["errors"].items():
                        key = _EVENT_FIELD_TO_KEY.get(event_field)
                        rejected.append(RowError(row, parsed.headers.get(key) if key else None, str(message)))
                for name in ("accepted", "duplicates", "unmatched", "extra", "refused"):
                    setattr(totals, name, getattr(totals, name) + getattr(result, name))
            if rejected:
                raise _RolledBack(rejected)
    except _RolledBack as rolled_back:
        report.errors = rolled_back.errors
        return report
    except capture.SessionNotCapturing as error:
        report.errors = [RowError(None, None, f"{error}; nothing was imported")]
        return report
    report.created = {
        name: getattr(totals, name) for name in ("accepted", "duplicates", "unmatched", "extra", "refused")
    }
    return report
