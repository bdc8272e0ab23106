"""Every API error is JSON: field errors keep their field names, everything else gets `detail`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.defaults import bad_request, page_not_found
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TransitionNotAllowed | ConcurrentTransition):
        # A state machine refusing a command is a conflict with the current state, not a bug.
        exc = Conflict(detail=str(exc) or Conflict.default_detail)
    if isinstance(exc, DjangoValidationError):
        # Model-level validation that escaped a service becomes a 400 with field messages.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        response.data = {"non_field_errors": response.data}
    if response is not None and response.status_code == status.HTTP_400_BAD_REQUEST:
        response.data = {"errors": response.data}
    return response


def request_refused(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 handler (a body Django itself refuses: too many fields, a bad multipart):
    under /api/ it has the shape of every API 400, pages keep Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"errors": {"detail": "The request could not be read: too many fields, or malformed."}},
                            status=400)  # fmt: skip
    return bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 handler: a URL under /api/ that matches no route answers JSON like every
    other API error (`/api/runs/-1/`), pages keep Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def checked_query_params(request: Request) -> QueryDict:
    """The request's query parameters; 400 naming those that hold a NUL character.

    PostgreSQL text cannot hold NUL, so a lookup with one fails as a server error instead of
    finding nothing (DRF's CharField refuses it in bodies; raw query parameters need this).
    """
    params = request.query_params
    refused = sorted({name for name, values in params.lists() if "\x00" in name or any("\x00" in v for v in values)})
    if refused:
        raise exceptions.ValidationError({name: ["must not contain NUL characters"] for name in refused})
    return params


def text_without_nul(data: Any, *names: str) -> dict[str, str]:
    """Raw text fields of a request body (absent or null as ""), for services that judge them
    themselves; 400 when the body is not an object or a field holds a NUL character."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["send a JSON object"]})
    values = {name: str(data.get(name) or "") for name in names}
    refused = [name for name, value in values.items() if "\x00" in value]
    if refused:
        raise exceptions.ValidationError({name: ["must not contain NUL characters"] for name in refused})
    return values


# The largest id a database integer column holds (PostgreSQL bigint, SQLite INTEGER).
MAX_ID = 2**63 - 1


def is_id(value: str) -> bool:
    """An id as text: ASCII digits (str.isdigit() alone admits "²", which int() refuses) that fit
    a database integer (a larger one fails foreign-key lookups as a server error)."""
    return value.isascii() and value.isdigit() and int(value) <= MAX_ID
