"""A strict local fake of one Shopify shop's Admin GraphQL API (version 2026-01), over real HTTP.

Written from Shopify's documentation and schema, not from our client:

* Every operation is parsed and validated with graphql-core against Shopify's own 2026-01
  Admin schema (``shopify_admin_2026-01.json.gz``: the introspection result shipped as
  ``dist/data/admin_2026-01.json.gz`` in ``npm pack @shopify/dev-mcp@1.16.0``). That schema
  already declares ``directive @idempotent(key: String!) on FIELD``, so nothing is added to it.
  Valid operations are then executed by graphql-core with resolvers written here, so exactly
  the selected fields come back; a field this fake does not model is an explicit error, never a
  silent null.
* ``X-Shopify-Access-Token`` is required; the body must be ``application/json`` with
  ``query`` (and optional ``variables``/``operationName``); only ``POST`` to
  ``/admin/api/<version>/graphql.json`` is served.
* Calculated query cost and the leaky bucket follow "GraphQL Admin API rate limits": scalars
  and enums cost 0, objects 1, a connection 2 plus its page size times the cost of one node,
  a mutation 10; a single query may cost at most 1,000. The requested cost is charged before
  execution and the difference to the actual cost (connections priced by the nodes actually
  returned) is refunded. Every answered GraphQL request carries ``extensions.cost``.
* ``inventoryAdjustQuantities`` follows its 2026-01 reference: documented reason whitelist,
  quantity names, ledger-document rules, ``changeFromQuantity`` compare-and-swap
  (``CHANGE_FROM_QUANTITY_STALE``), all-or-nothing userErrors with the documented
  ``InventoryAdjustQuantitiesUserErrorCode`` values. ``@idempotent(key:)`` is optional in
  2026-01 and mandatory from 2026-04 ("calling these mutations without an idempotency
  directive will result in an error at runtime"); this fake requires it by default
  (``require_idempotency=True``) so our client is ready for 2026-04. Same key and same
  arguments replays the stored result without a second change; same key with different
  arguments is the userError ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``.

Faults are injectable (edge failures before any effect, throttling with or without HTTP 429,
responses lost after a mutation commits) and randomness comes from ``random.Random(seed)``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInt,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_client_schema,
    execute,
    get_directive_values,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
    value_from_ast,
)

SCHEMA_PATH = Path(__file__).with_name("shopify_admin_2026-01.json.gz")
SCHEMA_VERSION = "2026-01"

INVALID_TOKEN_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"
MAX_QUERY_COST = 1000  # "a single query may not exceed a cost of 1,000 points"
MAX_PAGE_SIZE = 250
MAX_INPUT_ARRAY = 250  # "Input arguments that accept an array have a maximum size of 250"
MUTATION_COST = 10
QUANTITY_LIMIT = 2_000_000_000  # INVALID_QUANTITY_TOO_HIGH / _TOO_LOW in the error-code enum

# The documented quantity names (inventory states). on_hand is derived: available, committed
# and the unavailable states (reserved, damaged, safety_stock, quality_control); incoming is
# not on hand.
STORED_STATES = ("available", "committed", "reserved", "damaged", "safety_stock", "quality_control", "incoming")
ON_HAND_PARTS = ("available", "committed", "reserved", "damaged", "safety_stock", "quality_control")
QUANTITY_NAMES = (*STORED_STATES, "on_hand")
# Names inventoryAdjustQuantities may change: committed follows orders only, and on_hand is set
# through inventorySetOnHandQuantities.
ADJUSTABLE_NAMES = ("available", "damaged", "incoming", "quality_control", "reserved", "safety_stock")
# "The value must be one of the possible reasons" (Manage inventory quantities and states).
REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_canceled",
        "movement_created",
        "movement_received",
        "movement_updated",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
IDEMPOTENT_MUTATIONS = frozenset({"inventoryAdjustQuantities"})

_JSON = "application/json; charset=utf-8"
_GID = re.compile(r"gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>[1-9]\d*)")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_APP_GID = re.compile(r"gid://[^/\s]+/[^/\s]+/[^/\s]+")
_MAX_COST_MESSAGE = (
    "Query cost is {cost}, which exceeds the single query max cost limit ({limit}).\n\n"
    "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
    "cost of a query is calculated.\n\n"
    "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
    "See https://shopify.dev/api/usage/bulk-operations/queries for usage details.\n"
)


# --- the vendored schema ------------------------------------------------------------------

_schema_lock = threading.Lock()
_schema: GraphQLSchema | None = None


def admin_schema() -> GraphQLSchema:
    """Shopify's 2026-01 Admin schema, built once per process (about half a second)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as handle:
                introspection = json.load(handle)
            _schema = build_client_schema(introspection["data"])
        return _schema


# --- HTTP plumbing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # a mutation committed; close the socket without answering


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeShopify) -> None:
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


# --- shop data ----------------------------------------------------------------------------


@dataclass
class _Location:
    id: int
    name: str
    active: bool
    created_at: str


@dataclass
class _Item:
    id: int
    sku: str
    barcode: str
    unit_cost: Decimal | None
    tracked: bool
    created_at: str


@dataclass
class _Level:
    quantities: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORED_STATES, 0))
    created_at: str = ""
    updated_at: str = ""

    def get(self, name: str) -> int:
        if name == "on_hand":
            return sum(self.quantities[part] for part in ON_HAND_PARTS)
        return self.quantities[name]


@dataclass
class _IdempotentResult:
    fingerprint: str
    payload: dict[str, Any]


class _UserErrors(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "user errors")
        self.errors = errors


def _gid(kind: str, id: int) -> str:
    return f"gid://shopify/{kind}/{id}"


def _parse_gid(value: Any, kind: str) -> int | None:
    if not isinstance(value, str):
        return None
    match = _GID.fullmatch(value)
    if match is None or match["type"] != kind:
        return None
    return int(match["id"])


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _not_modeled(type_name: str, field_name: str) -> GraphQLError:
    return GraphQLError(
        f"FakeShopify does not model {type_name}.{field_name}; add it to tests/fakes/shopify.py if a client needs it",
        extensions={"code": "FAKE_NOT_MODELED"},
    )


def _resolve_field(source: Any, info: Any, **args: Any) -> Any:
    """Dict-backed resolution: a key holds a value or a callable ``(info, **args)``; a missing
    key is an error, so a client never mistakes an unmodelled field for a real null."""
    if isinstance(source, dict):
        if info.field_name in source:
            value = source[info.field_name]
            return value(info, **args) if callable(value) else value
        raise _not_modeled(info.parent_type.name, info.field_name)
    raise _not_modeled(info.parent_type.name, info.field_name)


# --- cursors and connections --------------------------------------------------------------


def _encode_cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"last": list(key)}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        return tuple(value["last"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from exc


def _connection(
    nodes: list[tuple[tuple[Any, ...], dict[str, Any]]],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    query: str | None = None,
) -> dict[str, Any]:
    """Relay connection over ``(sort key, node)`` pairs, paged as Shopify documents."""
    if query is not None:
        raise GraphQLError("FakeShopify does not implement search-syntax filtering (the query argument).")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    if first is not None and last is not None:
        raise GraphQLError("providing both first and last is not supported")
    size = first if first is not None else last
    assert size is not None
    if size < 0:
        raise GraphQLError(f"Argument '{'first' if first is not None else 'last'}' must be a non-negative integer")
    if size > MAX_PAGE_SIZE:
        raise GraphQLError(f"The page size requested ({size}) exceeds the maximum page size of {MAX_PAGE_SIZE}.")
    ordered = sorted(nodes, key=lambda pair: pair[0], reverse=reverse)

    def beyond(key: tuple[Any, ...], cursor_key: tuple[Any, ...]) -> bool:
        return key < cursor_key if reverse else key > cursor_key

    if after is not None:
        after_key = _decode_cursor(after)
        ordered = [pair for pair in ordered if beyond(pair[0], after_key)]
    if before is not None:
        before_key = _decode_cursor(before)
        ordered = [pair for pair in ordered if beyond(before_key, pair[0])]
    if first is not None:
        page, has_next, has_previous = ordered[:size], len(ordered) > size, after is not None
    else:
        page = ordered[-size:] if size else []
        has_next, has_previous = before is not None, len(ordered) > size
    edges = [{"cursor": _encode_cursor(key), "node": node} for key, node in page]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --- calculated query cost ----------------------------------------------------------------


def _is_connection(named: Any) -> bool:
    fields = getattr(named, "fields", None)
    return bool(named.name.endswith("Connection") and fields and "pageInfo" in fields and "edges" in fields)


def _page_size(node: FieldNode, variables: dict[str, Any]) -> int:
    for argument in node.arguments or ():
        if argument.name.value in ("first", "last"):
            value = value_from_ast(argument.value, GraphQLInt, variables)
            if isinstance(value, int) and value > 0:
                return value
    return 0


class _Cost:
    """Shopify's documented cost model: scalar/enum 0, object 1, connection 2 + page size x
    cost of one node, mutation 10. ``actual`` prices connections by the nodes returned."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: Any) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables if isinstance(variables, dict) else {}

    def operation(self, operation: OperationDefinitionNode, data: Any = None, *, actual: bool = False) -> int:
        if operation.operation == OperationType.MUTATION:
            return MUTATION_COST * len(self._fields(operation.selection_set))
        root = self.schema.query_type
        return self.selection(operation.selection_set, root, data, actual=actual)

    def _fields(self, selection_set: SelectionSetNode) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if not selection.name.value.startswith("__"):
                    found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found.extend(self._fields(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    found.extend(self._fields(fragment.selection_set))
        return found

    def selection(self, selection_set: SelectionSetNode | None, parent: Any, data: Any, *, actual: bool) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, data, actual=actual)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection(selection.selection_set, target, data, actual=actual)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.selection(fragment.selection_set, target, data, actual=actual)
        return total

    def _field(self, node: FieldNode, parent: Any, data: Any, *, actual: bool) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 0
        named = get_named_type(fields[name].type)
        if is_leaf_type(named):
            return 0
        key = node.alias.value if node.alias else name
        value = data.get(key) if isinstance(data, dict) else None
        if _is_connection(named):
            per_node = self._per_node(node, named)
            if actual:
                size = 0
                if isinstance(value, dict):
                    for part in ("edges", "nodes"):
                        if isinstance(value.get(part), list):
                            size = max(size, len(value[part]))
            else:
                size = _page_size(node, self.variables)
            return 2 + size * per_node
        child = value if actual and isinstance(value, dict) else None
        return 1 + self.selection(node.selection_set, named, child, actual=actual and child is not None)

    def _per_node(self, node: FieldNode, connection: Any) -> int:
        node_type = get_named_type(connection.fields["nodes"].type)
        best = 0
        for child in self._fields(node.selection_set) if node.selection_set else ():
            if child.name.value == "nodes":
                best = max(best, 1 + self.selection(child.selection_set, node_type, None, actual=False))
            elif child.name.value == "edges" and child.selection_set is not None:
                for inner in self._fields(child.selection_set):
                    if inner.name.value == "node":
                        best = max(best, 1 + self.selection(inner.selection_set, node_type, None, actual=False))
        return best


# --- validation error shapes --------------------------------------------------------------

_UNDEFINED_FIELD = re.compile(r"Cannot query field '(?P<field>[^']+)' on type '(?P<type>[^']+)'\.")
_UNKNOWN_ARGUMENT = re.compile(r"Unknown argument '(?P<arg>[^']+)' on field '(?P<type>[^'.]+)\.(?P<field>[^']+)'\.")
_ERROR_CODES = (
    ("Unknown type", "undefinedType"),
    ("Unknown directive", "undefinedDirective"),
    ("Unknown fragment", "undefinedFragment"),
    ("must have a selection of subfields", "selectionMismatch"),
    ("must not have a selection", "selectionMismatch"),
    ("was not provided", "missingRequiredInputObjectAttribute"),
    ("is required, but it was not provided", "missingRequiredArguments"),
    ("used in position expecting", "variableMismatch"),
    ("is not defined", "variableNotDefined"),
    ("is never used", "variableNotUsed"),
    ("cannot represent", "argumentLiteralsIncompatible"),
    ("Expected value of type", "argumentLiteralsIncompatible"),
    ("is not defined by type", "argumentNotAccepted"),
)


def _validation_error(error: GraphQLError) -> dict[str, Any]:
    """graphql-core's finding, reshaped like graphql-ruby (which serves Shopify) reports it."""
    formatted: dict[str, Any] = {"message": error.message, "locations": error.formatted.get("locations") or []}
    undefined = _UNDEFINED_FIELD.match(error.message)
    unknown_argument = _UNKNOWN_ARGUMENT.match(error.message)
    if undefined:
        formatted["message"] = f"Field '{undefined['field']}' doesn't exist on type '{undefined['type']}'"
        formatted["extensions"] = {
            "code": "undefinedField",
            "typeName": undefined["type"],
            "fieldName": undefined["field"],
        }
    elif unknown_argument:
        formatted["message"] = (
            f"Field '{unknown_argument['field']}' doesn't accept argument '{unknown_argument['arg']}'"
        )
        formatted["extensions"] = {
            "code": "argumentNotAccepted",
            "name": unknown_argument["field"],
            "typeName": "Field",
            "argumentName": unknown_argument["arg"],
        }
    else:
        code = next((code for needle, code in _ERROR_CODES if needle in error.message), "validationError")
        formatted["extensions"] = {"code": code}
    return formatted


# --- the fake -----------------------------------------------------------------------------


class FakeShopify:
    """One Shopify shop's Admin GraphQL API on 127.0.0.1.

    Guarantees, per request: every request is counted in ``requests_made``; injected edge
    failures are answered before authentication or any effect; then the token, the path and
    the body are checked; then the operation is parsed and validated against the vendored
    schema (no cost charged when invalid); then its cost is checked against the bucket
    (throttled requests have no effect); then it executes under one lock, so an idempotency
    check and the adjustment it guards are atomic and reads see a consistent shop.
    """

    def __init__(
        self,
        *,
        access_token: str,
        api_version: str = SCHEMA_VERSION,
        shop: str = "acme.myshopify.com",
        bucket_size: int = 2000,
        restore_rate: float = 100.0,
        seed: int = 0,
        currency: str = "USD",
        require_idempotency: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if api_version != SCHEMA_VERSION:
            raise ValueError(f"FakeShopify serves only the vendored {SCHEMA_VERSION} schema")
        if bucket_size < 1 or restore_rate <= 0:
            raise ValueError("bucket_size must be positive and restore_rate greater than zero")
        self.access_token = access_token
        self.api_version = api_version
        self.shop = shop
        self.currency = currency
        self.require_idempotency = require_idempotency
        self._bucket_size = float(bucket_size)
        self._restore_rate = float(restore_rate)
        self._clock = clock
        self._available = float(bucket_size)
        self._bucket_at = clock()
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._schema = admin_schema()
        # shop data
        self._locations: dict[int, _Location] = {}
        self._items: dict[int, _Item] = {}
        self._levels: dict[tuple[int, int], _Level] = {}
        self._idempotency: dict[str, _IdempotentResult] = {}
        self._adjustments: list[dict[str, Any]] = []
        self._next_group_id = 1
        # observation
        self._requests_made = 0
        self._mutations_applied = 0
        self._throttled = 0
        self._idempotent_replays = 0
        self._last_cost: dict[str, Any] | None = None
        # fault injection
        self._fail_queue: deque[int] = deque()
        self._throttle_queue: deque[bool] = deque()  # True: answer HTTP 429
        self._drops_pending = 0

    # lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeShopify:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeShopify is already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-shopify", daemon=True
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

    def __enter__(self) -> FakeShopify:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Stands in for ``https://{shop}``."""
        if self._server is None:
            raise RuntimeError("FakeShopify is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/admin/api/{self.api_version}/graphql.json"

    # data ---------------------------------------------------------------------------------

    def add_location(self, id: int, name: str, *, active: bool = True) -> str:
        """Create or replace location ``id``; returns its gid. The lowest id is the primary one."""
        with self._lock:
            self._locations[id] = _Location(id, name, active, _now_iso())
        return _gid("Location", id)

    def add_item(
        self,
        id: int,
        sku: str,
        *,
        barcode: str = "",
        unit_cost: Decimal | None = None,
        tracked: bool = True,
    ) -> str:
        """Create or replace inventory item ``id`` and its product variant (same numeric id,
        carrying ``sku`` and ``barcode``); returns the InventoryItem gid."""
        with self._lock:
            cost = Decimal(unit_cost) if unit_cost is not None else None
            self._items[id] = _Item(id, sku, barcode, cost, tracked, _now_iso())
        return _gid("InventoryItem", id)

    def set_quantity(self, item_id: int, location_id: int, name: str, quantity: int) -> None:
        """Set one quantity name of an item at a location, stocking the item there if needed.

        ``on_hand`` is derived (available + committed + reserved + damaged + safety_stock +
        quality_control), so setting it moves the difference into ``available``, as
        inventorySetOnHandQuantities does.
        """
        if name not in QUANTITY_NAMES:
            raise ValueError(f"unknown quantity name {name!r}; use one of {', '.join(QUANTITY_NAMES)}")
        with self._lock:
            level = self._level_for_setup(item_id, location_id)
            if name == "on_hand":
                level.quantities["available"] += int(quantity) - level.get("on_hand")
            else:
                level.quantities[name] = int(quantity)
            level.updated_at = _now_iso()

    def quantity(self, item_id: int, location_id: int, name: str = "available") -> int:
        """Current quantity (0 where the item is not stocked at the location)."""
        if name not in QUANTITY_NAMES:
            raise ValueError(f"unknown quantity name {name!r}")
        with self._lock:
            level = self._levels.get((item_id, location_id))
            return level.get(name) if level else 0

    def move_stock(self, item_id: int, location_id: int, delta: int) -> None:
        """Someone sold or received meanwhile: ``available`` (and so ``on_hand``) moves by
        ``delta`` outside our client, making any ``changeFromQuantity`` it holds stale."""
        with self._lock:
            level = self._level_for_setup(item_id, location_id)
            level.quantities["available"] += int(delta)
            level.updated_at = _now_iso()

    def _level_for_setup(self, item_id: int, location_id: int) -> _Level:
        # caller holds self._lock
        if item_id not in self._items or location_id not in self._locations:
            raise ValueError(f"add item {item_id} and location {location_id} before setting quantities")
        level = self._levels.get((item_id, location_id))
        if level is None:
            now = _now_iso()
            level = self._levels[(item_id, location_id)] = _Level(created_at=now, updated_at=now)
        return level

    @property
    def adjustments(self) -> list[dict[str, Any]]:
        """Snapshot of every applied inventoryAdjustQuantities, in order: {"idempotency_key",
        "reason", "name", "referenceDocumentUri", "group_id", "changes": [{"inventoryItemId",
        "locationId", "delta", "changeFromQuantity", "ledgerDocumentUri"}]}."""
        with self._lock:
            return copy.deepcopy(self._adjustments)

    # observation --------------------------------------------------------------------------

    @property
    def requests_made(self) -> int:
        with self._lock:
            return self._requests_made

    @property
    def mutations_applied(self) -> int:
        """Adjustments that changed quantities (replays and userErrors excluded)."""
        with self._lock:
            return self._mutations_applied

    @property
    def throttled(self) -> int:
        """Requests refused for cost: THROTTLED answers and injected 429s."""
        with self._lock:
            return self._throttled

    @property
    def idempotent_replays(self) -> int:
        with self._lock:
            return self._idempotent_replays

    @property
    def currently_available(self) -> float:
        """Points in the bucket now."""
        with self._lock:
            return self._refill()

    @property
    def last_cost(self) -> dict[str, Any] | None:
        """The ``extensions.cost`` of the latest answered GraphQL request."""
        with self._lock:
            return copy.deepcopy(self._last_cost)

    # fault injection ----------------------------------------------------------------------

    def throttle_next(self, n: int, *, as_429: bool = False) -> None:
        """The next ``n`` authenticated requests are refused for cost with no effect: a
        THROTTLED GraphQL error (HTTP 200), or with ``as_429`` HTTP 429 and ``Retry-After``."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._throttle_queue.extend([as_429] * n)

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests fail with ``status`` before authentication or any effect."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and a 4xx/5xx status")
        with self._lock:
            self._fail_queue.extend([status] * n)

    def drop_next(self, n: int) -> None:
        """The next ``n`` requests that commit a mutation apply it, then close the socket
        without answering (the client cannot tell whether it happened)."""
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
            return self._plain_error(failure, HTTPStatus(failure).phrase)
        path = urlsplit(target).path
        match = re.fullmatch(r"/admin/api/(?P<version>[^/]+)/graphql\.json", path)
        if match is None or match["version"] != self.api_version:
            return self._plain_error(404, "Not Found")
        if method != "POST":
            return _Reply(405, _json_bytes({"errors": "Method Not Allowed"}), headers=(("Allow", "POST"),))
        if headers.get("X-Shopify-Access-Token") != self.access_token:
            return self._plain_error(401, INVALID_TOKEN_MESSAGE)
        with self._lock:
            injected = self._throttle_queue.popleft() if self._throttle_queue else None
            if injected is not None:
                self._throttled += 1
        if injected is True:
            body_429 = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
            return _Reply(429, _json_bytes(body_429), headers=(("Retry-After", "1.0"),))
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        request = self._request_body(body) if media_type == "application/json" else None
        if request is None:
            return _Reply(400, _json_bytes({"errors": {"query": "Required parameter missing or invalid"}}))
        query, variables, operation_name = request
        return self._graphql(query, variables, operation_name, force_throttle=injected is False)

    def _plain_error(self, status: int, message: str) -> _Reply:
        return _Reply(status, _json_bytes({"errors": message}))

    @staticmethod
    def _request_body(body: bytes) -> tuple[str, dict[str, Any], str | None] | None:
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(payload, dict):
            return None
        query, variables, operation_name = payload.get("query"), payload.get("variables"), payload.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return None
        if variables is None:
            variables = {}
        if not isinstance(variables, dict) or (operation_name is not None and not isinstance(operation_name, str)):
            return None
        return query, variables, operation_name

    def _graphql_reply(self, document: dict[str, Any]) -> _Reply:
        headers = (
            ("X-Shopify-API-Version", self.api_version),
            ("X-Request-Id", str(uuid.UUID(int=self._random.getrandbits(128), version=4))),
        )
        with self._lock:
            self._last_cost = copy.deepcopy(document.get("extensions", {}).get("cost"))
        return _Reply(200, _json_bytes(document), headers=headers)

    # leaky bucket -------------------------------------------------------------------------

    def _refill(self) -> float:
        # caller holds self._lock
        now = self._clock()
        self._available = min(self._bucket_size, self._available + (now - self._bucket_at) * self._restore_rate)
        self._bucket_at = now
        return self._available

    def _cost_extension(self, requested: int | None, actual: int | None) -> dict[str, Any]:
        # caller holds self._lock
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self._bucket_size,
                "currentlyAvailable": int(self._refill()),
                "restoreRate": self._restore_rate,
            },
        }

    def _throttled_body(self, *, requested: int | None) -> dict[str, Any]:
        with self._lock:
            cost = self._cost_extension(requested, None)
        error = {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
        }
        return {"errors": [error], "extensions": {"cost": cost}}

    # GraphQL ------------------------------------------------------------------------------

    def _graphql(
        self, query: str, variables: dict[str, Any], operation_name: str | None, *, force_throttle: bool = False
    ) -> _Reply:
        try:
            document = parse(query)
        except GraphQLError as error:
            return self._free_errors([{"message": error.message, "locations": error.formatted.get("locations") or []}])
        errors = validate(self._schema, document)
        if errors:
            return self._free_errors([_validation_error(error) for error in errors])
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is None and len(operations) > 1:
            return self._free_errors([{"message": "An operation name is required"}])
        chosen = [op for op in operations if operation_name is None or (op.name and op.name.value == operation_name)]
        if not chosen:
            return self._free_errors([{"message": f'No operation named "{operation_name}"'}])
        operation = chosen[0]
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        costing = _Cost(self._schema, fragments, variables)
        requested = costing.operation(operation)
        if requested > MAX_QUERY_COST:
            with self._lock:
                cost = self._cost_extension(requested, None)
            error = {
                "message": _MAX_COST_MESSAGE.format(cost=requested, limit=MAX_QUERY_COST),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
            }
            return self._graphql_reply({"errors": [error], "extensions": {"cost": cost}})
        context: dict[str, Any] = {"committed": False}
        with self._lock:
            if force_throttle or requested > self._refill():
                if not force_throttle:  # injected refusals were counted when taken
                    self._throttled += 1
                throttled = True
            else:
                throttled = False
                self._available -= requested
                result = execute(
                    self._schema,
                    document,
                    root_value=self._root(operation.operation),
                    context_value=context,
                    variable_values=variables,
                    operation_name=operation_name,
                    field_resolver=_resolve_field,
                )
                data = result.data
                actual = (
                    requested
                    if operation.operation == OperationType.MUTATION
                    else costing.operation(operation, data, actual=True)
                )
                if result.data is None and result.errors:
                    actual = 0
                self._available = min(self._bucket_size, self._available + requested - actual)
                cost = self._cost_extension(requested, actual)
                drop = bool(context["committed"]) and self._drops_pending > 0
                if drop:
                    self._drops_pending -= 1
        if throttled:
            return self._graphql_reply(self._throttled_body(requested=requested))
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = [self._execution_error(error) for error in result.errors]
        if result.data is not None or not result.errors:
            answer["data"] = result.data
        answer["extensions"] = {"cost": cost}
        reply = self._graphql_reply(answer)
        return _Reply(reply.status, reply.body, reply.content_type, reply.headers, drop=drop)

    def _free_errors(self, errors: list[dict[str, Any]]) -> _Reply:
        """An operation rejected before execution: nothing is charged."""
        with self._lock:
            cost = self._cost_extension(0, 0)
        return self._graphql_reply({"errors": errors, "extensions": {"cost": cost}})

    @staticmethod
    def _execution_error(error: GraphQLError) -> dict[str, Any]:
        formatted = dict(error.formatted)
        if not formatted.get("extensions"):
            code = "INVALID_VARIABLE" if error.message.startswith("Variable '") else "INTERNAL_ERROR"
            formatted["extensions"] = {"code": code}
        if formatted.get("path") is None:
            formatted.pop("path", None)
        return formatted

    def _root(self, operation: OperationType) -> dict[str, Any]:
        if operation == OperationType.MUTATION:
            return {"inventoryAdjustQuantities": self._inventory_adjust_quantities}
        return {
            "location": self._q_location,
            "locations": self._q_locations,
            "inventoryItem": self._q_inventory_item,
            "inventoryItems": self._q_inventory_items,
        }

    # read resolvers (caller holds self._lock: they run inside execute) -----------------------

    def _q_location(self, info: Any, id: str | None = None) -> dict[str, Any] | None:
        if id is None:
            active = sorted(loc.id for loc in self._locations.values() if loc.active)
            return self._location_node(self._locations[active[0]]) if active else None
        location_id = self._lookup_id(id, "Location")
        location = self._locations.get(location_id) if location_id is not None else None
        return self._location_node(location) if location else None

    def _q_locations(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        query: str | None = None,
        reverse: bool = False,
        sortKey: str = "NAME",
        includeInactive: bool = False,
        includeLegacy: bool = False,
    ) -> dict[str, Any]:
        if sortKey not in ("NAME", "ID"):
            raise GraphQLError(f"FakeShopify sorts locations by NAME or ID only, not {sortKey}.")
        pairs = []
        for location in self._locations.values():
            if not location.active and not includeInactive:
                continue
            key = (location.name, location.id) if sortKey == "NAME" else (location.id,)
            pairs.append((key, self._location_node(location)))
        return _connection(pairs, first=first, after=after, last=last, before=before, reverse=reverse, query=query)

    def _q_inventory_item(self, info: Any, id: str) -> dict[str, Any] | None:
        item_id = self._lookup_id(id, "InventoryItem")
        item = self._items.get(item_id) if item_id is not None else None
        return self._item_node(item) if item else None

    def _q_inventory_items(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        query: str | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        pairs = [((item.id,), self._item_node(item)) for item in self._items.values()]
        return _connection(pairs, first=first, after=after, last=last, before=before, reverse=reverse, query=query)

    @staticmethod
    def _lookup_id(value: str, kind: str) -> int | None:
        if not isinstance(value, str) or not value.startswith("gid://"):
            raise GraphQLError(
                f"Invalid global id '{value}'",
                extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"},
            )
        return _parse_gid(value, kind)

    def _location_node(self, location: _Location) -> dict[str, Any]:
        def levels(info: Any, **args: Any) -> dict[str, Any]:
            pairs = [
                ((item_id,), self._level_node(item_id, loc_id))
                for (item_id, loc_id) in self._levels
                if loc_id == location.id and item_id in self._items
            ]
            return _connection(pairs, **args)

        def level(info: Any, inventoryItemId: str) -> dict[str, Any] | None:
            item_id = self._lookup_id(inventoryItemId, "InventoryItem")
            if item_id is None or (item_id, location.id) not in self._levels:
                return None
            return self._level_node(item_id, location.id)

        return {
            "id": _gid("Location", location.id),
            "legacyResourceId": str(location.id),
            "name": location.name,
            "isActive": location.active,
            "activatable": not location.active,
            "deactivatable": location.active,
            "createdAt": location.created_at,
            "updatedAt": location.created_at,
            "inventoryLevels": levels,
            "inventoryLevel": level,
        }

    def _item_node(self, item: _Item) -> dict[str, Any]:
        def levels(info: Any, **args: Any) -> dict[str, Any]:
            pairs = [
                ((loc_id,), self._level_node(item_id, loc_id))
                for (item_id, loc_id) in self._levels
                if item_id == item.id and loc_id in self._locations
            ]
            return _connection(pairs, **args)

        def level(info: Any, locationId: str) -> dict[str, Any] | None:
            location_id = self._lookup_id(locationId, "Location")
            if location_id is None or (item.id, location_id) not in self._levels:
                return None
            return self._level_node(item.id, location_id)

        node: dict[str, Any] = {
            "id": _gid("InventoryItem", item.id),
            "legacyResourceId": str(item.id),
            "sku": item.sku or None,
            "tracked": item.tracked,
            "requiresShipping": True,
            "createdAt": item.created_at,
            "updatedAt": item.created_at,
            "unitCost": (
                {"amount": format(item.unit_cost.normalize(), "f"), "currencyCode": self.currency}
                if item.unit_cost is not None
                else None
            ),
            "inventoryLevels": levels,
            "inventoryLevel": level,
        }
        variant = {
            "id": _gid("ProductVariant", item.id),
            "legacyResourceId": str(item.id),
            "sku": item.sku or None,
            "barcode": item.barcode or None,
            "title": "Default Title",
            "displayName": item.sku or f"Variant {item.id}",
            "inventoryItem": lambda info: node,
        }
        node["variant"] = variant
        node["variants"] = lambda info, **args: _connection([((item.id,), variant)], **args)
        return node

    def _level_node(self, item_id: int, location_id: int) -> dict[str, Any]:
        level = self._levels[(item_id, location_id)]

        def quantities(info: Any, names: list[str]) -> list[dict[str, Any]]:
            unknown = [name for name in names if name not in QUANTITY_NAMES]
            if unknown:
                raise GraphQLError(
                    f"Invalid quantity name(s): {', '.join(unknown)}. Valid names: {', '.join(QUANTITY_NAMES)}."
                )
            return [
                {
                    "id": f"gid://shopify/InventoryQuantity/{location_id}?inventory_item_id={item_id}&name={name}",
                    "name": name,
                    "quantity": level.get(name),
                    "updatedAt": level.updated_at,
                }
                for name in names
            ]

        return {
            "id": f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item_id}",
            "canDeactivate": True,
            "deactivationAlert": None,
            "createdAt": level.created_at,
            "updatedAt": level.updated_at,
            "item": lambda info: self._item_node(self._items[item_id]),
            "location": lambda info: self._location_node(self._locations[location_id]),
            "quantities": quantities,
        }

    # inventoryAdjustQuantities --------------------------------------------------------------

    def _inventory_adjust_quantities(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        key = self._idempotency_key(info)
        fingerprint = json.dumps(input, sort_keys=True, default=str)
        if key is not None:
            previous = self._idempotency.get(key)
            if previous is not None:
                if previous.fingerprint != fingerprint:
                    return self._payload_errors(
                        [
                            {
                                "field": None,
                                "message": "The same idempotency key cannot be used with different operation "
                                "parameters.",
                                "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            }
                        ]
                    )
                self._idempotent_replays += 1
                return previous.payload
        try:
            payload = self._apply_adjustment(input, key)
            info.context["committed"] = True
        except _UserErrors as failure:
            payload = self._payload_errors(failure.errors)
        if key is not None:
            self._idempotency[key] = _IdempotentResult(fingerprint, payload)
        return payload

    def _idempotency_key(self, info: Any) -> str | None:
        directive = self._schema.get_directive("idempotent")
        values = None
        if directive is not None:
            values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
        key = values.get("key") if values else None
        if key is None:
            if self.require_idempotency:
                raise GraphQLError(
                    f"The @idempotent directive is required for {info.field_name}: add "
                    '@idempotent(key: "<uuid>") to the mutation field (mandatory from API version 2026-04).',
                    extensions={"code": "BAD_REQUEST"},
                )
            return None
        if not key.strip():
            raise GraphQLError(
                "The idempotency key cannot be an empty string or whitespace only.",
                extensions={"code": "BAD_REQUEST"},
            )
        return key

    @staticmethod
    def _payload_errors(errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {"inventoryAdjustmentGroup": None, "userErrors": errors}

    def _apply_adjustment(self, data: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Validate every change, then apply all of them; raises _UserErrors with nothing applied."""
        errors: list[dict[str, Any]] = []
        name, reason = data["name"], data["reason"]
        reference = data.get("referenceDocumentUri")
        changes = data["changes"]

        def error(path: list[str], message: str, code: str) -> None:
            errors.append({"field": ["input", *path], "message": message, "code": code})

        if len(changes) > MAX_INPUT_ARRAY:
            raise GraphQLError(
                f"The input array size of {len(changes)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        if name not in ADJUSTABLE_NAMES:
            error(["name"], "The specified quantity name is invalid.", "INVALID_QUANTITY_NAME")
        if reason not in REASONS:
            error(["reason"], "The specified reason is invalid.", "INVALID_REASON")
        if reference is not None and not self._valid_uri(reference):
            error(
                ["referenceDocumentUri"], "The specified reference document is invalid.", "INVALID_REFERENCE_DOCUMENT"
            )
        ledgers = set()
        planned: list[tuple[int, int, int, int | None, str | None]] = []
        for index, change in enumerate(changes):
            at = ["changes", str(index)]
            item_id = _parse_gid(change["inventoryItemId"], "InventoryItem")
            location_id = _parse_gid(change["locationId"], "Location")
            ledger = change.get("ledgerDocumentUri")
            ledgers.add(ledger)
            if item_id is None or item_id not in self._items:
                error(
                    [*at, "inventoryItemId"],
                    "The specified inventory item could not be found.",
                    "INVALID_INVENTORY_ITEM",
                )
                continue
            if location_id is None or location_id not in self._locations:
                error([*at, "locationId"], "The specified location could not be found.", "INVALID_LOCATION")
                continue
            if (item_id, location_id) not in self._levels:
                error(
                    [*at, "locationId"],
                    "The inventory item is not stocked at the location.",
                    "ITEM_NOT_STOCKED_AT_LOCATION",
                )
                continue
            if name == "available" and ledger is not None:
                error(
                    [*at, "ledgerDocumentUri"],
                    "A ledger document URI is not allowed when adjusting available.",
                    "INVALID_AVAILABLE_DOCUMENT",
                )
            elif name != "available" and name in ADJUSTABLE_NAMES:
                if ledger is None:
                    error(
                        [*at, "ledgerDocumentUri"],
                        "A ledger document URI is required except when adjusting available.",
                        "INVALID_QUANTITY_DOCUMENT",
                    )
                elif ledger.startswith("gid://shopify/"):
                    error(
                        [*at, "ledgerDocumentUri"],
                        "Internal (gid://shopify/) ledger documents are not allowed to be adjusted via API.",
                        "INTERNAL_LEDGER_DOCUMENT",
                    )
                elif not self._valid_uri(ledger):
                    error(
                        [*at, "ledgerDocumentUri"],
                        "The specified ledger document is invalid.",
                        "INVALID_LEDGER_DOCUMENT",
                    )
            if name not in ADJUSTABLE_NAMES:
                continue
            current = self._levels[(item_id, location_id)].get(name)
            expected = change.get("changeFromQuantity")
            if expected is not None and expected != current:
                error(
                    [*at, "changeFromQuantity"],
                    "The changeFromQuantity argument no longer matches the persisted quantity.",
                    "CHANGE_FROM_QUANTITY_STALE",
                )
            planned.append((item_id, location_id, change["delta"], expected, ledger))
        if name != "available" and len(ledgers) > 1:
            error(
                ["changes"],
                "All changes must have the same ledger document URI or, in the case of adjusting available, "
                "no ledger document URI.",
                "MAX_ONE_LEDGER_DOCUMENT",
            )
        running: dict[tuple[int, int], int] = {}
        for index, (item_id, location_id, delta, _expected, _ledger) in enumerate(planned):
            after = running.get((item_id, location_id), self._levels[(item_id, location_id)].get(name)) + delta
            running[(item_id, location_id)] = after
            if after > QUANTITY_LIMIT:
                error(
                    ["changes", str(index), "delta"],
                    "The quantity can't be higher than 2,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH",
                )
            elif after < -QUANTITY_LIMIT:
                error(
                    ["changes", str(index), "delta"],
                    "The quantity can't be lower than -2,000,000,000.",
                    "INVALID_QUANTITY_TOO_LOW",
                )
        if errors:
            raise _UserErrors(errors)

        now = _now_iso()
        group_id = self._next_group_id
        self._next_group_id += 1
        ledger_changes: list[dict[str, Any]] = []
        for item_id, location_id, delta, _expected, ledger in planned:
            level = self._levels[(item_id, location_id)]
            level.quantities[name] += delta
            level.updated_at = now
            names = [name] if name == "incoming" else [name, "on_hand"]
            for changed in names:
                ledger_changes.append(
                    {
                        "name": changed,
                        "delta": delta,
                        "quantityAfterChange": level.get(changed),
                        "ledgerDocumentUri": ledger,
                        "item_id": item_id,
                        "location_id": location_id,
                    }
                )
        self._mutations_applied += 1
        self._adjustments.append(
            {
                "idempotency_key": key,
                "reason": reason,
                "name": name,
                "referenceDocumentUri": reference,
                "group_id": _gid("InventoryAdjustmentGroup", group_id),
                "changes": [
                    {
                        "inventoryItemId": _gid("InventoryItem", item_id),
                        "locationId": _gid("Location", location_id),
                        "delta": delta,
                        "changeFromQuantity": expected,
                        "ledgerDocumentUri": ledger,
                    }
                    for item_id, location_id, delta, expected, ledger in planned
                ],
            }
        )
        return {
            "inventoryAdjustmentGroup": self._group_node(group_id, now, reason, reference, ledger_changes),
            "userErrors": [],
        }

    def _group_node(
        self, group_id: int, created_at: str, reason: str, reference: str | None, ledger_changes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        def changes(
            info: Any,
            inventoryItemIds: list[str] | None = None,
            locationIds: list[str] | None = None,
            quantityNames: list[str] | None = None,
        ) -> list[dict[str, Any]]:
            chosen = []
            for entry in ledger_changes:
                if inventoryItemIds is not None and _gid("InventoryItem", entry["item_id"]) not in inventoryItemIds:
                    continue
                if locationIds is not None and _gid("Location", entry["location_id"]) not in locationIds:
                    continue
                if quantityNames is not None and entry["name"] not in quantityNames:
                    continue
                chosen.append(
                    {
                        "name": entry["name"],
                        "delta": entry["delta"],
                        "quantityAfterChange": entry["quantityAfterChange"],
                        "ledgerDocumentUri": entry["ledgerDocumentUri"],
                        "item": lambda info, item_id=entry["item_id"]: self._item_node(self._items[item_id]),
                        "location": lambda info, loc_id=entry["location_id"]: self._location_node(
                            self._locations[loc_id]
                        ),
                    }
                )
            return chosen

        return {
            "id": _gid("InventoryAdjustmentGroup", group_id),
            "createdAt": created_at,
            "reason": reason,
            "referenceDocumentUri": reference,
            "app": None,
            "staffMember": None,
            "changes": changes,
        }

    @staticmethod
    def _valid_uri(value: str) -> bool:
        # "Valid URI with scheme and content. For GID format, all components (app, entity, id)
        # must be present."
        if not _URI.fullmatch(value):
            return False
        return not value.startswith("gid://") or bool(_APP_GID.fullmatch(value))
