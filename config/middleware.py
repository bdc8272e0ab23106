"""Answer a lost database with a clean, retryable 503 instead of a 500 traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """A restarting or unreachable database is an outage, not a bug: 503 + Retry-After.

    Nothing was written (each request's writes are one transaction that did not commit), so a
    client — the count app, a scanner — can send the same request again; capture is idempotent
    by event id. Django drops the broken connection at the end of the request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        return database_unavailable(request, exception)


def database_unavailable(request: HttpRequest, error: Exception) -> HttpResponse:
    """The 503 a client retries. Also for middleware that meets the outage before the view does
    (Django turns an exception raised in a middleware into a 500 before any outer one sees it)."""
    logger.warning("database unavailable during %s %s: %s", request.method, request.path, error)
    response = JsonResponse(
        {"detail": "The database is unavailable for a moment; send the same request again."}, status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
