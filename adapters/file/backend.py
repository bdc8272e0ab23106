"""The file backend: for systems of record without an API, and the embedded default.

Pushing a batch exports it (the CSV is rendered from the batch on download, so it is the same
file every time); a person imports it into the ERP and marks the batch imported. On-hand comes
from an uploaded CSV snapshot (see adapters.file.snapshots) instead of an API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapters.file.layouts import LAYOUTS
from adapters.interface import AdjustmentBatch, PushReceipt, RemoteBalance, RemoteItem, RemoteLocation


class FileBackend:
    # One file per location, as big as an import comfortably takes.
    max_batch_lines = 5000
    concurrency = 1
    maps_by_code = True

    def __init__(self, *, layout: str, settings: dict[str, Any]) -> None:
        self.layout = layout
        self.settings = settings

    def fetch_locations(self) -> Iterator[RemoteLocation]:
        return iter(())

    def fetch_items(self) -> Iterator[RemoteItem]:
        return iter(())

    def fetch_balances(self) -> Iterator[RemoteBalance]:
        return iter(())

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
