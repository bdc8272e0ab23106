"""What the audit migrations install: append-only triggers (PostgreSQL) and the beat sweeps."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import AuditLog, Event
from audit.services import audit_log_write, event_dispatch, event_emit
from tests.factories import FacilityFactory, UserFactory


def test_the_sweeps_run_every_minute_and_name_registered_tasks(db):
    from config.celery import app

    app.loader.import_default_modules()
    entries = PeriodicTask.objects.select_related("interval").filter(task__startswith="audit.tasks.")
    tasks = {task.task: task for task in entries}

    assert set(tasks) == {"audit.tasks.events_sweep_task", "audit.tasks.webhook_deliveries_sweep_task"}
    for name, task in tasks.items():
        assert task.enabled
        assert (task.interval.every, task.interval.period) == (1, "minutes")
        assert name in app.tasks


def _refused(action) -> bool:
    """True when the database refuses `action` with the triggers' message (the test goes on after it)."""
    try:
        with transaction.atomic():
            action()
    except DatabaseError as error:
        return "append-only" in str(error)
    return False


@pytest.mark.postgres
def test_the_reason_log_refuses_updates_and_deletes(organization):
    other_user = UserFactory()
    log = audit_log_write(organization_id=organization.pk, tag="proposal_approved", actor=None, reason="counted twice")

    assert _refused(lambda: AuditLog.objects.filter(pk=log.pk).update(reason="rewritten"))
    assert _refused(lambda: AuditLog.objects.filter(pk=log.pk).update(actor=other_user))
    assert _refused(lambda: AuditLog.objects.filter(pk=log.pk).delete())
    assert _refused(lambda: AuditLog.objects.filter(pk=log.pk).update(created_at=timezone.now()))
    log.tag = "proposal_rejected"
    assert _refused(lambda: log.save())

    log.refresh_from_db()
    assert (log.tag, log.reason) == ("proposal_approved", "counted twice")


@pytest.mark.postgres
def test_deleting_a_user_or_a_facility_only_clears_them_from_the_reason_log(organization):
    user = UserFactory()
    facility = FacilityFactory(organization=organization)
    log = audit_log_write(
        organization_id=organization.pk, tag="guardrail_changed", actor=user, facility_id=facility.pk, reason="why"
    )

    user.delete()
    facility.delete()

    log.refresh_from_db()
    assert (log.actor_id, log.facility_id) == (None, None)
    assert (log.tag, log.reason) == ("guardrail_changed", "why")


@pytest.mark.postgres
def test_events_accept_only_their_dispatch_bookkeeping_as_updates(organization, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        event = event_emit(organization_id=organization.pk, type="parity.drift", payload={"sku": "A", "book": "3"})

    assert event_dispatch(event_id=event.pk).dispatched  # writes dispatched_at and subscriber_errors
    assert _refused(lambda: Event.objects.filter(pk=event.pk).update(payload={"sku": "B"}))
    assert _refused(lambda: Event.objects.filter(pk=event.pk).update(type="push.failed"))
    assert _refused(lambda: Event.objects.filter(pk=event.pk).update(occurred_at=timezone.now()))
    assert _refused(lambda: Event.objects.filter(pk=event.pk).update(version=2))
    assert _refused(lambda: Event.objects.filter(pk=event.pk).delete())

    event.refresh_from_db()
    assert (event.type, event.payload, event.version) == ("parity.drift", {"sku": "A", "book": "3"}, 1)
    assert event.dispatched_at is not None
