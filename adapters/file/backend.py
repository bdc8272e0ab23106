"""The file backend: for systems of record without an API, and the embedded default.

Pushing a batch exports it (the CSV is rendered from the batch on download, so it is the same
file every time); a person imports it into the ERP and marks the batch imported. On-hand comes
from an uploaded CSV snapshot (see adapters.file.snapshots) instead of an API.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from adapters.file.layouts import LAYOUTS
from adapters.interface import AdjustmentBatch, PushReceipt, RemoteBalance, RemoteItem, RemoteLocation


@dataclass(frozen=True)
class OnHandRow:
    """One validated row of an on-hand file: a known item (by SKU) at a known location (by code)."""

    sku: str
    location_code: str
    on_hand: Decimal
    reserved: Decimal
    unit_cost: Decimal | None


# The rows of the on-hand file being applied, for the sync that runs inside the apply. Outside
# it a file backend has nothing to read (an API would be asked again; a file cannot be).
_applying: ContextVar[tuple[OnHandRow, ...]] = ContextVar("file_backend_onhand_rows", default=())


@contextmanager
def onhand_rows_applying(rows: Sequence[OnHandRow]) -> Iterator[None]:
    """Make file backends read `rows` for the block (see adapters.file.snapshots)."""
    token = _applying.set(tuple(rows))
    try:
        yield
    finally:
        _applying.reset(token)


class FileBackend:
    # One file per location, as big as an import comfortably takes.
    max_batch_lines = 5000
    concurrency = 1
    maps_by_code = True

    def __init__(self, *, layout: str, settings: dict[str, Any]) -> None:
        self.layout = layout
        self.settings = settings

    # Items are known by SKU and locations by code, so those are the external ids.
    def fetch_locations(self) -> Iterator[RemoteLocation]:
        for code in dict.fromkeys(row.location_code for row in _applying.get()):
            yield RemoteLocation(external_id=code, name=code)

    def fetch_items(self) -> Iterator[RemoteItem]:
        costs: dict[str, Decimal | None] = {}
        for row in _applying.get():
            if costs.get(row.sku) is None:
                costs[row.sku] = row.unit_cost  # a blank cost leaves the item's average cost alone
        for sku, cost in costs.items():
            yield RemoteItem(external_id=sku, sku=sku, average_cost=cost)

    def fetch_balances(self) -> Iterator[RemoteBalance]:
        for row in _applying.get():
            yield RemoteBalance(
                item_external_id=row.sku,
                location_external_id=row.location_code,
                on_hand=row.on_hand,
                reserved=row.reserved,
            )

    def push_adjustments(self, batch: AdjustmentBatch) -> PushReceipt:
        return PushReceipt(record_id=f"{batch.external_id}.csv", awaiting_confirmation=True)

    def find_batch(self, external_id: str) -> PushReceipt | None:
        # A file reaches the ERP only through a person; until marked imported it is not there.
        return None


def validate_settings(values: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if values.get("layout", "netsuite") not in LAYOUTS:
        errors["layout"] = f"one of: {', '.join(LAYOUTS)}"
    return errors
