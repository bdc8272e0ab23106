"""Gunicorn settings for the web process: the Procfile, the Dockerfile and bench/capture_bench.py.

Scanners post one small request per scan, a scan every second or two per associate, each on a
kept-alive connection. Hence:

- gthread workers: an idle kept-alive connection waits in its worker's poller, not in a thread,
  and a slow client never holds a whole process (gunicorn faces the network directly in
  compose.yaml, with no buffering proxy in front);
- keep-alive outlasts an associate's pause between scans: gunicorn's default of 2 s closed the
  connection just before the next scan, so a scan often paid for a new connection, or met a
  connection the server was closing and had to be sent again;
- one process per core, four threads each so requests' database round trips overlap. On the
  2-core benchmark machine 2 × 4 gave a lower p95 and less CPU per request than 4 × 2, 3 × 4
  or 6 sync workers: more processes only compete for the same cores (and with PostgreSQL);
- the workers' heartbeat file lives in memory (/dev/shm where there is one): gunicorn touches it
  on every turn of a worker's loop, and on a disk-backed /tmp that metadata write can wait out a
  stall of the file system's journal (gunicorn's docs warn of it), holding up every connection
  the worker serves; the benchmark machine's disk stalls flushes for up to a second or more (see
  bench/load_bench.py's commit probe).

The command line (or GUNICORN_CMD_ARGS) overrides any of these; WEB_CONCURRENCY and WEB_THREADS
set the pool size (set WEB_CONCURRENCY in a container whose CPU limit is below the host's count).
"""

from __future__ import annotations

import os

wsgi_app = "config.wsgi"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = int(os.environ.get("WEB_THREADS") or 4)
keepalive = 20
if os.path.isdir("/dev/shm"):  # noqa: S108 - gunicorn's own advice for its heartbeat file
    worker_tmp_dir = "/dev/shm"  # noqa: S108
