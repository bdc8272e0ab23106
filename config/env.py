"""Typed readers for the 12-factor environment.

Every reader names the variable in its error so a bad deployment stops with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
BROKER_SCHEMES = {"filesystem", "redis", "rediss", "amqp", "pyamqp", "memory"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}


class ConfigurationError(ImproperlyConfigured):
    """A setting taken from the environment is missing or malformed."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def _check_url(name: str, value: str, schemes: set[str]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ConfigurationError(f"{name} has scheme {scheme!r}; expected one of: {allowed}")
    return value


# psycopg prepares a statement once it has run this many times: never, in practice.
PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


def env_database(name: str, default_sqlite_path: Path) -> dict[str, Any]:
    raw = env_str(name)
    if not raw:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(default_sqlite_path),
            # WAL + IMMEDIATE let web, worker and beat share one file without "database is locked".
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    _check_url(name, raw, DATABASE_SCHEMES)
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except Exception as error:  # dj-database-url raises several types for bad URLs
        raise ConfigurationError(f"{name} could not be parsed: {error}") from None
    if not config.get("NAME"):
        raise ConfigurationError(f"{name} names no database")
    if config["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_PREPARED_STATEMENTS", True):
        # Django switches psycopg's prepared statements off; this lets the few statements that
        # ask for it be prepared (config.prepared) and still prepares none by count of use.
        # Off behind a transaction-pooling proxy that can't keep prepared statements.
        config.setdefault("OPTIONS", {})["prepare_threshold"] = PREPARE_ONLY_WHEN_ASKED
    return config


def env_url(name: str, default: str | None, schemes: set[str]) -> str | None:
    raw = env_str(name)
    if not raw:
        return default
    return _check_url(name, raw, schemes)
