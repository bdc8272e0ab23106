"""API rate limits: per user (API token or session), per anonymous client, and for token issuing.

The rates are REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (README "Security" has the numbers and why
a busy scanner stays far below them). Each limit is a fixed-window counter in the default cache:
one atomic increment per request and limit, shared by every process when the cache is Redis. DRF's
own throttles keep a list of timestamps per client and rewrite it on each request, which is not
atomic across processes and grows with the rate.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from redis import Redis
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

TOKEN_ISSUE_SCOPE = "token_issue"  # noqa: S105 - a throttle scope's name, not a secret


logger = logging.getLogger(__name__)
# What a cache that is down raises (Redis in production; the in-process cache never is).
CACHE_DOWN = (RedisError, OSError)


class _WindowRateThrottle(SimpleRateThrottle):
    """At most `num_requests` per client in each window of `duration` seconds.

    Windows are aligned on the clock, so a client may pass up to twice the rate across a window
    boundary; Retry-After is the time left in the current window.
    """

    cache = default_cache
    cache_format = "throttle:%(scope)s:%(ident)s"

    def __init__(self) -> None:
        # DRF reads the rates once at import; reading them here keeps settings overrides working.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self._wait = 0.0

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No throttle rate set for scope {self.scope!r}")
        return rates[self.scope]

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        ident_key = self.get_cache_key(request, view)
        if ident_key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"{ident_key}:{window}"
        try:
            count = self._count(key)
        except CACHE_DOWN as error:
            # Limits protect the service; they must never stop scans when the cache is away.
            logger.warning("rate limit not checked, the cache is unavailable: %s", error)
            return True
        self._wait = (window + 1) * self.duration - now
        return count <= self.num_requests

    def _count(self, key: str) -> int:
        backend = caches[DEFAULT_CACHE_ALIAS] if self.cache is default_cache else self.cache
        redis = _redis_client(backend)
        if redis is not None:
            # One round trip: count, and let the window's key outlive the window only briefly.
            full_key = backend.make_and_validate_key(key)
            count, _ = redis.pipeline(transaction=False).incr(full_key).expire(full_key, self.duration + 1).execute()
            return count
        try:
            return self.cache.incr(key)
        except ValueError:  # first request of the window
            return 1 if self.cache.add(key, 1, timeout=self.duration + 1) else self.cache.incr(key)

    def wait(self) -> float:
        return max(1, math.ceil(self._wait))


def _redis_client(backend: BaseCache) -> Redis | None:
    """The Redis client behind a Redis cache backend, made once per backend (None otherwise).

    Django's Redis cache builds a new client object for every operation, which cost more CPU
    than the round trip itself on every API request. The client is thread-safe and shares the
    backend's connection pool. Values stay readable through the cache API: Django's Redis cache
    stores integers as they are, as INCR does.
    """
    if not isinstance(backend, RedisCache):
        return None
    client = getattr(backend, "_throttle_client", None)
    if client is None:
        client = backend._cache.get_client(write=True)
        backend._throttle_client = client
    return client


class _PerUserThrottle(_WindowRateThrottle):
    """Keyed by user: a person's API token and their browser sessions share one allowance."""

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"user:{request.user.pk}"}


class UserBurstRateThrottle(_PerUserThrottle):
    scope = "user_burst"


class UserSustainedRateThrottle(_PerUserThrottle):
    scope = "user_sustained"


class AnonymousRateThrottle(_WindowRateThrottle):
    """Keyed by client address (behind proxies, see settings.TRUSTED_PROXY_COUNT)."""

    scope = "anon"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"ip:{self.get_ident(request)}"}


class TokenIssueRateThrottle(_PerUserThrottle):
    """Stricter limit for views that issue credentials (`throttle_scope = TOKEN_ISSUE_SCOPE`)."""

    scope = TOKEN_ISSUE_SCOPE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if getattr(view, "throttle_scope", None) != self.scope:
            return None
        return super().get_cache_key(request, view)

    def allow_request(self, request: Request, view: Any) -> bool:
        # Only the issuing itself counts: reading a page that offers it does not.
        if request.method in {"GET", "HEAD", "OPTIONS"}:
            return True
        return super().allow_request(request, view)


class _TokenIssueView:
    throttle_scope = TOKEN_ISSUE_SCOPE


def token_issue_wait(request: Any) -> int | None:
    """For plain Django views that issue tokens: None when allowed, else seconds to wait."""
    throttle = TokenIssueRateThrottle()
    if throttle.allow_request(request, _TokenIssueView()):
        return None
    return int(throttle.wait())
