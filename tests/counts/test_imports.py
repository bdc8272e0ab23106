"""CSV imports: staged, reported by row and column, applied all or nothing, never twice."""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import Role
from counts.models import (
    ColumnMapping,
    CountEvent,
    CountKind,
    CountRequest,
    CountRun,
    EventKind,
    EventMode,
    ImportKind,
    RunSource,
    RunState,
    SignalKind,
)
from counts.services import imports
from counts.services.planning import count_run_create
from tests.conftest import token_client
from tests.factories import (
    FacilityFactory,
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    ItemFactory,
    LocationFactory,
    OrganizationFactory,
    ZoneFactory,
    member,
)

needs_capture = pytest.mark.skipif(
    importlib.util.find_spec("counts.services.capture") is None, reason="counts.services.capture has not landed"
)

PLAN_HEADER = "item,facility,count name,start,due,location"
RESULTS_HEADER = "item,location,quantity,counted by,counted at"


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Stock:
    facility: object
    items: list
    locations: dict


@pytest.fixture
def stock(organization, facility) -> Stock:
    """WH1 (Chicago): SKU-1 (barcode 036000291452) at A-01 and A-02, SKU-2 at B-01, SKU-3 nowhere."""
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    locations = {
        code: LocationFactory(organization=organization, zone=zone, code=code, barcode=f"LOC-{code}")
        for code in ("A-01", "A-02", "B-01")
    }
    items = [ItemFactory(organization=organization, sku=f"SKU-{n}") for n in (1, 2, 3)]
    ItemBarcodeFactory(item=items[0], value="036000291452")
    for item, code in ((items[0], "A-01"), (items[0], "A-02"), (items[1], "B-01")):
        InventoryBalanceFactory(organization=organization, item=item, location=locations[code], on_hand=Decimal(5))
    return Stock(facility=facility, items=items, locations=locations)


@pytest.fixture
def planner(organization):
    return member(organization, Role.PLANNER, username="planner")


def _plan(organization, actor, file_bytes: bytes, *, mapping=None, dry_run: bool = True) -> imports.ImportReport:
    return imports.plan_import(
        organization=organization, actor=actor, file_bytes=file_bytes, mapping=mapping, dry_run=dry_run
    )


def _errors(report: imports.ImportReport) -> list[tuple]:
    return [(error.row, error.column, error.message) for error in report.errors]


# --- plan import -----------------------------------------------------------------------------


def test_plan_dry_run_reports_row_column_and_message_and_writes_nothing(organization, planner, stock):
    file_bytes = _csv(
        PLAN_HEADER,
        "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01",
        "NOPE,WH1,Spring,2026-03-02,2026-03-06,A-01",
        "SKU-2,WH1,Spring,03/02/2026,2026-03-06,B-01",
        "SKU-2,WH9,Spring,2026-03-02,2026-03-06,B-01",
        "SKU-1,WH1,Spring,2026-03-02,2026-03-06,Z-99",
        ",WH1,Spring,2026-03-02,2026-03-06,A-01",
    )

    report = _plan(organization, planner, file_bytes, dry_run=True)

    assert not report.valid
    assert report.rows == 6
    assert _errors(report) == [
        (2, "item", "no item with SKU or barcode 'NOPE'"),
        (3, "start", "'03/02/2026' is not a date: use YYYY-MM-DD or YYYY-MM-DD HH:MM (local)"),
        (4, "facility", "no facility with code 'WH9' in this organization"),
        (5, "location", "no location 'Z-99' at WH1"),
        (6, "item", "required: SKU or any barcode of the item"),
    ]
    assert report.as_dict()["row_numbering"] == imports.ROW_NUMBERING
    assert CountRun.objects.count() == 0
    assert CountRequest.objects.count() == 0


def test_plan_never_resolves_another_organizations_facilities_or_items(organization, planner, stock):
    globex = OrganizationFactory(name="Globex", slug="globex")
    FacilityFactory(organization=globex, code="WH7")
    ItemBarcodeFactory(item__organization=globex, item__sku="GLOBEX-1", value="012345678905")

    report = _plan(
        organization,
        planner,
        _csv(
            PLAN_HEADER,
            "SKU-1,WH7,Spring,2026-03-02,2026-03-06,A-01",
            "GLOBEX-1,WH1,Spring,2026-03-02,2026-03-06,A-01",
            "012345678905,WH1,Spring,2026-03-02,2026-03-06,A-01",
        ),
    )

    assert _errors(report) == [
        (1, "facility", "no facility with code 'WH7' in this organization"),
        (2, "item", "no item with SKU or barcode 'GLOBEX-1'"),
        (3, "item", "no item with SKU or barcode '012345678905'"),
    ]


def test_plan_valid_dry_run_previews_and_writes_nothing(organization, planner, stock):
    report = _plan(organization, planner, _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,"))

    assert report.valid
    assert report.created == {}
    assert report.preview["runs"] == [
        {
            "facility": "WH1",
            "name": "Spring",
            "start": "2026-03-02 00:00",
            "due": "2026-03-06 23:59",
            "time_zone": "America/Chicago",
            "rows": 1,
            "requests": 2,
        }
    ]
    assert CountRun.objects.count() == 0


def test_plan_apply_creates_one_directed_run_per_facility_and_name(organization, planner, stock):
    other = FacilityFactory(organization=organization, code="WH2", time_zone="Europe/Berlin")
    other_bin = LocationFactory(organization=organization, zone__facility=other, zone__organization=organization)
    file_bytes = "\ufeff".encode() + _csv(  # Excel's "CSV UTF-8" starts with a byte-order mark
        PLAN_HEADER,
        "SKU-1,WH1,Spring,2026-03-02,2026-03-06,",  # no location: every bin holding SKU-1 at WH1
        "036000291452,WH1,Spring,2026-03-02,2026-03-06,A-01",  # same request by barcode: merged
        "SKU-2,WH1,Spring,2026-03-02,2026-03-06,B-01",
        "SKU-3,WH2,Spring,2026-03-02,2026-03-06," + other_bin.code,
    )

    report = _plan(organization, planner, file_bytes, dry_run=False)

    assert report.valid, report.errors
    runs = {run.facility.code: run for run in CountRun.objects.select_related("facility")}
    assert set(runs) == {"WH1", "WH2"}
    for run in runs.values():
        assert (run.kind, run.source, run.state, run.name) == (
            CountKind.DIRECTED,
            RunSource.IMPORT,
            RunState.SCHEDULED,
            "Spring",
        )
        assert run.created_by == planner
    requested = set(CountRequest.objects.values_list("run__facility__code", "item__sku", "location__code", "reason"))
    assert requested == {
        ("WH1", "SKU-1", "A-01", SignalKind.PLANNED),
        ("WH1", "SKU-1", "A-02", SignalKind.PLANNED),
        ("WH1", "SKU-2", "B-01", SignalKind.PLANNED),
        ("WH2", "SKU-3", other_bin.code, SignalKind.PLANNED),
    }
    assert report.created["requests"] == 4
    assert sorted((run["facility"], run["requests"]) for run in report.created["runs"]) == [("WH1", 3), ("WH2", 1)]
    assert runs["WH1"].history.count() >= 1


def test_plan_one_bad_row_means_nothing_is_created(organization, planner, stock):
    file_bytes = _csv(
        PLAN_HEADER,
        "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01",
        "SKU-2,WH1,Autumn,2026-09-02,2026-09-06,B-01",
        "SKU-3,WH1,Autumn,2026-09-02,2026-09-06,",  # SKU-3 is stocked nowhere and names no bin
    )

    report = _plan(organization, planner, file_bytes, dry_run=False)

    assert _errors(report) == [(3, "location", "'SKU-3' has no stock at any location in WH1; name the location")]
    assert report.created == {}
    assert CountRun.objects.count() == 0
    assert CountRequest.objects.count() == 0


def test_plan_rows_of_one_run_must_agree_on_start_and_due(organization, planner, stock):
    file_bytes = _csv(
        PLAN_HEADER,
        "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01",
        "SKU-2,WH1,Spring,2026-03-03,2026-03-06,B-01",
    )

    report = _plan(organization, planner, file_bytes, dry_run=False)

    assert _errors(report) == [
        (
            2,
            "start",
            "2026-03-03 00:00 differs from 2026-03-02 00:00 given for run 'Spring' at row 1; "
            "every row of a run has the same start",
        )
    ]
    assert CountRun.objects.count() == 0


def test_plan_existing_run_name_is_a_row_error_so_reuploads_never_duplicate(organization, planner, stock):
    file_bytes = _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01")
    assert _plan(organization, planner, file_bytes, dry_run=False).valid

    again = _plan(organization, planner, file_bytes, dry_run=False)

    assert _errors(again) == [(1, "count name", "a run named 'Spring' already exists at WH1")]
    assert CountRun.objects.count() == 1
    assert CountRequest.objects.count() == 1


def test_plan_start_and_due_are_kept_local_and_utc_follows_the_facility_zone(organization, planner, stock):
    # Chicago moves from CST (UTC-6) to CDT (UTC-5) on 2026-03-08, between start and due.
    file_bytes = _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02 08:00,2026-03-09,A-01")

    assert _plan(organization, planner, file_bytes, dry_run=False).valid

    run = CountRun.objects.get()
    assert (run.start_date_local.isoformat(), run.start_time_local.isoformat()) == ("2026-03-02", "08:00:00")
    assert (run.due_date_local.isoformat(), run.due_time_local.isoformat()) == ("2026-03-09", "23:59:00")
    assert run.starts_at == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert run.due_at == datetime(2026, 3, 10, 4, 59, tzinfo=UTC)


def test_plan_due_before_start_is_a_row_error(organization, planner, stock):
    report = _plan(organization, planner, _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-06 10:00,2026-03-06 09:00,"))

    assert _errors(report) == [(1, "due", "due 2026-03-06 09:00 is before start 2026-03-06 10:00")]


def test_saved_mapping_is_reused_with_differently_named_headers(organization, planner, stock):
    mapping, created = imports.column_mapping_save(
        organization=organization,
        actor=planner,
        kind=ImportKind.PLAN,
        name="ERP export",
        columns={"item": "Article", "facility": "Site", "count_name": "Run", "start": "From", "due": "Until"},
    )
    assert created
    # Headers match whatever their case and surrounding spaces; "location" keeps the template name.
    file_bytes = _csv(" ARTICLE ,site,RUN,from,until,Location", "SKU-2,WH1,Spring,2026-03-02,2026-03-06,B-01")

    saved = ColumnMapping.objects.get(pk=mapping.pk)
    report = _plan(organization, planner, file_bytes, mapping=saved, dry_run=False)

    assert report.valid, report.errors
    assert CountRequest.objects.get().item.sku == "SKU-2"
    assert saved.created_by == planner


def test_row_errors_name_the_files_own_header(organization, planner, stock):
    columns = {"item": "Article", "facility": "Site", "count_name": "Run", "start": "From", "due": "Until"}
    report = _plan(
        organization,
        planner,
        _csv("Article,Site,Run,From,Until", "NOPE,WH1,Spring,2026-03-02,2026-03-06"),
        mapping=columns,
    )

    assert _errors(report) == [(1, "Article", "no item with SKU or barcode 'NOPE'")]


def test_saving_a_mapping_again_replaces_its_columns(organization, planner):
    first, _ = imports.column_mapping_save(
        organization=organization, actor=planner, kind=ImportKind.PLAN, name="ERP", columns={"item": "Article"}
    )
    second, created = imports.column_mapping_save(
        organization=organization, actor=planner, kind=ImportKind.PLAN, name="ERP", columns={"item": "Artikel"}
    )

    assert not created
    assert second.pk == first.pk
    assert ColumnMapping.objects.get().columns == {"item": "Artikel"}
    assert second.history.count() == 2


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"colour": "Colour"}, "'colour' is not a field"),
        ({"item": "  "}, "'item' needs a column header"),
        ({"item": "Code", "location": "code"}, "'item' and 'location' both read column 'code'"),
    ],
)
def test_bad_mappings_are_refused_with_a_reason(organization, planner, columns, message):
    with pytest.raises(ValidationError) as raised:
        imports.column_mapping_save(
            organization=organization, actor=planner, kind=ImportKind.PLAN, name="Bad", columns=columns
        )

    assert message in str(raised.value)
    assert ColumnMapping.objects.count() == 0


def test_missing_required_columns_are_one_error_naming_fields_and_headers_found(organization, planner, stock):
    report = _plan(organization, planner, _csv("SKU,facility,count name,start", "SKU-1,WH1,Spring,2026-03-02"))

    assert _errors(report) == [
        (
            None,
            None,
            "missing required column(s): item (column 'item'); due (column 'due'). "
            "Headers found: 'SKU', 'facility', 'count name', 'start'",
        )
    ]


@pytest.mark.parametrize(
    ("file_bytes", "message"),
    [
        (b"", "the file is empty"),
        (PLAN_HEADER.encode() + b"\n", "the file has a header but no data rows"),
        (
            PLAN_HEADER.encode() + b"\nSKU-1,WH1,Caf\xe9,2026-03-02,2026-03-06,\n",
            'the file is not UTF-8 text (byte 0xe9 at data row 1); save it as "CSV UTF-8" and upload it again',
        ),
    ],
)
def test_unreadable_files_get_one_clear_error(organization, planner, file_bytes, message):
    report = _plan(organization, planner, file_bytes)

    assert [error.message for error in report.errors] == [message]


def test_a_row_with_more_cells_than_headers_is_an_error(organization, planner, stock):
    report = _plan(organization, planner, _csv(PLAN_HEADER, "SKU-1,WH1,Spring, big,2026-03-02,2026-03-06,A-01"))

    assert _errors(report) == [
        (1, None, "the row has 7 cells but the header has 6 columns (an unquoted comma in a value?)")
    ]


def test_oversized_files_are_refused(organization, planner, stock, monkeypatch):
    monkeypatch.setattr(imports, "MAX_IMPORT_ROWS", 2)
    rows = [f"SKU-1,WH1,Run {n},2026-03-02,2026-03-06,A-01" for n in range(3)]

    too_many = _plan(organization, planner, _csv(PLAN_HEADER, *rows))
    monkeypatch.setattr(imports, "MAX_IMPORT_BYTES", 100)
    too_big = _plan(organization, planner, _csv(PLAN_HEADER, *rows))

    assert _errors(too_many) == [(3, None, "the file has more than 2 rows; split it")]
    assert [error.message for error in too_big.errors] == ["the file is larger than 0 MB; split it"]
    assert CountRun.objects.count() == 0


def test_plan_validation_queries_do_not_grow_with_rows(organization, planner, stock):
    def queries_for(count: int) -> int:
        lines = [f"{'SKU-1' if n % 2 else '036000291452'},WH1,Run {n % 3},2026-03-02,2026-03-06," for n in range(count)]
        with CaptureQueriesContext(connection) as captured:
            assert _plan(organization, planner, _csv(PLAN_HEADER, *lines)).valid
        return len(captured.captured_queries)

    assert queries_for(3) == queries_for(60)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_uploads_of_one_plan_create_it_once(organization, planner, stock, monkeypatch):
    # Both uploads validate before either applies; the run-name constraint lets one win and the
    # other is told, by row, that the run now exists.
    file_bytes = _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01")
    barrier = threading.Barrier(2, timeout=10)
    real_apply = imports._plan_apply

    def apply_after_both_validated(**kwargs):
        barrier.wait()
        return real_apply(**kwargs)

    monkeypatch.setattr(imports, "_plan_apply", apply_after_both_validated)
    reports: list[imports.ImportReport] = []

    def upload() -> None:
        try:
            reports.append(_plan(organization, planner, file_bytes, dry_run=False))
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(report.valid for report in reports) == [False, True]
    refused = next(report for report in reports if not report.valid)
    assert _errors(refused) == [(1, "count name", "a run named 'Spring' already exists at WH1")]
    assert CountRun.objects.count() == 1
    assert CountRequest.objects.count() == 1


# --- results import --------------------------------------------------------------------------


@pytest.fixture
def session(organization, stock, manager):
    from counts.services.sessions import count_session_start

    run = count_run_create(
        organization=organization, facility=stock.facility, name="Hard", kind=CountKind.HARD, actor=manager
    )
    return count_session_start(run=run, user=manager, device_id="walk-sheet")


def _results(session, actor, file_bytes: bytes, *, mapping=None, dry_run: bool = True) -> imports.ImportReport:
    return imports.results_import(session=session, actor=actor, file_bytes=file_bytes, mapping=mapping, dry_run=dry_run)


def test_results_dry_run_reports_every_bad_row_and_writes_nothing(session, manager):
    file_bytes = _csv(
        RESULTS_HEADER,
        "SKU-1,A-01,4,Jo,2026-03-02 14:30",
        "NOPE,A-01,4,Jo,2026-03-02 14:30",
        "SKU-1,Z-99,4,Jo,2026-03-02 14:30",
        "SKU-1,A-02,-1,Jo,2026-03-02 14:30",
        "SKU-1,A-02,four,Jo,2026-03-02 14:30",
        "SKU-1,A-02,1.2345,Jo,2026-03-02 14:30",
        "SKU-1,A-02,4,Jo,yesterday",
        "SKU-1,A-02,4,Jo,2999-01-01 00:00",
    )

    report = _results(session, manager, file_bytes, dry_run=True)

    assert _errors(report) == [
        (2, "item", "no item with SKU or barcode 'NOPE'"),
        (3, "location", "no location 'Z-99' at WH1"),
        (4, "quantity", "a counted quantity cannot be negative"),
        (5, "quantity", "'four' is not a number (write 12 or 12.5, without thousands separators)"),
        (6, "quantity", "at most 3 decimals"),
        (
            7,
            "counted at",
            "'yesterday' is not a time: use YYYY-MM-DD HH:MM (America/Chicago) or ISO-8601 with an offset",
        ),
        (8, "counted at", "'2999-01-01 00:00' is in the future"),
    ]
    assert CountEvent.objects.count() == 0


@needs_capture
def test_results_same_file_twice_creates_nothing_new(session, manager, stock):
    file_bytes = _csv(
        RESULTS_HEADER,
        "SKU-1,A-01,4,Jo,2026-03-02 14:30",  # facility-local (Chicago, CST): 20:30 UTC
        "036000291452,LOC-A-02,2.5,,2026-03-02T15:00:00Z",  # by barcodes, with an explicit offset
    )

    first = _results(session, manager, file_bytes, dry_run=False)
    second = _results(session, manager, file_bytes, dry_run=False)

    assert first.valid, first.errors
    assert first.created["accepted"] == 2
    assert second.valid
    assert (second.created["accepted"], second.created["duplicates"]) == (0, 2)
    events = list(CountEvent.objects.order_by("counted_at"))
    assert len(events) == 2
    assert {(event.kind, event.mode) for event in events} == {(EventKind.SET, EventMode.IMPORT)}
    assert [(event.location.code, event.item.sku, event.quantity) for event in events] == [
        ("A-02", "SKU-1", Decimal("2.5")),
        ("A-01", "SKU-1", Decimal("4")),
    ]
    assert events[0].counted_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert events[1].counted_at == datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
    assert events[1].counted_by == "Jo"
    # The dry run of the same file now says every row is already in.
    assert _results(session, manager, file_bytes).preview["already_imported"] == 2


@needs_capture
def test_results_line_endings_and_bom_do_not_make_a_file_new(session, manager, stock):
    lines = [RESULTS_HEADER, "SKU-2,B-01,7,,2026-03-02 14:30"]
    unix = ("\n".join(lines) + "\n").encode()
    excel = "\ufeff".encode() + ("\r\n".join(lines) + "\r\n").encode()

    assert _results(session, manager, unix, dry_run=False).created["accepted"] == 1
    assert _results(session, manager, excel, dry_run=False).created["duplicates"] == 1
    assert CountEvent.objects.count() == 1


@needs_capture
def test_results_one_bad_row_means_no_events(session, manager, stock):
    file_bytes = _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30", "SKU-1,A-02,x,,2026-03-02 14:30")

    report = _results(session, manager, file_bytes, dry_run=False)

    assert not report.valid
    assert CountEvent.objects.count() == 0


@needs_capture
def test_results_rejected_by_capture_in_a_later_batch_roll_back_the_earlier_ones(session, manager, stock, monkeypatch):
    from counts.services import capture

    monkeypatch.setattr(capture, "MAX_BATCH", 1)
    real_ingest = capture.count_events_ingest
    calls: list[int] = []

    def ingest_rejecting_the_second_batch(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            return capture.CaptureResult(rejected=[{"index": 0, "errors": {"location": "no location 'B-01' here"}}])
        return real_ingest(**kwargs)

    monkeypatch.setattr(capture, "count_events_ingest", ingest_rejecting_the_second_batch)
    file_bytes = _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30", "SKU-2,B-01,7,,2026-03-02 14:30")

    report = _results(session, manager, file_bytes, dry_run=False)

    assert _errors(report) == [(2, "location", "no location 'B-01' here")]
    assert report.created == {}
    assert len(calls) == 2
    assert CountEvent.objects.count() == 0


def test_results_validation_queries_do_not_grow_with_rows(session, manager, stock):
    def queries_for(count: int) -> int:
        lines = [f"{'SKU-1' if n % 2 else '036000291452'},A-0{n % 2 + 1},{n},,2026-03-02 14:30" for n in range(count)]
        with CaptureQueriesContext(connection) as captured:
            assert _results(session, manager, _csv(RESULTS_HEADER, *lines)).valid
        return len(captured.captured_queries)

    assert queries_for(3) == queries_for(60)


def test_results_into_a_session_that_is_not_active_is_refused(session, manager, stock):
    from counts.services.sessions import count_session_pause

    count_session_pause(session=session, actor=manager)

    report = _results(session, manager, _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30"), dry_run=False)

    assert _errors(report) == [(None, None, f"session {session.pk} is paused; resume it first")]
    assert CountEvent.objects.count() == 0


# --- API ------------------------------------------------------------------------------------


def _upload(api, path: str, file_bytes: bytes, **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api.post(path, {"file": SimpleUploadedFile("f.csv", file_bytes, "text/csv"), **fields}, format="multipart")


def test_api_plan_dry_run_is_the_default_and_reports_errors(organization, planner, stock):
    api = token_client(planner)

    valid = _upload(api, reverse("imports-plan"), _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01"))
    invalid = _upload(api, reverse("imports-plan"), _csv(PLAN_HEADER, "NOPE,WH1,Spring,2026-03-02,2026-03-06,A-01"))

    assert valid.status_code == 200
    assert (valid.json()["dry_run"], valid.json()["valid"], valid.json()["created"]) == (True, True, {})
    assert invalid.status_code == 200
    assert invalid.json()["errors"] == [{"row": 1, "column": "item", "message": "no item with SKU or barcode 'NOPE'"}]
    assert CountRun.objects.count() == 0


def test_api_plan_apply_writes_all_or_answers_400_with_nothing_written(organization, planner, stock):
    api = token_client(planner)
    good = "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01"

    refused = _upload(
        api, "/api/imports/plan", _csv(PLAN_HEADER, good, "NOPE,WH1,Spring,2026-03-02,2026-03-06,A-01"), dry_run="false"
    )
    assert refused.status_code == 400
    assert refused.json()["valid"] is False
    assert CountRun.objects.count() == 0

    applied = _upload(api, "/api/imports/plan", _csv(PLAN_HEADER, good), dry_run="false")
    assert applied.status_code == 200
    body = applied.json()
    assert body["created"]["requests"] == 1
    assert body["created"]["runs"][0]["id"] == CountRun.objects.get().pk


def test_api_plan_with_a_saved_mapping_name_or_typed_columns(organization, planner, stock):
    api = token_client(planner)
    saved = api.post(
        "/api/column-mappings/",
        {"name": "ERP", "kind": "plan", "columns": {"item": "Article", "count_name": "Run"}},
        format="json",
    )
    file_bytes = _csv("Article,facility,Run,start,due,location", "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01")

    by_name = _upload(api, "/api/imports/plan", file_bytes, mapping="ERP")
    by_columns = _upload(api, "/api/imports/plan", file_bytes, columns='{"item": "Article", "count_name": "Run"}')
    unknown = _upload(api, "/api/imports/plan", file_bytes, mapping="Nope")

    assert saved.status_code == 201
    assert by_name.json()["valid"] is True
    assert by_columns.json()["valid"] is True
    assert unknown.status_code == 400
    assert unknown.json() == {"errors": {"mapping": ["no saved plan mapping named 'Nope'"]}}


def test_api_templates_download_as_csv(organization, planner, manager_api):
    imports.column_mapping_save(
        organization=organization, actor=planner, kind=ImportKind.RESULTS, name="Handheld", columns={"item": "UPC"}
    )

    plan = token_client(planner).get(reverse("imports-plan-template"))
    results = manager_api.get("/api/imports/results/template", {"mapping": "Handheld"}, HTTP_ACCEPT="text/csv")

    assert plan.status_code == 200
    assert plan["Content-Type"] == "text/csv"
    assert 'filename="plan-import-template.csv"' in plan["Content-Disposition"]
    assert plan.content.decode().splitlines()[0] == PLAN_HEADER
    assert results.status_code == 200
    assert results.content.decode().splitlines()[0] == "UPC,location,quantity,counted by,counted at"


def test_an_unchanged_template_is_refused_not_imported(organization, planner, stock):
    template = token_client(planner).get("/api/imports/plan/template").content

    report = _plan(organization, planner, template, dry_run=False)

    assert (1, "item", "no item with SKU or barcode 'EXAMPLE-SKU'") in _errors(report)
    assert CountRun.objects.count() == 0


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.FINANCE])
def test_api_roles_that_may_not_import_get_403(organization, session, role):
    api = token_client(member(organization, role, username=f"user-{role}"))
    file_bytes = _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30")

    responses = [
        _upload(api, "/api/imports/plan", _csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01")),
        _upload(api, "/api/imports/results", file_bytes, session=session.pk, dry_run="false"),
        api.get("/api/imports/plan/template"),
        api.get("/api/column-mappings/"),
    ]

    assert [response.status_code for response in responses] == [403, 403, 403, 403]
    assert CountEvent.objects.count() == 0


def test_api_planner_may_plan_but_not_import_results(organization, planner, session):
    api = token_client(planner)

    response = _upload(
        api, "/api/imports/results", _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30"), session=session.pk
    )
    saving = api.post(
        "/api/column-mappings/", {"name": "H", "kind": "results", "columns": {"item": "UPC"}}, format="json"
    )

    assert response.status_code == 403
    assert saving.status_code == 403
    assert ColumnMapping.objects.count() == 0


def test_api_another_organizations_session_is_404(session, stock):
    globex = OrganizationFactory(name="Globex", slug="globex")
    outsider = token_client(member(globex, Role.MANAGER, username="globex-manager"))

    response = _upload(
        outsider, "/api/imports/results", _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30"), session=session.pk
    )

    assert response.status_code == 404
    assert CountEvent.objects.count() == 0


def test_api_results_dry_run_reports_errors(manager_api, session, stock):
    response = _upload(
        manager_api, "/api/imports/results", _csv(RESULTS_HEADER, "SKU-1,A-01,-3,,2026-03-02 14:30"), session=session.pk
    )

    assert response.status_code == 200
    assert response.json()["errors"] == [
        {"row": 1, "column": "quantity", "message": "a counted quantity cannot be negative"}
    ]
    assert CountEvent.objects.count() == 0


@needs_capture
def test_api_results_apply_twice_changes_nothing_the_second_time(manager_api, session, stock):
    file_bytes = _csv(RESULTS_HEADER, "SKU-1,A-01,4,,2026-03-02 14:30")

    first = _upload(manager_api, "/api/imports/results", file_bytes, session=session.pk, dry_run="false")
    second = _upload(manager_api, "/api/imports/results", file_bytes, session=session.pk, dry_run="false")

    assert first.status_code == second.status_code == 200
    assert first.json()["created"]["accepted"] == 1
    assert second.json()["created"]["accepted"] == 0
    assert CountEvent.objects.count() == 1


def test_api_column_mappings_list_and_save(organization, planner, manager_api):
    created = manager_api.post(
        "/api/column-mappings/", {"name": "Handheld", "kind": "results", "columns": {"item": "UPC"}}, format="json"
    )
    replaced = manager_api.post(
        "/api/column-mappings/", {"name": "Handheld", "kind": "results", "columns": {"item": "EAN"}}, format="json"
    )
    bad = manager_api.post(
        "/api/column-mappings/", {"name": "Bad", "kind": "plan", "columns": {"colour": "C"}}, format="json"
    )
    imports.column_mapping_save(
        organization=organization, actor=planner, kind=ImportKind.PLAN, name="ERP", columns={"item": "Article"}
    )
    other = OrganizationFactory(name="Globex", slug="globex")
    imports.column_mapping_save(
        organization=other, actor=None, kind=ImportKind.PLAN, name="Theirs", columns={"item": "X"}
    )

    listed = manager_api.get("/api/column-mappings/").json()
    planner_listed = token_client(planner).get("/api/column-mappings/").json()

    assert (created.status_code, replaced.status_code) == (201, 200)
    assert replaced.json()["columns"] == {"item": "EAN"}
    assert bad.status_code == 400
    assert "'colour' is not a field" in str(bad.json()["errors"]["columns"])
    assert [(row["kind"], row["name"]) for row in listed["results"]] == [("plan", "ERP"), ("results", "Handheld")]
    assert [row["name"] for row in planner_listed["results"]] == ["ERP"]


def test_schema_lists_the_import_paths(manager_api):
    paths = manager_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    assert {
        "/api/imports/plan",
        "/api/imports/plan/template",
        "/api/imports/results",
        "/api/imports/results/template",
        "/api/column-mappings",
    } <= {path.rstrip("/") for path in paths}


# --- admin ----------------------------------------------------------------------------------


def test_admin_plan_upload_dry_run_then_apply(client, organization, planner, stock):
    client.force_login(planner)
    url = reverse("admin:counts_columnmapping_plan_import")
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload(content: bytes):
        return client.post(url, {"file": SimpleUploadedFile("plan.csv", content), "_dry_run": "1"})

    page = client.get(url).content.decode()
    assert reverse("admin:counts_columnmapping_plan_template") in page
    assert 'id="plan-upload-form"' in page

    bad = upload(_csv(PLAN_HEADER, "NOPE,WH1,Spring,2026-03-02,2026-03-06,A-01")).content.decode()
    assert 'id="import-errors"' in bad
    assert "no item with SKU or barcode &#x27;NOPE&#x27;" in bad
    assert 'id="plan-apply-form"' not in bad

    good = upload(_csv(PLAN_HEADER, "SKU-1,WH1,Spring,2026-03-02,2026-03-06,A-01")).content.decode()
    assert 'id="plan-apply-form"' in good
    assert CountRun.objects.count() == 0

    applied = client.post(url, {"_apply": "1"})
    assert applied.status_code == 302
    assert CountRun.objects.get().name == "Spring"
    # The pending file is used once.
    assert client.post(url, {"_apply": "1"}).status_code == 302
    assert CountRun.objects.count() == 1


def test_admin_template_link_and_mapping_changelist(client, organization, planner):
    imports.column_mapping_save(
        organization=organization, actor=planner, kind=ImportKind.PLAN, name="ERP", columns={"item": "Article"}
    )
    imports.column_mapping_save(
        organization=organization, actor=None, kind=ImportKind.RESULTS, name="Handheld", columns={"item": "UPC"}
    )
    client.force_login(planner)

    changelist = client.get(reverse("admin:counts_columnmapping_changelist")).content.decode()
    template = client.get(reverse("admin:counts_columnmapping_plan_template"))

    assert reverse("admin:counts_columnmapping_plan_import") in changelist
    assert "ERP" in changelist
    assert "Handheld" not in changelist  # results mappings are the managers'
    assert template.content.decode().splitlines()[0] == PLAN_HEADER


def test_admin_plan_upload_is_for_planning_roles_only(client, organization):
    client.force_login(member(organization, Role.FINANCE, username="finance"))

    assert client.get(reverse("admin:counts_columnmapping_plan_import")).status_code == 403


def test_admin_saves_mappings_through_the_service_and_refuses_a_taken_name(client, organization, planner):
    client.force_login(planner)
    url = reverse("admin:counts_columnmapping_add")
    form = {"name": "ERP", "kind": "plan", "columns": '{"item": " Article "}'}

    created = client.post(url, form)
    taken = client.post(url, form)
    bad = client.post(url, {**form, "name": "Other", "columns": '{"colour": "C"}'})
    results_kind = client.post(url, {**form, "name": "Handheld", "kind": "results"})

    assert created.status_code == 302
    mapping = ColumnMapping.objects.get()
    assert (mapping.organization, mapping.created_by, mapping.columns) == (organization, planner, {"item": "Article"})
    assert "already exists" in taken.content.decode()
    assert "is not a field" in bad.content.decode()
    assert results_kind.status_code == 200  # a planner may not choose the results kind
    assert ColumnMapping.objects.count() == 1


def test_admin_mapping_changelist_queries_do_not_grow(client, organization, manager):
    client.force_login(manager)
    url = reverse("admin:counts_columnmapping_changelist")

    def queries_with(count: int) -> int:
        for n in range(ColumnMapping.objects.count(), count):
            imports.column_mapping_save(
                organization=organization, actor=manager, kind=ImportKind.PLAN, name=f"M{n}", columns={"item": "A"}
            )
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured.captured_queries)

    assert queries_with(2) == queries_with(20)
