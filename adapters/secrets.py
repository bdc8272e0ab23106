"""Connection secrets at rest: a Fernet token of the JSON object, keyed from the environment.

`CYCLECOUNT_SECRETS_KEYS` lists Fernet keys; the first encrypts and all decrypt, so a key is
rotated by prepending the new one and running `manage.py rotate_secrets_key` (which re-encrypts
every stored token with the first key). Plain values never reach logs, history or the admin
once saved; keys are named by their position and fingerprint, never printed.
"""

from __future__ import annotations

import hashlib
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


def secrets_key_generate() -> str:
    """A fresh Fernet key (text) for the operator to put first in CYCLECOUNT_SECRETS_KEYS."""
    return Fernet.generate_key().decode()


def secrets_key_fingerprint(key: str) -> str:
    """A short, one-way name for a key: enough to tell keys apart in output, useless to decrypt."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def secrets_key_index(token: str) -> int | None:
    """The position in CYCLECOUNT_SECRETS_KEYS of the key `token` was encrypted with.

    None when no configured key decrypts it. Keys are tried in order, so a token readable by
    two keys (the same key listed twice) reports the first.
    """
    data = token.encode()
    for index, key in enumerate(settings.CONNECTION_SECRETS_KEYS):
        try:
            Fernet(key.encode()).decrypt(data)
        except InvalidToken:
            continue
        return index
    return None


def secrets_reencrypt(token: str) -> str:
    """`token` encrypted again with the first configured key (same plaintext and timestamp).

    Raises SecretsUnreadable when no configured key decrypts it; empty input stays empty.
    """
    if not token:
        return ""
    try:
        return _fernet(tuple(settings.CONNECTION_SECRETS_KEYS)).rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretsUnreadable("connection secrets do not decrypt with CYCLECOUNT_SECRETS_KEYS") from None


def mask(value: str) -> str:
    """What an admin may see of a secret: its length class and last two characters."""
    if not value:
        return ""
    return "•" * 8 + value[-2:] if len(value) > 8 else "•" * 8
