"""A strict local fake of one HotWax Commerce OMS instance, served over real HTTP.

Two documented surfaces, each where HotWax puts it:

* ``GET /rest/s1/oms/productFacilities/inventory`` — a Moqui entity-list resource of the
  ``oms`` REST API (the ProductFacility rows of a facility joined to their inventory, as
  HotWax's own apps call it). It answers like every Moqui entity ``list`` operation
  (``RestApi.MethodEntity`` in moqui-framework): a bare JSON array, paged by ``pageIndex`` /
  ``pageSize`` (no limit given means 100 rows), with the ``X-Total-Count``, ``X-Page-Index``,
  ``X-Page-Size``, ``X-Page-Max-Index``, ``X-Page-Range-Low`` and ``X-Page-Range-High``
  headers. Quantities are JSON numbers with HotWax's six decimals (``4.000000``, as in the
  Check Inventory API example). ``.../inventory/count`` answers ``{"count": n}``.
* ``POST /api/service/updateInventoryByIdentification`` — HotWax's "Update Inventory" API
  (``https://<host>/api/service/updateInventoryByIdentification``, *not* under
  ``/rest/s1``). All six fields are documented as required; ``idType`` is one of the
  documented identifier types; ``varianceReasonId`` one of the documented variance reasons.
  ``availableDelta`` is logged as a variance: quantity on hand and available-to-promise both
  move by it. There is **no idempotency**: a resend applies twice, so a client that lost a
  response must read the inventory back before sending again.

Both require ``Authorization: Bearer <token>``. Errors use Moqui's JSON error body
``{"errorCode": <status>, "errors": "<message>"}`` (``WebFacadeImpl.sendJsonError``).
Faults are injectable (edge failures before any effect, responses lost after the update
commits) and deterministic; ``seed`` feeds a ``random.Random`` kept for parity with the other
fakes (nothing random happens yet).
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REST_PREFIX = "/rest/s1/"
INVENTORY_PATH = "/rest/s1/oms/productFacilities/inventory"
INVENTORY_COUNT_PATH = "/rest/s1/oms/productFacilities/inventory/count"
UPDATE_INVENTORY_PATH = "/api/service/updateInventoryByIdentification"
INVENTORY_ENTITY = "co.hotwax.product.ProductFacilityInventoryItemView"

# "Currently supported ID types are SKU, UPCA, Shopify_Prod_ID" (Update Inventory API); HotWax
# spells good-identification type ids in upper case.
ID_TYPES = ("SKU", "UPCA", "SHOPIFY_PROD_ID")
# "Table of valid variance reasons and their IDs" (Update Inventory API).
VARIANCE_REASONS = frozenset(
    {
        "MISMATCH",
        "NOT_IN_STOCK",
        "NO_VARIANCE_LOG",
        "REJ_RSN_DAMAGED",
        "POS_SALE",
        "VAR_DAMAGED",
        "VAR_LOST",
        "VAR_FOUND",
        "WORN_DISPLAY",
        "VAR_MANUAL",
    }
)
UPDATE_FIELDS = ("facilityId", "availableDelta", "idType", "idValue", "locationSeqId", "varianceReasonId")
DEFAULT_LIST_LIMIT = 100  # Moqui: "never do an unlimited find, if no limit use 100"
DEFAULT_PAGE_SIZE = 20  # Moqui EntityFind page size when only pageIndex is given
_SORTABLE = ("productId", "facilityId", "availableToPromise", "quantityOnHand")
_SIX_PLACES = Decimal("0.000001")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_JSON = "application/json"


# --- HTTP plumbing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # the update committed; close the socket without answering


class _Number:
    """A quantity rendered as a bare JSON number with six decimals, as HotWax sends it."""

    def __init__(self, value: Decimal) -> None:
        self.text = format(value.quantize(_SIX_PLACES), "f")


def _dumps(value: Any) -> str:
    if isinstance(value, _Number):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value)


def _json_reply(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    return _Reply(status, _dumps(value).encode(), _JSON, headers)


def _moqui_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    return _json_reply(status, {"errorCode": status, "errors": message}, headers)


def _edge_page(status: int) -> _Reply:
    phrase = HTTPStatus(status).phrase
    html = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return _Reply(status, html.encode(), "text/html")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeHotWax) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a dropped reply never poisons a pool

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "Bad Content-Length")
            return
        body = self.rfile.read(length) if length else b""
        reply = self.server.fake._serve(method=self.command, target=self.path, headers=self.headers, body=body)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- OMS data -----------------------------------------------------------------------------


@dataclass
class _Facility:
    id: str
    name: str
    locations: set[str] = field(default_factory=set)


@dataclass
class _Product:
    id: str
    sku: str
    upc: str
    shopify_product_id: str


@dataclass
class _Inventory:
    available_to_promise: Decimal
    quantity_on_hand: Decimal
    location_seq_id: str


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _decimal(value: Any) -> Decimal | None:
    """What Moqui converts to BigDecimal: a JSON number or a numeric string; never a boolean."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


# --- the fake -----------------------------------------------------------------------------


class FakeHotWax:
    """One HotWax Commerce OMS instance on 127.0.0.1.

    Guarantees, per request: every request is counted in ``requests_made``; injected edge
    failures are answered before authentication or any effect; an update is validated
    completely before anything changes, and its effect and its entry in ``updates`` happen
    under one lock. Nothing deduplicates updates: that is HotWax's documented behaviour.
    """

    def __init__(self, *, token: str, seed: int = 0) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._facilities: dict[str, _Facility] = {}
        self._products: dict[str, _Product] = {}
        self._inventory: dict[tuple[str, str], _Inventory] = {}
        self._updates: list[dict[str, Any]] = []
        self._requests_made = 0
        self._fail_queue: deque[int] = deque()
        self._drops_pending = 0

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeHotWax:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeHotWax is already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hotwax", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHotWax:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host_url(self) -> str:
        """Stands in for ``https://<instance>`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeHotWax is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """Stands in for ``https://<instance>/rest/s1/``."""
        return f"{self.host_url}{REST_PREFIX}"

    @property
    def update_inventory_url(self) -> str:
        return f"{self.host_url}{UPDATE_INVENTORY_PATH}"

    # data ---------------------------------------------------------------------------------

    def add_facility(self, facility_id: str, name: str, *, locations: tuple[str, ...] = ()) -> None:
        """Create or replace a facility. Once a facility has locations (given here or through
        ``set_inventory``), updates must name one of them in ``locationSeqId``."""
        with self._lock:
            self._facilities[facility_id] = _Facility(facility_id, name, set(locations))

    def add_product(self, product_id: str, *, sku: str, upc: str = "", shopify_product_id: str = "") -> None:
        """Create or replace a product with its identifications (internal id, SKU, UPCA and
        optionally SHOPIFY_PROD_ID)."""
        with self._lock:
            self._products[product_id] = _Product(product_id, sku, upc, shopify_product_id)

    def set_inventory(
        self,
        product_id: str,
        facility_id: str,
        *,
        available_to_promise: Decimal,
        quantity_on_hand: Decimal,
        location_seq_id: str = "",
    ) -> None:
        """Set a product's inventory at a facility (a test-setup mistake raises)."""
        with self._lock:
            if product_id not in self._products or facility_id not in self._facilities:
                raise ValueError(f"add product {product_id} and facility {facility_id} before setting inventory")
            if location_seq_id:
                self._facilities[facility_id].locations.add(location_seq_id)
            self._inventory[(product_id, facility_id)] = _Inventory(
                Decimal(available_to_promise), Decimal(quantity_on_hand), location_seq_id
            )

    def on_hand(self, product_id: str, facility_id: str) -> Decimal:
        """Quantity on hand now; zero where no inventory was ever recorded."""
        with self._lock:
            record = self._inventory.get((product_id, facility_id))
            return record.quantity_on_hand if record else Decimal("0")

    def available_to_promise(self, product_id: str, facility_id: str) -> Decimal:
        with self._lock:
            record = self._inventory.get((product_id, facility_id))
            return record.available_to_promise if record else Decimal("0")

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Snapshot of every applied updateInventoryByIdentification, in order: the six request
        fields as received (``availableDelta`` as Decimal) plus the resolved ``productId``."""
        with self._lock:
            return copy.deepcopy(self._updates)

    @property
    def requests_made(self) -> int:
        with self._lock:
            return self._requests_made

    # fault injection ----------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests fail with ``status`` before authentication or any effect
        (5xx: the HTML page of the load balancer in front of the OMS; 4xx: Moqui's JSON error)."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and a 4xx/5xx status")
        with self._lock:
            self._fail_queue.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """The next ``n`` updates that commit are applied, then the socket is closed without
        an answer."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._drops_pending += n

    # request handling ---------------------------------------------------------------------

    def _serve(self, *, method: str, target: str, headers: Any, body: bytes) -> _Reply:
        with self._lock:
            self._requests_made += 1
            failure = self._fail_queue.popleft() if self._fail_queue else None
        if failure is not None:
            if failure >= 500:
                return _edge_page(failure)
            return _moqui_error(failure, HTTPStatus(failure).phrase)
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path in (INVENTORY_PATH, INVENTORY_COUNT_PATH):
            if method != "GET":
                return _moqui_error(405, f"Method {method.lower()} not supported at {path}")
            refusal = self._authenticate(
                headers, f"User must be logged in for operaton list on entity {INVENTORY_ENTITY}"
            )
            if refusal is not None:
                return refusal
            return self._inventory_list(
                dict(parse_qsl(parts.query, keep_blank_values=True)), count=path.endswith("/count")
            )
        if path == UPDATE_INVENTORY_PATH:
            if method != "POST":
                return _moqui_error(
                    405, f"Method {method.lower()} not supported for service updateInventoryByIdentification"
                )
            refusal = self._authenticate(
                headers, "User must be logged in to call service updateInventoryByIdentification"
            )
            if refusal is not None:
                return refusal
            return self._update_inventory(headers, body)
        return _moqui_error(404, f"Resource {path} not found")

    def _authenticate(self, headers: Any, anonymous_message: str) -> _Reply | None:
        header = (headers.get("Authorization") or "").strip()
        if not header:
            return _moqui_error(401, anonymous_message)
        scheme, _, credentials = header.partition(" ")
        if scheme != "Bearer" or credentials.strip() != self.token:
            return _moqui_error(401, "Invalid or expired bearer token; generate a new JWT for the integration user")
        return None

    # productFacilities/inventory (Moqui entity list) -------------------------------------------

    def _inventory_list(self, query: dict[str, str], *, count: bool) -> _Reply:
        try:
            rows = self._matching_rows(query)
            if count:
                return _json_reply(200, {"count": len(rows)}, (("X-Total-Count", str(len(rows))),))
            rows = self._ordered(rows, query.get("orderByField", ""))
            page_index, page_size = self._paging(query)
        except _BadRequest as error:
            return _moqui_error(400, error.message)
        total = len(rows)
        page = rows[page_index * page_size : (page_index + 1) * page_size]
        headers = (
            ("X-Total-Count", str(total)),
            ("X-Page-Index", str(page_index)),
            ("X-Page-Size", str(page_size)),
            ("X-Page-Max-Index", str(max(0, (total - 1) // page_size) if total else 0)),
            ("X-Page-Range-Low", str(page_index * page_size + 1)),
            ("X-Page-Range-High", str(min(total, page_index * page_size + page_size))),
        )
        return _json_reply(200, [self._row(*row) for row in page], headers)

    def _matching_rows(self, query: dict[str, str]) -> list[tuple[str, str, _Inventory]]:
        facility = query.get("facilityId")
        products: set[str] | None = None
        if "productId" in query:
            operator = query.get("productId_op", "equals")
            if operator == "in":
                products = {value.strip() for value in query["productId"].split(",") if value.strip()}
            elif operator == "equals":
                products = {query["productId"]}
            else:
                raise _BadRequest(f"Operator {operator} not supported for productId by this fake (equals, in)")
        with self._lock:
            return [
                (product_id, facility_id, copy.copy(record))
                for (product_id, facility_id), record in self._inventory.items()
                if (facility is None or facility_id == facility) and (products is None or product_id in products)
            ]

    @staticmethod
    def _ordered(rows: list[tuple[str, str, _Inventory]], order_by: str) -> list[tuple[str, str, _Inventory]]:
        def value(row: tuple[str, str, _Inventory], name: str) -> Any:
            return {
                "productId": row[0],
                "facilityId": row[1],
                "availableToPromise": row[2].available_to_promise,
                "quantityOnHand": row[2].quantity_on_hand,
            }[name]

        # The database returns rows in no promised order; primary key order makes paging stable.
        rows = sorted(rows, key=lambda row: (row[0], row[1]))
        for term in reversed([t.strip() for t in order_by.split(",") if t.strip()]):
            descending = term.startswith("-") or term.lower().endswith(" desc")
            name = term.lstrip("-+").split(" ")[0]
            if name not in _SORTABLE:
                raise _BadRequest(f"Field {name} not found in entity {INVENTORY_ENTITY} for orderByField")
            rows.sort(key=lambda row, n=name: value(row, n), reverse=descending)
        return rows

    @staticmethod
    def _paging(query: dict[str, str]) -> tuple[int, int]:
        if query.get("pageNoLimit") == "true":
            return 0, 10**9
        index_text, size_text = query.get("pageIndex"), query.get("pageSize")
        for name, text in (("pageIndex", index_text), ("pageSize", size_text)):
            if text is not None and not text.isdigit():
                raise _BadRequest(f"Invalid {name} value {text}: must be a non-negative integer")
        page_index = int(index_text) if index_text is not None else 0
        if size_text is not None:
            page_size = int(size_text)
        else:
            page_size = DEFAULT_PAGE_SIZE if index_text is not None else DEFAULT_LIST_LIMIT
        if page_size < 1:
            raise _BadRequest("Invalid pageSize value 0: must be at least 1")
        return page_index, page_size

    @staticmethod
    def _row(product_id: str, facility_id: str, record: _Inventory) -> dict[str, Any]:
        row: dict[str, Any] = {
            "productId": product_id,
            "facilityId": facility_id,
            "availableToPromise": _Number(record.available_to_promise),
            "quantityOnHand": _Number(record.quantity_on_hand),
        }
        if record.location_seq_id:
            row["locationSeqId"] = record.location_seq_id
        return row

    # updateInventoryByIdentification --------------------------------------------------------

    def _update_inventory(self, headers: Any, body: bytes) -> _Reply:
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _moqui_error(400, "Send the request body as JSON with Content-Type: application/json")
        try:
            payload = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            return _moqui_error(400, f"Error parsing HTTP request body JSON: {exc}")
        if not isinstance(payload, dict):
            return _moqui_error(400, "The request body must be a JSON object")
        with self._lock:
            try:
                product_id, delta = self._validated(payload)
            except _BadRequest as error:
                return _moqui_error(400, error.message)
            facility_id = payload["facilityId"]
            record = self._inventory.get((product_id, facility_id))
            if record is None:
                record = self._inventory[(product_id, facility_id)] = _Inventory(
                    Decimal("0"), Decimal("0"), payload["locationSeqId"]
                )
            record.available_to_promise += delta
            record.quantity_on_hand += delta
            self._updates.append(
                {**{name: payload[name] for name in UPDATE_FIELDS}, "availableDelta": delta, "productId": product_id}
            )
            drop = self._drops_pending > 0
            if drop:
                self._drops_pending -= 1
        answer = {name: payload[name] for name in UPDATE_FIELDS} | {"webSiteId": "API"}
        reply = _json_reply(200, answer)
        return _Reply(reply.status, reply.body, reply.content_type, reply.headers, drop=drop)

    def _validated(self, payload: dict[str, Any]) -> tuple[str, Decimal]:
        """Check every field (caller holds self._lock); returns the product and the delta."""
        missing = [
            name
            for name in UPDATE_FIELDS
            if payload.get(name) is None or (isinstance(payload[name], str) and not payload[name].strip())
        ]
        if missing:
            raise _BadRequest("; ".join(f"Field cannot be empty (for field {name})" for name in missing))
        for name in ("facilityId", "idType", "idValue", "locationSeqId", "varianceReasonId"):
            if not isinstance(payload[name], str):
                raise _BadRequest(f"Field {name} must be a string, got {_dumps(payload[name])}")
        delta = _decimal(payload["availableDelta"])
        if delta is None:
            raise _BadRequest(
                f"Value {_dumps(payload['availableDelta'])} for field availableDelta is not a valid number"
            )
        id_type, id_value = payload["idType"], payload["idValue"]
        if id_type not in ID_TYPES:
            raise _BadRequest(f"Unsupported idType {id_type}; supported ID types are {', '.join(ID_TYPES)}")
        attribute = {"SKU": "sku", "UPCA": "upc", "SHOPIFY_PROD_ID": "shopify_product_id"}[id_type]
        matches = [product.id for product in self._products.values() if getattr(product, attribute) == id_value]
        if not matches:
            raise _BadRequest(f"No product found with {id_type} identification {id_value}")
        if len(matches) > 1:
            raise _BadRequest(f"More than one product found with {id_type} identification {id_value}")
        facility = self._facilities.get(payload["facilityId"])
        if facility is None:
            raise _BadRequest(f"Facility {payload['facilityId']} not found")
        if facility.locations and payload["locationSeqId"] not in facility.locations:
            raise _BadRequest(f"Location {payload['locationSeqId']} not found in facility {facility.id}")
        if payload["varianceReasonId"] not in VARIANCE_REASONS:
            raise _BadRequest(f"Invalid varianceReasonId {payload['varianceReasonId']}")
        return matches[0], delta
