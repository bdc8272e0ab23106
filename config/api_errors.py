"""Every API error is JSON: field errors keep their field names, everything else gets `detail`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import exceptions, status
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
