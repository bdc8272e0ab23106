"""Webhook signing and transport: what a receiver sees, and the one place that POSTs.

The scheme (receivers implement the same check; `verify_signature` is the reference):

- The body is the UTF-8 JSON object
  `{"event_id", "type", "version", "occurred_at", "organization", "payload"}`; `event_id` is the
  event's UUID, stable across retries, so receivers dedupe on it (delivery is at-least-once).
- Headers: `Content-Type: application/json`, `X-Cyclecount-Event: <type>`,
  `X-Cyclecount-Event-Id: <event_id>`, `X-Cyclecount-Timestamp: <unix seconds>` and
  `X-Cyclecount-Signature: sha256=<hex>`, where `<hex>` is
  HMAC-SHA256(key=subscription secret, message=f"{timestamp}.".encode() + raw_body_bytes).
- A receiver recomputes the HMAC over the raw body bytes as received (before any JSON parsing),
  compares in constant time, and rejects timestamps too far from its clock (replays).
- Any 2xx answer means "received"; anything else (including redirects, which are not followed,
  and timeouts after 10 s) is retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings

from audit.models import Event

TIMEOUT_SECONDS = 10.0
EXCERPT_CHARS = 500
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300

HEADER_EVENT = "X-Cyclecount-Event"
HEADER_EVENT_ID = "X-Cyclecount-Event-Id"
HEADER_TIMESTAMP = "X-Cyclecount-Timestamp"
HEADER_SIGNATURE = "X-Cyclecount-Signature"


def secret_generate() -> str:
    """A new signing secret (256 bits of randomness)."""
    return "whsec_" + secrets.token_urlsafe(32)


def secret_masked(secret: str) -> str:
    """Enough of a secret to tell two apart, never enough to use it."""
    return f"whsec_…{secret[-4:]}" if len(secret) > 12 else "…"


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def signature(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The `X-Cyclecount-Signature` value for `body` sent at `timestamp`."""
    message = f"{timestamp}.".encode() + _as_bytes(body)
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    *,
    tolerance_seconds: int | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` is the signature of `body` at `timestamp` under `secret`.

    `body` must be the raw bytes received. The timestamp must be an integer within
    `tolerance_seconds` of `now` (default: the current time); pass `tolerance_seconds=None` to
    skip that check (e.g. when verifying a stored delivery later).
    """
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance_seconds is not None:
        current = time.time() if now is None else now
        if abs(current - sent_at) > tolerance_seconds:
            return False
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(_as_bytes(header.strip()), _as_bytes(signature(secret, sent_at, body)))


def event_body(event: Event, *, organization_slug: str) -> bytes:
    """The JSON body every subscription receives for `event` (identical across retries)."""
    occurred_at = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document = {
        "event_id": str(event.event_id),
        "type": event.type,
        "version": event.version,
        "occurred_at": occurred_at,
        "organization": organization_slug,
        "payload": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signed_headers(*, event: Event, secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Cyclecount-Webhooks/1",
        HEADER_EVENT: event.type,
        HEADER_EVENT_ID: str(event.event_id),
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature(secret, timestamp, body),
    }


@dataclass(frozen=True)
class PostResult:
    """What one POST produced: a status code, or an error when there was no HTTP answer."""

    status_code: int | None
    latency_ms: int
    response_excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _private_networks_allowed() -> bool:
    # Receivers on loopback or private networks are refused in production (a subscription must
    # not become a way to probe the internal network); DEBUG installs and tests allow them.
    return bool(getattr(settings, "AUDIT_WEBHOOK_ALLOW_PRIVATE_NETWORKS", settings.DEBUG))


def _refusal(url: str) -> str:
    """Why `url` may not be called, or "" when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"refused: {url!r} is not an http(s) URL"
    if _private_networks_allowed():
        return ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            return f"refused: {parts.hostname} resolves to the non-public address {ip}"
    return ""


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT_SECONDS) -> PostResult:
    """POST once; never raises for network trouble (it is the result's `error`)."""
    refusal = _refusal(url)
    if refusal:
        return PostResult(status_code=None, latency_ms=0, error=refusal)
    started = time.monotonic()
    try:
        with requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            raw = response.raw.read(EXCERPT_CHARS * 4, decode_content=True) or b""
            status = response.status_code
            encoding = response.encoding or "utf-8"
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        latency = round((time.monotonic() - started) * 1000)
        return PostResult(status_code=None, latency_ms=latency, error=f"{type(error).__name__}: {error}"[:1000])
    latency = round((time.monotonic() - started) * 1000)
    try:
        excerpt = raw.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        excerpt = raw.decode("utf-8", errors="replace")
    return PostResult(status_code=status, latency_ms=latency, response_excerpt=excerpt[:EXCERPT_CHARS])
