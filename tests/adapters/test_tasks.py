"""Drains start on their own: after an approval commits, and from the beat sweep."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.roles import Role
from accounts.services import SYSTEM_USERNAME
from adapters.models import PendingPush, PushState
from adapters.tasks import push_drain_sweep_task
from approvals.models import ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit.models import AuditLog
from config.celery import app
from inventory.models import InventoryBalance
from tests.adapters.support import approve_adjustments
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_an_approval_drains_to_netsuite_once_it_commits(
    organization, manager, netsuite, synced, eager_celery, django_capture_on_commit_callbacks
):
    # Off by 30 units (30%): beyond the guardrail, so it waits for a person.
    proposal_id = approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -30})[0]
    approver = member(organization, Role.MANAGER, username="approver")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        proposal_decide(
            proposal=ProposedAction.objects.get(pk=proposal_id),
            actor=approver,
            decision=DecisionInput(decision="approve", reason_code="MANAGER_OVERRIDE", root_cause="shrink_theft"),
        )
    assert netsuite.adjustment_posts == 0  # nothing leaves before the commit

    for callback in callbacks:
        callback()

    assert PendingPush.objects.get().state == PushState.ACCEPTED
    assert netsuite.on_hand(100, 10) == Decimal(70)


def test_the_sweep_drains_connections_with_work(organization, manager, netsuite, synced, eager_celery):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})

    assert push_drain_sweep_task() == [synced.pk]

    assert PendingPush.objects.get().state == PushState.ACCEPTED
    assert push_drain_sweep_task() == []


def test_work_done_by_tasks_names_the_system_actor(organization, manager, netsuite, synced, eager_celery):
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})

    push_drain_sweep_task()

    balance = InventoryBalance.objects.get(item__sku="NS-0000", location__code="DALLAS-AISLE-1")
    assert balance.history.first().history_user.username == SYSTEM_USERNAME
    assert AuditLog.objects.get(tag="inventory_adjustment").actor.username == SYSTEM_USERNAME
    system = AuditLog.objects.get(tag="inventory_adjustment").actor
    assert not system.is_active
    assert not system.has_usable_password()
    assert not hasattr(system, "membership")
