"""The organization's rules and its variances in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import Role
from audit.models import AuditLog
from counts.models import CountKind
from counts.services.planning import count_run_create, count_run_start
from reconciliation.models import Guardrail, RootCause, Routing, Variance
from reconciliation.services import guardrail_for, root_causes_ensure, run_reconcile
from tests.factories import FacilityFactory, member
from tests.reconciliation.conftest import LineMaker

GUARDRAIL_FORM = {
    "auto_max_percent": "2.00",
    "auto_max_value": "100.00",
    "finance_min_value": "1000.00",
    "recount_min_value": "",
    "moved_book_policy": "keep_difference",
    "watchlist_hits": "2",
    "watchlist_window": "3",
}


@pytest.fixture
def admin_user(organization):
    return member(organization, Role.ADMIN, username="admin")


# --- guardrails -----------------------------------------------------------------------------


def test_an_admin_saves_a_guardrail_as_a_new_audited_version(client, facility, admin_user):
    guardrail = guardrail_for(facility=facility)
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:reconciliation_guardrail_change", args=[guardrail.pk]),
        {**GUARDRAIL_FORM, "finance_min_value": "750.00", "version": "99"},
    )

    assert response.status_code == 302
    stored = Guardrail.objects.get(pk=guardrail.pk)
    assert (stored.version, stored.finance_min_value, stored.updated_by) == (2, Decimal("750.00"), admin_user)
    assert stored.history.first().history_user == admin_user
    log = AuditLog.objects.get(tag="guardrail_changed")
    assert log.data["changes"] == {"finance_min_value": ["1000.00", "750.00"]}  # only what changed


def test_an_inconsistent_guardrail_is_refused_next_to_the_field(client, facility, admin_user):
    guardrail = guardrail_for(facility=facility)
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:reconciliation_guardrail_change", args=[guardrail.pk]),
        {**GUARDRAIL_FORM, "auto_max_value": "5000.00"},
    )

    assert response.status_code == 200
    assert "must not exceed the finance limit" in response.content.decode()
    assert Guardrail.objects.get(pk=guardrail.pk).version == 1
    assert not AuditLog.objects.filter(tag="guardrail_changed").exists()


def test_managers_see_guardrails_but_cannot_change_them(client, facility, manager):
    guardrail = guardrail_for(facility=facility)
    client.force_login(manager)
    url = reverse("admin:reconciliation_guardrail_change", args=[guardrail.pk])

    assert client.get(url).status_code == 200
    assert client.post(url, {**GUARDRAIL_FORM, "auto_max_value": "1.00"}).status_code == 403
    assert Guardrail.objects.get(pk=guardrail.pk).version == 1


def test_reverting_a_guardrail_needs_the_change_permission_and_is_a_new_version(client, facility, manager, admin_user):
    guardrail = guardrail_for(facility=facility)
    first = guardrail.history.get()
    url = reverse("admin:reconciliation_guardrail_simple_history", args=[guardrail.pk, first.history_id])
    client.force_login(admin_user)
    client.post(
        reverse("admin:reconciliation_guardrail_change", args=[guardrail.pk]),
        {**GUARDRAIL_FORM, "auto_max_value": "40.00"},
    )
    client.force_login(manager)

    assert client.post(url, GUARDRAIL_FORM).status_code == 403  # view-only: no revert either
    assert Guardrail.objects.get(pk=guardrail.pk).auto_max_value == Decimal("40.00")

    client.force_login(admin_user)
    assert client.post(url, GUARDRAIL_FORM).status_code == 302
    stored = Guardrail.objects.get(pk=guardrail.pk)
    assert (stored.version, stored.auto_max_value) == (3, Decimal("100.00"))
    assert AuditLog.objects.filter(tag="guardrail_changed").count() == 2


def test_another_organizations_guardrail_is_not_found(client, admin_user, other_organization):
    theirs = guardrail_for(facility=FacilityFactory(organization=other_organization))
    client.force_login(admin_user)

    assert client.get(reverse("admin:reconciliation_guardrail_change", args=[theirs.pk])).status_code == 404
    assert client.post(
        reverse("admin:reconciliation_guardrail_change", args=[theirs.pk]), GUARDRAIL_FORM
    ).status_code == 404  # fmt: skip
    assert Guardrail.objects.get(pk=theirs.pk).version == 1


# --- root causes ----------------------------------------------------------------------------


def test_an_admin_adds_relabels_and_deactivates_root_causes(client, organization, admin_user):
    root_causes_ensure(organization=organization)
    client.force_login(admin_user)

    added = client.post(
        reverse("admin:reconciliation_rootcause_add"),
        {"code": "pallet_damage", "label": "Pallet damage", "active": "on"},
    )
    assert added.status_code == 302
    created = RootCause.objects.get(code="pallet_damage")
    assert (created.organization, created.requires_note, created.active) == (organization, False, True)
    assert created.history.first().history_user == admin_user

    changed = client.post(
        reverse("admin:reconciliation_rootcause_change", args=[created.pk]),
        {"code": "renamed", "label": "Damaged pallet", "requires_note": "on"},  # code is read-only once created
    )
    assert changed.status_code == 302
    created.refresh_from_db()
    assert (created.code, created.label, created.requires_note, created.active) == (
        "pallet_damage", "Damaged pallet", True, False,
    )  # fmt: skip


def test_other_always_requires_a_note_and_codes_are_unique(client, organization, admin_user, other_organization):
    root_causes_ensure(organization=organization)
    root_causes_ensure(organization=other_organization)
    other = RootCause.objects.get(organization=organization, code="other")
    client.force_login(admin_user)

    no_note = client.post(
        reverse("admin:reconciliation_rootcause_change", args=[other.pk]), {"label": "Other", "active": "on"}
    )
    duplicate = client.post(reverse("admin:reconciliation_rootcause_add"), {"code": "Miscount", "label": "Again"})
    new_other = client.post(reverse("admin:reconciliation_rootcause_add"), {"code": "other2", "label": "x"})

    assert "always requires a note" in no_note.content.decode()
    assert RootCause.objects.get(pk=other.pk).requires_note
    assert "already has this root cause" in duplicate.content.decode()
    assert RootCause.objects.filter(organization=organization, code="miscount").count() == 1
    assert new_other.status_code == 302  # only the code "other" itself carries the rule


def test_root_causes_are_scoped_and_never_deleted(client, organization, admin_user, other_organization):
    root_causes_ensure(organization=organization)
    root_causes_ensure(organization=other_organization)
    theirs = RootCause.objects.get(organization=other_organization, code="damaged")
    client.force_login(admin_user)

    listed = client.get(reverse("admin:reconciliation_rootcause_changelist")).context["cl"].result_list

    assert {root_cause.organization_id for root_cause in listed} == {organization.pk}
    assert client.get(reverse("admin:reconciliation_rootcause_change", args=[theirs.pk])).status_code == 404
    mine = RootCause.objects.get(organization=organization, code="damaged")
    assert client.post(reverse("admin:reconciliation_rootcause_delete", args=[mine.pk])).status_code == 403


def test_managers_cannot_edit_root_causes(client, organization, manager):
    root_causes_ensure(organization=organization)
    client.force_login(manager)

    assert client.get(reverse("admin:reconciliation_rootcause_changelist")).status_code == 200
    assert client.post(reverse("admin:reconciliation_rootcause_add"), {"code": "x", "label": "x"}).status_code == 403
    assert not RootCause.objects.filter(code="x").exists()


# --- variances ------------------------------------------------------------------------------


def _reconciled_run(lines: LineMaker, manager, count: int) -> None:
    lines.run = count_run_start(
        run=count_run_create(
            organization=lines.organization, facility=lines.zone.facility, name=f"Run of {count}",
            kind=CountKind.HARD, actor=manager,
        ),
        actor=manager,
    )  # fmt: skip
    for n in range(count):
        lines.line(book="10", counted=str(n % 4 + 8))
    run_reconcile(run=lines.run, actor=manager)


def _variance_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("admin:reconciliation_variance_changelist")).status_code == 200
    return len(captured.captured_queries)


def test_the_variance_list_runs_a_fixed_number_of_queries(client, lines, manager):
    _reconciled_run(lines, manager, 3)
    client.force_login(manager)
    few = _variance_queries(client)

    _reconciled_run(lines, manager, 20)

    assert _variance_queries(client) == few


def test_variances_filter_by_routing_run_and_facility(client, organization, lines, manager):
    auto = lines.line(book="100", counted="99", cost="1.00")
    person = lines.line(book="10", counted="4", cost="50.00")
    run_reconcile(run=lines.run, actor=manager)
    elsewhere = LineMaker(organization, FacilityFactory(organization=organization, code="WH2"), manager)
    other_line = elsewhere.line(book="10", counted="10")
    run_reconcile(run=elsewhere.run, actor=manager)
    client.force_login(manager)
    url = reverse("admin:reconciliation_variance_changelist")

    def lines_listed(**params) -> set[int]:
        return {variance.line_id for variance in client.get(url, params).context["cl"].result_list}

    assert lines_listed(routing__exact=Routing.AUTO) == {auto.pk}
    assert lines_listed(routing__exact=Routing.PROPOSAL) == {person.pk}
    assert lines_listed(run__id__exact=elsewhere.run.pk) == {other_line.pk}
    assert lines_listed(facility__id__exact=lines.zone.facility_id) == {auto.pk, person.pk}


def test_variances_are_read_only(client, lines, manager, admin_user):
    lines.line(book="10", counted="4")
    run_reconcile(run=lines.run, actor=manager)
    variance = Variance.objects.get()
    client.force_login(admin_user)
    url = reverse("admin:reconciliation_variance_change", args=[variance.pk])

    assert client.get(url).status_code == 200
    assert client.post(url, {"counted_quantity": "10"}).status_code == 403
    assert Variance.objects.get().counted_quantity == Decimal("4")


@pytest.mark.parametrize("role", [Role.ASSOCIATE, Role.PLANNER])
def test_associates_and_planners_see_no_variances_or_rules(client, organization, role):
    client.force_login(member(organization, role))

    for model in ("variance", "guardrail", "rootcause"):
        response = client.get(reverse(f"admin:reconciliation_{model}_changelist"))
        assert response.status_code == (302 if role == Role.ASSOCIATE else 403)
