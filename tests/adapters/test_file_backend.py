"""The file backend: batches exported as CSV, accepted when a person marks them imported."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from accounts.roles import Role
from adapters.models import BatchState, PushBatch
from adapters.services import backend_connect, push_drain
from approvals.models import ProposalState, ProposedAction
from audit.models import AuditLog
from inventory.models import InventoryBalance
from tests.adapters.support import approve_adjustments
from tests.factories import InventoryBalanceFactory, ItemFactory, LocationFactory, ZoneFactory, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(organization, facility):
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    for code in ("A-01", "A-02"):
        location = LocationFactory(organization=organization, zone=zone, code=code)
        for sku in ("WIDGET", "GADGET"):
            item = (
                ItemFactory(organization=organization, sku=f"{sku}", average_cost=Decimal("2.50"))
                if code == "A-01"
                else None
            )
            item = item or ItemFactory._meta.model.objects.get(organization=organization, sku=sku)
            InventoryBalanceFactory(organization=organization, item=item, location=location, on_hand=Decimal(100))


def files(organization, layout="netsuite"):
    connection, _ = backend_connect(
        organization=organization,
        kind="file",
        name="files",
        values={"layout": layout, "subsidiary": "Acme US", "adjustment_account": "5100 Inventory Adjustments"},
        actor=None,
    )
    return connection


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_batches_are_exported_in_netsuite_import_layout_and_wait(organization, manager, facility, stocked, client):
    connection = files(organization)
    proposals = approve_adjustments(organization, manager, {("WIDGET", "A-01"): -2, ("GADGET", "A-02"): 1})

    result = push_drain(connection=connection)

    assert (result.batches_formed, result.exported, result.accepted) == (2, 2, 0)
    batches = list(PushBatch.objects.order_by("location_external_id"))
    assert {batch.state for batch in batches} == {BatchState.EXPORTED}
    assert set(ProposedAction.objects.filter(pk__in=proposals).values_list("state", flat=True)) == {"queued"}
    assert InventoryBalance.objects.get(item__sku="WIDGET", location__code="A-01").on_hand == Decimal(100)
    assert AuditLog.objects.filter(tag="export_generated").count() == 2

    client.force_login(member(organization, Role.FINANCE, username="finance"))
    download = client.get(f"/admin/adapters/pushbatch/{batches[0].pk}/file/")
    again = client.get(f"/admin/adapters/pushbatch/{batches[0].pk}/file/")

    assert download["Content-Disposition"] == f'attachment; filename="{batches[0].external_id}.csv"'
    assert download.content == again.content
    [line] = rows(download.content.decode())
    assert line == {
        "External ID": batches[0].external_id,
        "Subsidiary": "Acme US",
        "Date": line["Date"],
        "Adjustment Account": "5100 Inventory Adjustments",
        "Adjustment Location": "A-01",
        "Memo": line["Memo"],
        "Item": "WIDGET",
        "Location": "A-01",
        "Adjust Qty. By": "-2",
        "Est. Unit Cost": "2.5000",
        "Line Memo": line["Line Memo"],
    }
    assert line["Date"].count("/") == 2  # NetSuite's default MM/DD/YYYY


def test_marking_imported_applies_the_adjustments_once(organization, manager, facility, stocked, client):
    connection = files(organization)
    proposals = approve_adjustments(organization, manager, {("WIDGET", "A-01"): -2})
    push_drain(connection=connection)
    batch = PushBatch.objects.get()
    finance = member(organization, Role.FINANCE, username="finance")
    client.force_login(finance)

    for _ in range(2):
        client.post("/admin/adapters/pushbatch/", {"action": "mark_imported", "_selected_action": [batch.pk]})

    batch.refresh_from_db()
    assert batch.state == BatchState.ACCEPTED
    assert InventoryBalance.objects.get(item__sku="WIDGET", location__code="A-01").on_hand == Decimal(98)
    assert ProposedAction.objects.get(pk=proposals[0]).state == ProposalState.PUSHED
    assert AuditLog.objects.filter(tag="inventory_adjustment").count() == 1
    assert AuditLog.objects.get(tag="import_applied").actor == finance


def test_the_generic_layout(organization, manager, facility, stocked):
    connection = files(organization, layout="generic")
    approve_adjustments(organization, manager, {("GADGET", "A-02"): 1})
    push_drain(connection=connection)

    from adapters.selectors import adjustment_file

    [line] = rows(adjustment_file(batch=PushBatch.objects.get()))

    assert (line["sku"], line["location"], line["adjust_by"], line["unit_cost"]) == ("GADGET", "A-02", "1", "2.5000")


def test_only_exported_file_batches_download(organization, manager, facility, stocked, client):
    files(organization)
    approve_adjustments(organization, manager, {("GADGET", "A-02"): 3})
    client.force_login(manager)

    assert client.get("/admin/adapters/pushbatch/999999/file/").status_code == 404
