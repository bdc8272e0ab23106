"""OpenAPI schema generation tuned to our API style."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

PAGING = frozenset({"limit", "offset"})


class ErrorOutput(serializers.Serializer):
    """Every error that is not a validation error: `{"detail": message}` (see config.api_errors)."""

    detail = serializers.CharField()


class ValidationErrorOutput(serializers.Serializer):
    """400: field errors by field name (`non_field_errors` for the rest, `detail` for unparsable bodies)."""

    errors = serializers.DictField()


class NestedNameAutoSchema(AutoSchema):
    """Name nested Input/Output serializers after their view (`CaptureApi.Input` → `CaptureApiInput`),
    type numeric path ids as integers, and document the errors every API view can answer.

    Each API view declares its own `Input` and `Output` (one view per operation); without the
    prefix every one of them would collide in the schema's components.
    """

    def _get_serializer_name(self, serializer: Any, direction: str, bypass_extensions: bool = False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = type(serializer) if not isinstance(serializer, type) else serializer
        qualname = cls.__qualname__
        if "." in qualname and "<locals>" not in qualname and name.startswith(cls.__name__):
            return qualname.replace(".", "") + name[len(cls.__name__) :]
        return name

    def _resolve_path_parameters(self, variables: list[str]) -> list[dict[str, Any]]:
        # Our routes spell ids as regexes (`(?P<run_id>\d+)`, so a trailing slash is optional),
        # which drf-spectacular can only describe as patterned strings; they are integer ids.
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["schema"] == {"type": "string", "pattern": r"^\d+$"}:
                parameter["schema"] = {"type": "integer", "minimum": 0}
        return parameters

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        """Add the errors the shared machinery answers for every view, unless the view documents them.

        401 authentication, 403 organization membership and role checks, 429 rate limits
        (accounts.throttling), 404 for an id that is not the caller's organization's, 400 for a
        request body or filter that does not parse or validate, 415 for a body in a media type the
        view does not read. Their bodies are config.api_errors' shapes.
        """
        responses = super()._get_response_bodies(direction)
        for code, response in responses.items():
            # An error a view declares as a bare `dict` has the body every error has.
            if code >= "400" and self._is_free_form(response):
                serializer = ValidationErrorOutput if code == "400" else ErrorOutput
                responses[code] = self._get_response_for_code(serializer, code, direction=direction)
        common: dict[str, type[serializers.Serializer]] = {"401": ErrorOutput, "403": ErrorOutput, "429": ErrorOutput}
        parameters = self._get_parameters()
        if any(parameter["in"] == "path" for parameter in parameters):
            common["404"] = ErrorOutput
        has_body = self.method in {"POST", "PUT", "PATCH"} and self.get_request_serializer() is not None
        # Filters are checked (config.api_errors.checked_query_params); paging falls back to defaults.
        filtered = any(parameter["in"] == "query" and parameter["name"] not in PAGING for parameter in parameters)
        if has_body or filtered:
            common["400"] = ValidationErrorOutput
        if has_body:
            common["415"] = ErrorOutput  # a Content-Type none of the view's parsers reads
        for code, serializer in common.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(serializer, code, direction=direction)
        return responses

    @staticmethod
    def _is_free_form(response: dict[str, Any]) -> bool:
        schemas = [media.get("schema") for media in response.get("content", {}).values()]
        return bool(schemas) and all(schema == {"type": "object", "additionalProperties": {}} for schema in schemas)
