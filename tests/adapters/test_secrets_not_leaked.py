"""No secret reaches a log record, an admin page, an API response or an error message.

Connections of every kind with distinctive secrets (and a webhook subscription with its signing
secret) are pushed through the paths that show or handle them — the admin's lists, change,
history and error pages, the reason log and ledger in the admin, the trace API, the
backend_connect command refusing bad input, a push and a sync that NetSuite refuses with 401 —
while every logger records at DEBUG; then everything captured is searched for the secrets.
"""

from __future__ import annotations

import io
import json
import logging
import traceback

import pytest
from django.core.management import CommandError, call_command

from accounts.roles import Role
from adapters.interface import TransientBackendError
from adapters.models import BackendConnection, BatchState, PushBatch
from adapters.services import backend_connect, backend_sync, push_drain
from audit.models import AuditLog, Event
from tests.adapters.support import CREDENTIALS, approve_adjustments, connect, warehouse
from tests.audit.factories import WebhookSubscriptionFactory
from tests.conftest import token_client
from tests.factories import member

pytestmark = pytest.mark.django_db

SHOPIFY_TOKEN = "shpat_LEAKCANARYshopify0123456789abcdef"
HOTWAX_TOKEN = "hotwax-LEAKCANARY-token-0123456789abcdef"
WEBHOOK_SECRET = "whsec_LEAKCANARYwebhook0123456789abcdefghijkl"
# Typed by an administrator into forms and commands that refuse the input.
TYPED_SECRET = "typed-LEAKCANARY-secret-0123456789abcdef"

SECRETS = {
    "netsuite consumer_secret": CREDENTIALS["consumer_secret"],
    "netsuite token_secret": CREDENTIALS["token_secret"],
    "shopify access_token": SHOPIFY_TOKEN,
    "hotwax token": HOTWAX_TOKEN,
    "webhook secret": WEBHOOK_SECRET,
    "typed secret": TYPED_SECRET,
}
# Loggers that are quieter than the root by configuration; opened up for the test.
QUIET_LOGGERS = ("django.db.backends", "urllib3", "requests_oauthlib", "oauthlib", "celery", "django.request")


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


@pytest.fixture
def every_log(caplog) -> pytest.LogCaptureFixture:
    # caplog restores every level it set when the test ends.
    caplog.set_level(logging.DEBUG)
    for name in QUIET_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def captured_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler could write it: message, arguments, exception and stack text."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = []
    for record in caplog.records:
        parts.append(formatter.format(record))
        parts.append(repr(record.args))
        parts.append(repr(getattr(record, "__dict__", {})))
    return "\n".join(parts)


@pytest.fixture
def world(organization, netsuite, every_log):
    """A NetSuite connection (the push target, synced), a Shopify and a HotWax connection, and a
    webhook subscription — all with the secrets above."""
    warehouse(netsuite)
    ns = connect(organization, netsuite)
    backend_sync(connection=ns)
    shopify, _ = backend_connect(
        organization=organization,
        kind="shopify",
        name="shopify",
        values={"shop_url": "https://acme.myshopify.com", "api_version": "2026-01", "access_token": SHOPIFY_TOKEN},
        actor=None,
        is_push_target=False,
    )
    hotwax, _ = backend_connect(
        organization=organization,
        kind="hotwax",
        name="hotwax",
        values={"base_url": "https://acme-oms.hotwax.io/rest/s1/", "facility_ids": ["WH"], "token": HOTWAX_TOKEN},
        actor=None,
        is_push_target=False,
    )
    subscription = WebhookSubscriptionFactory(organization=organization, secret=WEBHOOK_SECRET)
    return {"netsuite": ns, "shopify": shopify, "hotwax": hotwax, "subscription": subscription}


@pytest.fixture
def admin_client(organization, client):
    client.force_login(member(organization, Role.ADMIN, username="boss"))
    return client


def test_a_refused_push_and_sync_leave_no_secret_in_logs_pages_or_responses(
    organization, manager, netsuite, world, admin_client, every_log
):
    ns = world["netsuite"]
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1})
    netsuite.fail_next(50, status=401)  # NetSuite refuses the credentials on every call
    drained = push_drain(connection=ns)
    with pytest.raises(TransientBackendError) as refused_sync:
        backend_sync(connection=ns)
    batch = PushBatch.objects.get()
    assert batch.state == BatchState.FAILED  # the 401 did happen …
    assert "credentials" in batch.last_error  # … and says what to check
    assert drained.failed == 1

    bodies: dict[str, str] = {}
    pages = [
        "/admin/adapters/backendconnection/",
        "/admin/adapters/pushbatch/",
        f"/admin/adapters/pushbatch/{batch.pk}/change/",
        f"/admin/adapters/pushbatch/{batch.pk}/history/",
        "/admin/adapters/pendingpush/",
        "/admin/audit/auditlog/",
        "/admin/audit/event/",
        "/admin/audit/webhooksubscription/",
        f"/admin/audit/webhooksubscription/{world['subscription'].pk}/change/",
    ]
    for connection in BackendConnection.objects.all():
        pages += [
            f"/admin/adapters/backendconnection/{connection.pk}/change/",
            f"/admin/adapters/backendconnection/{connection.pk}/history/",
        ]
    pages += [f"/admin/audit/auditlog/{row.pk}/change/" for row in AuditLog.objects.all()]
    pages += [f"/admin/audit/event/{event.pk}/change/" for event in Event.objects.all()]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        bodies[url] = response.content.decode()
    api = token_client(manager)
    for params in ({"batch": batch.external_id}, {"record": "nothing-here"}):
        response = api.get("/api/trace/", params)
        assert response.status_code in (200, 404)
        bodies[f"/api/trace/ {params}"] = response.content.decode()

    assert {url: leaks(body) for url, body in bodies.items() if leaks(body)} == {}
    assert leaks(captured_logs(every_log)) == []
    assert leaks("".join(traceback.format_exception(refused_sync.value))) == []
    assert leaks(json.dumps(drained.errors, default=str)) == []
    stored = " ".join(f"{row.reason} {row.data}" for row in AuditLog.objects.all()) + " ".join(
        f"{event.payload}" for event in Event.objects.all()
    )
    assert leaks(stored) == []
    assert any(record.levelno >= logging.WARNING for record in every_log.records)  # the refusal was logged


def test_admin_forms_that_refuse_input_do_not_echo_the_secrets_typed(organization, world, admin_client, every_log):
    ns = world["netsuite"]
    settings_values = dict(ns.settings)
    refused = {
        # A secret typed into the secrets box of a form refused for another field.
        "add, bad setting": (
            "/admin/adapters/backendconnection/add/",
            {
                "kind": "netsuite",
                "name": "ns2",
                "active": "on",
                "settings_json": json.dumps({**settings_values, "colour": "blue"}),
                "new_secrets": json.dumps({**CREDENTIALS, "token_secret": TYPED_SECRET}),
            },
        ),
        # A secret typed into the settings box by mistake.
        "change, secret in settings": (
            f"/admin/adapters/backendconnection/{ns.pk}/change/",
            {
                "is_push_target": "on",
                "active": "on",
                "settings_json": json.dumps({**settings_values, "token_secret": TYPED_SECRET}),
                "new_secrets": "",
            },
        ),
        # Secrets box that is not JSON.
        "change, secrets not JSON": (
            f"/admin/adapters/backendconnection/{ns.pk}/change/",
            {
                "is_push_target": "on",
                "active": "on",
                "settings_json": json.dumps(settings_values),
                "new_secrets": f'{{"token_secret": "{TYPED_SECRET}"',
            },
        ),
    }
    bodies = {}
    for name, (url, data) in refused.items():
        response = admin_client.post(url, data)
        assert response.status_code == 200, (name, response.status_code)  # re-shown with errors, not saved
        assert "errornote" in response.content.decode(), name
        bodies[name] = response.content.decode()

    assert {name: leaks(body) for name, body in bodies.items() if leaks(body)} == {}
    assert leaks(captured_logs(every_log)) == []
    assert not BackendConnection.objects.filter(name="ns2").exists()


def test_backend_connect_refusing_bad_input_does_not_echo_secrets(organization, world, monkeypatch, every_log):
    values = {
        **world["netsuite"].settings,
        **CREDENTIALS,
        "token_secret": TYPED_SECRET,
        "tokn_secret": TYPED_SECRET,  # a misspelt key holding a secret
        "concurrency": "many",
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(values)))
    out = io.StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("backend_connect", "--org", organization.slug, "--kind", "netsuite", "--name", "ns2", stdout=out)

    assert "tokn_secret" in str(refused.value)  # the field is named …
    assert leaks(str(refused.value)) == []  # … its value is not
    assert leaks(out.getvalue()) == []
    assert leaks(captured_logs(every_log)) == []
    assert not BackendConnection.objects.filter(name="ns2").exists()
