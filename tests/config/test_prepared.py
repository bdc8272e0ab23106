"""config.prepared: statements prepared on the server, with Django's errors and query log."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from config import env
from config.prepared import prepared_cursor


def _is_prepared(sql_start: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [sql_start + "%"])
        return cursor.fetchone()[0] == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_statement_is_prepared_on_first_use_and_reused():
    sql = "SELECT %s::int + 1 AS prepared_probe"
    for value in (1, 2, 3):
        with prepared_cursor() as cursor:
            cursor.execute(sql, [value])
            assert cursor.fetchone() == (value + 1,)
    assert _is_prepared("SELECT $1::int + 1 AS prepared_probe")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_ordinary_cursor_prepares_nothing():
    with connection.cursor() as cursor:
        for _ in range(10):
            cursor.execute("SELECT %s::int AS unprepared_probe", [1])
    assert not _is_prepared("SELECT $1::int AS unprepared_probe")


@pytest.mark.django_db
def test_errors_are_djangos_and_the_query_log_shows_values():
    with CaptureQueriesContext(connection) as captured, prepared_cursor() as cursor:
        cursor.execute("SELECT %s AS logged_probe", ["scan-42"])
    assert "'scan-42'" in captured.captured_queries[-1]["sql"]

    with pytest.raises(DatabaseError), prepared_cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM counts_countevent")


def test_prepared_statements_can_be_turned_off_for_a_pooling_proxy(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://cc@db:5432/cyclecount")
    monkeypatch.delenv("DATABASE_PREPARED_STATEMENTS", raising=False)
    assert env.env_database("DATABASE_URL", default_sqlite_path=None)["OPTIONS"]["prepare_threshold"] > 10**9

    monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", "false")
    options = env.env_database("DATABASE_URL", default_sqlite_path=None).get("OPTIONS", {})
    assert "prepare_threshold" not in options  # Django's default: psycopg prepares nothing

    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/cyclecount.sqlite3")
    monkeypatch.delenv("DATABASE_PREPARED_STATEMENTS")
    assert "prepare_threshold" not in env.env_database("DATABASE_URL", default_sqlite_path=None).get("OPTIONS", {})
