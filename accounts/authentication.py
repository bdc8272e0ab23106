"""API token authentication that loads the caller's membership in the same query."""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token

from accounts.models import Membership, Organization
from accounts.selectors import remember_membership
from config.prepared import prepared_cursor

# Where the tenant middleware leaves the token's (user, token) for DRF to pick up.
_PREAUTHENTICATED = "_cyclecount_token_authentication"


class MembershipTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; the membership (and organization) rides along.

    Scanners call the API once per scan; every request needs the caller's organization, so
    fetching it with the token saves a query on each of them.
    """

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        # The tenant middleware authenticated the token already (accounts.tenancy); one query.
        preauthenticated = getattr(getattr(request, "_request", request), _PREAUTHENTICATED, None)
        if preauthenticated is not None:
            return preauthenticated
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = token_with_membership(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


@functools.cache
def _token_query() -> tuple[str, list[tuple[type[models.Model], list[str]]], list[tuple[int, Any, list]]]:
    """The SQL that reads a token with its user, membership and organization, and how to read it.

    Written out once per process from the models' fields: a scanner sends one request per scan,
    and composing the same select_related query every time cost more Python than the capture.
    Returns the SQL, each model with its attribute names in column order, and the columns whose
    values need the backend's converters (SQLite's dates and booleans) as the ORM would apply.
    """
    user_model = get_user_model()
    parts = [(Token, "t"), (user_model, "u"), (Membership, "m"), (Organization, "o")]
    selected, layout, converted = [], [], []
    for model, alias in parts:
        fields = model._meta.concrete_fields
        for field in fields:
            column = field.get_col(alias)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if converters:
                converted.append((len(selected), column, converters))
            selected.append(f"{alias}.{connection.ops.quote_name(field.column)}")
        layout.append((model, [field.attname for field in fields]))
    table = {model: connection.ops.quote_name(model._meta.db_table) for model, _ in parts}
    sql = (
        f"SELECT {', '.join(selected)} FROM {table[Token]} t "  # noqa: S608 - names are ours
        f"JOIN {table[user_model]} u ON u.id = t.user_id "
        f"LEFT JOIN {table[Membership]} m ON m.user_id = u.id "
        f"LEFT JOIN {table[Organization]} o ON o.id = m.organization_id "
        "WHERE t.key = %s"
    )
    return sql, layout, converted


def token_with_membership(key: str) -> Token | None:
    """The token of this key with its user, and the user's membership and organization, in one query.

    The same objects `Token.objects.select_related("user", "user__membership",
    "user__membership__organization")` builds: `token.user.membership` needs no query, and the
    membership is remembered for accounts.selectors.
    """
    sql, layout, converted = _token_query()
    with prepared_cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    row = list(row)
    for index, column, converters in converted:
        for converter in converters:
            row[index] = converter(row[index], column, connection)
    objects, start = [], 0
    for model, attnames in layout:
        values = row[start : start + len(attnames)]
        start += len(attnames)
        # A user with no membership: the LEFT JOINs read NULL for every membership column.
        objects.append(None if values[0] is None else model.from_db(connection.alias, attnames, values))
    token, user, membership, organization = objects
    token.user = user
    if membership is not None:
        membership.organization = organization
        membership.user = user
    Membership.user.field.remote_field.set_cached_value(user, membership)
    remember_membership(user, membership)
    return token


def token_preauthenticate(request: HttpRequest) -> Any | None:
    """The user of the request's API token, if it carries a valid one; remembered for DRF.

    The tenant middleware needs the caller's organization before the view runs; DRF's
    authentication then reuses the answer instead of asking the database again. An invalid
    token answers None here and is refused by DRF as before.
    """
    header = get_authorization_header(request).split()
    if not header or header[0].lower() != MembershipTokenAuthentication.keyword.lower().encode():
        return None
    try:
        authenticated = MembershipTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed:
        return None
    if authenticated is None:
        return None
    setattr(request, _PREAUTHENTICATED, authenticated)
    return authenticated[0]
