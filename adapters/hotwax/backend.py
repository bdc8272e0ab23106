"""HotWax Commerce OMS as an InventoryBackend: ProductFacility inventory reads, variance writes.

Mapping. Each configured facility (`facility_ids`) is a top-level RemoteLocation: sync makes it
one facility and one mirror location (zone MAIN). Items are HotWax products by productId. The
inventory list carries nothing but productId, facilityId, availableToPromise, quantityOnHand
and locationSeqId — no SKU — and the Update Inventory API identifies a product only by a good
identification (SKU, UPCA or SHOPIFY_PROD_ID), never by productId. The adapter therefore
uses the productId as the item's SKU in the mirror and as the SKU identification when it
writes: right for OMS instances whose product ids are the SKUs (products loaded from an ERP
keyed by SKU). Where they differ HotWax answers "No product found with SKU identification …",
the batch is refused and nothing changes. Reading the identifications needs a product
resource neither HotWax's integration docs nor our fake serve yet. On hand is
`quantityOnHand`; reserved is `quantityOnHand − availableToPromise` (never negative). Items
and balances each page through the facilities' lists (two passes; nothing is cached between
calls).

Writes. `updateInventoryByIdentification` logs one variance for one product at one facility:
`availableDelta` moves on hand and ATP together. Reason: `varianceReasonId` MISMATCH (HotWax's
documented reason for a count that does not match the books; the setting
`variance_reason_id` may pick another documented reason). `locationSeqId` is the product's
location in the facility as the inventory row names it, else the setting `location_seq_id`.

Exactly once, with no idempotency. HotWax applies every POST it receives, and has no lookup by
our id. So one batch is one line (max_batch_lines = 1, one POST), and:

1. Before the POST the line's on hand is read (`before`).
2. An answer that proves nothing happened (400/401/404/429, the load balancer's 503, a
   connection never made) is a refusal; the drain may send again — after a new read.
3. Any other failure after the request may have reached the OMS (the connection dropped, a
   read timeout, a 5xx other than the edge's 503, a garbled 200) is OutcomeUnknown. The
   drain then asks `find_batch`, which reads the on hand back: exactly `before + delta`
   means it was applied (accepted, marked found); anything else cannot be proven — the
   request may still commit, or another movement may hide it — so the batch is refused as
   OUTCOME_UNPROVABLE naming the item, facility, delta and both quantities, for a person.
   Nothing is ever re-sent after a lost answer.
4. A batch whose outcome is unknown from an earlier drain (its answer was lost, or the worker
   died while it was out — the drain keeps that as PushBatch.outcome_unknown) has no `before`
   in this process to compare with: `find_batch` answers None and the following
   `push_adjustments` refuses it as OUTCOME_UNPROVABLE with the line's details, without
   sending. A person checks HotWax and retries or closes it. A batch an earlier drain only
   ever saw refused outright (an outage, an expired token) is not in doubt and simply goes
   out again.

The read-back's residual risk is a coincidence: another movement of exactly −delta in the
seconds between the send and the read-back would make an applied variance look unapplied (a
person is asked, nothing is doubled), and one of exactly +delta would make an unapplied one
look applied — the next sync's parity check shows that as a drift. Concurrency is 1 so our own
lines never overlap on the same product while one is being read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.hotwax.client import HotWaxClient
from adapters.interface import (
    AdjustmentBatch,
    AdjustmentLine,
    PermanentBackendError,
    PushReceipt,
    RemoteBalance,
    RemoteItem,
    RemoteLocation,
    TransientBackendError,
)

ID_TYPE = "SKU"
DEFAULT_VARIANCE_REASON = "MISMATCH"
# "Table of valid variance reasons and their IDs" (HotWax Update Inventory API).
VARIANCE_REASONS = (
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
)
DEFAULT_LOCATION_SEQ_ID = "TLTLTLLL01"  # the facility location in HotWax's documented examples


def _decimal(value: Any) -> Decimal:
    if value in (None, ""):
        return Decimal("0")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise PermanentBackendError(f"HotWax returned {value!r} where a number was expected") from None


def _number(value: Decimal) -> int | str:
    """A delta for JSON: an integer as a number, anything else as its exact decimal text."""
    return int(value) if value == value.to_integral_value() else format(value.normalize(), "f")


@dataclass(frozen=True)
class _Sent:
    """A POST whose answer was lost, with what the read-back compares against."""

    product_id: str
    facility_id: str
    delta: Decimal
    before: Decimal


class HotWaxBackend:
    max_batch_lines = 1
    maps_by_code = False
    # One line at a time, so a read-back never sees another of our own lines on the same product.
    concurrency = 1

    def __init__(
        self,
        *,
        client: HotWaxClient,
        facility_ids: tuple[str, ...],
        variance_reason_id: str = DEFAULT_VARIANCE_REASON,
        location_seq_id: str = DEFAULT_LOCATION_SEQ_ID,
    ) -> None:
        self.client = client
        self.facility_ids = facility_ids
        self.variance_reason_id = variance_reason_id
        self.location_seq_id = location_seq_id
        # Batches this process sent whose answer was lost (external id → what was sent).
        self._lost: dict[str, _Sent] = {}
        # Batches the drain looked up that this process never sent: not to be sent blind.
        self._unknown_history: set[str] = set()

    # --- reads ------------------------------------------------------------------------
    def fetch_locations(self) -> Iterator[RemoteLocation]:
        for facility_id in self.facility_ids:
            yield RemoteLocation(external_id=facility_id, name=facility_id)

    def fetch_items(self) -> Iterator[RemoteItem]:
        seen: set[str] = set()
        for facility_id in self.facility_ids:
            for row in self.client.inventory(facility_id=facility_id):
                product_id = str(row["productId"])
                if product_id not in seen:
                    seen.add(product_id)
                    yield RemoteItem(external_id=product_id, sku=product_id, name=product_id)

    def fetch_balances(self) -> Iterator[RemoteBalance]:
        for facility_id in self.facility_ids:
            for row in self.client.inventory(facility_id=facility_id):
                on_hand = _decimal(row.get("quantityOnHand"))
                available = _decimal(row.get("availableToPromise"))
                yield RemoteBalance(
                    item_external_id=str(row["productId"]),
                    location_external_id=facility_id,
                    on_hand=on_hand,
                    reserved=max(on_hand - available, Decimal("0")),
                )

    def _row(self, product_id: str, facility_id: str) -> dict[str, Any] | None:
        rows = [
            row
            for row in self.client.inventory(facility_id=facility_id, product_id=product_id)
            if str(row.get("productId")) == product_id
        ]
        return rows[0] if rows else None

    def _on_hand(self, product_id: str, facility_id: str) -> Decimal:
        row = self._row(product_id, facility_id)
        return _decimal(row.get("quantityOnHand")) if row else Decimal("0")

    # --- writes -----------------------------------------------------------------------
    def push_adjustments(self, batch: AdjustmentBatch) -> PushReceipt:
        if len(batch.lines) != 1:
            raise PermanentBackendError(f"{len(batch.lines)} lines; HotWax batches hold exactly one line")
        line = batch.lines[0]
        facility_id = line.location_external_id
        if batch.external_id in self._lost or batch.external_id in self._unknown_history:
            # Never sent blind: an earlier send may have been applied.
            before = self._on_hand(line.item_external_id, facility_id)
            raise PermanentBackendError(_unprovable(batch.external_id, line, before, None), code="OUTCOME_UNPROVABLE")
        row = self._row(line.item_external_id, facility_id)
        before = _decimal(row.get("quantityOnHand")) if row else Decimal("0")
        body = {
            "facilityId": facility_id,
            "availableDelta": _number(line.delta),
            "idType": ID_TYPE,
            "idValue": line.item_external_id,
            "locationSeqId": str((row or {}).get("locationSeqId") or self.location_seq_id),
            "varianceReasonId": self.variance_reason_id,
        }
        # Remembered before the POST: if its answer is lost, find_batch compares against it.
        self._lost[batch.external_id] = _Sent(line.item_external_id, facility_id, line.delta, before)
        try:
            self.client.update_inventory(body)
        except (TransientBackendError, PermanentBackendError):
            # A proven refusal (nothing happened): a later send reads afresh. OutcomeUnknown
            # keeps the memory for find_batch.
            del self._lost[batch.external_id]
            raise
        del self._lost[batch.external_id]
        return PushReceipt(record_id=_record_id(facility_id, line))

    def find_batch(self, external_id: str) -> PushReceipt | None:
        """Read back a batch whose answer this process lost; see the module notes.

        For a batch this process never sent, None — and `push_adjustments` then refuses to
        send it blind (it knows the line, so it can say what a person should check).
        """
        sent = self._lost.get(external_id)
        if sent is None:
            self._unknown_history.add(external_id)
            return None
        now = self._on_hand(sent.product_id, sent.facility_id)  # a failed read leaves it in doubt
        del self._lost[external_id]
        line = AdjustmentLine(sent.product_id, sent.facility_id, sent.delta)
        if now == sent.before + sent.delta:
            return PushReceipt(record_id=_record_id(sent.facility_id, line), duplicate=True)
        raise PermanentBackendError(_unprovable(external_id, line, sent.before, now), code="OUTCOME_UNPROVABLE")


def _text(quantity: Decimal, *, sign: bool = False) -> str:
    """A quantity as people write it: 100, not 100.000000 or 1E+2."""
    text = format(quantity.normalize(), "f")
    return f"+{text}" if sign and quantity > 0 else text


def _record_id(facility_id: str, line: AdjustmentLine) -> str:
    return f"variance {line.item_external_id}@{facility_id} {_text(line.delta, sign=True)}"[:128]


def _unprovable(external_id: str, line: AdjustmentLine, before: Decimal, now: Decimal | None) -> str:
    where = f"product {line.item_external_id} at facility {line.location_external_id}"
    if now is None:
        seen = f"its on hand is {_text(before)} now, and what it was before that send is unknown"
    else:
        seen = (
            f"its on hand was {_text(before)} before the send and is {_text(now)} now "
            f"(applied would be {_text(before + line.delta)})"
        )
    return (
        f"HotWax cannot tell whether batch {external_id} ({where}, delta {_text(line.delta, sign=True)}) "
        f"was applied: {seen}. "
        "Check the product's variance log in HotWax, then retry the batch if it is missing or close it if it landed"
    )
