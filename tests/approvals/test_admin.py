"""The approval surface in the admin: the list, its filters, the evidence page and bulk decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import Role
from adapters.models import PendingPush
from approvals.models import Approval, ProposalState, ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit.models import AuditLog
from counts.models import CountKind
from counts.services.capture import count_events_ingest
from counts.services.planning import count_run_create
from counts.services.sessions import count_session_start, count_session_submit
from reconciliation.models import RootCause
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.approvals.conftest import reconciled
from tests.factories import FacilityFactory, ZoneFactory, member
from tests.reconciliation.conftest import LineMaker

CHANGELIST = "admin:approvals_proposedaction_changelist"
APPROVE = DecisionInput(decision="approve", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount")
REJECT = DecisionInput(decision="reject", reason_code="MANAGER_OVERRIDE", note="recount first")
SCANNED_AT = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def new_run(lines: LineMaker, manager, name: str = "Next run") -> None:
    """Point the line maker at a fresh hard run of the same facility (the previous one is reconciled)."""
    lines.run = count_run_create(
        organization=lines.organization, facility=lines.zone.facility, name=name, kind=CountKind.HARD, actor=manager
    )


def scan_lines(lines: LineMaker, user, device: str, quantities: list[tuple[object, object]]) -> None:
    """One submitted session of `user` on `device` setting each (line, quantity) by scan."""
    session = count_session_start(run=lines.run, user=user, device_id=device)
    count_events_ingest(
        session=session,
        actor=user,
        events=[
            {"event_id": str(uuid.uuid4()), "location": line.location.code, "sku": line.item.sku,
             "quantity": str(quantity), "kind": "set", "mode": "manual", "counted_at": SCANNED_AT.isoformat()}
            for line, quantity in quantities
        ],
    )  # fmt: skip
    count_session_submit(session=session, actor=user)


def scanned_proposals(lines: LineMaker, manager, counters: list[tuple[object, str]], specs: list[dict]) -> list:
    """Proposals for lines counted by scans: the first counter sets the whole quantity, the others
    set zero (lines sum the sessions), then the run is reconciled."""
    made = [lines.line(**spec) for spec in specs]
    for index, (user, device) in enumerate(counters):
        quantities = [(line, spec["counted"] if index == 0 else 0) for line, spec in zip(made, specs, strict=True)]
        scan_lines(lines, user, device, quantities)
    run_reconcile(run=lines.run, actor=manager)
    return [line.variances.get().proposal for line in made]


def listed(client, **params) -> list[int]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return [proposal.pk for proposal in response.context["cl"].result_list]


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(CHANGELIST))
        assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.fixture
def associate2(organization):
    return member(organization, Role.ASSOCIATE, username="associate2")


def test_the_list_runs_a_fixed_number_of_queries_and_names_who_counted(client, lines, manager, associate, associate2):
    counters = [(associate, "tab-1"), (associate2, "tab-2")]
    scanned_proposals(lines, manager, counters, [{"book": "10", "counted": str(n)} for n in range(1, 4)])
    client.force_login(manager)
    few = _changelist_queries(client)

    new_run(lines, manager)
    scanned_proposals(lines, manager, counters, [{"book": "30", "counted": str(n)} for n in range(1, 18)])
    many = _changelist_queries(client)

    assert many == few
    response = client.get(reverse(CHANGELIST))
    rows = response.context["cl"].result_list
    assert len(rows) == 20
    assert all(row.line_counters.usernames == ["associate", "associate2"] for row in rows)
    assert "associate, associate2" in response.content.decode()


def test_the_list_is_sorted_by_value_descending_with_the_line_figures(client, lines, manager):
    small = reconciled(lines, manager, book="10", counted="9", cost="30.00")  # −$30, −10%
    large = reconciled(lines, manager, book="10", counted="4", cost="250.00")  # −$1,500
    middle = reconciled(lines, manager, book="10", counted="13", cost="100.00")  # +$300
    client.force_login(manager)

    assert listed(client) == [large.pk, middle.pk, small.pk]
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "−$1,500.00" in page  # variance value
    assert "+30.00%" in page
    assert large.item.sku in page
    assert large.location.code in page


def test_each_filter_narrows_the_list(client, organization, lines, manager, finance_user):
    cheap = reconciled(lines, manager, book="10", counted="9", cost="50.00")  # $50
    lines.zone = ZoneFactory(organization=organization, facility=lines.zone.facility, code="Y")
    middle = reconciled(lines, manager, book="10", counted="5", cost="100.00")  # $500
    dear = reconciled(lines, manager, book="10", counted="4", cost="250.00")  # $1,500
    proposal_decide(proposal=middle, actor=manager, decision=APPROVE)  # root cause "miscount"
    proposal_decide(proposal=cheap, actor=manager, decision=REJECT)
    elsewhere = LineMaker(organization, FacilityFactory(organization=organization, code="WH2"), manager)
    with time_machine.travel(datetime.now(tz=UTC) - timedelta(days=10), tick=False):
        old = reconciled(elsewhere, manager, book="10", counted="7", cost="20.00")  # $60, ten days old
    client.force_login(manager)
    miscount = RootCause.objects.get(organization=organization, code="miscount")

    assert set(listed(client, state__exact="rejected")) == {cheap.pk}
    assert set(listed(client, state__exact="pending")) == {dear.pk, old.pk}
    assert set(listed(client, facility__id__exact=elsewhere.zone.facility_id)) == {old.pk}
    assert set(listed(client, zone="Y")) == {middle.pk, dear.pk}
    assert set(listed(client, value_band="upto100")) == {cheap.pk, old.pk}
    assert set(listed(client, value_band="100to1000")) == {middle.pk}
    assert set(listed(client, value_band="over1000")) == {dear.pk}
    assert set(listed(client, approvals__root_cause__id__exact=miscount.pk)) == {middle.pk}
    assert set(listed(client, age="today")) == {cheap.pk, middle.pk, dear.pk}
    assert set(listed(client, age="week")) == {cheap.pk, middle.pk, dear.pk}
    assert set(listed(client, age="older")) == {old.pk}
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "&gt; $1,000" in page
    assert "$100–1,000" in page


def _bulk(client, action: str, proposals: list, **form) -> object:
    data = {"action": action, "_selected_action": [proposal.pk for proposal in proposals], **form}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_bulk_approve_asks_for_one_reason_then_reports_which_failed_and_why(client, lines, manager, associate):
    ok, also_ok, mine = scanned_proposals(
        lines, manager, [(associate, "tab-1")], [{"book": "10", "counted": "4"}, {"book": "20", "counted": "12"}]
    ) + scanned_proposals_by_manager(lines, manager)
    client.force_login(manager)

    selection = {"action": "approve_selected", "_selected_action": [ok.pk, also_ok.pk, mine.pk], "index": 0}
    asked = client.post(reverse(CHANGELIST), selection)
    assert asked.status_code == 200
    assert "Approve 3 proposed adjustment(s)" in asked.content.decode()
    assert not Approval.objects.exists()  # nothing decided before the reason is given

    done = _bulk(
        client, "approve_selected", [ok, also_ok, mine],
        apply="yes", reason_code="CORRECTION_AFTER_REVIEW", root_cause="miscount", note="",
    )  # fmt: skip

    states = dict(ProposedAction.objects.values_list("pk", "state"))
    assert (states[ok.pk], states[also_ok.pk], states[mine.pk]) == ("approved", "approved", "pending")
    assert PendingPush.objects.count() == 2
    assert set(Approval.objects.values_list("reason_code", flat=True)) == {"CORRECTION_AFTER_REVIEW"}
    assert ProposedAction.objects.get(pk=ok.pk).history.first().history_user == manager
    texts = [str(message) for message in get_messages(done.wsgi_request)]
    assert "Approved 2 proposal(s)." in texts
    [failure] = [text for text in texts if text.startswith("Not decided")]
    assert f"proposal {mine.pk} ({mine.item.sku} @ {mine.location.code})" in failure
    assert "nobody approves a variance on a line they counted" in failure
    assert AuditLog.objects.filter(tag="approval_refused", data__rule="counted_line").count() == 1


def scanned_proposals_by_manager(lines: LineMaker, manager) -> list:
    """A proposal on a line the manager scanned, on a fresh run of the same facility."""
    new_run(lines, manager, name="Counted by the manager")
    return scanned_proposals(lines, manager, [(manager, "mgr-phone")], [{"book": "30", "counted": "20"}])


def test_bulk_reject_and_an_incomplete_form_decides_nothing(client, lines, manager, finance_user):
    one = reconciled(lines, manager, book="10", counted="4")
    above_limit = reconciled(lines, manager, book="10", counted="4", cost="250.00")
    proposal_decide(proposal=above_limit, actor=manager, decision=APPROVE)  # awaiting finance
    client.force_login(manager)

    incomplete = _bulk(client, "approve_selected", [one], apply="yes", reason_code="MANAGER_OVERRIDE", root_cause="")
    assert "This field is required" in incomplete.content.decode()
    note_missing = _bulk(client, "approve_selected", [one], apply="yes", reason_code="MANAGER_OVERRIDE",
                         root_cause="other", note=" ")  # fmt: skip
    assert "a note is required with root cause" in note_missing.content.decode()
    assert ProposedAction.objects.get(pk=one.pk).state == ProposalState.PENDING

    done = _bulk(client, "reject_selected", [one, above_limit], apply="yes", reason_code="MANAGER_OVERRIDE", note="no")

    assert ProposedAction.objects.get(pk=one.pk).state == ProposalState.REJECTED
    assert ProposedAction.objects.get(pk=above_limit.pk).state == ProposalState.AWAITING_FINANCE
    texts = [str(message) for message in get_messages(done.wsgi_request)]
    assert "Rejected 1 proposal(s)." in texts
    assert any("finance user must give the second signature" in text for text in texts)


def test_the_detail_page_shows_the_scans_earlier_variances_and_signatures(
    client, lines, manager, associate, associate2
):
    [first] = scanned_proposals(lines, manager, [(associate, "tab-1")], [{"book": "10", "counted": "6"}])
    line = first.variance.line
    new_run(lines, manager)
    scan_lines(lines, associate, "tab-7", [(line, 3)])
    scan_lines(lines, associate2, "phone-2", [(line, 4)])
    run_reconcile(run=lines.run, actor=manager)
    proposal = ProposedAction.objects.get(run=lines.run)
    proposal_decide(proposal=proposal, actor=manager, decision=REJECT)
    client.force_login(manager)

    response = client.get(reverse("admin:approvals_proposedaction_change", args=[proposal.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert [(scan.user.username, scan.device_id) for scan in response.context["scans"]] == [
        ("associate", "tab-7"), ("associate2", "phone-2"),
    ]  # fmt: skip
    assert "tab-7" in page
    assert "phone-2" in page
    assert [variance.pk for variance in response.context["earlier_variances"]] == [first.variance_id]
    assert "Reconcile me" in page  # the earlier run
    assert "recount first" in page  # the rejection's note
    assert reverse("admin:approvals_proposedaction_history", args=[proposal.pk]) in page
    assert 'name="_save"' not in page  # view-only


def test_a_proposal_cannot_be_edited_and_another_organizations_is_not_found(client, lines, manager, other_organization):
    proposal = reconciled(lines, manager, book="10", counted="4")
    other_manager = member(other_organization, Role.MANAGER, username="globex-manager")
    root_causes_ensure(organization=other_organization)
    their_facility = FacilityFactory(organization=other_organization, code="GLOBEX-WH")
    theirs = LineMaker(other_organization, their_facility, other_manager)
    theirs.zone = ZoneFactory(organization=other_organization, facility=their_facility, code="GLOBEX-ZONE")
    foreign = reconciled(theirs, other_manager, book="10", counted="4")
    client.force_login(manager)
    change_url = reverse("admin:approvals_proposedaction_change", args=[proposal.pk])

    assert client.post(change_url, {"state": "approved"}).status_code == 403
    created = proposal.history.get()
    revert_url = reverse("admin:approvals_proposedaction_simple_history", args=[proposal.pk, created.history_id])
    assert client.post(revert_url, {}).status_code == 403
    assert ProposedAction.objects.get(pk=proposal.pk).state == ProposalState.PENDING
    assert client.get(reverse("admin:approvals_proposedaction_change", args=[foreign.pk])).status_code == 404
    assert foreign.pk not in listed(client)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "GLOBEX-ZONE" not in page  # the filters offer only this organization's zones and facilities
    assert "GLOBEX-WH" not in page


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.PLANNER])
def test_associates_and_planners_cannot_see_the_approval_surface(client, organization, lines, manager, role):
    proposal = reconciled(lines, manager, book="10", counted="4")
    client.force_login(member(organization, role))

    for url in (reverse(CHANGELIST), reverse("admin:approvals_proposedaction_change", args=[proposal.pk])):
        response = client.get(url)
        if role == Role.ASSOCIATE:  # not staff: the admin sends them to its login page
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("admin:login"))
        else:
            assert response.status_code == 403
    decided = client.post(reverse(CHANGELIST), {"action": "approve_selected", "_selected_action": [proposal.pk],
                                                "apply": "yes", "reason_code": "MANAGER_OVERRIDE",
                                                "root_cause": "miscount"})  # fmt: skip
    assert decided.status_code in (302, 403)
    assert not Approval.objects.exists()


def test_finance_reviews_in_the_admin_but_does_not_edit_rules(organization):
    finance = member(organization, Role.FINANCE)

    assert finance.has_perm("approvals.view_proposedaction")
    assert finance.has_perm("approvals.change_proposedaction")
    assert finance.has_perm("reconciliation.view_guardrail")
    assert not finance.has_perm("reconciliation.change_guardrail")
    assert not finance.has_perm("reconciliation.add_rootcause")
