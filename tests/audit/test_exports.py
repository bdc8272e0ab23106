"""Export jobs: request → Celery build → file + reason-log row; history, download, retention sweep."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from accounts.roles import Role
from approvals.models import ProposedAction
from approvals.services import DecisionInput, proposal_decide
from audit import exports
from audit.export_models import ExportJob, ExportKind, ExportState
from audit.models import AuditLog
from counts.models import CountKind, CountLine
from counts.services.planning import count_run_create, count_run_start
from reconciliation.services import root_causes_ensure, run_close, run_reconcile
from tests.factories import FacilityFactory, InventoryBalanceFactory, ItemFactory, LocationFactory, ZoneFactory, member

# 23:00 on Nov 9 in Chicago (05:00 UTC on Nov 10): the export's days are the facility's.
CLOSED_AT = datetime(2026, 11, 10, 5, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _export_directory(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def _closed_run(organization, facility, manager, name, *, at, deltas, approve=False):
    """A hard run whose lines are off by `deltas`, reconciled and closed at `at` (person-approved
    proposals when `approve`)."""
    zone = ZoneFactory(organization=organization, facility=facility)
    run = count_run_start(
        run=count_run_create(
            organization=organization, facility=facility, name=name, kind=CountKind.HARD, actor=manager
        ),
        actor=manager,
    )
    for index, delta in enumerate(deltas):
        location = LocationFactory(organization=organization, zone=zone, code=f"{name}-{index}")
        item = ItemFactory(organization=organization, sku=f"{name}-SKU{index}", average_cost=Decimal("2.00"))
        InventoryBalanceFactory(organization=organization, location=location, item=item, on_hand=Decimal("100"))
        CountLine.objects.create(
            organization=organization,
            run=run,
            location=location,
            item=item,
            counted_quantity=Decimal(100 + delta),
            book_quantity=Decimal("100"),
            first_counted_at=at,
            last_counted_at=at,
        )
    with time_machine.travel(at, tick=False):
        run_reconcile(run=run, actor=manager)
        for proposal in ProposedAction.objects.filter(run=run, state="pending"):
            decision = "approve" if approve else "reject"
            proposal_decide(
                proposal=proposal,
                actor=manager,
                decision=DecisionInput(decision=decision, reason_code="MANAGER_OVERRIDE", root_cause="miscount"),
            )
        run_close(run=run, actor=manager)
    return run


@pytest.fixture
def closed(organization, facility, manager, other_organization):
    root_causes_ensure(organization=organization)
    runs = {
        # 1 unit off: auto-approved; 10 units off: a proposal a person approves.
        "in_range": _closed_run(organization, facility, manager, "R1", at=CLOSED_AT, deltas=[0, 1, 10], approve=True),
        "before": _closed_run(organization, facility, manager, "R0", at=CLOSED_AT - timedelta(days=20), deltas=[1]),
    }
    elsewhere = FacilityFactory(organization=organization, code="WH2", time_zone="UTC")
    runs["other_facility"] = _closed_run(organization, elsewhere, manager, "R2", at=CLOSED_AT, deltas=[1])
    root_causes_ensure(organization=other_organization)
    globex = FacilityFactory(organization=other_organization, code="GX1")
    boss = member(other_organization, Role.MANAGER, username="globex-boss")
    runs["globex"] = _closed_run(other_organization, globex, boss, "G1", at=CLOSED_AT, deltas=[1])
    return runs


def _request(organization, manager, facility, kind=ExportKind.CLOSED_COUNTS, **overrides):
    values = {"date_from": date(2026, 11, 1), "date_to": date(2026, 11, 9), "file_format": "csv", **overrides}
    return exports.export_job_request(organization=organization, actor=manager, kind=kind, facility=facility, **values)


def _rows(job: ExportJob) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(exports.export_file_path(job).read_text())))


def test_a_request_is_built_after_commit_and_logged(
    closed, organization, manager, facility, django_capture_on_commit_callbacks, settings, tmp_path
):
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = _request(organization, manager, facility)

    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.state == ExportState.SUCCEEDED
    assert (job.rows, job.generated_at, job.expires_at) == (3, NOW, NOW + timedelta(days=30))
    path = exports.export_file_path(job)
    assert path.is_file()
    assert path.is_relative_to(Path(settings.MEDIA_ROOT) / "exports")
    assert job.file_size == path.stat().st_size
    log = AuditLog.objects.get(tag="export_generated")
    assert (log.actor, log.object_type, log.object_id, log.facility_id) == (
        manager,
        "audit.exportjob",
        str(job.pk),
        facility.pk,
    )
    assert log.data["rows"] == 3
    assert log.data["date_from"] == "2026-11-01"
    assert log.data["kind"] == "closed_counts"


def test_closed_counts_are_the_facilitys_runs_closed_on_those_local_days(closed, organization, manager, facility):
    job = exports.export_job_build(job_id=_request(organization, manager, facility).pk)

    rows = _rows(job)
    assert [row["sku"] for row in rows] == ["R1-SKU0", "R1-SKU1", "R1-SKU2"]
    assert {row["run"] for row in rows} == {str(closed["in_range"].pk)}
    assert rows[0]["closed_at_local"] == "2026-11-09T23:00:00-06:00"
    assert [Decimal(row["variance_value"]) for row in rows] == [Decimal("0.00"), Decimal("2.00"), Decimal("20.00")]
    assert [row["proposal_state"] for row in rows] == ["", "approved", "approved"]
    # The UTC day of the close (Nov 10) is not the facility's day.
    later = exports.export_job_build(
        job_id=_request(organization, manager, facility, date_from=date(2026, 11, 10), date_to=date(2026, 11, 10)).pk
    )
    assert later.rows == 0


def test_approved_adjustments_name_who_approved_and_why(closed, organization, manager, facility):
    job = exports.export_job_build(
        job_id=_request(organization, manager, facility, kind=ExportKind.APPROVED_ADJUSTMENTS).pk
    )

    rows = _rows(job)
    assert [(row["sku"], row["approved_by"], row["root_cause"]) for row in rows] == [
        ("R1-SKU1", "guardrail v1", ""),
        ("R1-SKU2", "manager", "miscount"),
    ]
    assert rows[1]["reason_code"] == "MANAGER_OVERRIDE"
    assert Decimal(rows[1]["delta"]) == Decimal("10")
    assert Decimal(rows[1]["adjustment_value"]) == Decimal("20.00")
    assert rows[1]["decided_at_local"] == "2026-11-09T23:00:00-06:00"


def test_the_xlsx_format(closed, organization, manager, facility):
    openpyxl = pytest.importorskip("openpyxl")
    job = exports.export_job_build(job_id=_request(organization, manager, facility, file_format="xlsx").pk)

    sheet = openpyxl.load_workbook(exports.export_file_path(job)).active
    assert job.file_name.endswith(".xlsx")
    assert len(list(sheet.iter_rows(values_only=True))) == 4


def test_building_twice_changes_nothing(closed, organization, manager, facility):
    job = _request(organization, manager, facility)
    built = exports.export_job_build(job_id=job.pk)

    again = exports.export_job_build(job_id=job.pk)

    assert again.generated_at == built.generated_at
    assert AuditLog.objects.filter(tag="export_generated").count() == 1
    assert exports.export_job_build(job_id=999_999) is None


def test_a_failed_build_is_recorded(organization, manager, facility, monkeypatch):
    job = _request(organization, manager, facility)

    def broken(job):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exports, "export_content", broken)
    failed = exports.export_job_build(job_id=job.pk)

    assert failed.state == ExportState.FAILED
    assert failed.error == "RuntimeError: disk full"
    assert not AuditLog.objects.filter(tag="export_generated").exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"date_from": date(2026, 11, 9), "date_to": date(2026, 11, 1)}, "date_to"),
        ({"date_from": date(2024, 1, 1), "date_to": date(2026, 11, 1)}, "date_to"),
        ({"file_format": "pdf"}, "file_format"),
    ],
)
def test_invalid_requests_are_refused(organization, manager, facility, overrides, field):
    with pytest.raises(exports.ExportInvalid) as refused:
        _request(organization, manager, facility, **overrides)

    assert refused.value.field == field
    assert not ExportJob.objects.exists()


def test_another_organizations_facility_is_refused(organization, manager, other_organization):
    with pytest.raises(exports.ExportInvalid):
        _request(organization, manager, FacilityFactory(organization=other_organization))


# --- Pages ----------------------------------------------------------------------------------------


def test_a_manager_requests_an_export_and_downloads_it(
    closed, client, manager, facility, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    client.force_login(manager)
    data = {"kind": "closed_counts", "facility": facility.pk, "date_from": "2026-11-01", "date_to": "2026-11-09",
            "file_format": "csv"}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("reports:exports"), data)
    assert response.status_code == 302
    job = ExportJob.objects.get()
    assert (job.state, job.requested_by, job.rows) == (ExportState.SUCCEEDED, manager, 3)

    with django_assert_max_num_queries(12):
        page = client.get(reverse("reports:exports")).content.decode()
    assert f'data-export="{job.pk}" data-state="succeeded"' in page
    assert reverse("reports:export-download", args=[job.pk]) in page
    assert "manager" in page
    assert "2026-11-01 – 2026-11-09" in page

    download = client.get(reverse("reports:export-download", args=[job.pk]))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert b"R1-SKU2" in b"".join(download.streaming_content)


def test_the_history_query_count_does_not_grow(
    closed, client, manager, organization, facility, django_assert_max_num_queries
):
    for _ in range(5):
        exports.export_job_build(job_id=_request(organization, manager, facility).pk)
    client.force_login(manager)

    with django_assert_max_num_queries(12):
        response = client.get(reverse("reports:exports"))
    assert len(response.context["jobs"]) == 5


def test_exports_are_the_organizations_and_for_reporting_roles(
    closed, client, manager, associate, organization, facility, other_organization
):
    job = exports.export_job_build(job_id=_request(organization, manager, facility).pk)
    client.force_login(associate)
    assert client.get(reverse("reports:exports")).status_code == 403
    assert client.get(reverse("reports:export-download", args=[job.pk])).status_code == 403

    client.force_login(member(other_organization, Role.MANAGER, username="globex-manager"))
    assert client.get(reverse("reports:export-download", args=[job.pk])).status_code == 404
    assert f'data-export="{job.pk}"' not in client.get(reverse("reports:exports")).content.decode()
    # Another organization's facility is not a choice.
    refused = client.post(reverse("reports:exports"), {"kind": "closed_counts", "facility": facility.pk,
                                                       "date_from": "2026-11-01", "date_to": "2026-11-09",
                                                       "file_format": "csv"})  # fmt: skip
    assert refused.status_code == 400
    assert ExportJob.objects.count() == 1


def test_the_sweep_deletes_expired_files_and_requeues_lost_builds(
    closed, client, organization, manager, facility, settings, django_capture_on_commit_callbacks
):
    settings.EXPORT_RETENTION_DAYS = 2
    with time_machine.travel(NOW, tick=False):
        kept = exports.export_job_build(job_id=_request(organization, manager, facility).pk)
    with time_machine.travel(NOW - timedelta(days=3), tick=False):
        old = exports.export_job_build(job_id=_request(organization, manager, facility).pk)
        lost = _request(organization, manager, facility)  # its enqueue never ran (no commit here)
    old_path = exports.export_file_path(old)

    with django_capture_on_commit_callbacks(execute=True):
        result = exports.export_jobs_sweep(now=NOW)

    assert result.expired == [old.pk]
    assert result.requeued == [lost.pk]
    old.refresh_from_db()
    lost.refresh_from_db()
    assert (old.state, old.purged_at) == (ExportState.EXPIRED, NOW)
    assert not old_path.exists()
    assert exports.export_file_path(kept).exists()
    assert lost.state == ExportState.SUCCEEDED  # built by the re-queued task
    client.force_login(manager)
    assert client.get(reverse("reports:export-download", args=[old.pk])).status_code == 404
    # Sweeping again finds nothing.
    with time_machine.travel(NOW, tick=False):
        assert exports.export_jobs_sweep(now=NOW) == exports.SweepResult(expired=[], requeued=[])


def test_files_go_under_media_root_or_var(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    assert exports.export_directory() == tmp_path / "media" / "exports"
    settings.MEDIA_ROOT = ""
    settings.VAR_DIR = tmp_path / "var"
    assert exports.export_directory() == tmp_path / "var" / "exports"


def test_the_sweep_runs_hourly_as_a_registered_task(db):
    from config.celery import app

    app.loader.import_default_modules()
    task = PeriodicTask.objects.select_related("interval").get(task="audit.export_tasks.export_jobs_sweep_task")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")
    assert "audit.export_tasks.export_jobs_sweep_task" in app.tasks
    assert "audit.export_tasks.export_job_build_task" in app.tasks
