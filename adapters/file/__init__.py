"""CSV files instead of an API: adjustments exported for import, on-hand uploaded."""

from __future__ import annotations

from typing import Any

from adapters.file.backend import FileBackend, validate_settings
from adapters.interface import BackendSpec, backend_register


def build(values: dict[str, Any], secrets: dict[str, str]) -> FileBackend:
    return FileBackend(layout=str(values.get("layout") or "netsuite"), settings=values)


backend_register(
    BackendSpec(
        kind="file",
        factory=build,
        optional_settings=("layout", "subsidiary", "adjustment_account", "date_format"),
        validate=validate_settings,
    )
)
