"""HTTP to one HotWax Commerce OMS: the `oms` REST resource for reads, the Update Inventory service for writes.

Two documented surfaces, each where HotWax puts it: `GET {base_url}oms/productFacilities/inventory`
(a Moqui entity list under /rest/s1/: a bare JSON array paged by pageIndex/pageSize, with
X-Total-Count) and `POST https://<host>/api/service/updateInventoryByIdentification` (not under
/rest/s1/). Both take `Authorization: Bearer <token>`; the token is in one header and nowhere
else (not in `repr`, logs or errors).

Governance: at most `concurrency` requests at once, a timeout on every call, reads retried
inline with jittered backoff. An update is sent once per call and classified strictly, because
HotWax has no idempotency: only an answer that proves nothing happened is transient; any
other failure after the request may have reached the OMS is OutcomeUnknown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from adapters.interface import OutcomeUnknown, PermanentBackendError, TransientBackendError
from adapters.retry import Backoff, inline_backoff

logger = logging.getLogger(__name__)

INVENTORY_RESOURCE = "oms/productFacilities/inventory"
UPDATE_INVENTORY_PATH = "/api/service/updateInventoryByIdentification"
PAGE_SIZE = 500


def _never_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached HotWax (the connection was never made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _is_html(response: requests.Response) -> bool:
    return "html" in response.headers.get("Content-Type", "").lower() or response.text.lstrip().startswith("<")


def _error_text(response: requests.Response) -> str:
    """Moqui's `{"errorCode": n, "errors": "..."}`, or the reason of an edge page."""
    if _is_html(response):
        return response.reason or "an HTML error page"
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300]
    if isinstance(body, dict) and body.get("errors"):
        errors = body["errors"]
        return "; ".join(map(str, errors))[:500] if isinstance(errors, list) else str(errors)[:500]
    return str(body)[:300]


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class HotWaxClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        concurrency: int = 1,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else f"{base_url}/"
        parts = urlsplit(self.base_url)
        self.update_url = f"{parts.scheme}://{parts.netloc}{UPDATE_INVENTORY_PATH}"
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._slots = threading.BoundedSemaphore(concurrency)
        self._timeout = (min(10.0, timeout), timeout)
        self._backoff = backoff or inline_backoff()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"HotWaxClient({self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        with self._slots:
            return self._session().request(method, url, headers=headers, timeout=self._timeout, **kwargs)

    @staticmethod
    def _refusal(response: requests.Response) -> TransientBackendError | PermanentBackendError | None:
        """The error for an answer that proves the request had no effect (None: it may have)."""
        status = response.status_code
        if status in (401, 403):
            return TransientBackendError(
                f"HotWax refused the connection's token ({status}); generate a new one for the integration user",
                retry_soon=False,
            )
        if status == 404:
            return TransientBackendError(
                "HotWax answered 404: check the connection's base_url (https://<instance>/rest/s1/)", retry_soon=False
            )
        if status == 429:
            return TransientBackendError("HotWax is throttling this client (429)", retry_after=_retry_after(response))
        if status == 503:
            # The load balancer's refusal: the OMS never saw the request.
            return TransientBackendError("HotWax is unavailable (503)", retry_after=_retry_after(response))
        if 400 <= status < 500:
            return PermanentBackendError(_error_text(response), code=f"HTTP_{status}")
        return None

    # --- reads ------------------------------------------------------------------------
    def inventory(self, *, facility_id: str, product_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every ProductFacility inventory row of a facility (of one product, if given)."""
        url = f"{self.base_url}{INVENTORY_RESOURCE}"
        page_index = 0
        while True:
            params: dict[str, Any] = {
                "facilityId": facility_id,
                "pageSize": PAGE_SIZE,
                "pageIndex": page_index,
                "orderByField": "productId",
            }
            if product_id is not None:
                params["productId"] = product_id
            rows, total = self._read(lambda params=params: self._send("GET", url, params=params))
            yield from rows
            seen = page_index * PAGE_SIZE + len(rows)
            if len(rows) < PAGE_SIZE or (total is not None and seen >= total):
                return
            page_index += 1

    def _read(self, send: Callable[[], requests.Response]) -> tuple[list[dict[str, Any]], int | None]:
        last: TransientBackendError | None = None
        tries = self._backoff.tries
        for attempt in range(tries):
            try:
                response = send()
            except requests.RequestException as error:
                last = TransientBackendError(f"HotWax read failed: {type(error).__name__}")
            else:
                if response.status_code == 200:
                    try:
                        rows = json.loads(response.text, parse_float=Decimal)
                    except ValueError:
                        last = TransientBackendError("HotWax answered a read with a body that is not JSON")
                    else:
                        if not isinstance(rows, list):
                            raise PermanentBackendError("HotWax answered an inventory list with something else")
                        total = response.headers.get("X-Total-Count", "")
                        return rows, int(total) if total.isdigit() else None
                else:
                    refusal = self._refusal(response) or TransientBackendError(
                        f"HotWax answered {response.status_code}: {_error_text(response)}"
                    )
                    if isinstance(refusal, PermanentBackendError) or not refusal.retry_soon:
                        raise refusal
                    last = refusal
            if attempt == tries - 1:
                break
            wait = self._backoff.delay(attempt, last.retry_after if last else None)
            logger.info("hotwax read retry %s in %.2fs: %s", attempt + 1, wait, last)
            time.sleep(wait)
        raise last or TransientBackendError("HotWax read failed")

    # --- writes -----------------------------------------------------------------------
    def update_inventory(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST one variance once. Errors: see the interface; a lost answer is OutcomeUnknown."""
        try:
            response = self._send(
                "POST", self.update_url, data=json.dumps(body), headers={"Content-Type": "application/json"}
            )
        except requests.RequestException as error:
            if _never_sent(error):
                raise TransientBackendError(f"HotWax could not be reached: {type(error).__name__}") from None
            raise OutcomeUnknown(f"the answer to a HotWax update was lost: {type(error).__name__}") from None
        if response.status_code != 200:
            refusal = self._refusal(response)
            if refusal is not None:
                raise refusal
            raise OutcomeUnknown(f"HotWax answered {response.status_code} to an update: {_error_text(response)}")
        try:
            answer = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise OutcomeUnknown("HotWax answered an update with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise OutcomeUnknown("HotWax answered an update with something that is not an object")
        return answer
