"""Editing guardrails: every save is a new version, with history and a reason-log row."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.roles import Role
from audit.models import AuditLog
from reconciliation.guardrails import guardrail_update
from reconciliation.models import Guardrail, Routing
from reconciliation.services import guardrail_for, run_reconcile
from tests.factories import member


@pytest.fixture
def admin_user(organization):
    return member(organization, Role.ADMIN, username="admin")


def test_an_update_bumps_the_version_and_records_who_in_history_and_the_reason_log(facility, admin_user):
    guardrail = guardrail_for(facility=facility)
    assert guardrail.version == 1

    saved = guardrail_update(
        guardrail=guardrail, actor=admin_user, changes={"auto_max_value": Decimal("50.00"), "watchlist_hits": 3}
    )

    stored = Guardrail.objects.get(pk=guardrail.pk)
    assert (stored.version, stored.auto_max_value, stored.watchlist_hits) == (2, Decimal("50.00"), 3)
    assert stored.updated_by == admin_user
    assert saved.version == 2
    latest = stored.history.first()
    assert (latest.version, latest.history_user, latest.history_change_reason) == (2, admin_user, "guardrail v2")
    log = AuditLog.objects.get(tag="guardrail_changed")
    assert (log.actor, log.organization_id, log.object_id) == (admin_user, facility.organization_id, str(stored.pk))
    assert log.data == {
        "version": 2,
        "changes": {"auto_max_value": ["100.00", "50.00"], "watchlist_hits": ["2", "3"]},
    }


def test_every_save_is_a_version_even_without_changes(facility, admin_user):
    guardrail = guardrail_for(facility=facility)

    guardrail_update(guardrail=guardrail, actor=admin_user, changes={})
    guardrail_update(guardrail=guardrail, actor=admin_user, changes={"auto_max_percent": Decimal("2.00")})

    assert Guardrail.objects.get(pk=guardrail.pk).version == 3
    assert [log.data["changes"] for log in AuditLog.objects.filter(tag="guardrail_changed").order_by("pk")] == [{}, {}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"organization_id": 99}, "organization_id"),
        ({"version": 7}, "version"),
        ({"auto_max_value": Decimal("2000.00")}, "auto_max_value"),  # above the finance limit
        ({"auto_max_percent": Decimal("-1")}, "auto_max_percent"),
        ({"watchlist_hits": 5, "watchlist_window": 3}, "watchlist_hits"),
        ({"moved_book_policy": "guess"}, "moved_book_policy"),
    ],
)
def test_invalid_changes_save_nothing(facility, admin_user, changes, field):
    guardrail = guardrail_for(facility=facility)

    with pytest.raises(ValidationError) as invalid:
        guardrail_update(guardrail=guardrail, actor=admin_user, changes=changes)

    assert field in invalid.value.message_dict
    stored = Guardrail.objects.get(pk=guardrail.pk)
    assert (stored.version, stored.auto_max_value) == (1, Decimal("100.00"))
    assert not AuditLog.objects.filter(tag="guardrail_changed").exists()
    assert stored.history.count() == 1


def test_variances_record_the_version_that_routed_them(lines, manager, admin_user):
    guardrail = guardrail_for(facility=lines.zone.facility)
    guardrail_update(guardrail=guardrail, actor=admin_user, changes={"auto_max_value": Decimal("10.00")})
    line = lines.line(book="100", counted="99", cost="20.00")  # −1%, −$20: auto under v1, a person under v2

    run_reconcile(run=lines.run, actor=manager)

    variance = line.variances.get()
    assert (variance.routing, variance.guardrail_version) == (Routing.PROPOSAL, 2)
