"""kill -9 of a real Celery worker in the middle of a drain: after a restart every adjustment
lands in NetSuite exactly once (PostgreSQL, a real broker, the NetSuite fake over HTTP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from adapters.models import BatchState, PendingPush, PushBatch, PushState
from adapters.services import backend_sync, push_drain
from adapters.services.drain import stale_work_reclaim
from config.celery import app
from inventory.models import InventoryBalance
from tests.adapters.support import approve_adjustments, connect, fake_netsuite, warehouse

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3


def _database_url() -> str:
    database = connection.settings_dict
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return (
        f"postgres://{database['USER'] or 'postgres'}{password}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


@pytest.fixture
def worker_env(tmp_path):
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or "filesystem://",
        "CYCLECOUNT_VAR_DIR": str(tmp_path),
        # The worker must read the connection's secrets with the same keys as this process.
        "CYCLECOUNT_SECRETS_KEYS": ",".join(settings.CONNECTION_SECRETS_KEYS),
        "ADAPTER_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_drain_loses_and_doubles_nothing(organization, manager, worker_env):
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = worker_env["CELERY_BROKER_URL"]
    if app.conf.broker_url.startswith("filesystem"):
        queue = Path(worker_env["CYCLECOUNT_VAR_DIR"]) / "celery-broker" / "queue"
        queue.mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {"data_folder_in": str(queue), "data_folder_out": str(queue)}

    # Slow answers, one request at a time: the drain is surely mid-way when it is killed.
    with fake_netsuite(latency=0.4) as fake:
        warehouse(fake, locations=6, items=2)
        connection_ = connect(organization, fake, concurrency=1)
        backend_sync(connection=connection_)
        codes = [f"DALLAS-AISLE-{index}" for index in range(1, 7)]
        approve_adjustments(organization, manager, {("NS-0000", code): -1 for code in codes})
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING",
             "--without-mingle", "--without-gossip", "-Q", "celery"],
            cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with app.connection_for_write() as broker:
                app.send_task("adapters.tasks.push_drain_connection_task", args=[connection_.pk], connection=broker)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(fake.adjustments) < 2:
                time.sleep(0.05)
            assert len(fake.adjustments) >= 2, "the worker never got going"
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            output = worker.communicate(timeout=30)[0].decode(errors="replace")
            app.conf.broker_url, app.conf.broker_transport_options = saved

        landed_before_restart = len(fake.adjustments)
        assert landed_before_restart < 6, output
        assert PushBatch.objects.filter(state=BatchState.IN_FLIGHT).exists()

        # "Restart": once the dead worker's lease runs out, the sweep reclaims and drains again.
        time.sleep(LEASE_SECONDS + 0.5)
        assert stale_work_reclaim() >= 1
        fake.latency = 0
        connection_.refresh_from_db()
        push_drain(connection=connection_)

        assert PendingPush.objects.filter(state=PushState.ACCEPTED).count() == 6
        assert len(fake.adjustments) == 6
        for location in range(10, 16):
            assert fake.on_hand(100, location) == Decimal(99)
        for balance in InventoryBalance.objects.filter(item__sku="NS-0000", location__code__in=codes):
            assert balance.on_hand == Decimal(99)
