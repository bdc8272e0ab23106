"""Adjustment files: a batch as CSV, in NetSuite's Import Assistant layout or a generic one."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from adapters.interface import AdjustmentBatch

NETSUITE_COLUMNS = [
    "External ID",
    "Subsidiary",
    "Date",
    "Adjustment Account",
    "Adjustment Location",
    "Memo",
    "Item",
    "Location",
    "Adjust Qty. By",
    "Est. Unit Cost",
    "Line Memo",
]
GENERIC_COLUMNS = ["batch_external_id", "date", "location", "sku", "adjust_by", "unit_cost", "memo", "line_memo"]
LAYOUTS = ("netsuite", "generic")


def _number(value: Decimal) -> str:
    # -3.000 → "-3", 2.500 → "2.5", never "1E+2".
    return format(value.normalize(), "f")


def batch_csv(batch: AdjustmentBatch, *, layout: str, settings: dict[str, Any]) -> str:
    """The batch as CSV text. In the NetSuite layout every line repeats the header fields, as the
    Import Assistant groups lines into one adjustment by External ID."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if layout == "netsuite":
        writer.writerow(NETSUITE_COLUMNS)
        date = batch.tran_date.strftime(settings.get("date_format") or "%m/%d/%Y")
        for line in batch.lines:
            writer.writerow(
                [
                    batch.external_id,
                    settings.get("subsidiary", ""),
                    date,
                    settings.get("adjustment_account", ""),
                    batch.location_external_id,
                    batch.memo,
                    line.item_external_id,
                    line.location_external_id,
                    _number(line.delta),
                    "" if line.unit_cost is None else line.unit_cost,
                    line.memo,
                ]
            )
    else:
        writer.writerow(GENERIC_COLUMNS)
        for line in batch.lines:
            writer.writerow(
                [
                    batch.external_id,
                    batch.tran_date.isoformat(),
                    line.location_external_id,
                    line.item_external_id,
                    _number(line.delta),
                    "" if line.unit_cost is None else line.unit_cost,
                    batch.memo,
                    line.memo,
                ]
            )
    return out.getvalue()
