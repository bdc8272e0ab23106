"""`manage.py rotate_secrets_key`: every stored secret moves to the first key, all or nothing."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from accounts.services import SYSTEM_USERNAME
from adapters.models import BackendConnection
from adapters.secrets import (
    SecretsUnreadable,
    secrets_decrypt,
    secrets_encrypt,
    secrets_key_fingerprint,
    secrets_key_index,
)
from adapters.services import backend_sync
from adapters.services.secrets_rotation import ROTATED_TAG
from audit.models import AuditLog
from tests.adapters.support import CREDENTIALS, connect, warehouse
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
LOST_KEY = Fernet.generate_key().decode()


def rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_secrets_key", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def old_key(settings):
    settings.CONNECTION_SECRETS_KEYS = [OLD_KEY]
    return settings


@pytest.fixture
def two_connections(old_key, organization, netsuite):
    """Two organizations' NetSuite connections, both encrypted with the old key."""
    warehouse(netsuite)
    ours = connect(organization, netsuite)
    theirs = connect(OrganizationFactory(slug="globex"), netsuite, name="ns-globex")
    return ours, theirs


def stored_tokens() -> dict[int, str]:
    return dict(BackendConnection.objects.values_list("pk", "secrets_encrypted"))


def test_rotating_then_dropping_the_old_key_keeps_every_backend_working(two_connections, settings, netsuite):
    ours, theirs = two_connections
    before = stored_tokens()
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]

    output = rotate()

    assert "re-encrypted 2 connection(s) with key 1" in output
    assert f"key 2 ({secrets_key_fingerprint(OLD_KEY)}): not in use — can be removed" in output
    assert f"key 1 ({secrets_key_fingerprint(NEW_KEY)}): in use by 2 connection(s)" in output
    after = stored_tokens()
    assert all(after[pk] != before[pk] for pk in before)
    assert {secrets_key_index(token) for token in after.values()} == {0}

    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY]  # the operator removes the old key
    for connection in (ours, theirs):
        connection.refresh_from_db()
        assert secrets_decrypt(connection.secrets_encrypted) == CREDENTIALS
    result = backend_sync(connection=ours)
    assert (result.skipped, result.items_created) == ("", 5)  # NetSuite accepted the signed requests
    assert netsuite.auth_failures == []

    settings.CONNECTION_SECRETS_KEYS = [OLD_KEY]  # the old key alone no longer reads anything
    with pytest.raises(SecretsUnreadable):
        secrets_decrypt(after[ours.pk])


def test_running_it_again_changes_nothing(two_connections, settings):
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]
    rotate()
    tokens = stored_tokens()
    audit_rows = AuditLog.objects.filter(tag=ROTATED_TAG).count()

    output = rotate()

    assert "re-encrypted 0 connection(s) with key 1" in output
    assert "2 already used it" in output
    assert stored_tokens() == tokens
    assert AuditLog.objects.filter(tag=ROTATED_TAG).count() == audit_rows


def test_the_rotation_is_in_the_reason_log_without_any_secret(two_connections, settings, organization):
    ours, _ = two_connections
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]

    rotate()

    rows = list(AuditLog.objects.filter(tag=ROTATED_TAG).order_by("organization__slug"))
    assert [row.organization.slug for row in rows] == ["acme", "globex"]
    ours_row = rows[0]
    assert ours_row.actor is not None
    assert ours_row.actor.username == SYSTEM_USERNAME
    assert ours_row.created_at is not None
    assert ours_row.data["connections"] == ["netsuite"]
    assert ours_row.data["to_key"] == secrets_key_fingerprint(NEW_KEY)
    assert ours_row.data["from_keys"] == [secrets_key_fingerprint(OLD_KEY)]
    assert "operator" in ours_row.data
    logged = " ".join(f"{row.reason} {row.data}" for row in rows)
    assert not any(secret in logged for secret in CREDENTIALS.values())
    assert NEW_KEY not in logged
    assert OLD_KEY not in logged
    # The connection's history says who re-encrypted it and why, without the token (excluded).
    entry = BackendConnection.history.filter(id=ours.pk).order_by("-history_date").first()
    assert entry.history_change_reason == f"secrets re-encrypted with key {secrets_key_fingerprint(NEW_KEY)}"


def test_the_actor_option_names_who_rotated(two_connections, settings, manager):
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]

    rotate("--actor", manager.username)

    assert AuditLog.objects.get(tag=ROTATED_TAG, organization__slug="acme").actor == manager


def test_a_dry_run_reports_and_changes_nothing(two_connections, settings):
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]
    tokens = stored_tokens()
    history = BackendConnection.history.count()

    output = rotate("--dry-run")

    assert "dry run: would re-encrypt 2 connection(s) with key 1" in output
    assert "acme/netsuite: from key 2" in output
    # Nothing is under the new key yet.
    assert f"key 1 ({secrets_key_fingerprint(NEW_KEY)}): not in use" in output
    assert f"key 2 ({secrets_key_fingerprint(OLD_KEY)}): in use by 2 connection(s)" in output
    assert stored_tokens() == tokens
    assert BackendConnection.history.count() == history
    assert not AuditLog.objects.filter(tag=ROTATED_TAG).exists()


def test_a_secret_no_key_reads_fails_naming_the_connection_and_changes_nothing(two_connections, settings):
    _, theirs = two_connections
    settings.CONNECTION_SECRETS_KEYS = [LOST_KEY]
    lost = secrets_encrypt({"token_secret": "lost"})
    BackendConnection.objects.filter(pk=theirs.pk).update(secrets_encrypted=lost)
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]
    tokens = stored_tokens()

    with pytest.raises(CommandError) as failed:
        rotate()

    # manage.py prints a CommandError and exits with its returncode.
    assert failed.value.returncode == 1
    error = str(failed.value)
    assert "globex/ns-globex" in error
    assert "acme/netsuite" not in error
    assert "nothing was changed" in error
    assert stored_tokens() == tokens  # the readable connection was not rotated either
    assert not AuditLog.objects.filter(tag=ROTATED_TAG).exists()


def test_generate_prints_a_fresh_key_and_changes_nothing(two_connections):
    tokens = stored_tokens()

    key = rotate("--generate").strip()

    Fernet(key.encode())  # a valid Fernet key
    assert key not in (OLD_KEY, NEW_KEY)
    assert stored_tokens() == tokens


def test_an_unknown_actor_is_refused(two_connections, settings):
    settings.CONNECTION_SECRETS_KEYS = [NEW_KEY, OLD_KEY]
    tokens = stored_tokens()

    with pytest.raises(CommandError, match="no user 'nobody'"):
        rotate("--actor", "nobody")

    assert stored_tokens() == tokens
