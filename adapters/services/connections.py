"""Configuring connections, and the worker lease that keeps one process per connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from adapters.interface import backend_spec
from adapters.models import BackendConnection
from adapters.secrets import secrets_decrypt, secrets_encrypt
from audit.services import audit_log_write


class ConnectionInvalid(Exception):
    """The settings given for a connection are incomplete or wrong; `errors` maps field → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def connection_values_errors(*, kind: str, values: dict[str, Any], stored_secrets: dict[str, str]) -> dict[str, str]:
    """Field → message for everything wrong with `values` for a `kind` connection (empty: valid).

    Secrets already stored count as given, so an update may leave them out.
    """
    try:
        spec = backend_spec(kind)
    except LookupError as error:
        return {"kind": str(error)}
    known = {*spec.required_settings, *spec.optional_settings, *spec.secret_keys}
    errors = {key: f"not a {kind} setting (known: {', '.join(sorted(known))})" for key in sorted(set(values) - known)}
    errors.update({key: "required" for key in spec.required_settings if values.get(key) in (None, "")})
    errors.update(
        {
            key: "required (a secret)"
            for key in spec.secret_keys
            if values.get(key) in (None, "") and not stored_secrets.get(key)
        }
    )
    settings_only = {key: value for key, value in values.items() if key not in spec.secret_keys}
    errors.update({key: message for key, message in spec.validate(settings_only).items() if key not in errors})
    return errors


@transaction.atomic
def backend_connect(
    *,
    organization: Organization,
    kind: str,
    name: str,
    values: dict[str, Any],
    actor: AbstractBaseUser | None,
    is_push_target: bool | None = None,
) -> tuple[BackendConnection, bool]:
    """Create or update the organization's connection `name` from one JSON object of values.

    Values are split into settings and secrets by the backend's spec; secrets are encrypted.
    Updating keeps stored secrets that are not given again. The first active connection of an
    organization becomes its push target unless told otherwise. Returns (connection, created).
    """
    connection = BackendConnection.objects.select_for_update().filter(organization=organization, name=name).first()
    created = connection is None
    if connection is None:
        connection = BackendConnection(organization=organization, kind=kind, name=name)
    elif connection.kind != kind:
        raise ConnectionInvalid({"kind": f"connection {name!r} is a {connection.kind} connection"})
    stored = secrets_decrypt(connection.secrets_encrypted) if not created else {}
    errors = connection_values_errors(kind=kind, values=values, stored_secrets=stored)
    if errors:
        raise ConnectionInvalid(errors)
    spec = backend_spec(kind)
    given_secrets = {key: str(values[key]) for key in spec.secret_keys if values.get(key) not in (None, "")}
    secrets = {**stored, **given_secrets}
    new_settings = {key: value for key, value in values.items() if key not in spec.secret_keys}

    changed_settings = sorted(
        key for key in {*new_settings, *connection.settings} if new_settings.get(key) != connection.settings.get(key)
    )
    connection.settings = new_settings
    connection.secrets_encrypted = secrets_encrypt(secrets)
    if is_push_target is None:
        if created:
            connection.is_push_target = not BackendConnection.objects.filter(
                organization=organization, is_push_target=True, active=True
            ).exists()
    else:
        if is_push_target:
            others = BackendConnection.objects.filter(organization=organization, is_push_target=True).exclude(
                pk=connection.pk
            )
            for other in others:
                other.is_push_target = False
                other._history_user = actor
                other._change_reason = f"push target moved to {name}"
                other.save(update_fields=["is_push_target", "updated_at"])
        connection.is_push_target = is_push_target
    connection._history_user = actor
    connection._change_reason = "created" if created else "settings updated"
    connection.save()
    audit_log_write(
        organization_id=organization.pk,
        tag="connection_configured",
        actor=actor,
        subject=connection,
        reason=f"{'created' if created else 'updated'} {kind} connection {name}",
        # Names only: secret values never reach the reason log.
        data={"settings_changed": changed_settings, "secrets_given": sorted(given_secrets)},
    )
    return connection, created


class ConnectionBusy(Exception):
    """Another worker holds the connection's lease."""


@contextmanager
def connection_worker(connection: BackendConnection, *, purpose: str) -> Iterator[str]:
    """Hold the connection's worker lease for the block: one sync or drain per connection at a time.

    The lease expires on its own (ADAPTER_WORKER_LEASE_SECONDS), so a worker killed mid-way
    never blocks the connection for longer; `lease_renew` extends it during long work.
    Raises ConnectionBusy when another worker holds it.
    """
    owner = f"{purpose}:{uuid.uuid4().hex[:12]}"
    now = timezone.now()
    # The lease columns are bookkeeping (excluded from history), so a conditional UPDATE — the
    # database's own compare-and-set — is the right tool here.
    taken = (
        BackendConnection.objects.filter(pk=connection.pk)
        .filter(Q(worker_lease_until__isnull=True) | Q(worker_lease_until__lt=now))
        .update(worker_lease_owner=owner, worker_lease_until=now + _lease_length())
    )
    if not taken:
        raise ConnectionBusy(f"connection {connection.name} is busy ({_holder(connection)})")
    try:
        yield owner
    finally:
        BackendConnection.objects.filter(pk=connection.pk, worker_lease_owner=owner).update(
            worker_lease_owner="", worker_lease_until=None
        )


def lease_renew(connection: BackendConnection, owner: str) -> None:
    BackendConnection.objects.filter(pk=connection.pk, worker_lease_owner=owner).update(
        worker_lease_until=timezone.now() + _lease_length()
    )


def _lease_length() -> timedelta:
    return timedelta(seconds=settings.ADAPTER_WORKER_LEASE_SECONDS)


def _holder(connection: BackendConnection) -> str:
    row = BackendConnection.objects.filter(pk=connection.pk).values("worker_lease_owner", "worker_lease_until").get()
    return f"held by {row['worker_lease_owner']} until {row['worker_lease_until']:%H:%M:%S}"
