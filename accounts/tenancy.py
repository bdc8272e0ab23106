"""Tenant isolation in PostgreSQL itself: row-level security keyed on a per-connection setting.

Every table with an `organization_id` column carries one policy: a row is visible (and may be
written) only when its `organization_id` equals the setting `cyclecount.organization_id`.
Policies bind only roles that are neither superuser nor the tables' owner, so the application
switches its connection to the NOLOGIN role `cyclecount_tenant` while it acts for a caller:

- requests: `TenantDatabaseMiddleware` resolves the caller's organization (session user or API
  token; that identity lookup is the one legitimately cross-organization read) and switches the
  role and the setting in one round trip; it switches back when the response is ready. Callers
  without an organization (anonymous, no membership) get the role with an empty setting: no
  organization's rows at all.
- Celery tasks that act for one organization wrap their work in `tenant_context(organization_id)`;
  tasks that act across organizations (beat sweeps) wrap it in `rls_bypass(reason=...)`, which logs.
- everything else (migrate, management commands, the shell, tests' own setup) runs with the
  connection's own role, i.e. bypasses the policies. `migrate` logs its bypass explicitly, and
  every connection opened outside a tenant context logs one line naming the process.

Session-level settings (`set_config(..., false)`), not `SET LOCAL`: requests are not wrapped in
one transaction (no ATOMIC_REQUESTS), and a `SET LOCAL` would end with the first statement's
autocommit. Inside a transaction that rolls back PostgreSQL also rolls the setting back, which
is what a rolled-back use case wants. The wanted state lives in a context variable, so a
connection opened (or reopened) while a tenant context is active gets it before its first query.

The embedded default, SQLite, has no row-level security: all of this is a no-op there and the
application-level scoping (`accounts.scoping`) is the only guard, as it remains the first one on
PostgreSQL.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse

from config.middleware import database_unavailable

logger = logging.getLogger("cyclecount.rls")

TENANT_ROLE = "cyclecount_tenant"
ORGANIZATION_SETTING = "cyclecount.organization_id"
ORGANIZATION_COLUMN = "organization_id"
# The version is in the name: changing the expression means a new name, and the installer drops
# policies of older versions.
POLICY_PREFIX = "cyclecount_tenant_isolation"
POLICY_NAME = f"{POLICY_PREFIX}_v1"
POLICY_EXPRESSION = f"({ORGANIZATION_COLUMN} = NULLIF(current_setting('{ORGANIZATION_SETTING}', true), '')::bigint)"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Tenant:
    """Connection state wanted: the tenant role, scoped to one organization (None: to none)."""

    organization_id: int | None


# None: the connection's own role (owner or superuser), i.e. no row-level security.
_wanted: contextvars.ContextVar[_Tenant | None] = contextvars.ContextVar("cyclecount_rls_wanted", default=None)
# True while the middleware resolves the caller (the request's one unscoped read).
_resolving_caller: contextvars.ContextVar[bool] = contextvars.ContextVar("cyclecount_rls_resolving", default=False)


def rls_active() -> bool:
    """Whether this database enforces the policies (PostgreSQL) or only the application (SQLite)."""
    return connection.vendor == "postgresql"


def current_tenant() -> int | bool | None:
    """The organization id the connection is scoped to; None for none; False when not scoped."""
    wanted = _wanted.get()
    return False if wanted is None else wanted.organization_id


def _apply(wrapper: BaseDatabaseWrapper, wanted: _Tenant | None) -> None:
    """Put the connection in the wanted state: one round trip.

    It goes through the driver's cursor, like Django's own time-zone set-up, so it is connection
    plumbing rather than one of the request's queries (query-count pins stay about the request).
    """
    if wanted is None:
        sql, params = "SELECT set_config('role', 'none', false), set_config(%s, '', false)", [ORGANIZATION_SETTING]
    else:
        organization = "" if wanted.organization_id is None else str(int(wanted.organization_id))
        sql = "SELECT set_config('role', %s, false), set_config(%s, %s, false)"
        params = [TENANT_ROLE, ORGANIZATION_SETTING, organization]
    # Bound and prepared on the server (config.prepared): the same statements, twice a request.
    with wrapper.wrap_database_errors, psycopg.Cursor(wrapper.connection) as cursor:
        cursor.execute(sql, params, prepare=True)


def _switch(wanted: _Tenant | None) -> contextvars.Token:
    token = _wanted.set(wanted)
    if rls_active():
        # Django's per-request health check (CONN_MAX_AGE), as its first cursor would do.
        connection.close_if_health_check_failed()
    # No open connection: the one opened next gets the state from `connection_prepare`.
    if rls_active() and connection.connection is not None:
        try:
            _apply(connection, wanted)
        except BaseException:
            _wanted.reset(token)
            raise
    return token


def _switch_back(token: contextvars.Token, *, leaving: _Tenant | None) -> None:
    _wanted.reset(token)
    restored = _wanted.get()
    if not rls_active() or restored == leaving or connection.connection is None:
        return  # nothing to undo, or no open connection to undo it on (a new one starts clean)
    try:
        _apply(connection, restored)
    except DatabaseError as error:
        if connection.in_atomic_block:
            # The transaction is broken and will roll back; PostgreSQL rolls back the settings
            # made inside it with it.
            logger.warning("row-level security: could not restore the connection's role (%s); rollback will", error)
        else:
            # Never hand a connection in an unknown role to the next user: a new one starts clean.
            logger.warning("row-level security: could not restore the connection's role (%s); closing it", error)
            connection.close()


class tenant_context:
    """Run the block as the tenant role, scoped to one organization (None: to no organization).

    For Celery tasks and services that act for one organization outside a request. Nests:
    leaving the block restores whatever state was wanted before it. A no-op on SQLite.
    """

    def __init__(self, organization_id: int | None) -> None:
        self.wanted = _Tenant(None if organization_id is None else int(organization_id))
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> tenant_context:
        self._tokens.append(_switch(self.wanted))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _switch_back(self._tokens.pop(), leaving=self.wanted)

    def __call__(self, function: F) -> F:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return wrapped  # type: ignore[return-value]


class rls_bypass:
    """Run the block with the connection's own role, past the policies, and log who and why.

    For work that is across organizations by nature: beat sweeps that find due work in every
    organization, ops commands. `by` defaults to the calling function (or the decorated one).
    """

    def __init__(self, *, reason: str, by: str | None = None) -> None:
        if not reason.strip():
            raise ValueError("rls_bypass needs a reason")
        self.reason = reason
        self.by = by or _caller_name(sys._getframe(1))
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> rls_bypass:
        logger.info(
            "row-level security bypass by %s (database role %s, was %s): %s",
            self.by,
            _database_user(),
            _describe(_wanted.get()),
            self.reason,
        )
        self._tokens.append(_switch(None))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _switch_back(self._tokens.pop(), leaving=None)

    def __call__(self, function: F) -> F:
        by = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with rls_bypass(reason=self.reason, by=by):
                return function(*args, **kwargs)

        return wrapped  # type: ignore[return-value]


def _caller_name(frame: Any) -> str:
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{frame.f_code.co_qualname}"


def _database_user() -> str:
    return str(connection.settings_dict.get("USER") or "?")


def _describe(wanted: _Tenant | None) -> str:
    if wanted is None:
        return "unscoped"
    return f"organization {wanted.organization_id}" if wanted.organization_id is not None else "no organization"


def organization_of(model: type[Any], pk: object) -> int | None:
    """The organization of one row, for a task handed its id: whom the task then acts for.

    Read with the current state: a worker (unscoped) sees every row, as a request resolves its
    caller; run inside a request (eager tasks) it sees only that request's organization, so a
    task can never be steered into another one. None when the row is not there.
    """
    return model._default_manager.filter(pk=pk).values_list(ORGANIZATION_COLUMN, flat=True).first()


# --- Requests ------------------------------------------------------------------------------


class TenantDatabaseMiddleware:
    """Scope the database connection to the caller's organization for the whole request.

    Place it after AuthenticationMiddleware. The caller is who the API will see: an API token
    when the request carries one (DRF tries token authentication first), else the session user.
    Resolving them (session, user, token, membership) is done with the connection's own role,
    before the switch: it is the one read that must see every organization. The answer is
    cached on the request, so the view does not repeat it. Cost: one round trip to switch, one
    to switch back; the caller's read stands in for Django's health-check round trip
    (`_first_read_checks_health`). A no-op on SQLite.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not rls_active():
            return self.get_response(request)
        try:
            organization_id = _first_read_checks_health(lambda: _request_organization_id(request))
        except (OperationalError, InterfaceError) as error:
            # No identity without the database. Going on with no organization would turn an
            # outage into a 403 once the database is back for the view (the scoped connection
            # then sees no membership); the client retries a 503 instead.
            return database_unavailable(request, error)
        scope = tenant_context(organization_id)
        try:
            scope.__enter__()
        except (OperationalError, InterfaceError) as error:
            # The database is away. Record the wanted state without a connection (a reconnect
            # applies it before any query) and let the view meet the outage: it answers 503.
            logger.warning("row-level security: could not scope the connection (%s); will on reconnect", error)
            return self._scoped_on_reconnect(request, scope)
        try:
            return self.get_response(request)
        finally:
            scope.__exit__(None, None, None)

    def _scoped_on_reconnect(self, request: HttpRequest, scope: tenant_context) -> HttpResponse:
        if not connection.in_atomic_block:
            connection.close()
        token = _wanted.set(scope.wanted)
        try:
            return self.get_response(request)
        finally:
            _wanted.reset(token)
            if not connection.in_atomic_block:
                connection.close()  # scoped, or broken: either way the next user gets a fresh one


def _first_read_checks_health(read: Callable[[], Any]) -> Any:
    """Run the request's first read; on a connection found dead, reconnect and read again.

    Django's per-request health check (CONN_HEALTH_CHECKS) sends `SELECT 1` before the first
    query, a round trip on every request. Every request here starts with a read (its caller),
    so that read is the check: on a stale connection (the server restarted, or ended the
    backend) it fails before anything is done, the connection is replaced and the read runs
    again; on a healthy one nothing extra is sent. A database that is really away fails twice,
    and the caller answers 503 as before.
    """
    if (
        connection.connection is None
        or not connection.health_check_enabled
        or connection.health_check_done
        or connection.in_atomic_block
    ):
        return read()
    connection.health_check_done = True
    try:
        return read()
    except (OperationalError, InterfaceError) as error:
        logger.info("row-level security: the connection was dead (%s); reading the caller on a new one", error)
        connection.close()
        return read()


def _request_organization_id(request: HttpRequest) -> int | None:
    from accounts.authentication import token_preauthenticate
    from accounts.selectors import organization_for_user

    resolving = _resolving_caller.set(True)
    try:
        # DRF's test client can force a user (APIClient.force_authenticate); DRF then skips its
        # authenticators, and so does this. Nothing in an HTTP request can set it.
        user = getattr(request, "_force_auth_user", None) or token_preauthenticate(request)
        if user is None:
            user = getattr(request, "user", None)
        organization = organization_for_user(user)
    finally:
        _resolving_caller.reset(resolving)
    return organization.pk if organization is not None else None


# --- New connections -----------------------------------------------------------------------


def connection_prepare(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """`connection_created`: give a new connection the wanted state before its first query."""
    if connection.vendor != "postgresql" or connection.alias != "default":
        return
    wanted = _wanted.get()
    if wanted is not None:
        _apply(connection, wanted)
        return
    if _resolving_caller.get():
        return  # a request's first query; the middleware scopes the connection right after it
    logger.info(
        "row-level security bypass by %s (database role %s): a connection opened outside any request or "
        "tenant context runs with the connection's own role",
        _process_name(),
        _database_user(),
    )


def _process_name() -> str:
    argv = [part for part in sys.argv[:3] if part and not part.startswith("-")]
    return " ".join(argv) or "python"


# --- Schema: the role, its grants and the policies ------------------------------------------


def _role_sql() -> str:
    # Roles are cluster-wide and several databases may migrate at once: both the check and the
    # creation race, so a concurrent creation is caught rather than checked for.
    return f"""
DO $$
DECLARE
    hint text := format('As a superuser: CREATE ROLE {TENANT_ROLE} NOLOGIN; GRANT {TENANT_ROLE} TO %I;', current_user);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TENANT_ROLE}') THEN
        BEGIN
            CREATE ROLE {TENANT_ROLE} NOLOGIN NOSUPERUSER NOINHERIT NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'row-level security: % may not create the role {TENANT_ROLE}', current_user
                    USING HINT = hint;
        END;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, '{TENANT_ROLE}', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT {TENANT_ROLE} TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'row-level security: % may not join the role {TENANT_ROLE}', current_user
                USING HINT = hint;
        END;
    END IF;
END
$$;
"""  # noqa: S608 — constants of this module, no input


def organization_tables(cursor: Any) -> list[str]:
    """Every table of the current schema with an organization_id column: the ones to police."""
    cursor.execute(
        """
        SELECT c.relname
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE n.nspname = current_schema()
           AND c.relkind IN ('r', 'p')
           AND a.attname = %s
           AND NOT a.attisdropped
         ORDER BY c.relname
        """,
        [ORGANIZATION_COLUMN],
    )
    return [row[0] for row in cursor.fetchall()]


def unpoliced_tables(cursor: Any) -> list[str]:
    """Tables with an organization_id whose row-level security is off or lacks our policy."""
    cursor.execute(
        """
        SELECT c.relname
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE n.nspname = current_schema()
           AND c.relkind IN ('r', 'p')
           AND a.attname = %s
           AND NOT a.attisdropped
           AND NOT (
                c.relrowsecurity
                AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s)
           )
         ORDER BY c.relname
        """,
        [ORGANIZATION_COLUMN, POLICY_NAME],
    )
    return [row[0] for row in cursor.fetchall()]


def rls_install(*, using: str = "default") -> list[str]:
    """Create the role, grant it the tables, and police every organization table; idempotent.

    Runs after every `migrate` (post_migrate), so tables added later are covered without a
    migration of their own. Only tables missing the current policy get DDL. Returns them.
    """
    from django.db import connections

    wrapper = connections[using]
    if wrapper.vendor != "postgresql":
        return []
    quote = wrapper.ops.quote_name
    with wrapper.cursor() as cursor:
        cursor.execute(_role_sql())
        cursor.execute("SELECT current_schema()")
        schema = quote(cursor.fetchone()[0])
        for statement in (
            f"GRANT USAGE ON SCHEMA {schema} TO {TENANT_ROLE}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {TENANT_ROLE}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {TENANT_ROLE}",
            # Tables made outside migrate (they get their policy at the next migrate).
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {TENANT_ROLE}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {TENANT_ROLE}",
        ):
            cursor.execute(statement)
        tables = unpoliced_tables(cursor)
        for table in tables:
            cursor.execute(
                "SELECT polname FROM pg_policy WHERE polrelid = %s::regclass AND polname LIKE %s",
                [quote(table), f"{POLICY_PREFIX}%"],
            )
            for (old,) in cursor.fetchall():
                cursor.execute(f"DROP POLICY IF EXISTS {quote(old)} ON {quote(table)}")
            cursor.execute(f"ALTER TABLE {quote(table)} ENABLE ROW LEVEL SECURITY")
            cursor.execute(
                f"CREATE POLICY {POLICY_NAME} ON {quote(table)} AS PERMISSIVE FOR ALL TO PUBLIC "
                f"USING {POLICY_EXPRESSION} WITH CHECK {POLICY_EXPRESSION}"
            )
    if tables:
        logger.info("row-level security: policed %d table(s): %s", len(tables), ", ".join(tables))
    return tables


def migrate_bypass_log(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """`pre_migrate`: migrations change the schema as the owner, past the policies; say so."""
    logger.info(
        "row-level security bypass by migrate (database %s, role %s): schema changes run as the tables' owner",
        using,
        _database_user(),
    )


def policies_install(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """`post_migrate`: (re)install the role, grants and policies."""
    rls_install(using=using)
