"""HTTP to one NetSuite account: our RESTlet (writes) and SuiteQL (reads).

Governance lives here: at most `concurrency` requests at once from this process (the
connection's worker lease keeps other processes out), a timeout on every call, and a
classification of every failure into the interface's errors. Reads are retried inline with
jittered backoff; writes are not — the drain decides, because a lost answer needs a lookup.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import requests

from adapters.interface import OutcomeUnknown, PermanentBackendError, TransientBackendError
from adapters.netsuite.auth import NetSuiteAuth
from adapters.retry import Backoff, inline_backoff

logger = logging.getLogger(__name__)

SUITEQL_PAGE = 1000
# RESTlet error codes that a later retry can succeed on (record locks, governance).
TRANSIENT_CODES = {
    "SSS_REQUEST_LIMIT_EXCEEDED",
    "RCRD_LOCKED_BY_WF",
    "RCRD_HAS_BEEN_CHANGED",
    "SSS_USAGE_LIMIT_EXCEEDED",
}


def _error_of(response: requests.Response) -> tuple[str, str]:
    """(code, message) from either NetSuite error shape: RESTlet or REST web services."""
    try:
        body = response.json()
    except ValueError:
        # Edge error pages are HTML; their markup helps nobody reading the batch's error.
        if "html" in response.headers.get("Content-Type", "").lower() or response.text.lstrip().startswith("<"):
            return "", response.reason or "an HTML error page"
        return "", " ".join(response.text.split())[:300]
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("code", "")), str(body["error"].get("message", ""))
        details = body.get("o:errorDetails")
        if isinstance(details, list) and details:
            return str(details[0].get("o:errorCode", "")), str(details[0].get("detail", ""))
        if "title" in body:
            return "", str(body["title"])
    return "", response.text[:300]


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    return float(raw) if raw.isdigit() else None


class NetSuiteClient:
    def __init__(
        self,
        *,
        auth: NetSuiteAuth,
        restlet_url: str,
        rest_url: str,
        concurrency: int,
        timeout: float = 60.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._auth = auth.requests_auth()
        self.restlet_url = restlet_url
        self.rest_url = rest_url.rstrip("/")
        self._slots = threading.BoundedSemaphore(concurrency)
        self._timeout = (min(10.0, timeout), timeout)
        self._backoff = backoff or inline_backoff()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        # requests.Session is not thread-safe; one per thread keeps connection reuse.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        with self._slots:
            return self._session().request(method, url, auth=self._auth, timeout=self._timeout, **kwargs)

    def _raise_for(self, response: requests.Response, *, writing: bool) -> None:
        status = response.status_code
        code, message = _error_of(response)
        if status == 429 or code in TRANSIENT_CODES:
            raise TransientBackendError(
                f"NetSuite is busy ({code or status}): {message}", retry_after=_retry_after(response)
            )
        if status in (401, 403):
            raise TransientBackendError(
                f"NetSuite refused the connection's credentials ({code or status}); check the tokens and role",
                retry_soon=False,
            )
        if status >= 500:
            # 503 comes from NetSuite's edge before the script runs; any other 5xx on a write
            # may follow a committed adjustment.
            if writing and status != 503:
                raise OutcomeUnknown(f"NetSuite answered {status} to a write: {message}")
            raise TransientBackendError(f"NetSuite answered {status}: {message}", retry_after=_retry_after(response))
        raise PermanentBackendError(message or f"HTTP {status}", code=code or f"HTTP_{status}")

    # --- the RESTlet ------------------------------------------------------------------
    def restlet_post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the RESTlet once. Errors: see the interface; a lost answer is OutcomeUnknown."""
        try:
            response = self._send(
                "POST", self.restlet_url, data=json.dumps(body), headers={"Content-Type": "application/json"}
            )
        except requests.ConnectTimeout as error:
            raise TransientBackendError(f"NetSuite did not accept the connection: {error}") from None
        except requests.RequestException as error:
            raise OutcomeUnknown(f"the answer to a NetSuite write was lost: {type(error).__name__}") from None
        if response.status_code != 200:
            self._raise_for(response, writing=True)
        try:
            return response.json()
        except ValueError:
            raise OutcomeUnknown("NetSuite answered a write with a body that is not JSON") from None

    def restlet_get(self, params: dict[str, str]) -> dict[str, Any]:
        """GET from the RESTlet once (the drain retries lookups along with the batch's sends)."""
        separator = "&" if "?" in self.restlet_url else "?"
        url = f"{self.restlet_url}{separator}{urlencode(params)}"
        return self._read(lambda: self._send("GET", url, headers={"Accept": "application/json"}), tries=1)

    # --- SuiteQL ----------------------------------------------------------------------
    def suiteql(self, query: str) -> Iterator[dict[str, Any]]:
        """Every row of `query` (which must ORDER BY a unique key so pages never overlap)."""
        offset = 0
        while True:
            url = f"{self.rest_url}/services/rest/query/v1/suiteql?limit={SUITEQL_PAGE}&offset={offset}"
            page = self._read(
                lambda url=url: self._send(
                    "POST",
                    url,
                    data=json.dumps({"q": query}),
                    headers={"Content-Type": "application/json", "Prefer": "transient"},
                )
            )
            yield from page.get("items", [])
            if not page.get("hasMore"):
                return
            offset += SUITEQL_PAGE

    def _read(self, send: Any, tries: int | None = None) -> dict[str, Any]:
        """A read, retried inline on transient failures (reads have no effect to double)."""
        last: TransientBackendError | None = None
        tries = tries or self._backoff.tries
        for attempt in range(tries):
            try:
                response = send()
            except requests.RequestException as error:
                last = TransientBackendError(f"NetSuite read failed: {type(error).__name__}")
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        last = TransientBackendError("NetSuite answered a read with a body that is not JSON")
                else:
                    try:
                        self._raise_for(response, writing=False)
                    except TransientBackendError as error:
                        if not error.retry_soon:
                            raise
                        last = error
            if attempt == tries - 1:
                break
            wait = self._backoff.delay(attempt, last.retry_after if last else None)
            logger.info("netsuite read retry %s in %.2fs: %s", attempt + 1, wait, last)
            time.sleep(wait)
        raise last or TransientBackendError("NetSuite read failed")
