"""A webhook receiver served over real HTTP on 127.0.0.1, written from the documented scheme.

It checks signatures with its own HMAC code (not `audit.webhooks`), answers with scripted
statuses, and dedupes on the event id the way a receiver is told to: a repeated event id is
acknowledged but not processed again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    signature_valid: bool

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.document["event_id"]


@dataclass
class WebhookReceiver:
    secret: str = ""
    default_status: int = 200
    response_body: bytes = b'{"received": true}'
    statuses: deque[int] = field(default_factory=deque)  # answered first, then default_status
    received: list[Received] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id → document, once
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/cyclecount"

    def expected_signature(self, timestamp: str, body: bytes) -> str:
        digest = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        timestamp = headers.get("X-Cyclecount-Timestamp", "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= MAX_SKEW_SECONDS
        valid = fresh and hmac.compare_digest(
            headers.get("X-Cyclecount-Signature", ""), self.expected_signature(timestamp, body)
        )
        with self._lock:
            self.received.append(Received(headers=headers, body=body, signature_valid=valid))
            if not valid:
                return 401
            status = self.statuses.popleft() if self.statuses else self.default_status
            if 200 <= status < 300:
                document = json.loads(body)
                self.processed.setdefault(document["event_id"], document)
            return status


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.receiver.handle(dict(self.headers.items()), body)
        reply = self.server.receiver.response_body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class ServedReceiver:
    """Context manager: serve a WebhookReceiver from a daemon thread."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver()
        self._server = _Server(self.receiver)
        self.receiver.port = self._server.server_address[1]

    def __enter__(self) -> WebhookReceiver:
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
        )
        thread.start()
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
