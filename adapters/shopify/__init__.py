"""Shopify: the Admin GraphQL API with an app's access token (`X-Shopify-Access-Token`).

Connection values (one JSON object, as `backend_connect` takes it):
- `shop_url` — https://<shop>.myshopify.com
- `access_token` — the app's Admin API access token (a secret: encrypted, never shown)
- `api_version` — e.g. "2026-01" (Shopify's quarterly versions: YYYY-01/04/07/10)
- `location_ids` — optional list of Shopify location ids or gids to mirror; all active ones if left out
- `moved_stock_policy` — optional, what to do when stock moved between our read and the
  adjustment: keep_difference (default), keep_count or require_recount; set it to the
  organization's guardrail `moved_book_policy` (see adapters/shopify/backend.py)
- `concurrency` (default 1: one cost bucket per app and shop), `timeout_seconds` (default 30),
  `time_zone` (of the facilities sync creates) — optional
"""

from __future__ import annotations

import re
from typing import Any

from adapters.interface import BackendSpec, backend_register
from adapters.shopify.backend import KEEP_DIFFERENCE, MOVED_STOCK_POLICIES, ShopifyBackend
from adapters.shopify.client import ShopifyClient

API_VERSION = re.compile(r"^20\d\d-(01|04|07|10)$")
LOCATION_ID = re.compile(r"^(gid://shopify/Location/)?[1-9]\d*$")
LOCAL_HOSTS = ("http://127.0.0.1", "http://localhost")
DEFAULT_CONCURRENCY = 1


def graphql_url(shop_url: str, api_version: str) -> str:
    return f"{shop_url.rstrip('/')}/admin/api/{api_version}/graphql.json"


def validate_settings(values: dict[str, Any]) -> dict[str, str]:
    """Field → message for every problem in a Shopify connection's settings."""
    errors: dict[str, str] = {}
    shop_url = str(values.get("shop_url") or "")
    if not re.match(r"^https://[A-Za-z0-9.-]+/?$", shop_url) and not shop_url.startswith(LOCAL_HOSTS):
        errors["shop_url"] = "the shop's https:// address, e.g. https://acme.myshopify.com"
    if not API_VERSION.match(str(values.get("api_version") or "")):
        errors["api_version"] = "a Shopify API version, e.g. 2026-01"
    location_ids = values.get("location_ids")
    if location_ids is not None and (
        not isinstance(location_ids, list)
        or not location_ids
        or not all(isinstance(value, str | int) and LOCATION_ID.match(str(value)) for value in location_ids)
    ):
        errors["location_ids"] = (
            'a non-empty list of Shopify location ids, e.g. ["71234"] or ["gid://shopify/Location/71234"]'
        )
    policy = values.get("moved_stock_policy", KEEP_DIFFERENCE)
    if policy not in MOVED_STOCK_POLICIES:
        errors["moved_stock_policy"] = f"one of {', '.join(MOVED_STOCK_POLICIES)}"
    concurrency = values.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 10:
        errors["concurrency"] = "an integer from 1 to 10 (requests at once; all share the shop's cost bucket)"
    timeout = values.get("timeout_seconds", 30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        errors["timeout_seconds"] = "seconds from 1 to 300"
    return errors


def build(values: dict[str, Any], secrets: dict[str, str]) -> ShopifyBackend:
    concurrency = int(values.get("concurrency", DEFAULT_CONCURRENCY))
    client = ShopifyClient(
        graphql_url=graphql_url(str(values["shop_url"]), str(values["api_version"])),
        access_token=secrets["access_token"],
        concurrency=concurrency,
        timeout=float(values.get("timeout_seconds", 30)),
    )
    return ShopifyBackend(
        client=client,
        location_ids=tuple(str(value) for value in values.get("location_ids") or ()),
        moved_stock_policy=str(values.get("moved_stock_policy") or KEEP_DIFFERENCE),
        concurrency=concurrency,
    )


backend_register(
    BackendSpec(
        kind="shopify",
        factory=build,
        required_settings=("shop_url", "api_version"),
        secret_keys=("access_token",),
        optional_settings=("location_ids", "moved_stock_policy", "concurrency", "timeout_seconds", "time_zone"),
        validate=validate_settings,
    )
)
