"""Connection secrets at rest: a Fernet token of the JSON object, keyed from the environment.

`CYCLECOUNT_SECRETS_KEYS` lists Fernet keys; the first encrypts and all decrypt, so a key is
rotated by prepending the new one and re-saving connections. Plain values never reach logs,
history or the admin once saved.
"""

from __future__ import annotations

import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnreadable(Exception):
    """The stored secrets do not decrypt with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def secrets_encrypt(values: dict[str, str]) -> str:
    """The Fernet token (text) of `values`; empty input gives an empty string."""
    if not values:
        return ""
    token = _fernet(tuple(settings.CONNECTION_SECRETS_KEYS)).encrypt(json.dumps(values, sort_keys=True).encode())
    return token.decode()


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_fernet(tuple(settings.CONNECTION_SECRETS_KEYS)).decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadable(
            "connection secrets do not decrypt with CYCLECOUNT_SECRETS_KEYS; re-enter them or restore the key"
        ) from None


def mask(value: str) -> str:
    """What an admin may see of a secret: its length class and last two characters."""
    if not value:
        return ""
    return "•" * 8 + value[-2:] if len(value) > 8 else "•" * 8
