"""How requests to NetSuite are signed. Pluggable: NetSuite stops new TBA integrations from
2027.1 in favour of OAuth 2.0, which will be a second implementation of `NetSuiteAuth`."""

from __future__ import annotations

from typing import Protocol

from requests.auth import AuthBase
from requests_oauthlib import OAuth1


def account_realm(account_id: str) -> str:
    """The OAuth realm: the account id upper case with underscores (`1234567_SB1`)."""
    return account_id.strip().upper().replace("-", "_")


def account_host(account_id: str) -> str:
    """The account's host label: lower case with hyphens (`1234567-sb1`)."""
    return account_id.strip().lower().replace("_", "-")


class NetSuiteAuth(Protocol):
    def requests_auth(self) -> AuthBase: ...


class TokenBasedAuth:
    """Token-Based Authentication: OAuth 1.0a, HMAC-SHA256, realm = the account.

    Query parameters are signed, the JSON body is not (oauthlib signs a body only when it is
    form-encoded). `nonce` and `timestamp` are fixed only to reproduce published examples.
    """

    def __init__(
        self,
        *,
        account_id: str,
        consumer_key: str,
        consumer_secret: str,
        token_id: str,
        token_secret: str,
        nonce: str | None = None,
        timestamp: str | None = None,
    ) -> None:
        fixed = {key: value for key, value in (("nonce", nonce), ("timestamp", timestamp)) if value}
        self._auth = OAuth1(
            consumer_key,
            client_secret=consumer_secret,
            resource_owner_key=token_id,
            resource_owner_secret=token_secret,
            signature_method="HMAC-SHA256",
            realm=account_realm(account_id),
            **fixed,
        )

    def requests_auth(self) -> AuthBase:
        return self._auth

    def __repr__(self) -> str:
        # Never let a secret reach a log line or a traceback's locals summary.
        return "TokenBasedAuth(<secrets hidden>)"
