"""Load benchmark: a shift of associates scanning through gunicorn into PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cyclecount_load .venv/bin/python bench/load_bench.py

It migrates and seeds the database it is given (seed_demo, as bench/capture_bench.py does),
creates a hard run and one associate per simulated scanner, analyzes the database, starts
gunicorn with the production settings (config/gunicorn.conf.py) on a spare port, then lets
every associate open a session and, once all sessions are open, scan one event per second
(`--rate`) for `--minutes` (default: 200 associates for 10 minutes), each on its own kept-alive
connection, as a scanner does. First scans are spread over the first second; each associate
keeps to its own clock (a late answer does not shift the next scan), so the offered load stays
at associates × rate. Opening 200 sessions in the same second is not scanning and is not timed.

Besides the totals it prints each minute's p50/p95/max (does latency hold over the shift?), the
CPU that gunicorn and PostgreSQL used per scan (read from /proc on Linux), and how long the
database took to make a commit durable meanwhile: a probe on its own connection commits a tiny
WAL record ten times a second, so a scan's wait for the disk's flush (a scan is acknowledged only
once its transaction is on disk) shows apart from the server's own time.

A scanner never drops a scan: a request that fails (no connection, a timeout, any answer but
200) is counted as an error and sent again, with the same event id, until it is stored. So the
figures separate what a person would notice (latency, errors) from what the stock figures
depend on (lost or doubled events), which the script then checks in the database:

  - lost: an event that was answered 200 but is not stored;
  - duplicated: an event stored more than once, or counted more than once in its session's
    tallies (each event here adds 1, so a session's tally total must equal its stored events).

Target (issue #9): 0 errors, 0 lost, 0 duplicated, p95 < 100 ms. Figures go to stdout; nothing
is asserted. The client is asyncio on raw HTTP/1.1 so that it takes as little of the machine's
CPU as it can: it shares the cores with gunicorn and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import runpy
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from capture_bench import _event, _percentile, prepare  # noqa: E402

REQUEST_TIMEOUT = 10.0
RETRY_PAUSE = 0.5


class HttpConnection:
    """One kept-alive HTTP/1.1 connection, reopened when the server or the network drops it."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Authorization: Token {token}\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("connection closed by the server")
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            payload = await reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Associate:
    token: str
    session: int = 0
    sent: list[str] = field(default_factory=list)  # event ids answered 200
    latencies_ms: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # monotonic clock, one per latency
    first_answer_at: float = 0.0  # monotonic clock
    last_answer_at: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


async def _open_session(connection: HttpConnection, associate: Associate, run: int, device: str) -> None:
    body = json.dumps({"run": run, "device_id": device}).encode()
    status, payload = await connection.post("/api/sessions/", body)
    if status != 201:
        raise RuntimeError(f"{device}: starting a session answered {status}: {payload[:200]!r}")
    associate.session = json.loads(payload)["id"]


async def _scan_until_stored(connection: HttpConnection, associate: Associate, event: dict) -> None:
    body = json.dumps({"session": associate.session, "events": [event]}).encode()
    while True:
        started = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(connection.post("/api/inventory/count", body), REQUEST_TIMEOUT)
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            connection.close()
            kind = type(error).__name__
        else:
            elapsed = (time.perf_counter() - started) * 1000
            if status == 200:
                associate.latencies_ms.append(elapsed)
                associate.answered_at.append(time.monotonic())
                associate.last_answer_at = time.monotonic()
                associate.first_answer_at = associate.first_answer_at or associate.last_answer_at
                associate.sent.append(event["event_id"])
                return
            kind = f"HTTP {status}"
        associate.errors[kind] = associate.errors.get(kind, 0) + 1
        await asyncio.sleep(RETRY_PAUSE)


@dataclass
class ShiftClock:
    """Scanning starts once every associate's session is open, for everyone at the same moment."""

    associates: int
    seconds: float
    opened: int = 0
    everyone_open: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0  # monotonic clock

    async def session_opened(self) -> None:
        self.opened += 1
        if self.opened == self.associates:
            await asyncio.to_thread(_analyze_sessions)
            self.started_at = time.monotonic()
            self.everyone_open.set()
        await self.everyone_open.wait()

    @property
    def until(self) -> float:
        return self.started_at + self.seconds


def _analyze_sessions() -> None:
    """Planner statistics that know the shift's sessions are open, as autovacuum would gather.

    prepare() analyzes before the sessions exist, when every earlier session is voided; with
    autovacuum off (as on the benchmark machine) the planner would then count on no open session
    at all and scan every session for each count-line update of the whole shift.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE counts_countsession")
    connection.close()


async def _shift(
    host: str, port: int, associate: Associate, *, run: int, index: int, pairs: list, rate: float, clock: ShiftClock
) -> None:
    connection = HttpConnection(host, port, associate.token)
    await _open_session(connection, associate, run, f"load-{index:03d}")
    await clock.session_opened()
    rng = random.Random(index)
    interval = 1.0 / rate
    # Each associate's first scan falls somewhere in the first interval, then one per interval.
    next_at = clock.started_at + rng.random() * interval
    while next_at < clock.until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await _scan_until_stored(connection, associate, _event(rng.choice(pairs)))
        next_at += interval
    connection.close()


async def _run_shift(host: str, port: int, setup: dict, *, associates: int, rate: float, seconds: float) -> tuple:
    """Every associate's shift; returns the crew and how long the scanning lasted."""
    crew = [Associate(token=token) for token in setup["tokens"][:associates]]
    # Opening the sessions is the shift's start, not scanning: the clock starts once all are open.
    clock = ShiftClock(associates=len(crew), seconds=seconds)
    await asyncio.gather(
        *(
            _shift(host, port, associate, run=setup["run"], index=i, pairs=setup["pairs"], rate=rate, clock=clock)
            for i, associate in enumerate(crew)
        )
    )
    answered = [associate for associate in crew if associate.first_answer_at]
    if not answered:
        return crew, 0.0
    return crew, max(a.last_answer_at for a in answered) - min(a.first_answer_at for a in answered)


class CommitProbe(threading.Thread):
    """Times one durable commit every `every` seconds, on its own connection, while the shift runs.

    `pg_logical_emit_message(true, …)` writes a WAL record inside the transaction, so its commit
    waits for the WAL flush exactly as a scan's does, and it touches no table. What the probe
    sees is the disk's (and the WAL writer's) share of a scan's latency.
    """

    SLOW_MS = 100.0

    def __init__(self, database_url: str, every: float = 0.1) -> None:
        super().__init__(name="commit-probe", daemon=True)
        self.database_url, self.every = database_url, every
        self.commits: list[tuple[float, float]] = []  # (started, ms), monotonic clock
        self.finished = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as probe:
            while not self.finished.wait(self.every):
                started = time.monotonic()
                probe.execute("SELECT pg_logical_emit_message(true, 'cyclecount-load-bench', '')")
                self.commits.append((started, (time.monotonic() - started) * 1000))

    def stop(self) -> None:
        self.finished.set()
        self.join(timeout=30)

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(at, ms) for at, ms in self.commits if start <= at <= end]

    def report(self, start: float, end: float) -> None:
        commits = self.between(start, end)
        if not commits:
            return
        durations = [ms for _, ms in commits]
        slow_seconds = {int(at - start) for at, ms in commits if ms > self.SLOW_MS}
        print(f"database commits (probe, {len(commits):,} durable commits): p50 {_percentile(durations, 0.50):.1f} ms, "
              f"p99 {_percentile(durations, 0.99):.1f} ms, max {max(durations):.1f} ms; "
              f"a commit took over {self.SLOW_MS:.0f} ms in {len(slow_seconds)} of the shift's "
              f"{int(end - start) + 1} seconds")  # fmt: skip


def _answers(crew: list[Associate]) -> list[tuple[float, float]]:
    """(answered at, latency ms) of every stored scan, in the order answered."""
    return sorted(
        (at, latency)
        for associate in crew
        for at, latency in zip(associate.answered_at, associate.latencies_ms, strict=True)
    )


def _print_slow_scans_during_slow_commits(answers: list[tuple[float, float]], probe: CommitProbe) -> None:
    """How many of the scans slower than 100 ms were in flight while a probe commit was slow."""
    slow_scans = [(at - latency / 1000, at) for at, latency in answers if latency > CommitProbe.SLOW_MS]
    stalls = [(at, at + ms / 1000) for at, ms in probe.commits if ms > CommitProbe.SLOW_MS]
    if not slow_scans:
        return
    overlapping = sum(1 for sent, answered in slow_scans if any(s < answered and sent < e for s, e in stalls))
    print(f"scans slower than {CommitProbe.SLOW_MS:.0f} ms: {len(slow_scans):,}; of them {overlapping:,} were in "
          f"flight while a probe commit took over {CommitProbe.SLOW_MS:.0f} ms")  # fmt: skip


def _print_by_minute(answers: list[tuple[float, float]], probe: CommitProbe) -> None:
    """p50/p95/max of each minute of the shift (whether latency holds, drifts or spikes), beside
    the slowest durable commit the probe saw in that minute."""
    if not answers:
        return
    start, minutes = answers[0][0], {}
    for at, latency in answers:
        minutes.setdefault(int((at - start) // 60), []).append(latency)
    for minute, latencies in sorted(minutes.items()):
        commits = [ms for _, ms in probe.between(start + minute * 60, start + (minute + 1) * 60)]
        print(f"  minute {minute + 1:2d}: {len(latencies):6,} answers, p50 {_percentile(latencies, 0.50):6.1f} ms, "
              f"p95 {_percentile(latencies, 0.95):7.1f} ms, max {max(latencies):7.1f} ms; "
              f"slowest commit {max(commits, default=0.0):7.1f} ms")  # fmt: skip


def _server_cpu_seconds(gunicorn_pid: int) -> dict[str, float]:
    """CPU seconds used so far by gunicorn (master and workers) and by PostgreSQL.

    Read from Linux's /proc; empty elsewhere. PostgreSQL's share is every postgres process on
    the machine plus the backends that have ended (the postmaster's reaped children: Django
    reconnects every CONN_MAX_AGE), so run the bench on a machine that serves nothing else.
    """
    totals = {"gunicorn": 0.0, "PostgreSQL": 0.0}
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                name, _, rest = stat.read().rpartition(")")
        except OSError:
            continue  # the process ended meanwhile
        fields = rest.split()
        parent, used, reaped = int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        if int(pid) == gunicorn_pid or parent == gunicorn_pid:
            totals["gunicorn"] += used / ticks
        elif name.partition("(")[2].startswith("postgres"):
            totals["PostgreSQL"] += (used + reaped) / ticks
    return totals


def verify(crew: list[Associate]) -> dict:
    """Compare what the server acknowledged with what the database holds."""
    from django.db.models import Count, Sum

    from counts.models import CountEvent, SessionTally

    acknowledged = [event_id for associate in crew for event_id in associate.sent]
    sessions = [associate.session for associate in crew]
    stored = CountEvent.objects.filter(session_id__in=sessions)
    stored_ids = {str(value) for value in stored.values_list("event_id", flat=True)}
    rows_per_id = stored.values("event_id").annotate(rows=Count("pk")).filter(rows__gt=1).count()
    tallies = dict(
        SessionTally.objects.filter(session_id__in=sessions)
        .values_list("session_id")
        .annotate(total=Sum("quantity"))
        .values_list("session_id", "total")
    )
    events_per_session = dict(
        stored.filter(status__in=("matched", "extra"))
        .values_list("session_id")
        .annotate(events=Count("pk"))
        .values_list("session_id", "events")
    )
    over_counted = sum(1 for session, events in events_per_session.items() if int(tallies.get(session, 0)) != events)
    return {
        "acknowledged": len(acknowledged),
        "stored": len(stored_ids),
        "lost": len(set(acknowledged) - stored_ids),
        "stored_twice": rows_per_id,
        "sessions_miscounted": over_counted,
        "unasked": len(stored_ids - set(acknowledged)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=20000)
    parser.add_argument("--associates", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.0, help="scans per second per associate")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: config/gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: config/gunicorn.conf.py)")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark is for the production database).")
    # 200 kept-alive connections need as many descriptors, plus the server's.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))

    setup = prepare(skus=args.skus, associates=args.associates, prefix="load")
    print(f"warehouse: {args.skus:,} SKUs, {len(setup['pairs']):,} item × location lines; run {setup['run']}")
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    workers, threads = args.workers or conf["workers"], args.threads or conf["threads"]
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "ALLOWED_HOSTS": "127.0.0.1"},
    )  # fmt: skip
    try:
        import requests

        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{args.port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        print(f"server: gunicorn {conf['worker_class']}, {workers} workers × {threads} threads, "
              f"keep-alive {conf['keepalive']} s, on {os.cpu_count()} CPU cores")  # fmt: skip
        offered = args.associates * args.rate
        print(f"load: {args.associates} associates × {args.rate:g} scan/s = {offered:,.0f} req/s offered "
              f"for {args.minutes:g} min")  # fmt: skip
        seconds = args.minutes * 60
        probe = CommitProbe(os.environ["DATABASE_URL"])
        probe.start()
        cpu_before, server_before = os.times(), _server_cpu_seconds(server.pid)
        crew, elapsed = asyncio.run(
            _run_shift("127.0.0.1", args.port, setup, associates=args.associates, rate=args.rate, seconds=seconds)
        )
        cpu_after, server_after = os.times(), _server_cpu_seconds(server.pid)
        probe.stop()
        load = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=30)

    latencies = [value for associate in crew for value in associate.latencies_ms]
    errors: dict[str, int] = {}
    for associate in crew:
        for kind, number in associate.errors.items():
            errors[kind] = errors.get(kind, 0) + number
    client_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    server_cpu = {kind: server_after[kind] - server_before.get(kind, 0.0) for kind in server_after}
    elapsed = max(elapsed, 1e-9)
    print(f"stored answers: {len(latencies):,} in {elapsed:,.0f} s = {len(latencies) / elapsed:,.1f} req/s "
          f"(load average {load[0]:.2f}; the client itself used {client_cpu / elapsed:.0%} of one core)")  # fmt: skip
    if server_cpu:
        answered = max(len(latencies), 1)
        print("server CPU: " + ", ".join(
            f"{kind} {seconds / elapsed:.2f} cores ({seconds * 1000 / answered:.1f} ms per scan)"
            for kind, seconds in server_cpu.items()
        ) + f", of {os.cpu_count()} cores")  # fmt: skip
    if latencies:
        print(f"latency: p50 {_percentile(latencies, 0.50):.1f} ms, p95 {_percentile(latencies, 0.95):.1f} ms, "
              f"p99 {_percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")  # fmt: skip
    print(f"errors: {sum(errors.values())} {errors or ''}".rstrip())
    answers = _answers(crew)
    if answers:
        probe.report(answers[0][0] - answers[0][1] / 1000, answers[-1][0])
        _print_slow_scans_during_slow_commits(answers, probe)
    _print_by_minute(answers, probe)
    checked = verify(crew)
    print(f"database: {checked['acknowledged']:,} acknowledged, {checked['stored']:,} stored; "
          f"lost {checked['lost']}, stored twice {checked['stored_twice']}, "
          f"sessions whose tallies disagree with their events {checked['sessions_miscounted']}, "
          f"stored but never acknowledged {checked['unasked']}")  # fmt: skip


if __name__ == "__main__":
    main()
