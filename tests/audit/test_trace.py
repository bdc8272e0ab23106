"""The trace: ERP record → batch → proposal → approvals → variance → count line → every scan."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import Role
from adapters.models import PushBatch
from adapters.services import push_drain
from approvals.models import ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit import trace
from audit.models import AuditLog
from counts.models import CountKind, CountLine
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.sessions import count_session_start, count_session_submit
from inventory.models import Facility
from reconciliation.guardrails import guardrail_update
from reconciliation.services import guardrail_for, root_causes_ensure, run_reconcile
from tests.adapters.support import approve_adjustments, connect, fake_netsuite, warehouse
from tests.conftest import token_client
from tests.factories import member

pytestmark = pytest.mark.django_db

AISLE = "DALLAS-AISLE-1"
COUNTED_AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 09:00 CST in Dallas
CHICAGO = ZoneInfo("America/Chicago")
# A trace reads a fixed number of queries whatever its size: the anchor, a count (batches),
# the proposals with every link, their approvals, history, scans, reason log, events.
TRACE_QUERIES = 8
# The API adds authentication: the token and the membership.
API_QUERIES = TRACE_QUERIES + 2


def _scan(sku: str, *, quantity: int = 1, kind: str = "add", mode: str = "scan", offset: int = 0) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "location": AISLE,
        "sku": sku,
        "quantity": quantity,
        "kind": kind,
        "mode": mode,
        "counted_at": (COUNTED_AT + timedelta(seconds=offset)).isoformat(),
    }


@dataclass
class Counted:
    """A hard count of one aisle, scanned by an associate and reconciled (not yet decided)."""

    counter: object
    finance: object
    big: ProposedAction  # NS-0000: 70 counted for 100 on the books, above the finance limit
    small: ProposedAction  # NS-0001: 99 for 100, approved by the guardrail
    exact: CountLine  # NS-0002: 100 for 100, a variance without a proposal


def count_and_reconcile(organization, manager, *, counted_by: str = "") -> Counted:
    """Real scans through the counting services, then reconciliation; the finance limit is lowered
    so the big difference needs a manager and a finance signature."""
    root_causes_ensure(organization=organization)
    facility = Facility.objects.get(organization=organization)
    guardrail_update(
        guardrail=guardrail_for(facility=facility), actor=manager, changes={"finance_min_value": Decimal("100")}
    )
    counter = member(organization, Role.ASSOCIATE, username="counter")
    finance = member(organization, Role.FINANCE, username="finance")
    run = count_run_create(
        organization=organization, facility=facility, name="Aisle 1", kind=CountKind.HARD, actor=manager
    )
    session = count_session_start(run=run, user=counter, device_id="scanner-7")
    events = [
        _scan("NS-0000", offset=0) | ({"counted_by": counted_by} if counted_by else {}),
        _scan("NS-0000", offset=5),
        _scan("NS-0000", quantity=68, kind="set", mode="manual", offset=30),
        _scan("NS-0000", offset=40),
        _scan("NS-0000", offset=45),
        _scan("NS-0001", quantity=99, kind="set", mode="manual", offset=60),
        _scan("NS-0002", quantity=100, kind="set", mode="manual", offset=90),
    ]
    result = count_events_ingest(session=session, actor=counter, events=events)
    assert (result.accepted, result.rejected) == (7, [])
    count_session_submit(session=session, actor=counter)
    run_reconcile(run=run, actor=manager)
    proposals = {proposal.item.sku: proposal for proposal in ProposedAction.objects.filter(run=run)}
    assert sorted(proposals) == ["NS-0000", "NS-0001"]
    return Counted(
        counter=counter,
        finance=finance,
        big=proposals["NS-0000"],
        small=proposals["NS-0001"],
        exact=CountLine.objects.get(run=run, item__sku="NS-0002"),
    )


def sign_both(counted: Counted, manager) -> None:
    proposal_decide(
        proposal=counted.big,
        actor=manager,
        decision=DecisionInput(
            decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="miscount", note="Recounted twice"
        ),
    )
    proposal_decide(
        proposal=counted.big,
        actor=counted.finance,
        decision=DecisionInput(decision="approve", reason_code="ANNUAL_COUNT_ADJUSTMENT", root_cause="shrink_theft"),
    )


@pytest.fixture
def pushed(organization, manager, netsuite, synced) -> Counted:
    counted = count_and_reconcile(organization, manager)
    sign_both(counted, manager)
    drained = push_drain(connection=synced)
    assert (drained.batches_formed, drained.accepted, drained.lines_accepted) == (1, 1, 2)
    return counted


@pytest.fixture
def batch(pushed) -> PushBatch:
    return PushBatch.objects.get()


@pytest.fixture
def finance_api(pushed):
    return token_client(pushed.finance)


def local(moment: datetime) -> str:
    return moment.astimezone(CHICAGO).isoformat()


def chain_of(body: dict, proposal: ProposedAction) -> dict:
    (chain,) = [chain for chain in body["chains"] if chain["proposal"] and chain["proposal"]["id"] == proposal.pk]
    return chain


# --- the API: every link ------------------------------------------------------------------------


def test_trace_by_record_id_shows_every_link_of_the_chain(manager_api, pushed, batch, synced):
    response = manager_api.get("/api/trace/", {"record": batch.record_id})

    assert response.status_code == 200
    body = response.json()
    assert body["query"] == {"parameter": "record", "value": batch.record_id}
    assert body["page"] == {"number": 1, "size": 200, "pages": 1, "total_chains": 2, "has_next": False, "note": ""}
    assert [(row["external_id"], row["connection"], row["kind"]) for row in body["batches"]] == [
        (batch.external_id, "netsuite", "netsuite")
    ]
    chain = chain_of(body, pushed.big)
    assert chain["time_zone"] == "America/Chicago"
    assert chain["erp"] == {"connection": "netsuite", "kind": "netsuite", "record_id": batch.record_id}
    assert (chain["batch"]["external_id"], chain["batch"]["state"]) == (batch.external_id, "accepted")
    assert chain["batch"]["created_at"] == local(batch.created_at)
    assert (chain["push"]["external_id"], chain["push"]["state"]) == (pushed.big.external_id, "accepted")
    proposal = chain["proposal"]
    assert (proposal["external_id"], proposal["state"], proposal["item"], proposal["location"]) == (
        pushed.big.external_id, "pushed", "NS-0000", AISLE,
    )  # fmt: skip
    assert (Decimal(proposal["delta"]), proposal["auto_approved"], proposal["needs_finance"]) == (-30, False, True)

    signatures = [
        (row["approver"], row["role"], row["decision"], row["reason_code"], row["root_cause"], row["note"])
        for row in chain["approvals"]
    ]
    assert signatures == [
        ("manager", "manager", "approve", "MANAGER_OVERRIDE", "miscount", "Recounted twice"),
        ("finance", "finance", "approve", "ANNUAL_COUNT_ADJUSTMENT", "shrink_theft", ""),
    ]
    assert chain["approvals"][0]["root_cause_label"] == "Miscount"

    variance = chain["variance"]
    assert [Decimal(variance[key]) for key in ("counted_quantity", "book_at_count", "variance_units")] == [70, 100, -30]
    assert (Decimal(variance["variance_value"]), variance["routing"]) == (Decimal("-135.00"), "proposal")

    line = chain["line"]
    assert (line["item"], line["location"], line["run_name"]) == ("NS-0000", AISLE, "Aisle 1")
    assert (Decimal(line["counted_quantity"]), Decimal(line["book_at_count"])) == (70, 100)
    # A line is first counted when its first scan arrives (scans carry the device's time).
    assert line["first_counted_at"] == local(pushed.big.variance.line.first_counted_at)

    scans = [(s["associate"], s["device"], s["mode"], s["kind"], Decimal(s["quantity"])) for s in chain["scans"]]
    assert scans == [
        ("counter", "scanner-7", "scan", "add", 1),
        ("counter", "scanner-7", "scan", "add", 1),
        ("counter", "scanner-7", "manual", "set", 68),
        ("counter", "scanner-7", "scan", "add", 1),
        ("counter", "scanner-7", "scan", "add", 1),
    ]
    assert [s["counted_at"] for s in chain["scans"]][:3] == [
        "2026-11-20T09:00:00-06:00", "2026-11-20T09:00:05-06:00", "2026-11-20T09:00:30-06:00",
    ]  # fmt: skip
    assert {s["status"] for s in chain["scans"]} == {"matched"}

    history = [(row["previous_state"], row["state"], row["by"]) for row in chain["history"]]
    assert history == [
        ("", "pending", "manager"),
        ("pending", "awaiting_finance", "manager"),
        ("awaiting_finance", "approved", "finance"),
        ("approved", "queued", ""),
        ("queued", "pushed", ""),
    ]
    assert chain["history"][1]["reason"] == "approve by manager: MANAGER_OVERRIDE"
    assert chain["history"][4]["reason"] == f"in the ERP as {batch.record_id}"

    tags = [row["tag"] for row in chain["audit"]]
    assert tags == ["proposal_awaiting_finance", "proposal_approved", "inventory_adjustment"]
    adjusted = chain["audit"][-1]
    assert (adjusted["approved_by"], Decimal(adjusted["delta"])) == ("manager, finance", -30)
    assert adjusted["data"]["record_id"] == batch.record_id
    assert [row["type"] for row in chain["events"]] == [
        "variance.detected", "proposal.created", "proposal.decided", "proposal.decided", "inventory.adjusted",
    ]  # fmt: skip


def test_an_adjustment_approved_by_the_guardrail_has_no_signature_but_its_version(manager_api, pushed, batch):
    chain = chain_of(manager_api.get("/api/trace/", {"batch": batch.external_id}).json(), pushed.small)

    assert chain["approvals"] == []
    assert chain["proposal"]["auto_approved"] is True
    assert chain["variance"]["routing"] == "auto"
    assert chain["variance"]["guardrail_version"] == 2
    assert [row["tag"] for row in chain["audit"]] == ["inventory_adjustment"]
    assert chain["audit"][0]["approved_by"] == "guardrail"
    assert [(s["mode"], Decimal(s["quantity"])) for s in chain["scans"]] == [("manual", 99)]


def test_record_batch_proposal_and_line_lead_to_the_same_chain(manager_api, pushed, batch):
    by_record = chain_of(manager_api.get("/api/trace/", {"record": batch.record_id}).json(), pushed.big)
    by_batch = chain_of(manager_api.get("/api/trace/", {"batch": batch.external_id}).json(), pushed.big)
    by_id = manager_api.get("/api/trace/", {"proposal": pushed.big.pk}).json()
    by_external_id = manager_api.get("/api/trace/", {"proposal": pushed.big.external_id}).json()
    by_line = manager_api.get("/api/trace/", {"line": pushed.big.variance.line_id}).json()

    assert len(by_id["chains"]) == len(by_external_id["chains"]) == len(by_line["chains"]) == 1
    assert by_id["batches"] == by_line["batches"] == []
    assert by_record == by_batch == by_id["chains"][0] == by_external_id["chains"][0] == by_line["chains"][0]
    assert by_external_id["query"] == {"parameter": "proposal", "value": pushed.big.external_id}


def test_a_line_without_a_proposal_still_traces_to_its_scans(manager_api, pushed):
    body = manager_api.get("/api/trace/", {"line": pushed.exact.pk}).json()

    (chain,) = body["chains"]
    assert chain["proposal"] is chain["batch"] is chain["erp"] is chain["push"] is None
    assert (chain["variance"]["routing"], Decimal(chain["variance"]["variance_units"])) == ("none", 0)
    assert chain["approvals"] == chain["history"] == []
    assert [(s["associate"], s["device"], s["mode"]) for s in chain["scans"]] == [("counter", "scanner-7", "manual")]
    assert Decimal(chain["line"]["book_at_count"]) == 100


def test_a_proposal_not_pushed_yet_has_no_batch_and_no_erp_record(organization, manager, manager_api, synced):
    counted = count_and_reconcile(organization, manager)
    sign_both(counted, manager)

    (chain,) = manager_api.get("/api/trace/", {"proposal": counted.big.pk}).json()["chains"]

    assert chain["batch"] is chain["erp"] is None
    assert (chain["push"]["state"], chain["proposal"]["state"]) == ("pending", "approved")
    assert [row["role"] for row in chain["approvals"]] == ["manager", "finance"]
    assert len(chain["scans"]) == 5


def test_a_record_id_shared_by_two_connections_lists_both_batches(organization, manager, manager_api, pushed, batch):
    # A second backend (say, a sandbox) happens to give the same record id to another batch.
    with fake_netsuite() as other:
        warehouse(other)
        sandbox = connect(organization, other, name="sandbox")  # not the push target: the first one is
    PushBatch.objects.create(
        organization=organization, connection=sandbox, external_id="CC-X-B1", location_external_id="10", request={},
        line_count=0, state="accepted", record_id=batch.record_id, created_at=batch.created_at,
    )  # fmt: skip

    body = manager_api.get("/api/trace/", {"record": batch.record_id}).json()

    assert [(row["connection"], row["external_id"]) for row in body["batches"]] == [
        ("netsuite", batch.external_id), ("sandbox", "CC-X-B1"),
    ]  # fmt: skip
    assert len(body["chains"]) == 2


# --- scoping, errors, permissions -------------------------------------------------------------


def test_another_organizations_ids_are_not_found_like_missing_ones(other_organization, pushed, batch):
    outsider = token_client(member(other_organization, Role.MANAGER, username="outsider"))
    queries = [
        {"record": batch.record_id},
        {"batch": batch.external_id},
        {"proposal": pushed.big.pk},
        {"proposal": pushed.big.external_id},
        {"line": pushed.big.variance.line_id},
    ]

    answers = [outsider.get("/api/trace/", query) for query in queries]
    missing = token_client(pushed.finance).get("/api/trace/", {"proposal": 999999})

    assert [answer.status_code for answer in answers] == [404] * 5
    assert {answer.content for answer in answers} == {missing.content}
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, {"query": ["required: exactly one of record, batch, proposal, line"]}),
        ({"record": "  ", "line": ""}, {"query": ["required: exactly one of record, batch, proposal, line"]}),
        (
            {"record": "1", "batch": "CC-1-B1"},
            {"batch": ["give only one of batch, record"], "record": ["give only one of batch, record"]},
        ),
        ({"line": "CC-1"}, {"line": ["a count line id (a number)"]}),
        ({"proposal": "1", "page": "0"}, {"page": ["Ensure this value is greater than or equal to 1."]}),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(manager_api, params, errors):
    response = manager_api.get("/api/trace/", params)

    assert response.status_code == 400
    assert response.json() == {"errors": errors}


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.PLANNER])
def test_only_managers_finance_and_admins_trace(organization, pushed, role):
    outsider = token_client(member(organization, role, username=f"a-{role}"))

    assert outsider.get("/api/trace/", {"proposal": pushed.big.pk}).status_code == 403


def test_admins_trace_too(organization, pushed):
    admin = token_client(member(organization, Role.ADMIN, username="admin"))

    assert admin.get("/api/trace/", {"proposal": pushed.big.pk}).status_code == 200


# --- a fixed number of queries ---------------------------------------------------------------


def test_the_trace_reads_a_fixed_number_of_queries_whatever_its_size(organization, manager, synced):
    # One batch of five adjustments at aisle 1, one of two at aisle 2 (one batch per backend location).
    deltas = {(f"NS-{n:04d}", AISLE): -1 for n in range(5)} | {(f"NS-{n:04d}", "DALLAS-AISLE-2"): -1 for n in range(2)}
    approve_adjustments(organization, manager, deltas)
    push_drain(connection=synced)
    big, small = sorted(PushBatch.objects.all(), key=lambda batch: -batch.line_count)
    assert (big.line_count, small.line_count) == (5, 2)

    counts = []
    for anchor in (big, small):
        with CaptureQueriesContext(connection) as queries:
            found = trace.trace_get(organization=organization, query=trace.TraceQuery("batch", anchor.external_id))
            assert all(chain.proposal.approvals is not None for chain in found.chains)
        counts.append(len(queries))

    assert counts == [TRACE_QUERIES, TRACE_QUERIES]


def test_api_query_count_is_pinned(manager_api, pushed, batch, django_assert_max_num_queries):
    for params in ({"record": batch.record_id}, {"proposal": pushed.big.external_id}, {"line": pushed.exact.pk}):
        with django_assert_max_num_queries(API_QUERIES):
            assert manager_api.get("/api/trace/", params).status_code == 200


def test_long_traces_come_a_page_at_a_time_with_a_note(organization, manager, manager_api, synced, monkeypatch):
    approve_adjustments(organization, manager, {(f"NS-{n:04d}", AISLE): -1 for n in range(5)})
    push_drain(connection=synced)
    batch = PushBatch.objects.get()
    monkeypatch.setattr(trace, "CHAINS_PER_PAGE", 2)

    first = manager_api.get("/api/trace/", {"batch": batch.external_id}).json()
    last = manager_api.get("/api/trace/", {"batch": batch.external_id, "page": 3}).json()

    assert first["page"] == {
        "number": 1, "size": 2, "pages": 3, "total_chains": 5, "has_next": True,
        "note": "Showing chains 1–2 of 5 (2 per page); ask for page=2 for more.",
    }  # fmt: skip
    assert (len(first["chains"]), len(last["chains"]), last["page"]["has_next"]) == (2, 1, False)
    assert last["page"]["note"] == "Showing chains 5–5 of 5 (the last page)."
    shown = [chain["proposal"]["id"] for chain in first["chains"] + last["chains"]]
    assert len(set(shown)) == 3


# --- the CSV export ------------------------------------------------------------------------------


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_export_has_one_row_per_scan_with_the_chain_repeated_and_is_audited(client, pushed, batch):
    client.force_login(pushed.finance)

    response = client.get("/trace/export.csv", {"record": batch.record_id})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(f'attachment; filename="trace-record-{batch.record_id}-')
    rows = _csv(response)
    assert list(rows[0]) == trace.CSV_HEADER
    big = [row for row in rows if row["proposal_id"] == str(pushed.big.pk)]
    small = [row for row in rows if row["proposal_id"] == str(pushed.small.pk)]
    assert (len(big), len(small), len(rows)) == (5, 1, 6)
    assert {row["erp_record_id"] for row in rows} == {batch.record_id}
    assert {(row["batch_external_id"], row["erp_connection"], row["time_zone"]) for row in rows} == {
        (batch.external_id, "netsuite", "America/Chicago")
    }
    assert {row["approvals"] for row in big} == {
        "manager (manager) approve MANAGER_OVERRIDE / miscount — Recounted twice; "
        "finance (finance) approve ANNUAL_COUNT_ADJUSTMENT / shrink_theft"
    }
    assert small[0]["approvals"] == "guardrail v2 (auto-approved)"
    assert {(row["book_at_count"], row["line_book_at_count"], row["variance_units"]) for row in big} == {
        ("100.000", "100.000", "-30.000")
    }
    assert [(row["scan_associate"], row["scan_device"], row["scan_mode"], row["scan_quantity"]) for row in big] == [
        ("counter", "scanner-7", "scan", "1.000"),
        ("counter", "scanner-7", "scan", "1.000"),
        ("counter", "scanner-7", "manual", "68.000"),
        ("counter", "scanner-7", "scan", "1.000"),
        ("counter", "scanner-7", "scan", "1.000"),
    ]
    assert big[0]["scan_counted_at"] == "2026-11-20T09:00:00-06:00"

    log = AuditLog.objects.get(tag="export_generated", actor=pushed.finance)
    assert log.data == {"export": "trace", "query": {"record": batch.record_id}, "chains": 2, "rows": 6}
    assert log.organization_id == pushed.big.organization_id


def test_export_cells_never_start_a_formula(organization, manager, client, synced):
    counted = count_and_reconcile(organization, manager, counted_by='=HYPERLINK("http://x")')
    client.force_login(manager)

    rows = _csv(client.get("/trace/export.csv", {"proposal": counted.big.pk}))

    assert [row["scan_counted_by"] for row in rows][:2] == ["""'=HYPERLINK("http://x")""", ""]
    assert {row["delta"] for row in rows} == {"-30.000"}  # numbers keep their sign
    assert trace.csv_cell("-30.000") == "-30.000"
    assert trace.csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert trace.csv_cell("+1 555 0100") == "'+1 555 0100"


def test_export_of_another_organizations_id_or_a_bad_query_writes_nothing(other_organization, client, pushed, batch):
    client.force_login(member(other_organization, Role.FINANCE, username="outsider"))

    assert client.get("/trace/export.csv", {"batch": batch.external_id}).status_code == 404
    assert client.get("/trace/export.csv", {"batch": batch.external_id, "line": "1"}).status_code == 400
    assert not AuditLog.objects.filter(tag="export_generated").exists()


def test_associates_cannot_export(client, pushed):
    client.force_login(pushed.counter)

    assert client.get("/trace/export.csv", {"proposal": pushed.big.pk}).status_code == 403
    assert not AuditLog.objects.filter(tag="export_generated").exists()


# --- the page --------------------------------------------------------------------------------------


def test_page_shows_the_chain_for_a_manager(client, manager, pushed, batch, django_assert_max_num_queries):
    client.force_login(manager)

    with django_assert_max_num_queries(TRACE_QUERIES + 4):
        response = client.get("/trace/", {"batch": batch.external_id})

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="chain"') == 2
    assert page.count('class="scan-row"') == 6
    assert "America/Chicago" in page
    assert '<td class="approver">manager</td>' in page
    assert '<td class="approver">finance</td>' in page
    assert '<td class="role">Finance</td>' in page
    assert '<td class="root-cause">Miscount (miscount)</td>' in page
    assert '<td class="note">Recounted twice</td>' in page
    assert '<dd class="book-at-count">100</dd>' in page
    assert '<td class="scan-device">scanner-7</td>' in page
    assert '<td class="scan-mode">Manual entry</td>' in page
    assert "2026-11-20 09:00:00 CST" in page
    assert "Approved by guardrail v2" in page
    assert batch.record_id in page
    assert f'href="/trace/export.csv?batch={batch.external_id}"' in page


def test_page_renders_for_finance_with_the_search_form(client, pushed):
    client.force_login(pushed.finance)

    empty = client.get("/trace/")
    found = client.get("/trace/", {"line": pushed.exact.pk})

    assert empty.status_code == 200
    assert 'name="record"' in empty.content.decode()
    assert 'class="chain"' not in empty.content.decode()
    assert found.status_code == 200
    assert "No proposal (no difference)" in found.content.decode()


def test_page_refuses_associates_and_sends_strangers_to_log_in(client, pushed):
    anonymous = client.get("/trace/", {"proposal": pushed.big.pk})
    client.force_login(pushed.counter)
    associate = client.get("/trace/", {"proposal": pushed.big.pk})

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert associate.status_code == 403


def test_page_answers_400_and_404_like_the_api(client, manager, other_organization, pushed):
    client.force_login(manager)
    bad = client.get("/trace/", {"proposal": "1", "line": "2"})
    missing = client.get("/trace/", {"proposal": "CC-nope"})
    client.force_login(member(other_organization, Role.MANAGER, username="outsider"))
    foreign = client.get("/trace/", {"proposal": pushed.big.pk})

    assert bad.status_code == 400
    assert "give only one of line, proposal" in bad.content.decode()
    assert missing.status_code == foreign.status_code == 404
    assert "Nothing found" in foreign.content.decode()
    assert str(pushed.big.external_id) not in foreign.content.decode()


def test_the_api_is_in_the_schema(manager_api):
    schema = manager_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/trace/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert names == {"record", "batch", "proposal", "line", "page"}
    assert "TraceChainOutput" in schema["components"]["schemas"]


# --- found by the API fuzz run (tests/fuzz): "²".isdigit() is true, int("²") raises -----------


def test_a_non_ascii_digit_line_is_400_not_500(manager_api):
    response = manager_api.get("/api/trace/", {"line": "²"})

    assert response.status_code == 400
    assert response.json() == {"errors": {"line": ["a count line id (a number)"]}}


def test_a_non_ascii_digit_proposal_is_looked_up_as_an_external_id(manager_api, pushed):
    response = manager_api.get("/api/trace/", {"proposal": "²"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Nothing to trace with this id."}
