"""Shopify as an InventoryBackend: Admin GraphQL reads, `inventoryAdjustQuantities` writes.

Mapping. Shopify tracks an inventory item's quantities per location, with no bins below it,
so every Shopify location is a top-level RemoteLocation (no parent): sync makes it one
facility and one mirror location (zone MAIN) in that facility. Items are inventory items
(external id: their gid), known by SKU; one without a SKU is left out (Cyclecount knows items
by SKU), and so are its balances. A balance's on hand is Shopify's `on_hand`; its reserved is
`committed + reserved` (units promised to orders or held back). Damaged, safety-stock and
quality-control units are on hand but not available in Shopify; the mirror counts them as
available — they are counted like any other unit on the shelf.

Writes. One batch (one location, at most 250 lines: Shopify's limit on an input array) is one
`inventoryAdjustQuantities` of `available` with reason `cycle_count_available`, the batch
named in `referenceDocumentUri` (gid://cyclecount/Batch/<external id>, shown in the admin's
inventory history), and each change guarded by `changeFromQuantity`, the available quantity
read just before the mutation. Changes are all-or-nothing.

Exactly once. Every mutation carries `@idempotent(key:)`, a UUID derived from the batch's
external id and an attempt number (0 first). Shopify applies a key once; the same key with
the same input replays the first result with no second change; the same key with another
input is IDEMPOTENCY_KEY_PARAMETER_MISMATCH and changes nothing. So:

* A lost answer: the drain asks `find_batch`, which answers None (Shopify cannot be asked by
  our id), and sends the batch again. The backend keeps, for the drain it serves, the exact
  key and input last sent for each batch and sends them again unchanged: Shopify replays the
  first result if it had landed, or applies it now if it had not. Either way once.
* A new process (the one that sent it died, or every try of a drain failed) has no memory, so
  it reads quantities afresh and sends under the attempt-0 key. If that key was never used,
  nothing ever landed and this applies it. If it was used with another input (it landed and
  quantities moved by our own deltas since), Shopify says MISMATCH; we then replay the input
  the first request must have had if it landed and nothing else moved — changeFromQuantity
  = now − delta. A replay of an applied adjustment proves it landed (accepted); that probe
  can itself never apply anything, as every delta is non-zero so every changeFromQuantity in
  it is stale. Anything else cannot be proven either way: OUTCOME_UNPROVABLE, for a person.
* CHANGE_FROM_QUANTITY_STALE: stock moved between our read and the mutation, and Shopify
  applied nothing. The organization's moved-stock policy decides (the connection setting
  `moved_stock_policy`, mirroring the reconciliation guardrail's `moved_book_policy`, since a
  backend has no database): `keep_difference` (default) sends the same deltas with fresh
  changeFromQuantity under the next attempt's key — a new key because the input changed, and
  still once, because the stale request applied nothing and keys are used strictly in order,
  each only after the one before was refused; `keep_count` and `require_recount` refuse the
  batch (STOCK_MOVED): a person recounts or re-approves, as the policy asks.

Idempotency keys are kept by Shopify for a limited window. The drain's retries fit well
inside it; a person retrying a failed batch much later is the one case where a key may have
expired and a landed batch could apply twice — the next sync's parity check flags it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.interface import (
    AdjustmentBatch,
    PermanentBackendError,
    PushReceipt,
    RemoteBalance,
    RemoteItem,
    RemoteLocation,
    TransientBackendError,
)
from adapters.shopify.client import ShopifyClient

# "Input arguments that accept an array have a maximum size of 250."
MAX_BATCH_LINES = 250
PAGE_SIZE = 250
REASON = "cycle_count_available"
QUANTITY_NAME = "available"
# A stale changeFromQuantity is re-read and re-sent at most this often within one push.
STALE_RETRIES = 3
KEEP_DIFFERENCE = "keep_difference"
KEEP_COUNT = "keep_count"
REQUIRE_RECOUNT = "require_recount"
MOVED_STOCK_POLICIES = (KEEP_DIFFERENCE, KEEP_COUNT, REQUIRE_RECOUNT)
KEY_NAMESPACE = uuid.UUID("5b0e2f6c-6f1e-4d55-9a43-2c1f0c7c2a10")  # Cyclecount's, fixed forever

LOCATIONS_QUERY = """
query CyclecountLocations($after: String) {
  locations(first: 250, after: $after, includeInactive: true) {
    nodes { id name isActive }
    pageInfo { hasNextPage endCursor }
  }
}
"""

ITEMS_QUERY = """
query CyclecountItems($after: String) {
  inventoryItems(first: 250, after: $after) {
    nodes { id sku tracked unitCost { amount } variant { barcode displayName } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

LEVELS_QUERY = """
query CyclecountLevels($location: ID!, $after: String) {
  location(id: $location) {
    inventoryLevels(first: 250, after: $after) {
      nodes {
        item { id }
        quantities(names: ["available", "committed", "on_hand", "reserved"]) { name quantity }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

AVAILABLE_SELECTION = 'quantities(names: ["available"]) { quantity }'

ADJUST_MUTATION = """
mutation CyclecountAdjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}
"""


def available_query(count: int) -> str:
    """A query for the available quantity of `count` items ($i0…) at one location ($location)."""
    variables = "".join(f", $i{index}: ID!" for index in range(count))
    levels = "".join(
        f"\n    i{index}: inventoryLevel(inventoryItemId: $i{index}) {{ {AVAILABLE_SELECTION} }}"
        for index in range(count)
    )
    return f"query CyclecountAvailable($location: ID!{variables}) {{\n  location(id: $location) {{{levels}\n  }}\n}}\n"


def location_gid(value: Any) -> str:
    """A Shopify location id as its gid ("123" and "gid://shopify/Location/123" are the same)."""
    text = str(value).strip()
    return text if text.startswith("gid://") else f"gid://shopify/Location/{text}"


def idempotency_key(external_id: str, attempt: int) -> str:
    return str(uuid.uuid5(KEY_NAMESPACE, f"{external_id}#{attempt}"))


def reference_uri(external_id: str) -> str:
    return f"gid://cyclecount/Batch/{external_id}"


@dataclass
class _Attempt:
    """What was (or is about to be) sent for a batch: kept so a re-send is an exact replay."""

    number: int
    key: str
    input: dict[str, Any] | None = None
    probe: bool = False
    stale_rounds: int = 0


def _whole(value: Decimal, what: str) -> int:
    if value != value.to_integral_value():
        raise PermanentBackendError(f"Shopify counts whole units; {what} is {value}", code="FRACTIONAL_QUANTITY")
    return int(value)


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise PermanentBackendError(f"Shopify returned {value!r} where a number was expected") from None


class ShopifyBackend:
    max_batch_lines = MAX_BATCH_LINES
    maps_by_code = False

    def __init__(
        self,
        *,
        client: ShopifyClient,
        location_ids: tuple[str, ...] = (),
        moved_stock_policy: str = KEEP_DIFFERENCE,
        concurrency: int = 1,
    ) -> None:
        self.client = client
        self.location_ids = tuple(location_gid(value) for value in location_ids)
        self.moved_stock_policy = moved_stock_policy
        self.concurrency = concurrency
        # Per batch external id, the attempt in progress (for this process's drain only).
        self._attempts: dict[str, _Attempt] = {}

    # --- reads ------------------------------------------------------------------------
    def _pages(self, query: str, path: tuple[str, ...], variables: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            data: Any = self.client.query(query, {**variables, "after": after})
            for name in path:
                data = data.get(name) if isinstance(data, dict) else None
                if data is None:
                    return
            yield from data.get("nodes") or []
            page = data.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return
            after = page.get("endCursor")

    def _locations(self) -> list[RemoteLocation]:
        found = [
            RemoteLocation(external_id=node["id"], name=node.get("name") or node["id"], active=bool(node["isActive"]))
            for node in self._pages(LOCATIONS_QUERY, ("locations",), {})
        ]
        if not self.location_ids:
            return found
        known = {location.external_id for location in found}
        missing = [gid for gid in self.location_ids if gid not in known]
        if missing:
            raise PermanentBackendError(
                f"the connection's location_ids name locations the shop does not have: {', '.join(missing)}",
                code="UNKNOWN_LOCATION",
            )
        chosen = set(self.location_ids)
        return [location for location in found if location.external_id in chosen]

    def fetch_locations(self) -> Iterator[RemoteLocation]:
        yield from self._locations()

    def fetch_items(self) -> Iterator[RemoteItem]:
        for node in self._pages(ITEMS_QUERY, ("inventoryItems",), {}):
            sku = (node.get("sku") or "").strip()
            if not sku:
                continue
            variant = node.get("variant") or {}
            cost = (node.get("unitCost") or {}).get("amount")
            yield RemoteItem(
                external_id=node["id"],
                sku=sku,
                name=variant.get("displayName") or sku,
                barcode=(variant.get("barcode") or "").strip(),
                average_cost=_decimal(cost),
                active=bool(node.get("tracked", True)),
            )

    def fetch_balances(self) -> Iterator[RemoteBalance]:
        for location in self._locations():
            if not location.active:
                continue
            nodes = self._pages(LEVELS_QUERY, ("location", "inventoryLevels"), {"location": location.external_id})
            for node in nodes:
                quantities = {entry["name"]: Decimal(entry["quantity"]) for entry in node["quantities"]}
                yield RemoteBalance(
                    item_external_id=node["item"]["id"],
                    location_external_id=location.external_id,
                    on_hand=quantities["on_hand"],
                    reserved=max(quantities["committed"] + quantities["reserved"], Decimal("0")),
                )

    def _available(self, location_id: str, item_ids: list[str]) -> dict[str, int]:
        """Available now for each item at the location; an item not stocked there is refused."""
        found: dict[str, int] = {}
        for start in range(0, len(item_ids), MAX_BATCH_LINES):
            chunk = item_ids[start : start + MAX_BATCH_LINES]
            variables = {"location": location_id} | {f"i{index}": item for index, item in enumerate(chunk)}
            data = self.client.query(available_query(len(chunk)), variables)
            location = data.get("location")
            if location is None:
                raise PermanentBackendError(f"Shopify has no location {location_id}", code="INVALID_LOCATION")
            for index, item in enumerate(chunk):
                level = location.get(f"i{index}")
                if level is None:
                    raise PermanentBackendError(
                        f"inventory item {item} is not stocked at location {location_id} in Shopify; "
                        "stock it there, then retry",
                        code="ITEM_NOT_STOCKED_AT_LOCATION",
                    )
                found[item] = int(level["quantities"][0]["quantity"])
        return found

    # --- writes -----------------------------------------------------------------------
    @staticmethod
    def _changes(batch: AdjustmentBatch) -> dict[tuple[str, str], int]:
        """(item, location) → whole delta; lines for the same pair are one change (Shopify
        compares every change with the quantity before the whole adjustment)."""
        if len(batch.lines) > MAX_BATCH_LINES:
            raise PermanentBackendError(f"{len(batch.lines)} lines; Shopify takes at most {MAX_BATCH_LINES} changes")
        changes: dict[tuple[str, str], int] = {}
        for line in batch.lines:
            pair = (line.item_external_id, line.location_external_id)
            changes[pair] = changes.get(pair, 0) + _whole(line.delta, f"the delta of {line.item_external_id}")
        return {pair: delta for pair, delta in changes.items() if delta != 0}

    def _input(
        self, batch: AdjustmentBatch, changes: dict[tuple[str, str], int], change_from: dict[tuple[str, str], int]
    ) -> dict[str, Any]:
        return {
            "name": QUANTITY_NAME,
            "reason": REASON,
            "referenceDocumentUri": reference_uri(batch.external_id),
            "changes": [
                {
                    "inventoryItemId": item,
                    "locationId": location,
                    "delta": delta,
                    "changeFromQuantity": change_from[(item, location)],
                }
                for (item, location), delta in changes.items()
            ],
        }

    def _now(self, changes: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        by_location: dict[str, list[str]] = {}
        for item, location in changes:
            by_location.setdefault(location, []).append(item)
        now: dict[tuple[str, str], int] = {}
        for location, items in by_location.items():
            now.update({(item, location): quantity for item, quantity in self._available(location, items).items()})
        return now

    def push_adjustments(self, batch: AdjustmentBatch) -> PushReceipt:
        changes = self._changes(batch)
        if not changes:
            return PushReceipt(record_id=f"{batch.external_id}: the deltas cancel out; nothing sent")
        attempt = self._attempts.get(batch.external_id) or _Attempt(0, idempotency_key(batch.external_id, 0))
        while True:
            # Remembered before anything is sent: a failure from here on leaves it for the
            # next call, which replays it (or, with no input yet, reads quantities afresh).
            self._attempts[batch.external_id] = attempt
            if attempt.input is None:
                attempt.input = self._input(batch, changes, self._now(changes))
            data = self.client.mutate(ADJUST_MUTATION, {"input": attempt.input, "key": attempt.key})
            payload = data.get("inventoryAdjustQuantities") or {}
            group = payload.get("inventoryAdjustmentGroup")
            if group and group.get("id"):
                del self._attempts[batch.external_id]
                return PushReceipt(record_id=str(group["id"]), duplicate=attempt.probe)
            errors = payload.get("userErrors") or []
            codes = {str(error.get("code")) for error in errors}
            if not errors:
                del self._attempts[batch.external_id]
                raise PermanentBackendError("Shopify answered without an adjustment group or an error")
            attempt = self._next(batch, changes, attempt, codes, errors)

    def _next(
        self,
        batch: AdjustmentBatch,
        changes: dict[tuple[str, str], int],
        attempt: _Attempt,
        codes: set[str],
        errors: list[dict[str, Any]],
    ) -> _Attempt:
        """The attempt to send after Shopify refused `attempt` (nothing applied), or raise."""
        external_id = batch.external_id
        if "IDEMPOTENCY_CONCURRENT_REQUEST" in codes:
            raise TransientBackendError("Shopify is still running an earlier request for this batch", retry_after=1.0)
        if "IDEMPOTENCY_KEY_PARAMETER_MISMATCH" in codes:
            if attempt.probe:
                del self._attempts[external_id]
                raise PermanentBackendError(
                    f"Shopify has a request for batch {external_id} (idempotency key {attempt.key}) that this "
                    "process did not send and cannot match, as stock moved since: check the location's inventory "
                    f"history for {reference_uri(external_id)} and close or retry the batch",
                    code="OUTCOME_UNPROVABLE",
                )
            now = self._now(changes)
            landed = {pair: now[pair] - delta for pair, delta in changes.items()}
            return _Attempt(attempt.number, attempt.key, self._input(batch, changes, landed), probe=True)
        if "CHANGE_FROM_QUANTITY_STALE" in codes:
            if self.moved_stock_policy != KEEP_DIFFERENCE:
                del self._attempts[external_id]
                raise PermanentBackendError(
                    f"stock moved in Shopify since it was read ({_describe(errors)}); the moved-stock policy "
                    f"{self.moved_stock_policy} asks a person to "
                    + ("recount" if self.moved_stock_policy == REQUIRE_RECOUNT else "re-approve against the count"),
                    code="STOCK_MOVED",
                )
            following = _Attempt(
                attempt.number + 1,
                idempotency_key(external_id, attempt.number + 1),
                stale_rounds=attempt.stale_rounds + 1,
            )
            if following.stale_rounds > STALE_RETRIES:
                self._attempts[external_id] = following
                raise TransientBackendError("stock at the location keeps moving in Shopify; the batch waits")
            return following
        if codes & {"SERVICE_UNAVAILABLE", "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"}:
            # Refused as a whole with nothing applied; the key is spent, the next attempt reads afresh.
            self._attempts[external_id] = _Attempt(attempt.number + 1, idempotency_key(external_id, attempt.number + 1))
            raise TransientBackendError(f"Shopify could not adjust now: {_describe(errors)}")
        del self._attempts[external_id]
        code = sorted(codes)[0] if codes else "USER_ERROR"
        raise PermanentBackendError(f"Shopify refused the adjustment: {_describe(errors)}", code=code)

    def find_batch(self, external_id: str) -> PushReceipt | None:
        """Always None: Shopify cannot be asked for an adjustment by our id. The re-send that
        follows is the lookup — an idempotent replay of what was sent (see the module notes)."""
        return None


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("field") or [])
        parts.append(f"{error.get('code')}: {error.get('message')}" + (f" at {where}" if where else ""))
    return "; ".join(parts)
