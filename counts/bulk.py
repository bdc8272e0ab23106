"""Fast multi-row writes for the capture hot path (portable: PostgreSQL and SQLite).

Django's bulk_create prepares every value of every row through the field machinery, which
dominates the cost of a 1,000-scan batch. Counting tables have no history and no signals, so
the rows go out as multi-row INSERT statements after adapting only the types the backend cannot
take as they are.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models
from django.db.backends.utils import CursorWrapper

MAX_PARAMETERS = 30_000


def _adapt(value: Any) -> Any:
    if isinstance(value, uuid.UUID) and not connection.features.has_native_uuid_field:
        return value.hex
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def adapt(value: Any) -> Any:
    """A Python value as the current database backend takes it in raw SQL."""
    return _adapt(value)


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    conflict_columns: Sequence[str] = (),
    update_columns: Sequence[str] = (),
    returning: str = "",
    cursor: CursorWrapper | None = None,
) -> list[Any]:
    """INSERT the rows; on a conflict on `conflict_columns` update `update_columns`, or skip the row.

    With `returning`, the value of that column for each row actually inserted or updated (both
    PostgreSQL and SQLite ≥ 3.35 support RETURNING); skipped rows return nothing. Through
    `cursor` when given (a caller's prepared cursor, say), else the connection's own.
    """
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    column_list = ", ".join(quote(column) for column in columns)
    row_placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    suffix = ""
    if conflict_columns:
        target = ", ".join(quote(column) for column in conflict_columns)
        if update_columns:
            assignments = ", ".join(f"{quote(column)} = excluded.{quote(column)}" for column in update_columns)
            suffix = f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"
        else:
            suffix = f" ON CONFLICT ({target}) DO NOTHING"
    if returning:
        suffix += f" RETURNING {quote(returning)}"
    adapted = [[_adapt(value) for value in row] for row in rows]
    returned: list[Any] = []
    # Stay well under SQLite's limit of 32,766 parameters per statement.
    rows_per_statement = max(1, MAX_PARAMETERS // len(columns))
    with contextlib.nullcontext(cursor) if cursor is not None else connection.cursor() as writing:
        for start in range(0, len(adapted), rows_per_statement):
            chunk = adapted[start : start + rows_per_statement]
            values = ", ".join([row_placeholder] * len(chunk))
            sql = f"INSERT INTO {table} ({column_list}) VALUES {values}{suffix}"  # noqa: S608 - names are ours
            writing.execute(sql, [value for row in chunk for value in row])
            if returning:
                returned.extend(row[0] for row in writing.fetchall())
    return returned
