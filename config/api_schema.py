"""OpenAPI schema generation tuned to our API style."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema


class NestedNameAutoSchema(AutoSchema):
    """Name nested Input/Output serializers after their view (`CaptureApi.Input` → `CaptureApiInput`).

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
