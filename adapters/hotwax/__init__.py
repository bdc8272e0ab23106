"""HotWax Commerce OMS: Moqui REST reads and the Update Inventory service, with a bearer token.

Connection values (one JSON object, as `backend_connect` takes it):
- `base_url` — the OMS REST root, https://<instance>/rest/s1/ (updates go to
  https://<instance>/api/service/updateInventoryByIdentification, derived from it)
- `token` — the integration user's JWT (a secret: encrypted, never shown)
- `facility_ids` — the HotWax facility ids to mirror and adjust, e.g. ["WH", "STORE_1"]
- `variance_reason_id` — optional, one of HotWax's documented variance reasons (default MISMATCH)
- `location_seq_id` — optional, the facility location for a product HotWax has no inventory row
  for yet (default TLTLTLLL01)
- `timeout_seconds` (default 30), `time_zone` (of the facilities sync creates) — optional

See adapters/hotwax/backend.py for how a write is made exactly once without idempotency.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.hotwax.backend import (
    DEFAULT_LOCATION_SEQ_ID,
    DEFAULT_VARIANCE_REASON,
    VARIANCE_REASONS,
    HotWaxBackend,
)
from adapters.hotwax.client import HotWaxClient
from adapters.interface import BackendSpec, backend_register

LOCAL_HOSTS = ("http://127.0.0.1", "http://localhost")
FACILITY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,60}$")


def validate_settings(values: dict[str, Any]) -> dict[str, str]:
    """Field → message for every problem in a HotWax connection's settings."""
    errors: dict[str, str] = {}
    base_url = str(values.get("base_url") or "")
    if not (base_url.startswith("https://") or base_url.startswith(LOCAL_HOSTS)) or not base_url.rstrip("/").endswith(
        "/rest/s1"
    ):
        errors["base_url"] = "the OMS REST root, e.g. https://acme-oms.hotwax.io/rest/s1/"
    facility_ids = values.get("facility_ids")
    if (
        not isinstance(facility_ids, list)
        or not facility_ids
        or not all(isinstance(value, str) and FACILITY_ID.match(value) for value in facility_ids)
        or len(set(facility_ids)) != len(facility_ids)
    ):
        errors["facility_ids"] = 'a non-empty list of distinct HotWax facility ids, e.g. ["WH", "STORE_1"]'
    reason = values.get("variance_reason_id", DEFAULT_VARIANCE_REASON)
    if reason not in VARIANCE_REASONS:
        errors["variance_reason_id"] = f"one of HotWax's variance reasons: {', '.join(VARIANCE_REASONS)}"
    location_seq_id = values.get("location_seq_id", DEFAULT_LOCATION_SEQ_ID)
    if not isinstance(location_seq_id, str) or not location_seq_id.strip():
        errors["location_seq_id"] = "a HotWax facility location id, e.g. TLTLTLLL01"
    timeout = values.get("timeout_seconds", 30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        errors["timeout_seconds"] = "seconds from 1 to 300"
    return errors


def build(values: dict[str, Any], secrets: dict[str, str]) -> HotWaxBackend:
    client = HotWaxClient(
        base_url=str(values["base_url"]),
        token=secrets["token"],
        concurrency=HotWaxBackend.concurrency,
        timeout=float(values.get("timeout_seconds", 30)),
    )
    return HotWaxBackend(
        client=client,
        facility_ids=tuple(str(value) for value in values["facility_ids"]),
        variance_reason_id=str(values.get("variance_reason_id") or DEFAULT_VARIANCE_REASON),
        location_seq_id=str(values.get("location_seq_id") or DEFAULT_LOCATION_SEQ_ID),
    )


backend_register(
    BackendSpec(
        kind="hotwax",
        factory=build,
        required_settings=("base_url", "facility_ids"),
        secret_keys=("token",),
        optional_settings=("variance_reason_id", "location_seq_id", "timeout_seconds", "time_zone"),
        validate=validate_settings,
    )
)
