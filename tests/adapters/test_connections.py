"""Configuring connections: secrets encrypted and never shown, errors naming the field."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.roles import Role
from adapters.models import BackendConnection
from adapters.secrets import secrets_decrypt
from adapters.services import ConnectionInvalid, backend_connect
from audit.models import AuditLog
from tests.adapters.support import ACCOUNT, CREDENTIALS
from tests.factories import member

pytestmark = pytest.mark.django_db

SETTINGS = {"account_id": ACCOUNT, "subsidiary_id": "1", "adjustment_account_id": "215", "concurrency": 5}


def test_secrets_are_encrypted_at_rest_and_kept_on_update(organization):
    connection, created = backend_connect(
        organization=organization, kind="netsuite", name="ns", values={**SETTINGS, **CREDENTIALS}, actor=None
    )

    stored = BackendConnection.objects.values_list("secrets_encrypted", "settings").get(pk=connection.pk)
    assert created
    assert all(secret not in stored[0] for secret in CREDENTIALS.values())
    assert set(stored[1]) == set(SETTINGS)  # no secret among the visible settings
    assert secrets_decrypt(stored[0]) == CREDENTIALS
    assert connection.is_push_target  # the organization's first connection

    again, created = backend_connect(
        organization=organization,
        kind="netsuite",
        name="ns",
        values={**SETTINGS, "concurrency": 3, "token_secret": "rotated"},
        actor=None,
    )

    assert not created
    assert again.settings["concurrency"] == 3
    assert secrets_decrypt(again.secrets_encrypted) == {**CREDENTIALS, "token_secret": "rotated"}
    logged = AuditLog.objects.filter(tag="connection_configured").order_by("pk").last()
    assert logged.data == {"settings_changed": ["concurrency"], "secrets_given": ["token_secret"]}
    assert "rotated" not in json.dumps(logged.data) + logged.reason
    assert not any("rotated" in str(row.__dict__) for row in again.history.all())


def test_every_problem_is_named_by_field(organization):
    with pytest.raises(ConnectionInvalid) as invalid:
        backend_connect(
            organization=organization,
            kind="netsuite",
            name="ns",
            values={"account_id": "acme", "concurrency": "five", "colour": "blue", "consumer_key": "k"},
            actor=None,
        )

    assert set(invalid.value.errors) == {
        "account_id",
        "subsidiary_id",
        "adjustment_account_id",
        "concurrency",
        "colour",
        "consumer_secret",
        "token_id",
        "token_secret",
    }
    assert not BackendConnection.objects.exists()


def test_the_command_reads_json_from_stdin_and_updates_by_name(organization, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({**SETTINGS, **CREDENTIALS})))
    call_command("backend_connect", "--org", "acme", "--kind", "netsuite", "--name", "netsuite", stdout=out)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({**SETTINGS, "concurrency": 2})))
    call_command("backend_connect", "--org", "acme", "--kind", "netsuite", "--name", "netsuite", stdout=out)

    assert out.getvalue().splitlines() == [
        "created netsuite connection netsuite for acme (push target)",
        "updated netsuite connection netsuite for acme (push target)",
    ]
    assert BackendConnection.objects.get().settings["concurrency"] == 2


@pytest.mark.parametrize(
    ("stdin", "message"),
    [("not json", "stdin is not JSON"), ("[1]", "one JSON object"), ('{"account_id": "x"}', "account_id:")],
)
def test_the_command_refuses_bad_input_clearly(organization, monkeypatch, stdin, message):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(CommandError, match=message):
        call_command("backend_connect", "--org", "acme", "--kind", "netsuite", "--name", "netsuite")
    assert not BackendConnection.objects.exists()


def test_the_admin_masks_stored_secrets(organization, client):
    admin_user = member(organization, Role.ADMIN, username="boss")
    connection, _ = backend_connect(
        organization=organization, kind="netsuite", name="ns", values={**SETTINGS, **CREDENTIALS}, actor=None
    )
    client.force_login(admin_user)

    page = client.get(f"/admin/adapters/backendconnection/{connection.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert all(secret not in html for secret in CREDENTIALS.values())
    assert "••••••••" + CREDENTIALS["token_secret"][-2:] in html


def test_the_admin_saves_through_the_service_keeping_untouched_secrets(organization, client):
    admin_user = member(organization, Role.ADMIN, username="boss")
    connection, _ = backend_connect(
        organization=organization, kind="netsuite", name="ns", values={**SETTINGS, **CREDENTIALS}, actor=None
    )
    client.force_login(admin_user)

    response = client.post(
        f"/admin/adapters/backendconnection/{connection.pk}/change/",
        {
            "is_push_target": "on",
            "active": "on",
            "settings_json": json.dumps({**SETTINGS, "concurrency": 4}),
            "new_secrets": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert connection.settings["concurrency"] == 4
    assert secrets_decrypt(connection.secrets_encrypted) == CREDENTIALS
    assert connection.history.first().history_user == admin_user


def test_the_admin_refuses_a_secret_typed_into_the_settings(organization, client):
    admin_user = member(organization, Role.ADMIN, username="boss")
    client.force_login(admin_user)

    response = client.post(
        "/admin/adapters/backendconnection/add/",
        {
            "kind": "netsuite",
            "name": "ns",
            "is_push_target": "on",
            "active": "on",
            "settings_json": json.dumps({**SETTINGS, "token_secret": "oops"}),
            "new_secrets": "",
        },
    )

    assert response.status_code == 200
    assert "secrets belong in" in response.content.decode()
    assert not BackendConnection.objects.exists()


def test_managers_cannot_configure_connections(organization, manager, client):
    connection, _ = backend_connect(
        organization=organization, kind="netsuite", name="ns", values={**SETTINGS, **CREDENTIALS}, actor=None
    )
    client.force_login(manager)

    assert client.get("/admin/adapters/backendconnection/add/").status_code == 403
    assert client.get(f"/admin/adapters/backendconnection/{connection.pk}/change/").status_code == 200
    assert client.post(f"/admin/adapters/backendconnection/{connection.pk}/change/", {}).status_code == 403


def test_set_up_scripts_connect_only_once(organization, monkeypatch):
    out = io.StringIO()
    for _ in range(2):
        monkeypatch.setattr("sys.stdin", io.StringIO('{"layout": "netsuite"}'))
        call_command(
            "backend_connect", "--org", "acme", "--kind", "file", "--name", "files", "--if-missing", stdout=out
        )
    call_command("backend_connect", "--org", "nobody", "--kind", "file", "--name", "files", "--if-missing", stdout=out)

    assert BackendConnection.objects.get().kind == "file"
    assert out.getvalue().splitlines()[1:] == [
        "connection files of acme exists; nothing to do",
        "no organization 'nobody'; nothing to do",
    ]
    assert AuditLog.objects.filter(tag="connection_configured").count() == 1
