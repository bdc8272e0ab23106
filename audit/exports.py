"""Export jobs: requested by a manager, built by a Celery task, kept for a while, then swept.

- `export_job_request` records the request and queues the build once the transaction commits.
- `export_job_build` (the task's service) writes the file — closed counts or approved
  adjustments of one facility over local days, through a django-import-export Resource — and
  records it: the job's figures and one reason-log row tagged `export_generated`, in one
  transaction. Idempotent: a job already built, or held by another worker, is left alone.
- `export_jobs_sweep` (beat, hourly) deletes files past their retention and re-queues jobs whose
  build was never picked up (a lost enqueue).

Files live under `settings.MEDIA_ROOT / "exports"` when MEDIA_ROOT is set, else
`settings.VAR_DIR / "exports"`; they are served only through the export view (organization-scoped).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from import_export import fields, resources
from import_export.formats.base_formats import CSV, XLSX

from accounts.models import Organization
from approvals.models import Decision, ProposalState, ProposedAction
from audit.export_models import ExportFormat, ExportJob, ExportKind, ExportState
from audit.services import audit_log_write
from counts.models import CountRun, RunState
from inventory.models import Facility
from reconciliation.models import Variance
from reconciliation.reports import SpreadsheetSafeResource

logger = logging.getLogger(__name__)

FORMATS = {ExportFormat.CSV: CSV, ExportFormat.XLSX: XLSX}
# An approved adjustment is one on its way to (or in) the ERP.
APPROVED_STATES = (
    ProposalState.APPROVED,
    ProposalState.QUEUED,
    ProposalState.PUSHED,
    ProposalState.CONFIRMED,
    ProposalState.FAILED,
)
REQUEUE_AFTER = timedelta(minutes=10)
MAX_RANGE_DAYS = 366 * 2


class ExportInvalid(Exception):
    """The request is not one we build (the field and why)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def export_directory() -> Path:
    media_root = getattr(settings, "MEDIA_ROOT", "")
    return Path(media_root) / "exports" if media_root else Path(settings.VAR_DIR) / "exports"


def export_retention_days() -> int:
    return int(getattr(settings, "EXPORT_RETENTION_DAYS", 30))


def export_file_path(job: ExportJob) -> Path | None:
    """The job's file, when it has one inside the export directory."""
    if not job.file_name:
        return None
    root = export_directory().resolve()
    path = (root / job.file_name).resolve()
    return path if path.is_relative_to(root) else None


def export_downloadable(job: ExportJob, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        job.state == ExportState.SUCCEEDED
        and job.expires_at is not None
        and job.expires_at > now
        and (path := export_file_path(job)) is not None
        and path.is_file()
    )


# --- Request ------------------------------------------------------------------------------


@transaction.atomic
def export_job_request(
    *,
    organization: Organization,
    actor: AbstractBaseUser,
    kind: str,
    facility: Facility,
    date_from: date,
    date_to: date,
    file_format: str = ExportFormat.CSV,
) -> ExportJob:
    """Record an export request and queue its build after commit.

    Guarantees: the facility is the organization's, the days are in order and span at most two
    years, the format can be written; the job starts queued and is built exactly once.
    """
    if kind not in ExportKind.values:
        raise ExportInvalid("kind", f"one of {', '.join(ExportKind.values)}")
    if facility.organization_id != organization.pk:
        raise ExportInvalid("facility", "no such facility")
    if date_from > date_to:
        raise ExportInvalid("date_to", "the end date is before the start date")
    if (date_to - date_from).days >= MAX_RANGE_DAYS:
        raise ExportInvalid("date_to", "at most two years per export")
    format_class = FORMATS.get(file_format)
    if format_class is None or not format_class.is_available():
        raise ExportInvalid("file_format", f"{file_format!r} cannot be written here")
    job = ExportJob.objects.create(
        organization=organization,
        kind=kind,
        file_format=file_format,
        facility=facility,
        date_from=date_from,
        date_to=date_to,
        requested_by=actor if actor.is_authenticated else None,
        requested_at=timezone.now(),
    )
    _enqueue_build(job.pk)
    return job


def _enqueue_build(job_id: int) -> None:
    def enqueue() -> None:
        from audit import export_tasks  # the tasks module imports this one

        export_tasks.export_job_build_task.delay(job_id)

    # Robust: a broker error is logged, not raised; the sweep re-queues the job.
    transaction.on_commit(enqueue, robust=True)


# --- Build --------------------------------------------------------------------------------


def _local_bounds(job: ExportJob) -> tuple[datetime, datetime, ZoneInfo]:
    zone = job.facility.zone_info
    since = datetime.combine(job.date_from, time.min, tzinfo=zone)
    until = datetime.combine(job.date_to + timedelta(days=1), time.min, tzinfo=zone)
    return since, until, zone


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else ""


def closed_runs(*, facility: Facility, since: datetime, until: datetime) -> dict[int, datetime]:
    """The facility's runs closed in [since, until), with when: `closed_at`, or — while the close
    service leaves it blank — the first history row in the closed state."""
    closed_history = (
        CountRun.history.model.objects.filter(id=OuterRef("pk"), state=RunState.CLOSED)
        .order_by("history_date")
        .values("history_date")[:1]
    )
    runs = (
        CountRun.objects.filter(facility=facility, state=RunState.CLOSED)
        .annotate(closed_moment=Coalesce("closed_at", Subquery(closed_history)))
        .filter(closed_moment__gte=since, closed_moment__lt=until)
        .values_list("pk", "closed_moment")
    )
    return dict(runs)


class ClosedCountResource(SpreadsheetSafeResource):
    """One row per counted line of a closed run (its current variance), times in the facility's zone."""

    text_columns = frozenset({"run_name", "zone", "location", "sku", "item_name"})

    run = fields.Field(attribute="run_id", column_name="run")
    run_name = fields.Field(attribute="run__name", column_name="run_name")
    run_kind = fields.Field(attribute="run__kind", column_name="run_kind")
    closed_at_local = fields.Field(column_name="closed_at_local")
    reconciled_at_local = fields.Field(column_name="reconciled_at_local")
    zone = fields.Field(attribute="location__zone__code", column_name="zone")
    location = fields.Field(attribute="location__code", column_name="location")
    sku = fields.Field(attribute="item__sku", column_name="sku")
    item_name = fields.Field(attribute="item__name", column_name="item_name")
    proposal_state = fields.Field(column_name="proposal_state")

    class Meta:
        model = Variance
        fields = (
            "run",
            "run_name",
            "run_kind",
            "closed_at_local",
            "reconciled_at_local",
            "zone",
            "location",
            "sku",
            "item_name",
            "book_at_count",
            "counted_quantity",
            "variance_units",
            "variance_percent",
            "unit_cost",
            "variance_value",
            "adjustment_units",
            "adjustment_value",
            "routing",
            "proposal_state",
        )
        export_order = fields

    def __init__(self, *, closed: dict[int, datetime], zone: ZoneInfo, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closed, self.zone = closed, zone

    def dehydrate_closed_at_local(self, variance: Variance) -> str:
        return _local(self.closed.get(variance.run_id), self.zone)

    def dehydrate_reconciled_at_local(self, variance: Variance) -> str:
        return _local(variance.computed_at, self.zone)

    def dehydrate_proposal_state(self, variance: Variance) -> str:
        proposal = getattr(variance, "proposal", None)
        return proposal.state if proposal is not None else ""


class ApprovedAdjustmentResource(SpreadsheetSafeResource):
    """One row per approved adjustment decided in the period, with who approved it and why."""

    text_columns = frozenset({"zone", "location", "sku", "item_name", "approved_by", "root_cause"})

    proposal = fields.Field(attribute="pk", column_name="proposal")
    run = fields.Field(attribute="run_id", column_name="run")
    decided_at_local = fields.Field(column_name="decided_at_local")
    zone = fields.Field(attribute="location__zone__code", column_name="zone")
    location = fields.Field(attribute="location__code", column_name="location")
    sku = fields.Field(attribute="item__sku", column_name="sku")
    item_name = fields.Field(attribute="item__name", column_name="item_name")
    book_at_count = fields.Field(attribute="variance__book_at_count", column_name="book_at_count")
    counted_quantity = fields.Field(attribute="variance__counted_quantity", column_name="counted_quantity")
    adjustment_value = fields.Field(attribute="variance__adjustment_value", column_name="adjustment_value")
    approved_by = fields.Field(column_name="approved_by")
    reason_code = fields.Field(column_name="reason_code")
    root_cause = fields.Field(column_name="root_cause")

    class Meta:
        model = ProposedAction
        # Signatures are prefetched a page at a time (import-export pages prefetching querysets).
        chunk_size = 2000
        fields = (
            "proposal",
            "external_id",
            "decided_at_local",
            "state",
            "auto_approved",
            "run",
            "zone",
            "location",
            "sku",
            "item_name",
            "book_at_count",
            "counted_quantity",
            "delta",
            "adjustment_value",
            "value_abs",
            "approved_by",
            "reason_code",
            "root_cause",
        )
        export_order = fields

    def __init__(self, *, zone: ZoneInfo, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone

    def dehydrate_decided_at_local(self, proposal: ProposedAction) -> str:
        return _local(proposal.decided_at, self.zone)

    def _signatures(self, proposal: ProposedAction) -> list[Any]:
        return sorted(proposal.approvals.all(), key=lambda signature: signature.pk)

    def dehydrate_approved_by(self, proposal: ProposedAction) -> str:
        if proposal.auto_approved:
            return f"guardrail v{proposal.payload.get('guardrail_version', '')}".strip()
        approvers = [s.approver.username for s in self._signatures(proposal) if s.decision == Decision.APPROVE]
        return ", ".join(approvers)

    def dehydrate_reason_code(self, proposal: ProposedAction) -> str:
        return next((s.reason_code for s in self._signatures(proposal)), "")

    def dehydrate_root_cause(self, proposal: ProposedAction) -> str:
        return next((s.root_cause.code for s in self._signatures(proposal) if s.root_cause_id), "")


@dataclass(frozen=True)
class ExportContent:
    resource: resources.ModelResource
    queryset: QuerySet


def export_content(job: ExportJob) -> ExportContent:
    """What the job's file holds: its Resource and queryset (ordered, relations loaded)."""
    since, until, zone = _local_bounds(job)
    if job.kind == ExportKind.CLOSED_COUNTS:
        closed = closed_runs(facility=job.facility, since=since, until=until)
        queryset = (
            Variance.objects.filter(organization_id=job.organization_id, run_id__in=list(closed))
            .filter(superseded_at__isnull=True)
            .select_related("run", "item", "location__zone", "proposal")
            .order_by("run_id", "location__code", "item__sku", "pk")
        )
        return ExportContent(ClosedCountResource(closed=closed, zone=zone), queryset)
    queryset = (
        ProposedAction.objects.filter(
            organization_id=job.organization_id,
            facility=job.facility,
            state__in=APPROVED_STATES,
            decided_at__gte=since,
            decided_at__lt=until,
        )
        .select_related("item", "location__zone", "variance")
        .prefetch_related("approvals__approver", "approvals__root_cause")
        .order_by("decided_at", "pk")
    )
    return ExportContent(ApprovedAdjustmentResource(zone=zone), queryset)


def _write_file(job: ExportJob) -> tuple[int, str, int]:
    """Write the job's file (atomically: a temporary name, then a rename); (rows, name, bytes)."""
    content = export_content(job)
    dataset = content.resource.export(queryset=content.queryset)
    export_format = FORMATS[job.file_format]()
    data = export_format.export_data(dataset)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    name = (
        f"{job.organization_id}/export-{job.pk}-{job.kind}-{job.facility.code}-"
        f"{job.date_from:%Y%m%d}-{job.date_to:%Y%m%d}.{export_format.get_extension()}"
    )
    path = export_directory() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(payload)
    os.replace(partial, path)
    return dataset.height, name, len(payload)


def export_job_build(*, job_id: int) -> ExportJob | None:
    """Build a queued job's file and record it (state, rows, file, expiry, and the reason-log row).

    Idempotent: a job that is not queued, or that another worker holds (row lock, skipped), is
    returned untouched. A build that fails marks the job failed with the error.
    """
    try:
        with transaction.atomic():
            job = (
                ExportJob.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("facility", "requested_by")
                .filter(pk=job_id)
                .first()
            )
            if job is None or job.state != ExportState.QUEUED:
                return job
            rows, name, size = _write_file(job)
            now = timezone.now()
            job.state = ExportState.SUCCEEDED
            job.rows, job.file_name, job.file_size = rows, name, size
            job.generated_at, job.expires_at = now, now + timedelta(days=export_retention_days())
            job.error = ""
            job.save(update_fields=["state", "rows", "file_name", "file_size", "generated_at", "expires_at", "error"])
            audit_log_write(
                organization_id=job.organization_id,
                tag="export_generated",
                actor=job.requested_by,
                subject=job,
                facility_id=job.facility_id,
                reason=f"{job.get_kind_display()}, {job.facility.code}, {job.date_from} – {job.date_to}: {rows} rows",
                data={
                    "kind": job.kind,
                    "facility": job.facility.code,
                    "date_from": job.date_from.isoformat(),
                    "date_to": job.date_to.isoformat(),
                    "format": job.file_format,
                    "rows": rows,
                    "file": name,
                    "bytes": size,
                    "expires_at": job.expires_at.isoformat(),
                },
            )
            return job
    except Exception as error:  # the job records why; the task does not retry a broken build
        logger.exception("export %s failed", job_id)
        return _export_job_fail(job_id=job_id, error=f"{type(error).__name__}: {error}")


def _export_job_fail(*, job_id: int, error: str) -> ExportJob | None:
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_id, state=ExportState.QUEUED).first()
        if job is None:
            return ExportJob.objects.filter(pk=job_id).first()
        job.state, job.error = ExportState.FAILED, error[:2000]
        job.save(update_fields=["state", "error"])
        return job


# --- Sweep --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    expired: list[int]
    requeued: list[int]


def export_jobs_sweep(*, now: datetime | None = None) -> SweepResult:
    """Delete the files of jobs past their retention (the rows stay, as expired), and re-queue the
    builds of jobs still queued long after their request (a lost enqueue). Idempotent."""
    now = now or timezone.now()
    expired: list[int] = []
    with transaction.atomic():
        due = list(
            ExportJob.objects.select_for_update(skip_locked=True)
            .filter(state=ExportState.SUCCEEDED, expires_at__lte=now)
            .order_by("pk")
        )
        for job in due:
            path = export_file_path(job)
            if path is not None:
                path.unlink(missing_ok=True)
            job.state, job.purged_at = ExportState.EXPIRED, now
            job.save(update_fields=["state", "purged_at"])
            expired.append(job.pk)
    stale = list(
        ExportJob.objects.filter(state=ExportState.QUEUED, requested_at__lte=now - REQUEUE_AFTER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for job_id in stale:
        _enqueue_build(job_id)
    return SweepResult(expired=expired, requeued=stale)


def export_job_history(*, organization: Organization | None, limit: int = 100) -> list[ExportJob]:
    """The organization's latest requests, newest first, with who asked and for which facility."""
    return list(
        ExportJob.objects.for_organization(organization)
        .select_related("requested_by", "facility")
        .order_by("-requested_at", "-pk")[:limit]
    )
