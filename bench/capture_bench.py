"""Capture benchmark: the real HTTP endpoint on PostgreSQL, served by gunicorn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_bench .venv/bin/python bench/capture_bench.py

It migrates the database it is given, seeds a large warehouse (seed_demo), creates a hard run
and one associate per client, analyzes the database (as autovacuum would in production), starts
gunicorn on a spare port with the production settings (config/gunicorn.conf.py), then measures:

  (a) batch ingest: 1,000-event batches POSTed to /api/inventory/count, events per second
      (target ≥ 2,000/s);
  (b) single-event requests from 50 concurrent clients, each scanning at an associate's pace
      (one scan every 2 s, then every 1 s, each ±50%), latency p50/p95/p99 (target p95 < 50 ms);
      all 50 sessions are open before anyone scans, and each associate's first scan falls
      somewhere in that first pause, as on a shift floor (--synchronized-start sends all 50
      first scans in the same instant instead);
  (c) the same 50 clients with no pause at all, which shows the saturation throughput.

Latency is timed on the client around the request alone (each body is built before its timer
starts), so it includes the network, gunicorn's queueing and the server's work.

Figures go to stdout; nothing is asserted (targets live here, not in unit tests).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import runpy
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)  # noqa: S603


def prepare(*, skus: int, associates: int, prefix: str = "bench") -> dict:
    """Seed, create a hard run and `associates` associates named <prefix>000…; return their
    tokens, the run and the scannable (location, barcode) pairs. Shared by bench/load_bench.py."""
    _manage("migrate", "--noinput", "-v0")
    _manage("seed_demo", "--skus", str(skus), "--if-empty", "--password", "bench-" + uuid.uuid4().hex)
    _django_setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from accounts.models import Organization
    from accounts.roles import Role
    from accounts.services import membership_grant
    from counts.models import CountKind, CountSession, SessionState
    from counts.services.planning import count_run_create
    from inventory.models import Facility, InventoryBalance

    organization = Organization.objects.get(slug="demo")
    facility = Facility.objects.get(organization=organization, code="WH1")
    # Earlier bench runs leave active sessions; void them so each associate can start afresh.
    for session in CountSession.objects.filter(user__username__startswith=prefix, state=SessionState.ACTIVE):
        session.void()
        session.save()
    run = count_run_create(
        organization=organization,
        facility=facility,
        name=f"{prefix.capitalize()} {datetime.now(tz=UTC):%Y%m%d-%H%M%S}",
        kind=CountKind.HARD,
        actor=None,
    )
    tokens = []
    User = get_user_model()
    for n in range(associates):
        user, _ = User.objects.get_or_create(username=f"{prefix}{n:03d}")
        membership_grant(user=user, organization=organization, role=Role.ASSOCIATE)
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    pairs = list(
        InventoryBalance.objects.filter(location__facility=facility).values_list(
            "location__code", "item__barcodes__value"
        )
    )
    # A production database has planner statistics (autovacuum analyzes as tables grow); a
    # server run with autovacuum off never gathers them, and the benchmark would then measure
    # plans no deployment uses (a sequential scan of every stored event per batch, for one).
    # The checkpoint flushes the seed's writes so the measurement doesn't pay for them.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")
    return {"run": run.pk, "tokens": tokens, "pairs": pairs, "lines": len(pairs)}


def _event(pair: tuple[str, str]) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "location": pair[0],
        "barcode": pair[1],
        "quantity": 1,
        "kind": "add",
        "mode": "scan",
        "counted_at": datetime.now(tz=UTC).isoformat(),
    }


def _client(base: str, token: str, run: int, device: str) -> tuple[requests.Session, int]:
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    response = api.post(f"{base}/api/sessions/", json={"run": run, "device_id": device}, timeout=30)
    response.raise_for_status()
    return api, response.json()["id"]


def bench_batches(base: str, setup: dict, *, batches: int, size: int) -> None:
    api, session = _client(base, setup["tokens"][0], setup["run"], "bench-batch")
    rng = random.Random(7)
    payloads = [
        {"session": session, "events": [_event(rng.choice(setup["pairs"])) for _ in range(size)]}
        for _ in range(batches + 1)
    ]
    api.post(f"{base}/api/inventory/count", json=payloads[0], timeout=120).raise_for_status()  # warm-up
    durations = []
    for payload in payloads[1:]:
        started = time.perf_counter()
        response = api.post(f"{base}/api/inventory/count", json=payload, timeout=120)
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
        if response.json()["accepted"] != size:
            sys.exit(f"a batch was not fully accepted: {response.json()}")
    total = sum(durations)
    replay_started = time.perf_counter()
    replay = api.post(f"{base}/api/inventory/count", json=payloads[1], timeout=120).json()
    replay_seconds = time.perf_counter() - replay_started
    print(f"(a) batch ingest: {batches} batches × {size} events in {total:.2f} s")
    print(f"    throughput: {batches * size / total:,.0f} events/s (target ≥ 2,000/s)")
    print(f"    per batch: median {statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms")
    print(f"    replaying one batch: {replay['duplicates']} duplicates, {replay['accepted']} accepted, "
          f"{replay_seconds * 1000:.0f} ms")  # fmt: skip


class _Scanner:
    """One device's kept-alive HTTP/1.1 connection, on the standard library's client.

    Fifty of these share one Python process (and its GIL) with each other, and two CPU cores
    with the server; requests spent about twice the CPU per call, which the measured latency
    then included. What the server sees is the same: method, path, token, JSON body and a
    kept-alive connection.
    """

    def __init__(self, base: str, token: str) -> None:
        address = urlsplit(base)
        self.host, self.port = address.hostname, address.port
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.connection.request("POST", path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                # A kept-alive connection the server just closed: the device retries the same
                # event (same id), as the count page's queue does.
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_single(
    base: str,
    setup: dict,
    *,
    clients: int,
    requests_each: int,
    pause: float,
    label: str,
    first_user: int,
    synchronized_start: bool = False,
) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        rng = random.Random(index)
        token = setup["tokens"][first_user + index]
        try:
            api, session = _client(base, token, setup["run"], f"bench-{label}-{index}")
        except requests.RequestException as error:
            # Without its session this client never reaches the barrier; release the others
            # instead of leaving them waiting for ever.
            errors.append(f"client {index} could not open its session: {error}")
            barrier.abort()
            return
        scanner = _Scanner(base, token)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        if pause and not synchronized_start:
            time.sleep(rng.uniform(0, pause))
        mine = []
        for _ in range(requests_each):
            body = json.dumps({"session": session, "events": [_event(rng.choice(setup["pairs"]))]}).encode()
            started = time.perf_counter()
            status, content = scanner.post("/api/inventory/count", body)
            mine.append(time.perf_counter() - started)
            if status != 200:
                errors.append(f"{status} {content[:200].decode(errors='replace')}")
            if pause:
                time.sleep(rng.uniform(0.5 * pause, 1.5 * pause))
        api.post(f"{base}/api/sessions/{session}/submit", timeout=60)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = [latency * 1000 for latency in latencies]
    print(f"{label}: {clients} clients × {requests_each} single-event requests, pause ≈ {pause:.2f} s")
    if not ms:
        print("    no measurements:", errors[0] if errors else "no client ran")
        return
    print(f"    p50 {_percentile(ms, 0.50):.1f} ms, p95 {_percentile(ms, 0.95):.1f} ms, "
          f"p99 {_percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms; {len(ms) / elapsed:,.0f} req/s; "
          f"errors {len(errors)}")  # fmt: skip
    if errors:
        print("    first error:", errors[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests-each", type=int, default=40)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: config/gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: config/gunicorn.conf.py)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--synchronized-start", action="store_true", help="(b): every client sends its first scan at the same instant"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark is for the production database).")

    # One associate for the batch client and one per client for each single-event phase, since
    # an associate has one active session at a time.
    setup = prepare(skus=args.skus, associates=3 * args.clients + 1)
    print(f"warehouse: {args.skus:,} SKUs, {setup['lines']:,} item × location lines; run {setup['run']}")
    base = f"http://127.0.0.1:{args.port}"
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    workers, threads = args.workers or conf["workers"], args.threads or conf["threads"]
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "ALLOWED_HOSTS": "127.0.0.1"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        print(f"server: gunicorn {conf['worker_class']}, {workers} workers × {threads} threads, "
              f"keep-alive {conf['keepalive']} s, on {os.cpu_count()} CPU cores")  # fmt: skip
        bench_batches(base, setup, batches=args.batches, size=1000)
        clients, each = args.clients, args.requests_each
        bench_single(base, setup, clients=clients, requests_each=each, pause=2.0, first_user=1,
                     label="(b) a scan every 2 s", synchronized_start=args.synchronized_start)  # fmt: skip
        bench_single(base, setup, clients=clients, requests_each=each, pause=1.0, first_user=1 + clients,
                     label="(b) a scan every 1 s", synchronized_start=args.synchronized_start)  # fmt: skip
        bench_single(base, setup, clients=clients, requests_each=each // 2, pause=0.0, first_user=1 + 2 * clients,
                     label="(c) saturation")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
