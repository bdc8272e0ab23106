"""Capture benchmark: the real HTTP endpoint on PostgreSQL, served by gunicorn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_bench .venv/bin/python bench/capture_bench.py

It migrates the database it is given, seeds a large warehouse (seed_demo), creates a hard run
and one associate per client, starts gunicorn on a spare port, then measures:

  (a) batch ingest: 1,000-event batches POSTed to /api/inventory/count, events per second
      (target ≥ 2,000/s);
  (b) single-event requests from 50 concurrent clients, each scanning at an associate's pace
      (one scan every 2 s, then every 1 s, each ±50%), latency p50/p95/p99 (target p95 < 50 ms);
  (c) the same 50 clients with no pause at all, which shows the saturation throughput.

Figures go to stdout; nothing is asserted (targets live here, not in unit tests).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)  # noqa: S603


def prepare(*, skus: int, clients: int) -> dict:
    """Seed, create the run and the associates; return tokens, the run and scannable pairs."""
    _manage("migrate", "--noinput", "-v0")
    _manage("seed_demo", "--skus", str(skus), "--if-empty", "--password", "bench-" + uuid.uuid4().hex)
    _django_setup()
    from django.contrib.auth import get_user_model
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
    for session in CountSession.objects.filter(user__username__startswith="bench", state=SessionState.ACTIVE):
        session.void()
        session.save()
    run = count_run_create(
        organization=organization,
        facility=facility,
        name=f"Bench {datetime.now(tz=UTC):%Y%m%d-%H%M%S}",
        kind=CountKind.HARD,
        actor=None,
    )
    tokens = []
    User = get_user_model()
    # One associate for the batch client and one per client for each single-event phase, since
    # an associate has one active session at a time.
    for n in range(3 * clients + 1):
        user, _ = User.objects.get_or_create(username=f"bench{n:02d}")
        membership_grant(user=user, organization=organization, role=Role.ASSOCIATE)
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    pairs = list(
        InventoryBalance.objects.filter(location__facility=facility).values_list(
            "location__code", "item__barcodes__value"
        )
    )
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
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    response = http.post(f"{base}/api/sessions/", json={"run": run, "device_id": device}, timeout=30)
    response.raise_for_status()
    return http, response.json()["id"]


def bench_batches(base: str, setup: dict, *, batches: int, size: int) -> None:
    http, session = _client(base, setup["tokens"][0], setup["run"], "bench-batch")
    rng = random.Random(7)
    payloads = [
        {"session": session, "events": [_event(rng.choice(setup["pairs"])) for _ in range(size)]}
        for _ in range(batches + 1)
    ]
    http.post(f"{base}/api/inventory/count", json=payloads[0], timeout=120).raise_for_status()  # warm-up
    durations = []
    for payload in payloads[1:]:
        started = time.perf_counter()
        response = http.post(f"{base}/api/inventory/count", json=payload, timeout=120)
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
        if response.json()["accepted"] != size:
            sys.exit(f"a batch was not fully accepted: {response.json()}")
    total = sum(durations)
    replay_started = time.perf_counter()
    replay = http.post(f"{base}/api/inventory/count", json=payloads[1], timeout=120).json()
    replay_seconds = time.perf_counter() - replay_started
    print(f"(a) batch ingest: {batches} batches × {size} events in {total:.2f} s")
    print(f"    throughput: {batches * size / total:,.0f} events/s (target ≥ 2,000/s)")
    print(f"    per batch: median {statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms")
    print(f"    replaying one batch: {replay['duplicates']} duplicates, {replay['accepted']} accepted, "
          f"{replay_seconds * 1000:.0f} ms")  # fmt: skip


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_single(
    base: str, setup: dict, *, clients: int, requests_each: int, pause: float, label: str, first_user: int
) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        rng = random.Random(index)
        http, session = _client(base, setup["tokens"][first_user + index], setup["run"], f"bench-{label}-{index}")
        barrier.wait()
        mine = []
        for _ in range(requests_each):
            payload = {"session": session, "events": [_event(rng.choice(setup["pairs"]))]}
            started = time.perf_counter()
            try:
                response = http.post(f"{base}/api/inventory/count", json=payload, timeout=60)
            except requests.ConnectionError:
                # A kept-alive connection the server just closed: the device retries the same
                # event (same id), as the count page's queue does.
                response = http.post(f"{base}/api/inventory/count", json=payload, timeout=60)
            mine.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
            if pause:
                time.sleep(rng.uniform(0.5 * pause, 1.5 * pause))
        http.post(f"{base}/api/sessions/{session}/submit", timeout=60)
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
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark is for the production database).")

    setup = prepare(skus=args.skus, clients=args.clients)
    print(f"warehouse: {args.skus:,} SKUs, {setup['lines']:,} item × location lines; run {setup['run']}")
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(args.workers), "--threads", "2", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "ALLOWED_HOSTS": "127.0.0.1"},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        print(f"server: gunicorn, {args.workers} workers × 2 threads, on {os.cpu_count()} CPU cores")
        bench_batches(base, setup, batches=args.batches, size=1000)
        clients, each = args.clients, args.requests_each
        bench_single(base, setup, clients=clients, requests_each=each, pause=2.0, first_user=1,
                     label="(b) a scan every 2 s")  # fmt: skip
        bench_single(base, setup, clients=clients, requests_each=each, pause=1.0, first_user=1 + clients,
                     label="(b) a scan every 1 s")  # fmt: skip
        bench_single(base, setup, clients=clients, requests_each=each // 2, pause=0.0, first_user=1 + 2 * clients,
                     label="(c) saturation")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
