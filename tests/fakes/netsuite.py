"""A strict local fake of one NetSuite account, served over real HTTP.

One ``FakeNetSuite`` stands in for both hosts our adapter talks to: the RESTlet host
(``/app/site/hosting/restlet.nl``, running our ``customscript_cc_adjust`` RESTlet from
``adapters/netsuite/suitescript/cc_adjust.js``) and the REST web services host (SuiteQL at
``/services/rest/query/v1/suiteql``). It is written from NetSuite's documentation, not from
our client, and it *enforces* the contract rather than tolerating near misses:

* every request must carry a valid OAuth 1.0a Token-Based Authentication header (RFC 5849,
  HMAC-SHA256 only, exact realm, fresh timestamp, unused nonce), verified independently here;
* the account's concurrency limit covers RESTlet and REST requests together;
* the RESTlet is all-or-nothing and idempotent on ``externalId``;
* SuiteQL needs ``Prefer: transient``, pages with ``limit``/``offset`` (offset a multiple of
  limit) and, by our rule, a unique ``ORDER BY``; every value comes back as a string.

Faults are injectable (edge 503s before any effect, responses lost after the effect commits)
and randomness comes from ``random.Random(seed)`` so a failing test replays exactly.

Error bodies follow what NetSuite sends: RESTlets answer ``{"error": {"code", "message"}}``;
REST web services answer an RFC 9457-style problem body with ``o:errorDetails``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import json
import random
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SCRIPT_ID = "customscript_cc_adjust"
DEPLOY_ID = "customdeploy_cc_adjust"
RESTLET_PATH = "/app/site/hosting/restlet.nl"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"

SIGNATURE_METHOD = "HMAC-SHA256"
MAX_CLOCK_SKEW_SECONDS = 300
MAX_ADJUSTMENT_LINES = 1000
MAX_PAGE_SIZE = 1000

_RESTLET_JSON = "application/json; charset=utf-8"
# NetSuite REST web services label their bodies with Oracle's resource media types.
_REST_COLLECTION = "application/vnd.oracle.resource+json; type=collection; charset=utf-8"
_REST_ERROR = "application/vnd.oracle.resource+json; type=error; charset=utf-8"
_LOGIN_AUDIT_HINT = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)
_PROBLEM_TYPES = {
    400: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
    401: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
    404: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5",
    405: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.6",
    415: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.16",
    429: "https://www.rfc-editor.org/rfc/rfc6585.html#section-4",
    500: "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1",
}

Surface = Literal["restlet", "rest"]


# --- Token-Based Authentication (OAuth 1.0a, RFC 5849) ------------------------------------


def _pct(value: str) -> str:
    """Percent-encode per RFC 5849 section 3.6 (RFC 3986 unreserved characters stay)."""
    # quote() never escapes "-._~" since Python 3.7; safe="" makes "/" and the rest escape too.
    return quote(value, safe="")


def signature_base_string(method: str, url: str, oauth_params: dict[str, str]) -> str:
    """Return the RFC 5849 signature base string for a request NetSuite would verify.

    The base URI drops the query, lower-cases scheme and host and keeps a non-default port.
    The normalized parameters are the URL query parameters plus every ``oauth_*`` parameter
    except ``oauth_signature`` (``realm`` never takes part). The request body is never part of
    it: NetSuite bodies are JSON, not form-encoded.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in {("http", 80), ("https", 443)} else f"{host}:{port}"
    base_uri = f"{scheme}://{netloc}{parts.path or '/'}"
    params = parse_qsl(parts.query, keep_blank_values=True)
    params += [(k, v) for k, v in oauth_params.items() if k not in {"oauth_signature", "realm"}]
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_pct(k), _pct(v)) for k, v in params))
    return "&".join((method.upper(), _pct(base_uri), _pct(normalized)))


def tba_signature(method: str, url: str, oauth_params: dict[str, str], consumer_secret: str, token_secret: str) -> str:
    """Return the base64 HMAC-SHA256 ``oauth_signature`` NetSuite expects for this request.

    ``url`` is the full request URL including its query string; ``oauth_params`` are the
    ``oauth_*`` values as sent (``oauth_signature`` and ``realm`` are ignored if present).
    """
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    digest = hmac.new(key, signature_base_string(method, url, oauth_params).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_]+)\s*=\s*"([^"]*)"\s*(?:,|$)')
_REQUIRED_OAUTH = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_signature",
)


def parse_oauth_header(value: str) -> dict[str, str] | None:
    """Parse ``OAuth k="v", ...`` into decoded values; None when malformed or repeated."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "oauth":
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        if match is None or match.group(1) in params:
            return None
        params[match.group(1)] = unquote(match.group(2))
        position = match.end()
    return params


# --- HTTP plumbing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = _RESTLET_JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # commit happened; close the socket without answering


class _Headers(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _restlet_error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    return _Reply(status, _json_bytes({"error": {"code": code, "message": message}}), _RESTLET_JSON, headers)


def _rest_error(
    status: int, code: str, detail: str, *, headers: tuple[tuple[str, str], ...] = (), **extra: str
) -> _Reply:
    # extra carries the optional pointers NetSuite documents: o:errorQueryParam, o:errorHeader, ...
    item = {"detail": detail, "o:errorCode": code} | {f"o:{k}": v for k, v in extra.items()}
    body = {
        "type": _PROBLEM_TYPES.get(status, _PROBLEM_TYPES[400]),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "o:errorDetails": [item],
    }
    return _Reply(status, _json_bytes(body), _REST_ERROR, headers)


def _edge_page(status: int) -> _Reply:
    phrase = HTTPStatus(status).phrase
    html = (
        f"<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>"
        f"<body><h1>{phrase}</h1><p>The server is temporarily unable to service your request. "
        "Please try again later.</p></body></html>\n"
    )
    return _Reply(status, html.encode(), "text/html; charset=utf-8")


def _invalid_query(detail: str) -> _Reply:
    return _rest_error(
        400,
        "INVALID_PARAMETER",
        f"Invalid search query. Detailed unprocessed description follows. {detail}",
        errorQueryParam="q",
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 would make the kernel, not the fake, refuse bursts

    def __init__(self, fake: FakeNetSuite) -> None:
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
        # Read the whole body first so a deliberate drop is a clean close, never a reset mid-upload.
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
        pass  # test output stays readable; the fake's counters are the observation surface


# --- account data -------------------------------------------------------------------------


@dataclass
class _Location:
    id: int
    name: str
    parent: int | None
    subsidiary: int
    inactive: bool


@dataclass
class _Item:
    id: int
    itemid: str
    upccode: str
    averagecost: Decimal
    inactive: bool


@dataclass
class _Stock:
    on_hand: Decimal
    committed: Decimal


class _ScriptError(Exception):
    """An error our RESTlet catches and reports as ``{"ok": false, "error": {...}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_REF_KEY = re.compile(r"[1-9]\d*")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _required(payload: dict[str, Any], key: str, path: str) -> Any:
    value = payload.get(key)
    if _missing(value):
        raise _ScriptError("USER_ERROR", f"Please enter value(s) for: {path}")
    return value


def _optional_text(payload: dict[str, Any], key: str, path: str) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _ScriptError("INVALID_FLD_VALUE", f"You have entered an Invalid Field Value {_shown(value)} for: {path}")
    return value


def _shown(value: Any) -> str:
    """Render a rejected value as the RESTlet's JSON.stringify does, so messages match."""
    return str(value) if isinstance(value, Decimal) else json.dumps(value, separators=(",", ":"))


def _ref_key(value: Any, field: str) -> int:
    # Ids arrive as JSON numbers or strings; the RESTlet accepts exactly what String(v) makes a
    # positive integer of, so 12, "12" and 12.0 pass and true, "12.0", "012" do not.
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        text = str(int(value))
    else:
        text = str(value).strip()
    if not _REF_KEY.fullmatch(text):
        raise _ScriptError("INVALID_KEY_OR_REF", f"Invalid {field} reference key {text}.")
    return int(text)


def _quantity(value: Any, path: str) -> Decimal:
    quantity: Decimal | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        quantity = Decimal(value)
    elif isinstance(value, Decimal):
        quantity = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        quantity = Decimal(value.strip())
    if quantity is None or not quantity.is_finite():
        raise _ScriptError("INVALID_FLD_VALUE", f"You have entered an Invalid Field Value {_shown(value)} for: {path}")
    if quantity == 0:
        raise _ScriptError("INVALID_FLD_VALUE", f"{path} must not be zero.")
    return quantity


def _tran_date(value: Any) -> str:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value).isoformat()
    raise _ScriptError("INVALID_FLD_VALUE", f"You have entered an Invalid Field Value {_shown(value)} for: tranDate")


def _json_number(value: Decimal) -> int | float:
    # What JSON.stringify makes of the number SuiteScript reads back from adjustqtyby.
    return int(value) if value == value.to_integral_value() else float(value)


def _suiteql_number(value: int | Decimal) -> str:
    """Format a number the way SuiteQL (Oracle underneath) prints it: no trailing zeros, no
    leading zero before the point, so 0.5 is ".5" and -0.25 is "-.25"."""
    if isinstance(value, int):
        return str(value)
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text.startswith("0."):
        text = text[1:]
    elif text.startswith("-0."):
        text = "-" + text[2:]
    return "0" if text in {"-0", ""} else text


# --- SuiteQL ------------------------------------------------------------------------------

_TABLES: dict[str, tuple[str, ...]] = {
    "location": ("id", "name", "parent", "subsidiary", "isinactive", "fullname"),
    "item": ("id", "itemid", "upccode", "averagecost", "isinactive", "itemtype"),
    "aggregateitemlocation": (
        "item",
        "location",
        "quantityonhand",
        "quantityavailable",
        "quantitycommitted",
        "averagecostmli",
    ),
}
# Paging is only stable when the sort order is unique, so ORDER BY must cover the table's key.
_UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "location": ("id",),
    "item": ("id",),
    "aggregateitemlocation": ("item", "location"),
}
_QUERY = re.compile(
    r"\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?P<table>[A-Za-z_]\w*)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>.+?))?\s*;?\s*",
    re.IGNORECASE | re.DOTALL,
)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_CONDITION = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?)\s*")
_AND = re.compile(r"AND\b", re.IGNORECASE)
_ORDER_TERM = re.compile(r"\s*([A-Za-z_]\w*)(?:\s+(ASC|DESC))?\s*", re.IGNORECASE)

Row = dict[str, int | str | Decimal | None]


@dataclass(frozen=True)
class _Query:
    table: str
    columns: tuple[str, ...]
    conditions: tuple[tuple[str, str | Decimal], ...]
    order: tuple[tuple[str, bool], ...]  # (column, descending)


def _parse_query(text: str) -> _Query | _Reply:
    """Parse our SuiteQL subset, or return the 400 NetSuite would send for it."""
    match = _QUERY.fullmatch(text)
    if match is None:
        return _invalid_query("Search error occurred: Invalid or unsupported search.")
    table = match["table"].lower()
    if table not in _TABLES:
        return _invalid_query(f"Invalid search type: {match['table']}.")
    known = _TABLES[table]

    def unknown(identifier: str) -> _Reply:
        return _invalid_query(
            f"Search error occurred: Unknown identifier '{identifier}'. Available identifiers are: {{{table}={table}}}."
        )

    columns = tuple(c.strip() for c in match["columns"].split(","))
    for column in columns:
        if not _IDENTIFIER.fullmatch(column):
            return _invalid_query("Search error occurred: Invalid or unsupported search.")
        if column.lower() not in known:
            return unknown(column)

    conditions: list[tuple[str, str | Decimal]] = []
    where = match["where"] or ""
    position = 0
    while where and position < len(where):
        condition = _CONDITION.match(where, position)
        if condition is None:
            return _invalid_query("Search error occurred: Invalid or unsupported search.")
        if condition[1].lower() not in known:
            return unknown(condition[1])
        literal = condition[2]
        value: str | Decimal = literal[1:-1].replace("''", "'") if literal.startswith("'") else Decimal(literal)
        conditions.append((condition[1].lower(), value))
        position = condition.end()
        if position < len(where):
            conjunction = _AND.match(where, position)
            if conjunction is None:
                return _invalid_query("Search error occurred: Invalid or unsupported search.")
            position = conjunction.end()
            if position == len(where):
                return _invalid_query("Search error occurred: Invalid or unsupported search.")

    if not match["order"]:
        return _invalid_query(
            "ORDER BY is required: paged SuiteQL results are only stable with a unique sort order "
            f"(order {table} by {', '.join(_UNIQUE_KEYS[table])})."
        )
    order: list[tuple[str, bool]] = []
    for term in match["order"].split(","):
        parsed = _ORDER_TERM.fullmatch(term)
        if parsed is None:
            return _invalid_query("Search error occurred: Invalid or unsupported search.")
        if parsed[1].lower() not in known:
            return unknown(parsed[1])
        order.append((parsed[1].lower(), (parsed[2] or "").upper() == "DESC"))
    missing_keys = [k for k in _UNIQUE_KEYS[table] if k not in {c for c, _ in order}]
    if missing_keys:
        return _invalid_query(
            f"ORDER BY must include {', '.join(missing_keys)} so the sort order is unique and paging is stable."
        )
    return _Query(table, tuple(c.lower() for c in columns), tuple(conditions), tuple(order))


def _matches(row: Row, conditions: tuple[tuple[str, str | Decimal], ...]) -> bool:
    for column, literal in conditions:
        value = row[column]
        if value is None:
            return False  # SQL: NULL = anything is never true
        if isinstance(literal, Decimal):
            try:
                if Decimal(str(value)) != literal:
                    return False
            except InvalidOperation:
                return False
        elif (_suiteql_number(value) if isinstance(value, (int, Decimal)) else value) != literal:
            return False
    return True


def _sorted(rows: list[Row], order: tuple[tuple[str, bool], ...]) -> list[Row]:
    # Stable sorts applied from the last key to the first give a multi-key sort. Oracle puts
    # NULLs last ascending and first descending, which (is_null, value) reversed reproduces.
    for column, descending in reversed(order):
        rows.sort(key=lambda row, c=column: (row[c] is None, row[c] if row[c] is not None else 0), reverse=descending)
    return rows


# --- the fake -----------------------------------------------------------------------------


class FakeNetSuite:
    """One NetSuite account (RESTlet host and REST web services host) on 127.0.0.1.

    Guarantees, per request: every request is counted in ``requests_made``; injected edge
    failures are answered before authentication or any effect; authentication happens before
    the concurrency check (a refused request has still spent its nonce, as at NetSuite, so a
    retry must be signed again); admitted requests count as in flight while ``latency`` is
    slept and their work is done; a RESTlet POST's duplicate check and its effect happen under
    one lock, so one ``externalId`` never creates two adjustments.
    """

    def __init__(
        self,
        *,
        account_id: str = "1234567_SB1",
        consumer_key: str,
        consumer_secret: str,
        token_id: str,
        token_secret: str,
        concurrency_limit: int = 5,
        latency: float = 0.0,
        allow_negative_inventory: bool = False,
        seed: int = 0,
    ) -> None:
        if concurrency_limit < 1:
            raise ValueError("concurrency_limit must be at least 1")
        self.account_id = account_id
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.token_id = token_id
        self.token_secret = token_secret
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._concurrency_limit = concurrency_limit
        self._latency = latency
        self._allow_negative_inventory = allow_negative_inventory
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # account data
        self._locations: dict[int, _Location] = {}
        self._items: dict[int, _Item] = {}
        self._accounts: dict[int, bool] = {}  # id -> inactive; empty means "any account id"
        self._stock: dict[tuple[int, int], _Stock] = {}
        self._adjustments: dict[str, dict[str, Any]] = {}
        self._next_internal_id = 1001
        self._used_nonces: set[str] = set()
        # observation
        self._requests_made = 0
        self._adjustment_posts = 0
        self._open_requests = 0
        self._in_flight = 0
        self._max_concurrent_seen = 0
        self._limit_breaches = 0
        self._duplicates_refused = 0
        self._auth_failures: list[str] = []
        # fault injection
        self._fail_queue: deque[int] = deque()
        self._forced_limit_refusals = 0
        self._drops_pending = 0
        self._fail_rate_503 = 0.0
        self._drop_after_commit_rate = 0.0

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeNetSuite:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeNetSuite is already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-netsuite", daemon=True
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

    def __enter__(self) -> FakeNetSuite:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeNetSuite is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def restlet_url(self) -> str:
        return f"{self.base_url}{RESTLET_PATH}?script={SCRIPT_ID}&deploy={DEPLOY_ID}"

    @property
    def rest_url(self) -> str:
        return self.base_url

    @property
    def suiteql_url(self) -> str:
        return f"{self.rest_url}{SUITEQL_PATH}"

    # knobs --------------------------------------------------------------------------------

    @property
    def concurrency_limit(self) -> int:
        with self._lock:
            return self._concurrency_limit

    @concurrency_limit.setter
    def concurrency_limit(self, value: int) -> None:
        if value < 1:
            raise ValueError("concurrency_limit must be at least 1")
        with self._lock:
            self._concurrency_limit = value

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        with self._lock:
            self._latency = max(0.0, value)

    @property
    def allow_negative_inventory(self) -> bool:
        with self._lock:
            return self._allow_negative_inventory

    @allow_negative_inventory.setter
    def allow_negative_inventory(self, value: bool) -> None:
        with self._lock:
            self._allow_negative_inventory = value

    # data ---------------------------------------------------------------------------------

    def add_location(
        self, id: int, name: str, *, parent: int | None = None, subsidiary: int = 1, inactive: bool = False
    ) -> None:
        """Create or replace location ``id``; ``parent`` may be added later (fullname follows it)."""
        with self._lock:
            self._locations[id] = _Location(id, name, parent, subsidiary, inactive)

    def add_item(
        self,
        id: int,
        itemid: str,
        *,
        upccode: str = "",
        averagecost: Decimal = Decimal("0"),
        inactive: bool = False,
    ) -> None:
        """Create or replace inventory item ``id`` (itemtype ``InvtPart``)."""
        with self._lock:
            self._items[id] = _Item(id, itemid, upccode, Decimal(averagecost), inactive)

    def add_account(self, id: int, *, inactive: bool = False) -> None:
        """Register a GL account. While none is registered any positive account id is accepted;
        once one is, ``accountId`` must name an active registered account."""
        with self._lock:
            self._accounts[id] = inactive

    def set_on_hand(
        self, item_id: int, location_id: int, quantity: Decimal, *, committed: Decimal = Decimal("0")
    ) -> None:
        """Set stock of an existing item at an existing location (a test-setup mistake raises)."""
        with self._lock:
            if item_id not in self._items or location_id not in self._locations:
                raise ValueError(f"add item {item_id} and location {location_id} before setting stock")
            self._stock[(item_id, location_id)] = _Stock(Decimal(quantity), Decimal(committed))

    def clear_stock(self, item_id: int, location_id: int) -> None:
        """Forget an item's record at a location (it no longer appears in aggregateItemLocation)."""
        with self._lock:
            self._stock.pop((item_id, location_id), None)

    def on_hand(self, item_id: int, location_id: int) -> Decimal:
        """Quantity on hand now; zero where no stock was ever recorded."""
        with self._lock:
            stock = self._stock.get((item_id, location_id))
            return stock.on_hand if stock else Decimal("0")

    @property
    def adjustments(self) -> dict[str, dict[str, Any]]:
        """Snapshot: externalId -> {"id", "externalId", "subsidiaryId", "accountId", "locationId",
        "tranDate", "memo", "lines": [{"itemId", "locationId", "adjustQtyBy": Decimal, "memo"}]}."""
        with self._lock:
            return copy.deepcopy(self._adjustments)

    # observation --------------------------------------------------------------------------

    @property
    def requests_made(self) -> int:
        """Every HTTP request received, whatever its path or outcome."""
        with self._lock:
            return self._requests_made

    @property
    def adjustment_posts(self) -> int:
        """POSTs received on the RESTlet path, whatever their outcome."""
        with self._lock:
            return self._adjustment_posts

    @property
    def max_concurrent_seen(self) -> int:
        """Peak number of requests inside the server at once (refused ones included), i.e. how
        much concurrency the client attempted."""
        with self._lock:
            return self._max_concurrent_seen

    @property
    def limit_breaches(self) -> int:
        """Requests refused because the account's concurrency limit was reached."""
        with self._lock:
            return self._limit_breaches

    @property
    def duplicates_refused(self) -> int:
        """RESTlet POSTs whose externalId already existed (answered as duplicate, no effect)."""
        with self._lock:
            return self._duplicates_refused

    @property
    def auth_failures(self) -> list[str]:
        """Why each refused login was refused (OAuth problem names such as ``nonce_used``)."""
        with self._lock:
            return list(self._auth_failures)

    # fault injection ----------------------------------------------------------------------

    @property
    def fail_rate_503(self) -> float:
        with self._lock:
            return self._fail_rate_503

    @fail_rate_503.setter
    def fail_rate_503(self, value: float) -> None:
        with self._lock:
            self._fail_rate_503 = _rate(value)

    @property
    def drop_after_commit_rate(self) -> float:
        with self._lock:
            return self._drop_after_commit_rate

    @drop_after_commit_rate.setter
    def drop_after_commit_rate(self, value: float) -> None:
        with self._lock:
            self._drop_after_commit_rate = _rate(value)

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests fail with ``status`` before authentication or any effect.

        5xx statuses get the HTML page NetSuite's edge serves; 401 gets the surface's login
        error; anything else gets the surface's JSON error shape with code UNEXPECTED_ERROR.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and a 4xx/5xx status")
        with self._lock:
            self._fail_queue.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """The next ``n`` RESTlet POSTs that create an adjustment commit it, then the connection
        is closed without a response (the client sees RemoteDisconnected)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._drops_pending += n

    def limit_next(self, n: int) -> None:
        """The next ``n`` authenticated requests are refused as over the concurrency limit
        (deterministic, no threads needed); they count in ``limit_breaches``."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._forced_limit_refusals += n

    # request pipeline ---------------------------------------------------------------------

    def _serve(self, *, method: str, target: str, headers: _Headers, body: bytes) -> _Reply:
        parts = urlsplit(target)
        surface: Surface = "restlet" if parts.path == RESTLET_PATH else "rest"
        with self._lock:
            self._requests_made += 1
            if surface == "restlet" and method == "POST":
                self._adjustment_posts += 1
            self._open_requests += 1
            self._max_concurrent_seen = max(self._max_concurrent_seen, self._open_requests)
        try:
            injected = self._take_injected_failure()
            if injected is not None:
                return self._injected_reply(surface, injected)
            host = (headers.get("Host") or self.base_url.removeprefix("http://")).lower()
            refusal = self._authenticate(method, f"http://{host}{target}", headers.get("Authorization"))
            if refusal is not None:
                return self._unauthorized(surface, refusal)
            if not self._admit():
                return self._over_limit(surface)
            try:
                latency = self.latency
                if latency > 0:
                    time.sleep(latency)
                query = dict(reversed(parse_qsl(parts.query, keep_blank_values=True)))  # first value wins
                if surface == "restlet":
                    return self._restlet(method, query, headers, body)
                if parts.path == SUITEQL_PATH:
                    return self._suiteql(method, query, headers, body)
                return _rest_error(404, "INVALID_URL", f"The path {parts.path} does not exist.")
            finally:
                with self._lock:
                    self._in_flight -= 1
        finally:
            with self._lock:
                self._open_requests -= 1

    def _take_injected_failure(self) -> int | None:
        with self._lock:
            if self._fail_queue:
                return self._fail_queue.popleft()
            if self._fail_rate_503 > 0 and self._random.random() < self._fail_rate_503:
                return 503
            return None

    def _injected_reply(self, surface: Surface, status: int) -> _Reply:
        if status >= 500:
            return _edge_page(status)
        if status == 401:
            return self._unauthorized(surface, "injected", record=False)
        message = f"Injected failure (HTTP {status})."
        if surface == "restlet":
            return _restlet_error(status, "UNEXPECTED_ERROR", message)
        return _rest_error(status, "UNEXPECTED_ERROR", message)

    def _authenticate(self, method: str, url: str, header: str | None) -> str | None:
        """Return None for a valid TBA signature, else the OAuth problem name for the refusal."""
        if not header:
            return "parameter_absent"
        params = parse_oauth_header(header)
        if params is None:
            return "parameter_rejected"
        if any(not params.get(name) for name in _REQUIRED_OAUTH):
            return "parameter_absent"
        if params.get("realm") != self.account_id:
            return "realm_rejected"  # NetSuite wants the account id exactly: upper case, underscore
        if params["oauth_signature_method"] != SIGNATURE_METHOD:
            return "signature_method_rejected"
        if params.get("oauth_version", "1.0") != "1.0":
            return "version_rejected"
        if params["oauth_consumer_key"] != self.consumer_key:
            return "consumer_key_unknown"
        if params["oauth_token"] != self.token_id:
            return "token_rejected"
        timestamp = params["oauth_timestamp"]
        if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > MAX_CLOCK_SKEW_SECONDS:
            return "timestamp_refused"
        oauth = {k: v for k, v in params.items() if k.startswith("oauth_")}
        expected = tba_signature(method, url, oauth, self.consumer_secret, self.token_secret)
        if not hmac.compare_digest(expected, params["oauth_signature"]):
            return "signature_invalid"
        with self._lock:
            if params["oauth_nonce"] in self._used_nonces:
                return "nonce_used"
            self._used_nonces.add(params["oauth_nonce"])
        return None

    def _unauthorized(self, surface: Surface, reason: str, *, record: bool = True) -> _Reply:
        if record:
            with self._lock:
                self._auth_failures.append(reason)
        challenge = (
            "WWW-Authenticate",
            f'OAuth realm="{self.account_id}", error="{reason}", error_description="Invalid login attempt."',
        )
        if surface == "restlet":
            return _restlet_error(401, "INVALID_LOGIN_ATTEMPT", "Invalid login attempt.", (challenge,))
        return _rest_error(401, "INVALID_LOGIN", _LOGIN_AUDIT_HINT, headers=(challenge,))

    def _admit(self) -> bool:
        with self._lock:
            if self._forced_limit_refusals > 0:
                self._forced_limit_refusals -= 1
                self._limit_breaches += 1
                return False
            if self._in_flight >= self._concurrency_limit:
                self._limit_breaches += 1
                return False
            self._in_flight += 1
            return True

    def _over_limit(self, surface: Surface) -> _Reply:
        if surface == "restlet":
            return _restlet_error(
                400,
                "SSS_REQUEST_LIMIT_EXCEEDED",
                "Request limit exceeded: the account's limit of concurrent requests has been reached.",
            )
        return _rest_error(429, "CONCURRENCY_LIMIT_EXCEEDED", "Concurrent request limit exceeded. Request blocked.")

    # the RESTlet (our cc_adjust.js) -------------------------------------------------------

    def _restlet(self, method: str, query: dict[str, str], headers: _Headers, body: bytes) -> _Reply:
        if query.get("script") != SCRIPT_ID or query.get("deploy") != DEPLOY_ID:
            return _restlet_error(
                404, "SSS_INVALID_SCRIPTLET_ID", "That Suitelet is invalid, disabled, or no longer exists."
            )
        if method == "GET":
            if body:
                return _restlet_error(400, "INVALID_REQUEST", "A GET request must not have a body.")
            return self._restlet_reply(self._get_adjustment(query))
        if method != "POST":
            return _restlet_error(405, "METHOD_NOT_ALLOWED", f"The RESTlet does not support {method}.")
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _restlet_error(
                415,
                "INVALID_CONTENT_TYPE",
                "Invalid content type. Send the request body as application/json.",
            )
        try:
            payload = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            # With application/json NetSuite parses the body before the script runs; a bad body
            # is an unhandled error, so HTTP 400 rather than our caught-error 200.
            return _restlet_error(400, "SYNTAX_ERROR", f"SyntaxError: {exc}")
        with self._lock:
            answer, created = self._create_adjustment(payload)
            drop = created and self._take_drop()
        reply = self._restlet_reply(answer)
        return _Reply(reply.status, reply.body, reply.content_type, drop=drop)

    @staticmethod
    def _restlet_reply(answer: dict[str, Any]) -> _Reply:
        return _Reply(200, _json_bytes(answer), _RESTLET_JSON)

    def _take_drop(self) -> bool:
        # caller holds self._lock
        if self._drops_pending > 0:
            self._drops_pending -= 1
            return True
        return self._drop_after_commit_rate > 0 and self._random.random() < self._drop_after_commit_rate

    def _create_adjustment(self, payload: Any) -> tuple[dict[str, Any], bool]:
        """Validate everything, then apply everything; caller holds self._lock. Returns the
        RESTlet's answer and whether an adjustment was created."""
        try:
            if not isinstance(payload, dict):
                raise _ScriptError("USER_ERROR", "The request body must be a JSON object.")
            external_id = _required(payload, "externalId", "externalId")
            if not isinstance(external_id, str):
                raise _ScriptError("INVALID_FLD_VALUE", "externalId must be a string.")
            external_id = external_id.strip()
            existing = self._adjustments.get(external_id)
            if existing is not None:
                self._duplicates_refused += 1
                return {"ok": True, "id": existing["id"], "duplicate": True}, False
            record = self._validated_record(payload, external_id)
        except _ScriptError as error:
            return {"ok": False, "error": {"code": error.code, "message": error.message}}, False
        internal_id = str(self._next_internal_id)
        self._next_internal_id += 1
        for line in record["lines"]:
            stock = self._stock.setdefault((line["itemId"], line["locationId"]), _Stock(Decimal("0"), Decimal("0")))
            stock.on_hand += line["adjustQtyBy"]
        self._adjustments[external_id] = {"id": internal_id, **record}
        return {"ok": True, "id": internal_id}, True

    def _validated_record(self, payload: dict[str, Any], external_id: str) -> dict[str, Any]:
        # Presence and shape first (the RESTlet checks these itself), then references and
        # stock (NetSuite's save() checks these): the same order cc_adjust.js produces.
        subsidiary_raw = _required(payload, "subsidiaryId", "subsidiaryId")
        account_raw = _required(payload, "accountId", "accountId")
        location_raw = _required(payload, "locationId", "locationId")
        tran_date = _tran_date(_required(payload, "tranDate", "tranDate"))
        memo = _optional_text(payload, "memo", "memo")
        raw_lines = payload.get("lines")
        if raw_lines is None or raw_lines == []:
            raise _ScriptError("USER_ERROR", "Please enter value(s) for: lines")
        if not isinstance(raw_lines, list):
            raise _ScriptError("INVALID_FLD_VALUE", "lines must be an array of adjustment lines.")
        if len(raw_lines) > MAX_ADJUSTMENT_LINES:
            raise _ScriptError(
                "USER_ERROR",
                f"An inventory adjustment takes at most {MAX_ADJUSTMENT_LINES} lines; got {len(raw_lines)}.",
            )
        shaped = []
        for index, raw in enumerate(raw_lines):
            path = f"lines[{index}]"
            if not isinstance(raw, dict):
                raise _ScriptError("INVALID_FLD_VALUE", f"{path} must be an object.")
            shaped.append(
                (
                    _required(raw, "itemId", f"{path}.itemId"),
                    _required(raw, "locationId", f"{path}.locationId"),
                    _quantity(_required(raw, "adjustQtyBy", f"{path}.adjustQtyBy"), f"{path}.adjustQtyBy"),
                    _optional_text(raw, "memo", f"{path}.memo"),
                )
            )

        # Malformed ids fail in the script before save(); unknown ones fail in save().
        subsidiary = _ref_key(subsidiary_raw, "subsidiary")
        account = _ref_key(account_raw, "account")
        adj_location = _ref_key(location_raw, "adjlocation")
        keyed = [
            (_ref_key(item_raw, "item"), _ref_key(line_location_raw, "location"), quantity, line_memo)
            for item_raw, line_location_raw, quantity, line_memo in shaped
        ]

        if subsidiary not in {location.subsidiary for location in self._locations.values()}:
            raise _ScriptError("INVALID_KEY_OR_REF", f"Invalid subsidiary reference key {subsidiary}.")
        if self._accounts and self._accounts.get(account, True):
            raise _ScriptError("INVALID_KEY_OR_REF", f"Invalid account reference key {account}.")
        self._check_location(adj_location, subsidiary, "adjlocation")
        lines = []
        deltas: dict[tuple[int, int], Decimal] = {}
        for item_id, location_id, quantity, line_memo in keyed:
            item = self._items.get(item_id)
            if item is None or item.inactive:
                raise _ScriptError("INVALID_KEY_OR_REF", f"Invalid item reference key {item_id}.")
            self._check_location(location_id, subsidiary, "location")
            deltas[(item_id, location_id)] = deltas.get((item_id, location_id), Decimal("0")) + quantity
            lines.append({"itemId": item_id, "locationId": location_id, "adjustQtyBy": quantity, "memo": line_memo})
        if not self._allow_negative_inventory:
            for (item_id, location_id), delta in deltas.items():
                stock = self._stock.get((item_id, location_id))
                current = stock.on_hand if stock else Decimal("0")
                if current + delta < 0:
                    raise _ScriptError(
                        "USER_ERROR",
                        f"Adjusting item {item_id} at location {location_id} by {delta} would leave "
                        f"{current + delta} on hand; negative inventory is not allowed.",
                    )
        return {
            "externalId": external_id,
            "subsidiaryId": subsidiary,
            "accountId": account,
            "locationId": adj_location,
            "tranDate": tran_date,
            "memo": memo,
            "lines": lines,
        }

    def _check_location(self, location_id: int, subsidiary: int, field: str) -> None:
        location = self._locations.get(location_id)
        if location is None or location.inactive:
            raise _ScriptError("INVALID_KEY_OR_REF", f"Invalid {field} reference key {location_id}.")
        if location.subsidiary != subsidiary:
            raise _ScriptError(
                "INVALID_KEY_OR_REF", f"Invalid {field} reference key {location_id} for subsidiary {subsidiary}."
            )

    def _get_adjustment(self, query: dict[str, str]) -> dict[str, Any]:
        external_id = query.get("externalId", "").strip()
        if not external_id:
            return {"ok": False, "error": {"code": "USER_ERROR", "message": "Please enter value(s) for: externalId"}}
        with self._lock:
            record = copy.deepcopy(self._adjustments.get(external_id))
        if record is None:
            return {
                "ok": False,
                "error": {
                    "code": "RCRD_DSNT_EXIST",
                    "message": f"That record does not exist. No inventory adjustment has externalId {external_id}.",
                },
            }
        return {
            "ok": True,
            "id": record["id"],
            "externalId": record["externalId"],
            "subsidiaryId": str(record["subsidiaryId"]),
            "accountId": str(record["accountId"]),
            "locationId": str(record["locationId"]),
            "tranDate": record["tranDate"],
            "memo": record["memo"],
            "lines": [
                {
                    "itemId": str(line["itemId"]),
                    "locationId": str(line["locationId"]),
                    "adjustQtyBy": _json_number(line["adjustQtyBy"]),
                    "memo": line["memo"],
                }
                for line in record["lines"]
            ],
        }

    # SuiteQL ------------------------------------------------------------------------------

    def _suiteql(self, method: str, query: dict[str, str], headers: _Headers, body: bytes) -> _Reply:
        if method != "POST":
            return _rest_error(405, "INVALID_REQUEST", f"SuiteQL accepts POST only, not {method}.")
        prefer = [token.strip().lower() for token in (headers.get("Prefer") or "").split(",")]
        if "transient" not in prefer:
            return _rest_error(
                400,
                "INVALID_HEADER",
                "SuiteQL queries require the request header 'Prefer: transient'.",
                errorHeader="Prefer",
            )
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _rest_error(
                415, "INVALID_CONTENT", "Send the SuiteQL query as application/json.", errorHeader="Content-Type"
            )
        limit_text, offset_text = query.get("limit", str(MAX_PAGE_SIZE)), query.get("offset", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
            return _rest_error(
                400,
                "INVALID_PARAMETER",
                f"Invalid value for the limit query parameter: {limit_text}. Use a number from 1 to {MAX_PAGE_SIZE}.",
                errorQueryParam="limit",
            )
        limit = int(limit_text)
        if not offset_text.isdigit() or int(offset_text) % limit:
            return _rest_error(
                400,
                "INVALID_PARAMETER",
                f"Invalid value for the offset query parameter: {offset_text}. "
                f"The offset must be a non-negative multiple of the limit ({limit}).",
                errorQueryParam="offset",
            )
        offset = int(offset_text)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _rest_error(400, "INVALID_CONTENT", "The request body is not valid JSON.")
        if not isinstance(payload, dict) or not isinstance(payload.get("q"), str) or not payload["q"].strip():
            return _rest_error(400, "INVALID_CONTENT", "The request body must be an object with the query in q.")
        parsed = _parse_query(payload["q"])
        if isinstance(parsed, _Reply):
            return parsed
        with self._lock:
            rows = self._rows(parsed.table)
        rows = _sorted([row for row in rows if _matches(row, parsed.conditions)], parsed.order)
        total = len(rows)
        if total and offset >= total:
            return _rest_error(
                400,
                "INVALID_PARAMETER",
                f"Invalid value for the offset query parameter: {offset}. There are only {total} results.",
                errorQueryParam="offset",
            )
        page = rows[offset : offset + limit]
        has_more = offset + len(page) < total

        def href(at: int) -> str:
            return f"{self.suiteql_url}?limit={limit}&offset={at}"

        links = []
        if offset > 0:
            links.append({"rel": "previous", "href": href(offset - limit)})
            links.append({"rel": "first", "href": href(0)})
        if has_more:
            links.append({"rel": "next", "href": href(offset + limit)})
        links.append({"rel": "last", "href": href(max(0, (total - 1) // limit * limit))})
        links.append({"rel": "self", "href": href(offset)})
        items = [{"links": []} | self._stringify(row, parsed.columns) for row in page]
        document = {
            "links": links,
            "count": len(items),
            "hasMore": has_more,
            "items": items,
            "offset": offset,
            "totalResults": total,
        }
        return _Reply(200, _json_bytes(document), _REST_COLLECTION)

    @staticmethod
    def _stringify(row: Row, columns: tuple[str, ...]) -> dict[str, str]:
        # SuiteQL over REST sends every value as a string and leaves NULL columns out entirely.
        out: dict[str, str] = {}
        for column in columns:
            value = row[column]
            if value is None:
                continue
            out[column] = _suiteql_number(value) if isinstance(value, (int, Decimal)) else value
        return out

    def _rows(self, table: str) -> list[Row]:
        # caller holds self._lock
        if table == "location":
            return [
                {
                    "id": loc.id,
                    "name": loc.name,
                    "parent": loc.parent,
                    "subsidiary": loc.subsidiary,
                    "isinactive": "T" if loc.inactive else "F",
                    "fullname": self._full_name(loc),
                }
                for loc in self._locations.values()
            ]
        if table == "item":
            return [
                {
                    "id": item.id,
                    "itemid": item.itemid,
                    "upccode": item.upccode or None,
                    "averagecost": item.averagecost,
                    "isinactive": "T" if item.inactive else "F",
                    "itemtype": "InvtPart",
                }
                for item in self._items.values()
            ]
        rows: list[Row] = []
        for (item_id, location_id), stock in self._stock.items():
            item = self._items.get(item_id)
            rows.append(
                {
                    "item": item_id,
                    "location": location_id,
                    "quantityonhand": stock.on_hand,
                    "quantityavailable": stock.on_hand - stock.committed,
                    "quantitycommitted": stock.committed,
                    "averagecostmli": item.averagecost if item else None,
                }
            )
        return rows

    def _full_name(self, location: _Location) -> str:
        names = [location.name]
        seen = {location.id}
        parent = self._locations.get(location.parent) if location.parent is not None else None
        while parent is not None and parent.id not in seen:
            names.append(parent.name)
            seen.add(parent.id)
            parent = self._locations.get(parent.parent) if parent.parent is not None else None
        return " : ".join(reversed(names))


def _rate(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("a rate must be between 0 and 1")
    return float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")
