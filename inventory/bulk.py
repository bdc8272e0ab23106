"""Set many rows to per-row values in one statement (PostgreSQL and SQLite).

Django's `bulk_update` writes one `CASE WHEN pk = … THEN …` per field, which PostgreSQL plans
in time that grows with the square of the batch: 500 rows took seconds. A VALUES list joined
on the primary key costs one pass. Callers that need history write it themselves with
`Model.history.bulk_history_create` — the rows are the same instances.

It lives here, in the leftmost app that writes in bulk, so every app to its right may use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models

BATCH = 1000


def update_rows(model: type[models.Model], objects: Sequence[models.Model], fields: Sequence[str]) -> int:
    """UPDATE each object's row to its current values of `fields`; returns the rows updated."""
    if not objects:
        return 0
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_column = quote(model._meta.pk.column)
    columns = [model._meta.get_field(name) for name in fields]
    on_postgres = connection.vendor == "postgresql"

    def slot(field: models.Field) -> str:
        # PostgreSQL types a VALUES list from its first row's parameters; say what they are.
        return f"CAST(%s AS {field.db_type(connection)})" if on_postgres else "%s"

    row_template = "(" + ", ".join([slot(model._meta.pk), *(slot(field) for field in columns)]) + ")"
    names = ", ".join(quote(field.column) for field in columns)
    assignments = ", ".join(f"{quote(field.column)} = v.{quote(field.column)}" for field in columns)
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(objects), BATCH):
            chunk = objects[start : start + BATCH]
            params: list[object] = []
            for obj in chunk:
                params.append(obj.pk)
                params.extend(field.get_db_prep_save(getattr(obj, field.attname), connection) for field in columns)
            cursor.execute(
                f"WITH v(pk_, {names}) AS (VALUES {', '.join([row_template] * len(chunk))}) "  # noqa: S608
                f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{pk_column} = v.pk_",
                params,
            )
            updated += cursor.rowcount
    return updated
