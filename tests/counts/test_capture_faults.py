"""Capture under faults, against gunicorn and PostgreSQL: a web process killed mid-batch and the
database dropping every connection mid-ingest. The client's retry stores every scan exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from accounts.roles import Role
from counts.models import CountEvent, CountKind
from counts.services.planning import count_run_create
from tests.factories import InventoryBalanceFactory, ItemBarcodeFactory, LocationFactory, ZoneFactory, member

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    database = connection.settings_dict
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return (
        f"postgres://{database['USER'] or 'postgres'}{password}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """The product's web process on a spare port, pointed at the test database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CYCLECOUNT_VAR_DIR": str(tmp_path),
            "CYCLECOUNT_SECRETS_KEYS": ",".join(settings.CONNECTION_SECRETS_KEYS),
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the product's own web server
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base}/healthz", timeout=10)
                return
            except requests.RequestException:
                time.sleep(0.2)
        self.kill()
        raise AssertionError("gunicorn did not start")

    def kill(self) -> None:
        # kill -9 the whole process group: master and workers, no graceful anything.
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill()


@pytest.fixture
def web(tmp_path):
    server = Gunicorn(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def counting(organization, facility):
    """An associate with a token, a started hard run and 50 scannable item × locations."""
    associate = member(organization, Role.ASSOCIATE, username="scanner")
    zone = ZoneFactory(organization=organization, facility=facility, code="A")
    pairs = []
    for index in range(50):
        location = LocationFactory(organization=organization, zone=zone, code=f"A-{index:02d}")
        balance = InventoryBalanceFactory(organization=organization, location=location, on_hand=Decimal(10))
        barcode = ItemBarcodeFactory(organization=organization, item=balance.item)
        pairs.append((location.code, barcode.value))
    run = count_run_create(organization=organization, facility=facility, name="Faults", kind=CountKind.HARD, actor=None)
    return {"token": Token.objects.create(user=associate).key, "run": run.pk, "pairs": pairs}


def _http(token: str) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    return http


def _events(pairs, count: int) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "location": pairs[index % len(pairs)][0],
            "barcode": pairs[index % len(pairs)][1],
            "quantity": 1,
            "kind": "add",
            "mode": "scan",
            "counted_at": datetime.now(tz=UTC).isoformat(),
        }
        for index in range(count)
    ]


def _session(web: Gunicorn, counting: dict) -> int:
    response = _http(counting["token"]).post(
        f"{web.base}/api/sessions/", json={"run": counting["run"], "device_id": "scanner-1"}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _send_until_stored(web: Gunicorn, counting: dict, payload: dict, *, attempts: int = 20) -> list[int]:
    """What a scanner does: send, and on any failure send the very same batch again."""
    statuses = []
    for _ in range(attempts):
        try:
            response = _http(counting["token"]).post(f"{web.base}/api/inventory/count", json=payload, timeout=60)
        except requests.ConnectionError:
            statuses.append(0)
            time.sleep(0.5)
            continue
        statuses.append(response.status_code)
        if response.status_code == 200:
            return statuses
        assert response.status_code == 503, response.text  # never a 500
        time.sleep(float(response.headers.get("Retry-After", "1")) / 5)
    raise AssertionError(f"never stored: {statuses}")


def test_a_web_process_killed_mid_batch_loses_and_doubles_nothing(web, counting):
    session = _session(web, counting)
    payload = {"session": session, "events": _events(counting["pairs"], 1000)}
    outcome: dict = {}

    def send() -> None:
        try:
            outcome["response"] = _http(counting["token"]).post(
                f"{web.base}/api/inventory/count", json=payload, timeout=60
            )
        except requests.ConnectionError as error:
            outcome["error"] = error

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.05)  # the batch is in the worker now
    web.kill()
    sender.join(timeout=60)
    stored_while_dying = CountEvent.objects.filter(session_id=session).count()
    web.start()

    statuses = _send_until_stored(web, counting, payload)

    assert stored_while_dying in (0, 1000)  # one transaction: all or nothing
    ids = [event["event_id"] for event in payload["events"]]
    assert CountEvent.objects.filter(event_id__in=ids).count() == 1000
    assert CountEvent.objects.filter(session_id=session).count() == 1000
    assert statuses[-1] == 200


def test_dropped_database_connections_mid_ingest_give_clean_503s_and_retries_succeed(web, counting):
    session = _session(web, counting)
    batches = [{"session": session, "events": _events(counting["pairs"], 200)} for _ in range(10)]
    database = connection.settings_dict["NAME"]
    admin_url = _database_url().rsplit("/", 1)[0] + "/postgres"
    stop = threading.Event()

    def restart_like() -> None:
        # What a PostgreSQL restart does to the web process: for a few seconds, every one of its
        # connections dies as soon as it is made.
        outage_ends = time.monotonic() + 3
        with psycopg.connect(admin_url, autocommit=True) as admin:
            while not stop.is_set() and time.monotonic() < outage_ends:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid() AND application_name <> 'pytest-keep'",
                    [database],
                )
                time.sleep(0.15)

    with connection.cursor() as cursor:
        cursor.execute("SET application_name = 'pytest-keep'")
    killer = threading.Thread(target=restart_like)
    killer.start()
    try:
        all_statuses = [_send_until_stored(web, counting, batch, attempts=60) for batch in batches]
    finally:
        stop.set()
        killer.join(timeout=10)

    statuses = [status for per_batch in all_statuses for status in per_batch]
    assert 503 in statuses  # the outage was felt …
    assert 500 not in statuses  # … and answered cleanly
    assert CountEvent.objects.filter(session_id=session).count() == 2000
    assert len({event.event_id for event in CountEvent.objects.filter(session_id=session)}) == 2000
