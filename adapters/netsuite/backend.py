"""NetSuite as an InventoryBackend: reads through SuiteQL, writes through our RESTlet.

The RESTlet (suitescript/cc_adjust.js, deployed as customscript_cc_adjust) creates one
inventory adjustment per batch, keyed by the batch's external id, and answers a repeated
external id with the record it already made — so a re-sent batch never adjusts twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.interface import (
    AdjustmentBatch,
    OutcomeUnknown,
    PermanentBackendError,
    PushReceipt,
    RemoteBalance,
    RemoteItem,
    RemoteLocation,
    TransientBackendError,
)
from adapters.netsuite.client import TRANSIENT_CODES, NetSuiteClient

# Our RESTlet refuses more; we stay well inside it and inside NetSuite's governance per call.
MAX_BATCH_LINES = 500

LOCATIONS_QUERY = "SELECT id, name, parent, isinactive FROM location ORDER BY id"
ITEMS_QUERY = "SELECT id, itemid, upccode, averagecost, isinactive FROM item WHERE itemtype = 'InvtPart' ORDER BY id"
BALANCES_QUERY = (
    "SELECT item, location, quantityonhand, quantitycommitted FROM aggregateItemLocation ORDER BY item, location"
)


def _decimal(value: Any, default: Decimal | None = Decimal("0")) -> Decimal | None:
    # SuiteQL returns every value as a string and leaves empty fields out.
    if value in (None, ""):
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise PermanentBackendError(f"NetSuite returned {value!r} where a number was expected") from None


class NetSuiteBackend:
    max_batch_lines = MAX_BATCH_LINES
    maps_by_code = False

    def __init__(self, *, client: NetSuiteClient, subsidiary_id: str, adjustment_account_id: str, concurrency: int):
        self.client = client
        self.subsidiary_id = subsidiary_id
        self.adjustment_account_id = adjustment_account_id
        self.concurrency = concurrency

    # --- reads ------------------------------------------------------------------------
    def fetch_locations(self) -> Iterator[RemoteLocation]:
        for row in self.client.suiteql(LOCATIONS_QUERY):
            yield RemoteLocation(
                external_id=str(row["id"]),
                name=str(row.get("name") or row["id"]),
                parent_external_id=str(row["parent"]) if row.get("parent") else None,
                active=row.get("isinactive", "F") != "T",
            )

    def fetch_items(self) -> Iterator[RemoteItem]:
        for row in self.client.suiteql(ITEMS_QUERY):
            yield RemoteItem(
                external_id=str(row["id"]),
                sku=str(row["itemid"]),
                name=str(row["itemid"]),
                barcode=str(row.get("upccode") or ""),
                average_cost=_decimal(row.get("averagecost"), default=None),
                active=row.get("isinactive", "F") != "T",
            )

    def fetch_balances(self) -> Iterator[RemoteBalance]:
        for row in self.client.suiteql(BALANCES_QUERY):
            yield RemoteBalance(
                item_external_id=str(row["item"]),
                location_external_id=str(row["location"]),
                on_hand=_decimal(row.get("quantityonhand")),
                reserved=max(_decimal(row.get("quantitycommitted")), Decimal("0")),
            )

    # --- writes -----------------------------------------------------------------------
    def restlet_body(self, batch: AdjustmentBatch) -> dict[str, Any]:
        return {
            "externalId": batch.external_id,
            "subsidiaryId": self.subsidiary_id,
            "accountId": self.adjustment_account_id,
            "locationId": batch.location_external_id,
            "tranDate": batch.tran_date.isoformat(),
            "memo": batch.memo,
            "lines": [
                {
                    "itemId": line.item_external_id,
                    "locationId": line.location_external_id,
                    # A string keeps the exact decimal; the RESTlet parses it.
                    "adjustQtyBy": str(line.delta),
                    "memo": line.memo,
                }
                for line in batch.lines
            ],
        }

    def push_adjustments(self, batch: AdjustmentBatch) -> PushReceipt:
        if len(batch.lines) > self.max_batch_lines:
            raise PermanentBackendError(f"{len(batch.lines)} lines; NetSuite batches hold at most {MAX_BATCH_LINES}")
        answer = self.client.restlet_post(self.restlet_body(batch))
        return self._receipt(answer, writing=True)

    def find_batch(self, external_id: str) -> PushReceipt | None:
        answer = self.client.restlet_get({"externalId": external_id})
        if not answer.get("ok") and (answer.get("error") or {}).get("code") == "RCRD_DSNT_EXIST":
            return None
        return self._receipt(answer, writing=False)

    @staticmethod
    def _receipt(answer: Any, *, writing: bool) -> PushReceipt:
        if not isinstance(answer, dict):
            raise OutcomeUnknown("the RESTlet answered something that is not an object")
        if answer.get("ok") is True and answer.get("id"):
            return PushReceipt(record_id=str(answer["id"]), duplicate=bool(answer.get("duplicate")))
        error = answer.get("error") or {}
        code, message = str(error.get("code", "")), str(error.get("message", "no message"))
        if code in TRANSIENT_CODES:
            raise TransientBackendError(f"NetSuite is busy ({code}): {message}")
        if answer.get("ok") is not False:
            if writing:
                raise OutcomeUnknown(f"the RESTlet answered without ok/id: {str(answer)[:200]}")
            raise TransientBackendError(f"the RESTlet answered without ok/id: {str(answer)[:200]}")
        raise PermanentBackendError(message, code=code)
