"""Prepared statements for the few queries every scan makes (PostgreSQL).

Django binds parameters on the client, so PostgreSQL parses and plans every statement anew.
For the short queries of a single scan (the token, the session's lock, the lookups, the tally
and line upserts) planning was about half the database's time per request. A block that reads
or writes through `prepared_cursor()` has its parameters bound by the server, and each of its
statements is prepared on its first use on a connection; later uses skip parsing and planning.

Only for small statements of a fixed shape that run all day: psycopg keeps one prepared
statement per statement text on each connection (the least used are dropped past its
`prepared_max`), so a batch whose SQL grows with its size uses the ordinary cursor. The SQL
must give PostgreSQL each parameter's type from its context or the value's own type (an
untyped `%s IS NULL` does not prepare). On SQLite it is the ordinary cursor.

Errors are Django's (`OperationalError`, …) and the queries show in Django's query log, as
with `connection.cursor()`.
"""

from __future__ import annotations

import weakref
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


def prepared_cursor() -> CursorWrapper:
    """A cursor on the default connection whose statements are prepared on the server."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return db.cursor()
    # What `connection.cursor()` does before it creates a cursor.
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        raw = _preparing_cursor_class()(db.connection)
        _match_connection_time_zone(db, raw)
        db.validate_thread_sharing()
        if db.queries_logged:
            return _PreparedDebugCursor(raw, db)
        return db.make_cursor(raw)


class _PreparedDebugCursor(CursorDebugWrapper):
    """Logs each statement with its values, as Django's debug cursor does for its own cursors.

    Django reads the logged SQL back from the driver, which keeps none for a prepared statement.
    """

    def execute(self, sql: str, params: Any = None) -> Any:
        shown = self.db.ops.compose_sql(sql, params) if params else sql
        with self.debug_sql(shown):
            return CursorWrapper.execute(self, sql, params)


_cursor_class: type | None = None


def _preparing_cursor_class() -> type:
    # Imported on first use: psycopg is only needed when the database is PostgreSQL.
    global _cursor_class
    if _cursor_class is None:
        from django.db.backends.postgresql.base import ServerBindingCursor

        class PreparingCursor(ServerBindingCursor):
            def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any) -> Any:
                return super().execute(query, params, prepare=True, **kwargs)

        _cursor_class = PreparingCursor
    return _cursor_class


# The time zone each open connection was checked against (Django's own cursors check it on
# every cursor; once per connection and zone is enough).
_zone_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _match_connection_time_zone(db: Any, cursor: Any) -> None:
    """Read timestamps in the connection's zone, as Django's own cursors do."""
    if _zone_checked.get(db.connection) == db.timezone:
        return
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.postgres import types
    from psycopg.pq import Format

    loader = db.connection.adapters.get_loader(types["timestamptz"].oid, Format.TEXT)
    if db.timezone != loader.timezone:
        register_tzloader(db.timezone, cursor)
    else:
        _zone_checked[db.connection] = db.timezone
