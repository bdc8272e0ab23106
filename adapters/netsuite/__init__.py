"""NetSuite: Token-Based Authentication, our RESTlet for adjustments, SuiteQL for reads."""

from __future__ import annotations

import re
from typing import Any

from adapters.interface import BackendSpec, backend_register
from adapters.netsuite.auth import TokenBasedAuth, account_host
from adapters.netsuite.backend import NetSuiteBackend
from adapters.netsuite.client import NetSuiteClient

RESTLET_PATH = "/app/site/hosting/restlet.nl?script=customscript_cc_adjust&deploy=customdeploy_cc_adjust"
ACCOUNT_ID = re.compile(r"^\d+([_-][A-Za-z0-9]+)?$")
DEFAULT_CONCURRENCY = 5


def default_restlet_url(account_id: str) -> str:
    return f"https://{account_host(account_id)}.restlets.api.netsuite.com{RESTLET_PATH}"


def default_rest_url(account_id: str) -> str:
    return f"https://{account_host(account_id)}.suitetalk.api.netsuite.com"


def validate_settings(values: dict[str, Any]) -> dict[str, str]:
    """Field → message for every problem in a NetSuite connection's settings."""
    errors: dict[str, str] = {}
    if not ACCOUNT_ID.match(str(values.get("account_id", ""))):
        errors["account_id"] = "the NetSuite account id, e.g. 1234567 or 1234567_SB1"
    for name in ("subsidiary_id", "adjustment_account_id"):
        if not str(values.get(name, "")).strip().isdigit():
            errors[name] = "a NetSuite internal id (digits)"
    concurrency = values.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 100:
        errors["concurrency"] = "an integer from 1 to 100 (the account's concurrency limit for this integration)"
    for name in ("restlet_url", "rest_url"):
        url = values.get(name)
        if url and not str(url).startswith(("https://", "http://127.0.0.1", "http://localhost")):
            errors[name] = "an https:// URL"
    return errors


def build(values: dict[str, Any], secrets: dict[str, str]) -> NetSuiteBackend:
    account_id = str(values["account_id"])
    auth = TokenBasedAuth(
        account_id=account_id,
        consumer_key=secrets["consumer_key"],
        consumer_secret=secrets["consumer_secret"],
        token_id=secrets["token_id"],
        token_secret=secrets["token_secret"],
    )
    concurrency = int(values.get("concurrency", DEFAULT_CONCURRENCY))
    client = NetSuiteClient(
        auth=auth,
        restlet_url=values.get("restlet_url") or default_restlet_url(account_id),
        rest_url=values.get("rest_url") or default_rest_url(account_id),
        concurrency=concurrency,
        timeout=float(values.get("timeout_seconds", 60)),
    )
    return NetSuiteBackend(
        client=client,
        subsidiary_id=str(values["subsidiary_id"]),
        adjustment_account_id=str(values["adjustment_account_id"]),
        concurrency=concurrency,
    )


backend_register(
    BackendSpec(
        kind="netsuite",
        factory=build,
        required_settings=("account_id", "subsidiary_id", "adjustment_account_id"),
        secret_keys=("consumer_key", "consumer_secret", "token_id", "token_secret"),
        optional_settings=("restlet_url", "rest_url", "concurrency", "timeout_seconds", "time_zone"),
        validate=validate_settings,
    )
)
