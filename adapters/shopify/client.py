"""HTTP to one Shopify shop's Admin GraphQL API.

Governance lives here: at most `concurrency` requests at once from this process (one cost
bucket per app and shop, so the default is 1), a timeout on every call, and a classification
of every answer into the interface's errors. Throttling is read from Shopify's own cost report
(`extensions.cost.throttleStatus`): the wait is what the refused query costs minus what the
bucket holds, divided by the restore rate — or the `Retry-After` of an HTTP 429. Reads are
retried inline; a mutation is sent once per call and the caller decides, because only an
idempotent replay (same key, same input) may follow a lost answer.

The access token lives in one request header and nowhere else: not in `repr`, logs or errors.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from adapters.interface import OutcomeUnknown, PermanentBackendError, TransientBackendError
from adapters.retry import Backoff, inline_backoff

logger = logging.getLogger(__name__)

# Error codes in `errors[].extensions.code` that mean "nothing ran; try again later".
THROTTLED = "THROTTLED"
BUSY_CODES = {THROTTLED, "SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR", "TIMEOUT"}


def _retry_after_header(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    try:
        value = float(raw)  # Shopify sends seconds as a float ("1.0")
    except ValueError:
        return None
    return value if value >= 0 else None


def throttle_wait(cost: Any) -> float | None:
    """Seconds until the bucket holds what the refused query asked for (None: no cost report)."""
    if not isinstance(cost, dict):
        return None
    status = cost.get("throttleStatus") or {}
    try:
        requested = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        restore_rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return None
    if restore_rate <= 0:
        return None
    return max(0.0, requested - available) / restore_rate


def _never_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached Shopify (the connection was never made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict):
            code = (error.get("extensions") or {}).get("code")
            parts.append(f"{error.get('message', '')}" + (f" ({code})" if code else ""))
        else:
            parts.append(str(error))
    return "; ".join(parts)[:500] or "no message"


class ShopifyClient:
    def __init__(
        self,
        *,
        graphql_url: str,
        access_token: str,
        concurrency: int = 1,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.graphql_url = graphql_url
        self._headers = {
            "X-Shopify-Access-Token": access_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._slots = threading.BoundedSemaphore(concurrency)
        self._timeout = (min(10.0, timeout), timeout)
        self._backoff = backoff or inline_backoff()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"ShopifyClient({self.graphql_url!r})"

    def _session(self) -> requests.Session:
        # requests.Session is not thread-safe; one per thread keeps connection reuse.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, query: str, variables: dict[str, Any]) -> requests.Response:
        body = json.dumps({"query": query, "variables": variables})
        with self._slots:
            return self._session().post(self.graphql_url, data=body, headers=self._headers, timeout=self._timeout)

    # --- reads ------------------------------------------------------------------------
    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a read, retried inline on throttling and transient failures."""
        return self._read(lambda: self._post(query, variables or {}))

    def _read(self, send: Callable[[], requests.Response]) -> dict[str, Any]:
        last: TransientBackendError | None = None
        tries = self._backoff.tries
        for attempt in range(tries):
            try:
                return self._answer(send, writing=False)
            except TransientBackendError as error:
                if not error.retry_soon:
                    raise
                last = error
            if attempt == tries - 1:
                break
            wait = self._backoff.delay(attempt, last.retry_after)
            logger.info("shopify read retry %s in %.2fs: %s", attempt + 1, wait, last)
            time.sleep(wait)
        raise last or TransientBackendError("Shopify read failed")

    # --- writes -----------------------------------------------------------------------
    def mutate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Send a mutation once; its `data`. A lost or garbled answer is OutcomeUnknown."""
        return self._answer(lambda: self._post(query, variables), writing=True)

    # --- classification ---------------------------------------------------------------
    def _answer(self, send: Callable[[], requests.Response], *, writing: bool) -> dict[str, Any]:
        try:
            response = send()
        except requests.RequestException as error:
            if not writing or _never_sent(error):
                raise TransientBackendError(f"Shopify could not be reached: {type(error).__name__}") from None
            raise OutcomeUnknown(f"the answer to a Shopify mutation was lost: {type(error).__name__}") from None
        if response.status_code != 200:
            self._raise_for_status(response, writing=writing)
        try:
            body = response.json()
        except ValueError:
            if writing:
                raise OutcomeUnknown("Shopify answered a mutation with a body that is not JSON") from None
            raise TransientBackendError("Shopify answered a read with a body that is not JSON") from None
        if not isinstance(body, dict):
            if writing:
                raise OutcomeUnknown("Shopify answered a mutation with something that is not an object")
            raise TransientBackendError("Shopify answered a read with something that is not an object")
        errors = body.get("errors")
        if errors:
            self._raise_for_errors(errors, body.get("extensions") or {}, writing=writing)
        data = body.get("data")
        if not isinstance(data, dict):
            if writing:
                raise OutcomeUnknown("Shopify answered a mutation without data")
            raise TransientBackendError("Shopify answered a read without data")
        return data

    @staticmethod
    def _raise_for_status(response: requests.Response, *, writing: bool) -> None:
        status = response.status_code
        if status == 429:
            raise TransientBackendError(
                "Shopify is throttling this app (429)", retry_after=_retry_after_header(response)
            )
        if status in (401, 403):
            raise TransientBackendError(
                f"Shopify refused the connection's access token ({status}); check the token and its scopes",
                retry_soon=False,
            )
        if status in (402, 404, 423):
            # Frozen (unpaid) or locked shop, or a wrong shop_url / api_version: the
            # connection is wrong, not the batch; nothing ran.
            raise TransientBackendError(
                f"Shopify answered {status}: check the shop and the connection's shop_url and api_version",
                retry_soon=False,
            )
        if status >= 500:
            if writing:
                raise OutcomeUnknown(f"Shopify answered {status} to a mutation")
            raise TransientBackendError(f"Shopify answered {status}", retry_after=_retry_after_header(response))
        raise PermanentBackendError(f"Shopify refused the request ({status})", code=f"HTTP_{status}")

    @staticmethod
    def _raise_for_errors(errors: Any, extensions: dict[str, Any], *, writing: bool) -> None:
        errors = errors if isinstance(errors, list) else [errors]
        codes = {(error.get("extensions") or {}).get("code") for error in errors if isinstance(error, dict)}
        if THROTTLED in codes:
            cost = extensions.get("cost") or {}
            status = cost.get("throttleStatus") or {}
            maximum = status.get("maximumAvailable")
            requested = cost.get("requestedQueryCost")
            if isinstance(maximum, int | float) and isinstance(requested, int | float) and requested > maximum:
                raise PermanentBackendError(
                    f"a query costing {requested} points can never fit this shop's bucket of {maximum}",
                    code="QUERY_TOO_COSTLY",
                )
            raise TransientBackendError("Shopify throttled the request", retry_after=throttle_wait(cost))
        if codes & BUSY_CODES:
            if writing and codes & {"INTERNAL_SERVER_ERROR", "TIMEOUT"}:
                raise OutcomeUnknown(f"Shopify failed while running a mutation: {_message(errors)}")
            raise TransientBackendError(f"Shopify is busy: {_message(errors)}")
        # Validation errors, unknown fields, bad arguments: our query is wrong; retrying won't help.
        code = next((str(code) for code in codes if code), "GRAPHQL_ERROR")
        raise PermanentBackendError(f"Shopify refused the query: {_message(errors)}", code=code)
