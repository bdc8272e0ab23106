"""Celery tasks for counting: thin interfaces that call one service."""

from __future__ import annotations

from datetime import date

from celery import shared_task

from accounts.services import system_actor
from accounts.tenancy import rls_bypass
from counts.services.rotation import rotation_plan_all


@shared_task(name="counts.tasks.rotation_plan_week_task")
def rotation_plan_week_task(week_start: str | None = None) -> list[int]:
    """Plan the week's zone rotation at every facility (beat: Monday 06:00 UTC).

    Idempotent: a facility whose week is already planned keeps its run, so a retry or a second
    beat tick creates nothing new. `week_start` (an ISO Monday) lets ops re-run a missed week
    from the periodic task's kwargs; by default the current UTC week is planned.
    Returns the ids of the week's rotation runs.
    """
    week = date.fromisoformat(week_start) if week_start else None
    with rls_bypass(reason="beat: plan the week's rotation at every facility of every organization"):
        return [run.pk for run in rotation_plan_all(week_start=week, actor=system_actor())]
