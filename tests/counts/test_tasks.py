"""The rotation task on a real Celery worker process, through a real broker and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from counts.models import CountRun
from tests.factories import FacilityFactory, InventoryBalanceFactory, LocationFactory, ZoneFactory

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    database = connection.settings_dict
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return (
        f"postgres://{database['USER'] or 'postgres'}{password}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


@pytest.fixture
def worker_env(tmp_path):
    broker = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "CYCLECOUNT_VAR_DIR": str(tmp_path),
    }
    return env


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_plans_the_week_from_the_beat_task(organization, worker_env):
    from config.celery import app

    facility = FacilityFactory(organization=organization, code="WH7")
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    for _ in range(3):
        location = LocationFactory(organization=organization, zone=zone)
        InventoryBalanceFactory(organization=organization, location=location, on_hand=Decimal("5"))
    # Send through the same broker the worker listens on (the worker's var dir for the
    # filesystem transport, which its settings create at start-up).
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = worker_env["CELERY_BROKER_URL"]
    if app.conf.broker_url.startswith("filesystem"):
        queue = Path(worker_env["CYCLECOUNT_VAR_DIR"]) / "celery-broker" / "queue"
        queue.mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {"data_folder_in": str(queue), "data_folder_out": str(queue)}

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "--without-mingle", "--without-gossip", "-Q", "celery"],
        cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with app.connection_for_write() as broker:
            app.send_task(
                "counts.tasks.rotation_plan_week_task", kwargs={"week_start": "2026-11-16"}, connection=broker
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not CountRun.objects.filter(facility=facility).exists():
            time.sleep(0.5)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
        app.conf.broker_url, app.conf.broker_transport_options = saved

    run = CountRun.objects.filter(facility=facility).first()
    assert run is not None, output
    assert (run.kind, run.source, run.rotation_week) == ("cycle", "rotation", date(2026, 11, 16))
    assert run.locations.count() > 0
