"""Celery tasks of the export jobs: thin interfaces over `audit.exports` (imported by audit.tasks).

Both are idempotent: the build re-checks the job under its row lock, the sweep only touches
jobs that are due.
"""

from __future__ import annotations

from celery import shared_task

from accounts.tenancy import organization_of, rls_bypass, tenant_context
from audit.export_models import ExportJob
from audit.exports import export_job_build, export_jobs_sweep


@shared_task(name="audit.export_tasks.export_job_build_task")
def export_job_build_task(job_id: int) -> str | None:
    """Build one export's file (queued on the commit of its request); returns the job's state."""
    with tenant_context(organization_of(ExportJob, job_id)):
        job = export_job_build(job_id=job_id)
    return job.state if job is not None else None


@shared_task(name="audit.export_tasks.export_jobs_sweep_task")
def export_jobs_sweep_task() -> dict[str, list[int]]:
    """Beat, hourly: delete files past their retention; re-queue builds that were never picked up."""
    with rls_bypass(reason="beat: expire and re-queue the export jobs of every organization"):
        result = export_jobs_sweep()
    return {"expired": result.expired, "requeued": result.requeued}
