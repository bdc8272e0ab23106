"""Tenant isolation in PostgreSQL itself (accounts.tenancy): row-level security on every table
with an organization, so a query that forgets its filter still sees only the caller's rows.

The embedded SQLite default has no row-level security; there the application-level scoping
(tests/accounts/test_scoping.py) is the guard, and these tests are skipped.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import (
    DatabaseError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    models,
    transaction,
)
from django.db.models.signals import post_migrate, pre_migrate
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import tenancy
from accounts.models import OrganizationScopedQuerySet
from accounts.roles import Role
from accounts.services import edit_token_rotate
from accounts.tenancy import rls_bypass, tenant_context
from counts.models import CountEvent, CountKind, CountLine, CountRun, CountSession
from counts.services.planning import count_run_create, count_run_start
from counts.services.sessions import count_session_start, count_session_submit
from inventory.models import Facility, InventoryBalance, Item, Location, Zone
from reconciliation.models import Variance
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.conftest import token_client
from tests.factories import (
    FacilityFactory,
    InventoryBalanceFactory,
    ItemBarcodeFactory,
    LocationFactory,
    ZoneFactory,
    member,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

# Every text the other organization's rows carry contains this; no response to org A may.
MARKER = "globexsecret"


# --- Data: one of each kind in each organization ---------------------------------------------


@dataclass
class Tenant:
    organization: object
    manager: object
    associate: object
    run: CountRun
    session: CountSession
    line: CountLine
    event: CountEvent
    variance: Variance


def tenant_build(organization, tag: str) -> Tenant:
    """A small but complete tenant: mirror, a run with a session, a scan, a line, a variance, a proposal.

    Built the way production builds it: services, and the capture API as the tenant's own associate.
    """
    manager = member(organization, Role.MANAGER, username=f"{tag}-manager")
    associate = member(organization, Role.ASSOCIATE, username=f"{tag}-associate")
    root_causes_ensure(organization=organization)
    facility = FacilityFactory(organization=organization, code=f"{tag}-WH", name=f"{tag} warehouse")
    zone = ZoneFactory(organization=organization, facility=facility, code=f"{tag}-Z")
    location = LocationFactory(organization=organization, zone=zone, code=f"{tag}-LOC", barcode=f"{tag}-LOC")
    barcode = ItemBarcodeFactory(item__organization=organization, item__sku=f"{tag}-SKU", item__name=f"{tag} item")
    InventoryBalanceFactory(organization=organization, location=location, item=barcode.item, on_hand=Decimal(10))
    run = count_run_start(
        run=count_run_create(
            organization=organization, facility=facility, name=f"{tag} run", kind=CountKind.HARD, actor=manager
        ),
        actor=manager,
    )
    session = count_session_start(run=run, user=associate, device_id=f"{tag}-device")
    event_id = f"8f4b3a52-0000-4000-8000-{organization.pk:012d}"
    capture(associate, session, location.barcode, barcode.value, event_id=event_id)
    count_session_submit(session=session, actor=associate)
    run_reconcile(run=run, actor=manager)
    line = CountLine.objects.get(run=run)
    return Tenant(
        organization=organization,
        manager=manager,
        associate=associate,
        run=run,
        session=session,
        line=line,
        event=CountEvent.objects.get(session=session),
        variance=Variance.objects.get(run=run),
    )


def capture(associate, session, location: str, barcode: str, *, event_id: str) -> None:
    """One scan through the capture API, as the associate's device sends it."""
    response = token_client(associate).post(
        "/api/inventory/count",
        {
            "session": session.pk,
            "events": [
                {
                    "event_id": event_id,
                    "location": location,
                    "barcode": barcode,
                    "quantity": 7,
                    "kind": "add",
                    "mode": "scan",
                    "counted_at": "2026-11-20T15:00:00+00:00",
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content


@pytest.fixture
def acme(organization) -> Tenant:
    return tenant_build(organization, "acme")


@pytest.fixture
def globex(other_organization) -> Tenant:
    return tenant_build(other_organization, MARKER)


def organization_models() -> list[type[models.Model]]:
    """Every concrete model with an organization_id column, history models included."""
    return sorted(
        (
            model
            for model in apps.get_models()
            if not model._meta.proxy and any(field.column == "organization_id" for field in model._meta.concrete_fields)
        ),
        key=lambda model: model._meta.label,
    )


def table_rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT organization_id FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return cursor.fetchall()


# --- (1) A query that forgets its filter ----------------------------------------------------


def test_the_generated_model_list_covers_the_domain_and_its_history():
    labels = {model._meta.label for model in organization_models()}
    assert {
        "accounts.Membership",
        "inventory.Item",
        "inventory.HistoricalItem",
        "counts.CountEvent",
        "counts.CountRun",
        "reconciliation.Variance",
        "approvals.ProposedAction",
        "audit.AuditLog",
        "adapters.PendingPush",
    } <= labels
    with connection.cursor() as cursor:
        tables = set(tenancy.organization_tables(cursor))
    assert {model._meta.db_table for model in organization_models()} <= tables


def test_unscoped_queries_in_one_organizations_context_see_none_of_anothers_rows(acme, globex):
    a, b = acme.organization.pk, globex.organization.pk
    seen_with_rows = 0
    for model in organization_models():
        every = set(model._default_manager.values_list("organization_id", flat=True))
        with tenant_context(a):
            visible = set(model._default_manager.all().values_list("organization_id", flat=True))
            assert not model._default_manager.filter(organization_id=b).exists(), model._meta.label
        assert b not in visible, f"{model._meta.label} shows organization B's rows in A's context"
        assert visible == every - {b} - ({None} if None in every else set()), model._meta.label
        seen_with_rows += bool(visible and b in every)
    # Not vacuous: many kinds of rows exist in both organizations.
    assert seen_with_rows >= 15


def test_raw_sql_and_joins_are_scoped_too(acme, globex):
    with tenant_context(acme.organization.pk):
        assert {row[0] for row in table_rows("counts_countline")} == {acme.organization.pk}
        # A join across tables: the line of B is not reachable through any path.
        assert not CountLine.objects.filter(run__name__contains=MARKER).exists()
        assert not Variance.objects.filter(line__item__sku__contains=MARKER).exists()
        assert Item.objects.get(sku="acme-SKU")
        with pytest.raises(Item.DoesNotExist):
            Item.objects.get(pk=globex.line.item_id)


def test_no_organization_sees_no_rows(acme, globex):
    with tenant_context(None):
        for model in (Facility, Zone, Location, Item, InventoryBalance, CountRun, CountSession, Variance):
            assert not model.objects.exists(), model._meta.label


def test_writes_into_another_organization_are_refused(acme, globex):
    with tenant_context(acme.organization.pk):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Item.objects.create(organization=globex.organization, sku="planted", name="planted")
        # Moving one's own row to another organization is refused as well (WITH CHECK).
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Item.objects.filter(pk=acme.line.item_id).update(organization=globex.organization)
        # Updates and deletes of the other organization's rows touch nothing.
        assert Item.objects.filter(pk=globex.line.item_id).update(name="changed") == 0
        assert Zone.objects.filter(organization=globex.organization).delete()[0] == 0
    assert Item.objects.get(pk=globex.line.item_id).name == f"{MARKER} item"


def test_tenant_work_keeps_working_under_the_role(acme):
    """Sequences, history, locks, INSERT … SELECT, and the bulk SQL, as the tenant role."""
    organization = acme.organization
    with tenant_context(organization.pk):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_setting('cyclecount.organization_id')")
            assert cursor.fetchone() == (tenancy.TENANT_ROLE, str(organization.pk))
        with transaction.atomic():
            locked = list(CountRun.objects.select_for_update().filter(pk=acme.run.pk))
            assert locked == [acme.run]
        item = Item.objects.create(organization=organization, sku="new-under-rls", name="new")
        assert item.history.count() == 1  # the history row went in under the policy too
        from inventory.bulk import update_rows

        item.name = "renamed"
        assert update_rows(Item, [item], ["name"]) == 1
        # Planning, the capture path, reconciliation's INSERT … SELECT, with their history.
        run = count_run_start(
            run=count_run_create(
                organization=organization,
                facility=acme.run.facility,
                name="second run",
                kind=CountKind.HARD,
                actor=acme.manager,
            ),
            actor=acme.manager,
        )
        session = count_session_start(run=run, user=acme.associate, device_id="second")
        capture(acme.associate, session, "acme-LOC", Item.objects.get(sku="acme-SKU").barcodes.get().value,
                event_id="0c1e4d0f-1111-4111-8111-000000000001")  # fmt: skip
        count_session_submit(session=session, actor=acme.associate)
        run_reconcile(run=run, actor=acme.manager)
        assert Variance.objects.filter(run=run).count() == 1
        assert run.history.count() >= 2


# --- (2) Every API endpoint, generated from the URL conf --------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str  # the URL name, namespaced
    route: str
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]
    model: type[models.Model] | None


# What an id in a route names. A new kind of id must be added here, or the test says so.
ROUTE_IDS: dict[str, type[models.Model]] = {
    "run_id": CountRun,
    "session_id": CountSession,
    "line_id": CountLine,
    "event_id": CountEvent,
    "variance_id": Variance,
}
NOT_DATA = {"schema", "docs"}  # the OpenAPI document and Swagger UI
# A body that passes the input checks commands make before their lookup (resume wants a
# device); a command must then answer 404, never 400, for another organization's id.
PROBE_BODY = {"device_id": "probe"}


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern, namespace


def _view_model(callback) -> type[models.Model] | None:
    view_class = getattr(callback, "cls", None)
    queryset = getattr(view_class, "queryset", None)
    if queryset is not None:
        return queryset.model
    serializer = getattr(view_class, "serializer_class", None)
    return getattr(getattr(serializer, "Meta", None), "model", None)


def api_endpoints() -> list[Endpoint]:
    found = []
    for route, pattern, namespace in _walk(get_resolver().url_patterns):
        if not route.startswith("api/") or pattern.name in NOT_DATA:
            continue
        callback = pattern.callback
        actions = getattr(callback, "actions", None)  # router-made viewsets: {"get": "retrieve", …}
        view_class = getattr(callback, "cls", None)
        if actions:
            methods = tuple(sorted(actions))
        else:
            methods = tuple(m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m))
        found.append(
            Endpoint(
                name=f"{namespace}{pattern.name}",
                route=route,
                kwargs=tuple(pattern.pattern.regex.groupindex),
                methods=methods,
                model=_view_model(callback),
            )
        )
    return found


def detail_endpoints() -> list[Endpoint]:
    return [endpoint for endpoint in api_endpoints() if endpoint.kwargs]


def list_endpoints() -> list[Endpoint]:
    return [endpoint for endpoint in api_endpoints() if not endpoint.kwargs and "get" in endpoint.methods]


def test_the_generated_endpoint_lists_cover_the_known_api():
    details = {endpoint.route for endpoint in detail_endpoints()}
    lists = {endpoint.route for endpoint in list_endpoints()}
    assert len(details) >= 20
    assert any(re.search(r"sessions/\(\?P<session_id>", route) for route in details)
    assert any(re.search(r"runs/\(\?P<run_id>.*/lines", route) for route in details)
    assert any(re.search(r"items/\(\?P<pk>", route) for route in details)
    assert any(re.search(r"variances/\(\?P<variance_id>.*/decide", route) for route in details)
    assert {"api/sessions/", "api/runs/", "api/variances/", "api/proposals/"} <= lists
    assert any("items" in route for route in lists)
    for endpoint in detail_endpoints():
        unknown = [name for name in endpoint.kwargs if name != "pk" and name not in ROUTE_IDS]
        assert not unknown, f"{endpoint.route}: say in ROUTE_IDS which model {unknown} names"
        if "pk" in endpoint.kwargs:
            assert endpoint.model is not None, f"{endpoint.route}: no model to take a pk from"


def _other_ids(endpoint: Endpoint, globex: Tenant) -> dict[str, object]:
    objects = {
        CountRun: globex.run,
        CountSession: globex.session,
        CountLine: globex.line,
        CountEvent: globex.event,
        Variance: globex.variance,
        Facility: globex.run.facility,
        Zone: globex.line.location.zone,
        Location: globex.line.location,
        Item: globex.line.item,
        InventoryBalance: InventoryBalance.objects.get(location=globex.line.location),
    }
    ids = {}
    for name in endpoint.kwargs:
        model = endpoint.model if name == "pk" else ROUTE_IDS[name]
        found = objects[model]
        ids[name] = str(found.event_id) if model is CountEvent else found.pk
    return ids


def _client_of(user):
    client = token_client(user)
    client.credentials(
        HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_EDIT_TOKEN=edit_token_rotate(user=user)
    )
    return client


@pytest.fixture(params=["scoped", "filters-forgotten"])
def application_scoping(request, monkeypatch):
    """Run each check twice: as the application is, and with its tenant filters forgotten.

    The second proves the database does the isolating: the generic scoping helpers return every
    row, so only row-level security stands between org A's user and org B's rows.
    """
    if request.param == "filters-forgotten":
        monkeypatch.setattr(OrganizationScopedQuerySet, "for_organization", lambda self, organization: self.all())
        monkeypatch.setattr("accounts.scoping.scope_queryset", lambda queryset, organization: queryset.all())
        monkeypatch.setattr("counts.import_apis.scope_queryset", lambda queryset, organization: queryset.all())
    return request.param


def test_every_detail_endpoint_answers_404_for_another_organizations_ids(acme, globex, application_scoping):
    # Each method is tried as a manager and as an associate: a role the route refuses outright
    # (403, whatever the id) must leave the other role to reach the lookup, which answers 404.
    clients = {role: _client_of(user) for role, user in (("manager", acme.manager), ("associate", acme.associate))}
    checked = 0
    for endpoint in detail_endpoints():
        url = reverse(endpoint.name, kwargs=_other_ids(endpoint, globex))
        for method in endpoint.methods:
            answers = {}
            for role, client in clients.items():
                response = getattr(client, method)(url, PROBE_BODY, format="json")
                answers[role] = response.status_code
                assert MARKER not in response.content.decode().lower(), f"{role} {method.upper()} {url}"
            assert set(answers.values()) <= {403, 404}, f"{method.upper()} {url} answered {answers}"
            assert 404 in answers.values(), f"{method.upper()} {url} answered {answers}"
            checked += 1
    assert checked >= 20


def test_every_list_endpoint_leaves_out_another_organizations_rows(acme, globex, application_scoping):
    client = _client_of(acme.manager)
    other_ids: dict[type[models.Model], set[int]] = {
        model: set(model.objects.filter(organization=globex.organization).values_list("pk", flat=True))
        for model in {endpoint.model for endpoint in list_endpoints()} - {None}
    }
    answered = 0
    for endpoint in list_endpoints():
        response = client.get(reverse(endpoint.name))
        assert response.status_code < 500, f"{endpoint.route}: {response.status_code}"
        body = response.content.decode()
        assert MARKER not in body.lower(), f"{endpoint.route} shows organization B's rows"
        if endpoint.model is not None and response.status_code == 200:
            payload = json.loads(body)
            rows = payload["results"] if isinstance(payload, dict) and "results" in payload else payload
            shown = {row.get("id") for row in rows if isinstance(row, dict)}
            assert not shown & other_ids[endpoint.model], f"{endpoint.route} lists organization B's ids"
            answered += bool(shown)
    assert answered >= 5  # the lists did show org A's own rows


# --- (3) Every organization table is policed --------------------------------------------------


def test_every_table_with_an_organization_has_row_level_security_and_the_policy():
    with connection.cursor() as cursor:
        tables = tenancy.organization_tables(cursor)
        assert len(tables) >= 40
        assert tenancy.unpoliced_tables(cursor) == []
        cursor.execute(
            "SELECT c.relname, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)",
            [tables],
        )
        # Not forced: the owner (migrate, ops) keeps its explicit bypass.
        assert not any(forced for _, forced in cursor.fetchall())
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
            " AND NOT has_table_privilege(%s, c.oid, 'SELECT, INSERT, UPDATE, DELETE')",
            [tenancy.TENANT_ROLE],
        )
        assert cursor.fetchall() == []


def test_a_new_organization_table_is_policed_by_the_next_migrate():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE rls_probe (id bigserial PRIMARY KEY, organization_id bigint NOT NULL)")
        assert "rls_probe" in tenancy.unpoliced_tables(cursor)
    # What post_migrate runs after every migrate.
    assert "rls_probe" in tenancy.rls_install()
    with connection.cursor() as cursor:
        assert tenancy.unpoliced_tables(cursor) == []
        cursor.execute("INSERT INTO rls_probe (organization_id) VALUES (1), (2)")
    with tenant_context(1), connection.cursor() as cursor:
        cursor.execute("INSERT INTO rls_probe (organization_id) VALUES (1)")  # the sequence, as the role
        cursor.execute("SELECT organization_id FROM rls_probe")
        assert cursor.fetchall() == [(1,), (1,)]
    assert tenancy.rls_install() == []  # idempotent: nothing left to do


def test_migrate_runs_the_installer_and_logs_its_bypass(caplog):
    assert any("rls_install" in str(receiver) for receiver in post_migrate.receivers)
    assert any("rls_migrate_log" in str(receiver) for receiver in pre_migrate.receivers)
    with caplog.at_level(logging.INFO, logger="cyclecount.rls"):
        tenancy.migrate_bypass_log(sender=apps.get_app_config("accounts"))
    assert "row-level security bypass by migrate" in caplog.text


# --- (4) The bypass, the request and the connection -------------------------------------------


def test_the_bypass_logs_who_and_why_and_sees_every_organization(acme, globex, caplog):
    with tenant_context(acme.organization.pk):
        with caplog.at_level(logging.INFO, logger="cyclecount.rls"), rls_bypass(reason="sweep every outbox"):
            assert CountRun.objects.filter(organization=globex.organization).exists()
        # Back to the organization's scope after the block.
        assert not CountRun.objects.filter(organization=globex.organization).exists()
    (record,) = [r for r in caplog.records if r.name == "cyclecount.rls"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "bypass by tests.config.test_row_level_security.test_the_bypass_logs_who_and_why" in message
    assert f"was organization {acme.organization.pk}" in message
    assert message.endswith("sweep every outbox")


def test_the_bypass_as_a_decorator_names_the_function(caplog):
    @rls_bypass(reason="beat sweep")
    def sweep():
        return tenancy.current_tenant()

    with caplog.at_level(logging.INFO, logger="cyclecount.rls"):
        assert sweep() is False
    assert "bypass by tests.config.test_row_level_security" in caplog.text
    assert "<locals>.sweep (database role" in caplog.text
    assert caplog.text.rstrip().endswith("beat sweep")
    with pytest.raises(ValueError, match="reason"):
        rls_bypass(reason=" ")


def _connection_state() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('cyclecount.organization_id', true)")
        user, organization = cursor.fetchone()
    return user, organization or ""


def test_a_request_runs_as_the_tenant_and_leaves_the_connection_as_it_found_it(acme, monkeypatch):
    from counts import apis as count_apis

    seen = []
    real = count_apis.SessionDetailApi.get

    def probe(self, request, *args, **kwargs):
        seen.append(_connection_state())
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(count_apis.SessionDetailApi, "get", probe)
    before = _connection_state()
    response = token_client(acme.associate).get(f"/api/sessions/{acme.session.pk}")
    assert response.status_code == 200
    assert seen == [(tenancy.TENANT_ROLE, str(acme.organization.pk))]
    assert _connection_state() == before
    assert before[0] != tenancy.TENANT_ROLE


def test_a_database_lost_while_resolving_the_caller_answers_503_not_403(acme, monkeypatch):
    # Scoping to no organization and going on turned an outage into a 403 once the database
    # was back for the view: the scoped connection found no membership (seen in CI).
    from accounts import authentication

    def lost(request):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(authentication, "token_preauthenticate", lost)
    response = token_client(acme.associate).get(f"/api/sessions/{acme.session.pk}")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "send the same request again" in response.json()["detail"]


def _next_request_starts() -> None:
    # What Django's request_started handler does in production (its test client skips it):
    # a connection kept between requests is due for its health check again.
    close_old_connections()


def _end_backend_of_default_connection() -> int:
    """End the default connection's server process from another connection, as a restart would."""
    pid = connection.connection.info.backend_pid
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_connection_ended_between_requests_is_replaced_without_a_503(acme):
    api = token_client(acme.associate)
    assert api.get(f"/api/sessions/{acme.session.pk}").status_code == 200
    ended = _end_backend_of_default_connection()
    _next_request_starts()

    response = api.get(f"/api/sessions/{acme.session.pk}")

    assert response.status_code == 200
    assert connection.connection.info.backend_pid != ended


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_not_health_checked_with_an_extra_round_trip(acme, monkeypatch):
    api = token_client(acme.associate)
    assert api.get(f"/api/sessions/{acme.session.pk}").status_code == 200  # the connection is open
    checks = []
    monkeypatch.setattr(type(connections["default"]), "is_usable", lambda db: checks.append(1) or True)
    _next_request_starts()

    assert api.get(f"/api/sessions/{acme.session.pk}").status_code == 200

    assert checks == []  # the caller's read was the check


def test_an_anonymous_request_is_scoped_to_no_organization(acme, monkeypatch, client):
    from config import health

    seen = []
    real = health._database_status

    def probe():
        seen.append(_connection_state())
        return real()

    monkeypatch.setattr(health, "_database_status", probe)
    client.get("/healthz")
    assert seen == [(tenancy.TENANT_ROLE, "")]


def test_token_authentication_is_not_repeated_by_the_api(acme, django_assert_max_num_queries):
    api = token_client(acme.associate)
    api.get(f"/api/sessions/{acme.session.pk}")  # warm caches (content types, …)
    with django_assert_max_num_queries(50) as captured:
        assert api.get(f"/api/sessions/{acme.session.pk}").status_code == 200
    token_queries = [q["sql"] for q in captured.captured_queries if "authtoken_token" in q["sql"]]
    assert len(token_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_a_reopened_connection_gets_the_wanted_scope_before_its_first_query():
    with tenant_context(4242):
        assert _connection_state() == (tenancy.TENANT_ROLE, "4242")
        connection.close()  # lost mid-request; Django reconnects on the next query
        assert _connection_state() == (tenancy.TENANT_ROLE, "4242")
    assert _connection_state()[0] != tenancy.TENANT_ROLE


def test_embedded_sqlite_is_a_no_op(monkeypatch):
    monkeypatch.setattr(tenancy, "rls_active", lambda: False)
    with tenant_context(1):
        assert tenancy.current_tenant() == 1
        assert _connection_state()[0] != tenancy.TENANT_ROLE


# --- Celery: tasks for one organization, sweeps across them ----------------------------------


def test_a_task_for_one_organization_runs_in_its_scope(acme, globex, monkeypatch):
    from audit import tasks
    from audit.models import Event

    event = Event.objects.filter(organization=globex.organization).first()
    assert event is not None
    seen = []

    def probe(*, event_id):
        seen.append(_connection_state())
        return type("Outcome", (), {"delivery_ids": []})()

    monkeypatch.setattr(tasks, "event_dispatch", probe)
    tasks.event_dispatch_task(event.pk)
    assert seen == [(tenancy.TENANT_ROLE, str(globex.organization.pk))]
    # Run (eagerly) from inside organization A's scope, a task cannot be steered into B.
    with tenant_context(acme.organization.pk):
        tasks.event_dispatch_task(event.pk)
    assert seen[-1] == (tenancy.TENANT_ROLE, "")
    assert _connection_state()[0] != tenancy.TENANT_ROLE


def test_a_sweep_across_organizations_bypasses_and_logs_it(monkeypatch, caplog):
    from audit import tasks

    seen = []
    monkeypatch.setattr(tasks, "events_dispatch_stale", lambda: seen.append(_connection_state()) or [])
    with caplog.at_level(logging.INFO, logger="cyclecount.rls"):
        tasks.events_sweep_task()
    assert seen[0][0] != tenancy.TENANT_ROLE
    assert "row-level security bypass by audit.tasks.events_sweep_task" in caplog.text
    assert "beat: dispatch stale events of every organization" in caplog.text
