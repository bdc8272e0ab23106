"""Rotating the key that encrypts backend connection secrets.

The operator puts a new Fernet key first in CYCLECOUNT_SECRETS_KEYS (old keys after it, so
they still decrypt) and runs `manage.py rotate_secrets_key`; `connection_secrets_rotate`
re-encrypts every stored token with that first key. Once it reports that only the first key
is in use, the old keys can be removed from the variable.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from adapters.models import BackendConnection
from adapters.secrets import secrets_key_fingerprint, secrets_key_index, secrets_reencrypt
from audit.services import audit_log_write

ROTATED_TAG = "connection_secrets_rotated"


@dataclass(frozen=True)
class RotatedConnection:
    organization_slug: str
    name: str
    from_key: int  # position in CYCLECOUNT_SECRETS_KEYS (0 is the first)


@dataclass(frozen=True)
class UnreadableConnection:
    organization_slug: str
    name: str

    def __str__(self) -> str:
        return f"{self.organization_slug}/{self.name}"


class SecretsRotationBlocked(Exception):
    """Some stored secrets decrypt with no configured key; nothing was re-encrypted."""

    def __init__(self, unreadable: list[UnreadableConnection]) -> None:
        names = ", ".join(str(connection) for connection in unreadable)
        super().__init__(
            f"{len(unreadable)} connection(s) have secrets that no key in CYCLECOUNT_SECRETS_KEYS decrypts: "
            f"{names}. Add back the key they were encrypted with, or re-enter their secrets "
            "(manage.py backend_connect); nothing was changed."
        )
        self.unreadable = unreadable


@dataclass
class RotationResult:
    """What a rotation did (or, in a dry run, would do).

    `keys_in_use` maps a key's position in CYCLECOUNT_SECRETS_KEYS to how many connections'
    secrets are encrypted with it once the rotation is done: a key absent from it can be removed.
    """

    dry_run: bool
    primary_fingerprint: str
    key_fingerprints: list[str]
    rotated: list[RotatedConnection] = field(default_factory=list)
    already_current: int = 0
    keys_in_use: dict[int, int] = field(default_factory=dict)

    @property
    def removable_keys(self) -> list[int]:
        return [index for index in range(1, len(self.key_fingerprints)) if index not in self.keys_in_use]


def connection_secrets_rotate(
    *, actor: AbstractBaseUser | None, operator: str = "", dry_run: bool = False
) -> RotationResult:
    """Re-encrypt every connection's stored secrets with the first key of CYCLECOUNT_SECRETS_KEYS.

    Guarantees: all or nothing — the connections are locked (in pk order) and rewritten in one
    transaction, and when any connection's secrets decrypt with no configured key it raises
    SecretsRotationBlocked naming them and changes nothing. Secrets already under the first
    key are left as they are, so running it again is harmless. Each organization whose
    connections were re-encrypted gets one `connection_secrets_rotated` reason-log row naming
    the connections, the key fingerprints and `operator`; no secret or key is ever written
    there. A dry run reads the same rows and reports the same figures, writing nothing.
    """
    keys: list[str] = list(settings.CONNECTION_SECRETS_KEYS)
    result = RotationResult(
        dry_run=dry_run,
        primary_fingerprint=secrets_key_fingerprint(keys[0]),
        key_fingerprints=[secrets_key_fingerprint(key) for key in keys],
    )
    with transaction.atomic():
        connections = list(
            BackendConnection.objects.select_for_update(of=("self",))
            .exclude(secrets_encrypted="")
            .select_related("organization")
            .order_by("pk")
        )
        # Every token is read before any is written: one unreadable token stops the rotation
        # before it changed anything, rather than leaving keys half rotated.
        positions = {connection.pk: secrets_key_index(connection.secrets_encrypted) for connection in connections}
        unreadable = [
            UnreadableConnection(organization_slug=connection.organization.slug, name=connection.name)
            for connection in connections
            if positions[connection.pk] is None
        ]
        if unreadable:
            raise SecretsRotationBlocked(unreadable)

        stale = [connection for connection in connections if positions[connection.pk] != 0]
        result.already_current = len(connections) - len(stale)
        result.rotated = [
            RotatedConnection(
                organization_slug=connection.organization.slug, name=connection.name, from_key=positions[connection.pk]
            )
            for connection in stale
        ]
        if dry_run:
            result.keys_in_use = dict(sorted(Counter(positions.values()).items()))
            return result

        by_organization: dict[int, list[BackendConnection]] = defaultdict(list)
        for connection in stale:
            connection.secrets_encrypted = secrets_reencrypt(connection.secrets_encrypted)
            connection._history_user = actor
            connection._change_reason = f"secrets re-encrypted with key {result.primary_fingerprint}"
            connection.save(update_fields=["secrets_encrypted", "updated_at"])
            by_organization[connection.organization_id].append(connection)
        result.keys_in_use = {0: len(connections)} if connections else {}

        for organization_id, rotated in by_organization.items():
            audit_log_write(
                organization_id=organization_id,
                tag=ROTATED_TAG,
                actor=actor,
                reason=(
                    f"re-encrypted the secrets of {len(rotated)} connection(s) with key "
                    f"{result.primary_fingerprint}" + (f" (run by {operator})" if operator else "")
                ),
                # Names, positions and fingerprints only: neither a secret nor a key reaches the log.
                data={
                    "connections": [connection.name for connection in rotated],
                    "from_keys": sorted({result.key_fingerprints[positions[c.pk]] for c in rotated}),
                    "to_key": result.primary_fingerprint,
                    "operator": operator,
                },
            )
    return result
