"""Redis away (cache and broker): scans are still accepted and stored, health says the broker is
down, and queued work resumes when Redis is back. A private redis-server, stopped and restarted."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import requests
from rest_framework.authtoken.models import Token

from accounts.roles import Role
from counts.models import CountEvent, CountKind
from counts.services.planning import count_run_create
from tests.counts.test_capture_faults import Gunicorn, _free_port
from tests.factories import InventoryBalanceFactory, ItemBarcodeFactory, LocationFactory, ZoneFactory, member

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs the redis-server binary"),
]


class PrivateRedis:
    def __init__(self, tmp_path) -> None:
        self.port = _free_port()
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a private redis-server for this test
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def test_scans_survive_a_redis_outage_and_health_tells_ops(organization, facility, tmp_path):
    private = PrivateRedis(tmp_path)
    private.start()
    web = Gunicorn(tmp_path)
    web.env.update({"REDIS_URL": f"{private.url}/0", "CELERY_BROKER_URL": f"{private.url}/1"})
    web.start()
    try:
        associate = member(organization, Role.ASSOCIATE, username="scanner")
        zone = ZoneFactory(organization=organization, facility=facility, code="A")
        location = LocationFactory(organization=organization, zone=zone, code="A-01")
        balance = InventoryBalanceFactory(organization=organization, location=location, on_hand=Decimal(5))
        barcode = ItemBarcodeFactory(organization=organization, item=balance.item).value
        run = count_run_create(organization=organization, facility=facility, name="R", kind=CountKind.HARD, actor=None)
        http = requests.Session()
        http.headers["Authorization"] = f"Token {Token.objects.create(user=associate).key}"
        session = http.post(f"{web.base}/api/sessions/", json={"run": run.pk, "device_id": "d1"}, timeout=30).json()
        assert http.get(f"{web.base}/healthz", timeout=30).json()["broker"] == "ok"

        private.stop()  # Redis goes away
        events = [
            {
                "event_id": str(uuid.uuid4()),
                "location": "A-01",
                "barcode": barcode,
                "quantity": 1,
                "kind": "add",
                "mode": "scan",
                "counted_at": datetime.now(tz=UTC).isoformat(),
            }
            for _ in range(3)
        ]
        responses = [
            http.post(f"{web.base}/api/inventory/count", json={"session": session["id"], "events": [event]}, timeout=30)
            for event in events
        ]
        health = http.get(f"{web.base}/healthz", timeout=30)

        assert [response.status_code for response in responses] == [200, 200, 200]
        assert CountEvent.objects.filter(event_id__in=[event["event_id"] for event in events]).count() == 3
        assert health.status_code == 503
        assert health.json()["database"] == "ok"
        assert health.json()["broker"].startswith("error")

        private.start()  # and comes back
        deadline = time.monotonic() + 30
        while http.get(f"{web.base}/healthz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "health never recovered"
            time.sleep(0.5)
    finally:
        web.stop()
        private.stop()


def test_a_drain_asked_for_during_the_outage_resumes_from_the_sweep(organization, manager, netsuite, synced, tmp_path):
    from adapters.models import PendingPush, PushState
    from adapters.tasks import push_drain_sweep_task
    from config.celery import app
    from tests.adapters.support import approve_adjustments

    private = PrivateRedis(tmp_path)
    private.start()
    saved = app.conf.broker_url, app._pool, app.amqp._producer_pool
    # Fresh pools for the private broker; the suite's own pools are set aside, not closed.
    app._pool = app.amqp._producer_pool = None
    app.conf.broker_url = f"{private.url}/1"
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    try:
        private.stop()
        # The approval commits while the broker is away; its outbox row is safe in PostgreSQL.
        approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
        assert PendingPush.objects.get().state == PushState.PENDING

        private.start()
        app.conf.task_always_eager = True  # the worker, in-process
        assert push_drain_sweep_task() == [synced.pk]
        assert PendingPush.objects.get().state == PushState.ACCEPTED
        assert netsuite.on_hand(100, 10) == Decimal(99)
    finally:
        app.conf.task_always_eager = False
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool, app.amqp._producer_pool = saved
        private.stop()
