"""On-hand files for the file backend: staged like every import, applied through the normal sync."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import Role
from adapters.file import snapshots
from adapters.file.models import OnHandColumnMapping, OnHandSnapshot, SnapshotState
from adapters.models import BackendConnection, ExternalRecord, ParityDrift, PushBatch
from adapters.services import backend_connect, backend_sync, push_drain
from adapters.services.drain import push_batch_mark_imported
from approvals.models import ProposalState, ProposedAction
from audit.models import AuditLog
from inventory.models import Facility, InventoryBalance, Item, Location
from tests.adapters.support import approve_adjustments
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

pytestmark = pytest.mark.django_db

HEADER = "item,location,on hand,reserved,unit cost"


@pytest.fixture
def stocked(organization, facility):
    """WH1 with bins A-01 and A-02 (barcodes LOC-A-01, LOC-A-02); WIDGET and GADGET, 100 of each everywhere."""
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    widget = ItemFactory(organization=organization, sku="WIDGET", average_cost=Decimal("2.50"))
    gadget = ItemFactory(organization=organization, sku="GADGET", average_cost=Decimal("7.00"))
    ItemBarcodeFactory(organization=organization, item=widget, value="012345678905")
    for code in ("A-01", "A-02"):
        location = LocationFactory(organization=organization, zone=zone, code=code)
        for item in (widget, gadget):
            InventoryBalanceFactory(organization=organization, item=item, location=location, on_hand=Decimal(100))
    return facility


@pytest.fixture
def finance(organization):
    return member(organization, Role.FINANCE, username="finance")


def files(organization) -> BackendConnection:
    connection, _ = backend_connect(
        organization=organization, kind="file", name="files", values={"layout": "netsuite"}, actor=None
    )
    return connection


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *lines]) + "\r\n").encode()


def check(connection, content: bytes, *, columns=None, actor=None) -> snapshots.SnapshotReport:
    return snapshots.onhand_snapshot_check(
        connection=connection, content=content, filename="onhand.csv", columns=columns or {}, actor=actor
    )


def apply(connection, content: bytes, *, columns=None, actor=None) -> snapshots.SnapshotReport:
    return snapshots.onhand_snapshot_apply(
        connection=connection, content=content, filename="onhand.csv", columns=columns or {}, actor=actor
    )


def errors(report) -> list[tuple]:
    return [(error.row, error.column, error.message) for error in report.errors]


def on_hand(sku: str, code: str) -> tuple[Decimal, Decimal, Decimal]:
    balance = InventoryBalance.objects.get(item__sku=sku, location__code=code)
    return balance.on_hand, balance.reserved, balance.available


def mirror_state() -> list[tuple]:
    return sorted(
        InventoryBalance.objects.values_list("item__sku", "location__code", "on_hand", "reserved", "available")
    ) + sorted(Item.objects.values_list("sku", "average_cost"))


# --- the dry run ---------------------------------------------------------------------------------


def test_a_dry_run_reports_every_problem_by_row_and_column_and_writes_nothing(organization, stocked, finance):
    connection = files(organization)
    before = mirror_state()
    history = InventoryBalance.history.count(), Item.history.count(), AuditLog.objects.count()
    content = csv_bytes(
        "WIDGET,A-01,90,,",
        "NOPE,A-01,1,,",
        "GADGET,Z-99,1,,",
        "GADGET,A-01,lots,,",
        "GADGET,A-02,5,-1,",
        "",
        "012345678905,A-01,3,,",  # WIDGET by barcode: the same pair as row 1
        "GADGET,A-01,4,,-2",
        "WIDGET,LOC-A-02,5,,3.10",
        "WIDGET,A-02,6,,2.90",
        "GADGET,A-01,1,0,1.2345678",
    )

    report = check(connection, content, actor=finance)

    assert report.dry_run
    assert report.rows == 10
    assert errors(report) == [
        (2, "item", "no item with SKU or barcode 'NOPE'"),
        (3, "location", "no location with code or barcode 'Z-99'"),
        (4, "on hand", "'lots' is not a number (write 12 or 12.5, without thousands separators)"),
        (5, "reserved", "reserved cannot be negative"),
        (7, "location", "row 1 already gives this item at this location"),
        (8, "unit cost", "unit cost cannot be negative"),
        (10, "location", "row 9 already gives this item at this location"),
        (11, "unit cost", "at most 4 decimals"),
    ]
    assert OnHandSnapshot.objects.count() == 0
    assert mirror_state() == before
    assert (InventoryBalance.history.count(), Item.history.count(), AuditLog.objects.count()) == history


def test_one_item_has_one_average_cost(organization, stocked):
    report = check(files(organization), csv_bytes("WIDGET,A-01,1,,3.10", "WIDGET,A-02,1,,2.90", "WIDGET,A-03,1,,"))

    assert errors(report)[0] == (
        2,
        "unit cost",
        "2.90 differs from 3.10 given for this item at row 1; an item has one average cost",
    )


def test_a_valid_dry_run_previews_what_would_change(organization, stocked):
    report = check(files(organization), csv_bytes("WIDGET,A-01,100,,2.5", "WIDGET,A-02,90,,", "GADGET,A-01,100,2,"))

    assert report.valid
    # WIDGET@A-02 changes; GADGET@A-01 gains a reservation; GADGET@A-02 is left out though both are named.
    assert report.preview == {
        "items": 2,
        "locations": 2,
        "balances_changing": 2,
        "balances_zeroed": 1,
        "costs_changing": 0,
    }


def test_missing_required_columns_are_named_with_the_headers_found(organization, stocked):
    report = check(
        files(organization), csv_bytes("WIDGET,A-01,3", header="Name,Location,Qty"), columns={"item": "Name"}
    )

    assert errors(report) == [
        (
            None,
            None,
            "missing required column(s): on_hand (column 'on hand'). Headers found: 'Name', 'Location', 'Qty'",
        )
    ]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"sku": "Name"}, "'sku' is not a field; fields are: item, location, on_hand, reserved, unit_cost"),
        ({"item": "Location"}, "'item' and 'location' both read column 'location'"),
    ],
)
def test_bad_mappings_are_refused_with_a_reason(organization, stocked, columns, message):
    assert errors(check(files(organization), csv_bytes("WIDGET,A-01,1,,"), columns=columns)) == [(None, None, message)]


def test_oversized_files_are_refused(organization, stocked, monkeypatch):
    connection = files(organization)
    monkeypatch.setattr(snapshots, "MAX_ROWS", 2)
    too_many = check(connection, csv_bytes("WIDGET,A-01,1,,", "WIDGET,A-02,1,,", "GADGET,A-01,1,,"))
    monkeypatch.setattr(snapshots, "MAX_FILE_BYTES", 40)
    too_big = apply(connection, csv_bytes("WIDGET,A-01,1,,", "WIDGET,A-02,1,,"))

    assert errors(too_many) == [(3, None, "the file has more than 2 rows; split it")]
    assert errors(too_big) == [(None, None, "the file is larger than 0 MB; split it")]
    refused = OnHandSnapshot.objects.get()
    assert (refused.state, refused.content, refused.errors[0]["message"]) == (
        SnapshotState.INVALID,
        "",
        "the file is larger than 0 MB; split it",
    )


def test_validation_queries_do_not_grow_with_rows(organization, stocked):
    connection = files(organization)
    more = LocationFactory(organization=organization, zone=Location.objects.first().zone, code="B-01")
    for n in range(40):
        ItemFactory(organization=organization, sku=f"X-{n:03d}")

    def queries_for(count: int) -> int:
        lines = [f"X-{n:03d},{'LOC-B-01' if n % 2 else more.code},{n},," for n in range(count)]
        with CaptureQueriesContext(db_connection) as captured:
            assert check(connection, csv_bytes(*lines)).valid
        return len(captured.captured_queries)

    assert queries_for(2) == queries_for(40)


# --- applying ------------------------------------------------------------------------------------


def test_a_valid_file_sets_balances_and_costs_with_history(organization, stocked, finance):
    connection = files(organization)
    content = csv_bytes(
        "012345678905,A-01,90,5,3.1000",  # WIDGET by barcode
        "WIDGET,LOC-A-02,100,,",  # A-02 by its barcode; unchanged
        "GADGET,A-01,-4,,",  # an ERP may report negative on hand
        "GADGET,A-02,100,,",
    )

    report = apply(connection, content, actor=finance)

    assert report.applied, report.errors
    assert on_hand("WIDGET", "A-01") == (Decimal(90), Decimal(5), Decimal(85))
    assert on_hand("WIDGET", "A-02") == (Decimal(100), Decimal(0), Decimal(100))
    assert on_hand("GADGET", "A-01") == (Decimal(-4), Decimal(0), Decimal(-4))
    assert Item.objects.get(sku="WIDGET").average_cost == Decimal("3.1000")
    assert Item.objects.get(sku="GADGET").average_cost == Decimal("7.00")
    changed = InventoryBalance.history.filter(history_type="~", history_user=finance)
    assert sorted(changed.values_list("item__sku", "location__code", "on_hand")) == [
        ("GADGET", "A-01", Decimal(-4)),
        ("WIDGET", "A-01", Decimal(90)),
    ]
    cost_change = Item.history.get(sku="WIDGET", history_type="~")
    assert (cost_change.history_user, cost_change.average_cost) == (finance, Decimal("3.1000"))

    snapshot = OnHandSnapshot.objects.get()
    assert (snapshot.state, snapshot.row_count, snapshot.applied_by, snapshot.uploaded_by) == (
        SnapshotState.APPLIED,
        4,
        finance,
        finance,
    )
    assert snapshot.content == content.decode()
    assert snapshot.sync_summary["balances_changed"] == 2
    assert snapshot.sync_summary["items_updated"] == 1
    assert list(snapshot.history.values_list("state", flat=True)) == [SnapshotState.APPLIED, SnapshotState.VALIDATED]
    audit = AuditLog.objects.get(tag="import_applied")
    assert (audit.actor, audit.object_id, audit.data["rows"]) == (finance, str(snapshot.pk), 4)
    # Known by SKU and code: no mappings, nothing new in the mirror.
    assert not ExternalRecord.objects.exists()
    assert (Item.objects.count(), Location.objects.count(), Facility.objects.count()) == (2, 2, 1)


def test_a_file_with_an_unknown_item_or_location_is_refused_and_creates_nothing(organization, stocked, finance):
    connection = files(organization)
    before = mirror_state()

    report = apply(connection, csv_bytes("WIDGET,A-01,1,,", "NEW-SKU,A-01,5,,", "GADGET,NEW-BIN,5,,"), actor=finance)

    assert not report.applied
    assert errors(report) == [
        (2, "item", "no item with SKU or barcode 'NEW-SKU'"),
        (3, "location", "no location with code or barcode 'NEW-BIN'"),
    ]
    assert mirror_state() == before
    assert (Item.objects.count(), Location.objects.count()) == (2, 2)
    snapshot = OnHandSnapshot.objects.get()
    assert snapshot.state == SnapshotState.INVALID
    assert snapshot.errors == [error.as_dict() for error in report.errors]
    assert not AuditLog.objects.filter(tag="import_applied").exists()


def test_a_location_code_two_facilities_share_cannot_be_named(organization, stocked):
    other = FacilityFactory(organization=organization, code="WH2")
    zone = ZoneFactory(organization=organization, facility=other)
    LocationFactory(organization=organization, zone=zone, code="A-01", barcode="WH2-A-01")

    report = check(files(organization), csv_bytes("WIDGET,A-01,1,,", "WIDGET,LOC-A-01,1,,"))

    message = "location code 'A-01' is used at WH1 and WH2; the file backend knows locations by code, so it cannot "
    assert errors(report) == [
        (1, "location", message + "tell them apart"),
        (2, "location", message + "tell them apart"),
    ]


def test_another_organizations_items_and_locations_are_unknown(organization, stocked):
    globex = OrganizationFactory(slug="globex")
    ItemFactory(organization=globex, sku="THEIRS")
    LocationFactory(
        organization=globex,
        zone=ZoneFactory(organization=globex, facility=FacilityFactory(organization=globex)),
        code="THEIR-BIN",
    )

    report = check(files(organization), csv_bytes("THEIRS,A-01,1,,", "WIDGET,THEIR-BIN,1,,"))

    assert [error.column for error in report.errors] == ["item", "location"]


def test_a_failure_while_applying_leaves_the_mirror_unchanged(organization, stocked, finance, monkeypatch):
    connection = files(organization)
    before = mirror_state()

    def broken_audit(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(snapshots, "audit_log_write", broken_audit)

    with pytest.raises(RuntimeError, match="disk full"):
        apply(connection, csv_bytes("WIDGET,A-01,1,,9.99"), actor=finance)

    assert mirror_state() == before
    assert not OnHandSnapshot.objects.exists()
    assert BackendConnection.objects.get(pk=connection.pk).last_sync_at is None


def test_a_busy_connection_keeps_the_file_unapplied_and_changes_nothing(organization, stocked, finance):
    from django.utils import timezone

    connection = files(organization)
    BackendConnection.objects.filter(pk=connection.pk).update(
        worker_lease_owner="drain:elsewhere", worker_lease_until=timezone.now() + timezone.timedelta(minutes=5)
    )
    before = mirror_state()

    report = apply(connection, csv_bytes("WIDGET,A-01,1,,"), actor=finance)

    assert not report.applied
    assert report.errors[0].message.startswith("not applied, nothing changed: connection files is busy")
    assert mirror_state() == before
    assert OnHandSnapshot.objects.get().state == SnapshotState.VALIDATED


def test_an_inactive_or_foreign_kind_connection_is_refused(organization, stocked):
    connection = files(organization)
    BackendConnection.objects.filter(pk=connection.pk).update(active=False)
    connection.refresh_from_db()

    assert errors(check(connection, csv_bytes("WIDGET,A-01,1,,"))) == [
        (None, None, "connection files is inactive; activate it first")
    ]
    connection.kind = "netsuite"
    with pytest.raises(ValueError, match="not a file connection"):
        check(connection, csv_bytes("WIDGET,A-01,1,,"))


def test_a_sync_without_a_file_changes_nothing(organization, stocked):
    connection = files(organization)
    before = mirror_state()

    result = backend_sync(connection=connection)

    assert result.skipped == "nothing to read: the connection syncs when an on-hand file is applied"
    assert mirror_state() == before


# --- saved mappings and the template -------------------------------------------------------------

NETSUITE_COLUMNS = {
    "item": "Name",
    "location": "Inventory Location",
    "on_hand": "Location On Hand",
    "reserved": "Location Committed",
    "unit_cost": "Average Cost",
}


def test_a_saved_mapping_is_reused_for_a_netsuite_export(organization, stocked, finance):
    mapping, created = snapshots.onhand_column_mapping_save(
        organization=organization, actor=finance, name="NetSuite on hand", columns=NETSUITE_COLUMNS
    )
    again, created_again = snapshots.onhand_column_mapping_save(
        organization=organization, actor=finance, name="NetSuite on hand", columns=NETSUITE_COLUMNS
    )
    export = csv_bytes(
        "WIDGET,A-01,97,1,2.75",
        header="Internal ID,Name,Inventory Location,Location On Hand,Location Committed,Average Cost",
    ).replace(b"WIDGET", b"17,WIDGET")

    report = apply(files(organization), export, columns=again.columns, actor=finance)

    assert (created, created_again, again.pk) == (True, False, mapping.pk)
    assert report.applied, report.errors
    assert on_hand("WIDGET", "A-01") == (Decimal(97), Decimal(1), Decimal(96))
    assert OnHandSnapshot.objects.get().columns == NETSUITE_COLUMNS
    template = snapshots.onhand_template_csv(columns=mapping.columns).splitlines()
    assert template[0] == "Name,Inventory Location,Location On Hand,Location Committed,Average Cost"


def test_the_template_uploaded_unchanged_is_refused(organization, stocked):
    template = snapshots.onhand_template_csv().encode()

    report = check(files(organization), template)

    assert template.decode().splitlines()[0] == "item,location,on hand,reserved,unit cost"
    assert [error.column for error in report.errors] == ["item", "location"]


# --- the whole pipeline on files -----------------------------------------------------------------


def _count_export_and_import(organization, manager, finance, delta) -> int:
    connection = files(organization)
    assert apply(connection, csv_bytes("WIDGET,A-01,100,,", "GADGET,A-02,100,,"), actor=finance).applied
    [proposal] = approve_adjustments(organization, manager, {("WIDGET", "A-01"): delta})
    push_drain(connection=connection)
    push_batch_mark_imported(batch=PushBatch.objects.get(), actor=finance)
    assert ProposedAction.objects.get(pk=proposal).state == ProposalState.PUSHED
    assert on_hand("WIDGET", "A-01")[0] == 100 + delta
    # A sync with no file in hand must not read silence as zero.
    assert backend_sync(connection=connection).skipped
    assert not ParityDrift.objects.exists()
    return proposal


def test_a_file_pipeline_confirms_the_adjustment_on_the_next_snapshot(organization, stocked, manager, finance):
    proposal = _count_export_and_import(organization, manager, finance, -2)

    report = apply(files(organization), csv_bytes("WIDGET,A-01,98,,", "GADGET,A-02,100,,"), actor=finance)

    assert (report.sync["confirmed"], report.sync["drifts"]) == (1, 0)
    assert ProposedAction.objects.get(pk=proposal).state == ProposalState.CONFIRMED
    assert not ParityDrift.objects.exists()
    assert on_hand("WIDGET", "A-01")[0] == Decimal(98)


def test_a_file_pipeline_flags_drift_when_the_next_snapshot_differs(organization, stocked, manager, finance):
    proposal = _count_export_and_import(organization, manager, finance, -2)

    report = apply(files(organization), csv_bytes("WIDGET,A-01,97,,", "GADGET,A-02,100,,"), actor=finance)

    assert report.sync["drifts"] == 1
    drift = ParityDrift.objects.get()
    assert (drift.item.sku, drift.location.code) == ("WIDGET", "A-01")
    assert (drift.expected_on_hand, drift.backend_on_hand, drift.difference) == (Decimal(98), Decimal(97), Decimal(-1))
    assert ProposedAction.objects.get(pk=proposal).state == ProposalState.PUSHED
    assert on_hand("WIDGET", "A-01")[0] == Decimal(97)  # the ERP is the record


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_files_applied_at_once_take_turns(organization, stocked, finance):
    # The connection's worker lease serialises the two syncs: the second waits for the first
    # to commit, then applies on top of it; neither is refused and neither deadlocks.
    connection = files(organization)
    barrier = threading.Barrier(2, timeout=10)
    reports: list[snapshots.SnapshotReport] = []

    def upload(quantity: int) -> None:
        try:
            barrier.wait()
            reports.append(apply(connection, csv_bytes(f"WIDGET,A-01,{quantity},,"), actor=finance))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=upload, args=(quantity,)) for quantity in (91, 92)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [report.applied for report in reports] == [True, True], [report.errors for report in reports]
    last = OnHandSnapshot.objects.order_by("-applied_at").first()
    assert on_hand("WIDGET", "A-01")[0] == Decimal(last.content.splitlines()[1].split(",")[2])
    assert BackendConnection.objects.get(pk=connection.pk).worker_lease_owner == ""


# --- the admin -----------------------------------------------------------------------------------


def test_finance_dry_runs_then_applies_an_upload_in_the_admin(organization, stocked, finance, client):
    connection = files(organization)
    client.force_login(finance)
    upload_url = f"/admin/adapters/onhandsnapshot/upload/{connection.pk}/"

    listing = client.get("/admin/adapters/onhandsnapshot/")
    bad = client.post(upload_url, {"_dry_run": "1", "file": _upload(csv_bytes("WIDGET,A-01,x,,"))})
    good = client.post(upload_url, {"_dry_run": "1", "file": _upload(csv_bytes("WIDGET,A-01,90,,"))})
    nothing_yet = mirror_state()
    applied = client.post(upload_url, {"_apply": "1"})

    assert upload_url in listing.content.decode()
    assert bad.status_code == 200
    assert "<td>1</td><td>on hand</td><td>&#x27;x&#x27; is not a number" in bad.content.decode()
    assert 'id="onhand-apply-form"' not in bad.content.decode()
    assert 'id="onhand-apply-form"' in good.content.decode()
    assert ("WIDGET", "A-01", Decimal(100), Decimal(0), Decimal(100)) in nothing_yet
    snapshot = OnHandSnapshot.objects.get()
    assert applied.status_code == 302
    assert applied["Location"] == f"/admin/adapters/onhandsnapshot/{snapshot.pk}/change/"
    assert snapshot.state == SnapshotState.APPLIED
    assert on_hand("WIDGET", "A-01")[0] == Decimal(90)
    detail = client.get(applied["Location"])
    assert detail.status_code == 200
    assert "Applied to the mirror" in detail.content.decode()
    assert client.post(upload_url, {"_apply": "1"}, follow=True).redirect_chain  # nothing pending any more
    assert OnHandSnapshot.objects.count() == 1


def test_the_admin_saves_and_reuses_a_mapping(organization, stocked, manager, client):
    connection = files(organization)
    client.force_login(manager)
    upload_url = f"/admin/adapters/onhandsnapshot/upload/{connection.pk}/"
    export = csv_bytes("WIDGET,A-01,80", header="Name,Inventory Location,Location On Hand")
    typed = {"item": "Name", "location": "Inventory Location", "on_hand": "Location On Hand"}
    import json

    client.post(
        upload_url,
        {"_dry_run": "1", "file": _upload(export), "columns": json.dumps(typed), "save_mapping_as": "NetSuite"},
    )
    mapping = OnHandColumnMapping.objects.get(organization=organization, name="NetSuite")
    client.post(upload_url, {"_dry_run": "1", "file": _upload(export), "saved_mapping": mapping.pk})
    client.post(upload_url, {"_apply": "1"})
    template = client.get(f"/admin/adapters/onhandsnapshot/template/?mapping={mapping.pk}")

    assert mapping.columns == typed
    assert OnHandSnapshot.objects.get().columns == typed
    assert on_hand("WIDGET", "A-01")[0] == Decimal(80)
    assert template.content.decode().splitlines()[0] == "Name,Inventory Location,Location On Hand,reserved,unit cost"


def test_uploads_are_404_across_organizations(organization, stocked, finance, client):
    connection = files(organization)
    apply(connection, csv_bytes("NOPE,A-01,1,,"), actor=finance)
    snapshot = OnHandSnapshot.objects.get()
    globex = OrganizationFactory(slug="globex")
    client.force_login(member(globex, Role.FINANCE, username="globex-finance"))

    assert client.get(f"/admin/adapters/onhandsnapshot/upload/{connection.pk}/").status_code == 404
    assert client.post(f"/admin/adapters/onhandsnapshot/upload/{connection.pk}/", {"_apply": "1"}).status_code == 404
    assert client.get(f"/admin/adapters/onhandsnapshot/{snapshot.pk}/change/").status_code == 404
    assert client.get(f"/admin/adapters/onhandsnapshot/{snapshot.pk}/history/").status_code == 404
    listing = client.get("/admin/adapters/onhandsnapshot/")
    assert listing.status_code == 200
    assert "onhand.csv" not in listing.content.decode()


def test_planners_cannot_upload(organization, stocked, client):
    connection = files(organization)
    client.force_login(member(organization, Role.PLANNER, username="planner"))

    assert client.get(f"/admin/adapters/onhandsnapshot/upload/{connection.pk}/").status_code == 403
    assert client.get("/admin/adapters/onhandsnapshot/template/").status_code == 403


def test_the_snapshot_list_shows_refused_files_with_their_problems(organization, stocked, finance, client):
    apply(files(organization), csv_bytes("NOPE,A-01,1,,"), actor=finance)
    client.force_login(finance)

    listing = client.get("/admin/adapters/onhandsnapshot/?state=invalid")
    detail = client.get(f"/admin/adapters/onhandsnapshot/{OnHandSnapshot.objects.get().pk}/change/")

    assert "onhand.csv" in listing.content.decode()
    assert "<td>1</td><td>item</td><td>no item with SKU or barcode &#x27;NOPE&#x27;</td>" in detail.content.decode()


def _upload(content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("onhand.csv", content, content_type="text/csv")


def test_mappings_are_kept_in_the_admin_per_organization(organization, finance, client):
    client.force_login(finance)

    added = client.post("/admin/adapters/onhandcolumnmapping/add/", {"name": "NetSuite", "columns": '{"item": "Name"}'})
    refused = client.post("/admin/adapters/onhandcolumnmapping/add/", {"name": "Other", "columns": '{"sku": "Name"}'})
    mapping = OnHandColumnMapping.objects.get()
    globex = OrganizationFactory(slug="globex")
    client.force_login(member(globex, Role.MANAGER, username="globex-manager"))

    assert added.status_code == 302
    assert (mapping.organization, mapping.columns, mapping.history.get().history_user) == (
        organization,
        {"item": "Name"},
        finance,
    )
    assert "&#x27;sku&#x27; is not a field" in refused.content.decode()
    assert client.get(f"/admin/adapters/onhandcolumnmapping/{mapping.pk}/change/").status_code == 404
