"""The one interface every system of record implements, and the registry that picks one.

Backends speak these dataclasses only; vendor details stay inside `adapters/<vendor>/`. Domain
code reaches adapters through this module (`push_requested`) and never imports a vendor.

Errors a backend raises tell the drain what it may do next:
- `TransientBackendError`: nothing happened; retry later (429, concurrency limit, 5xx, refused login).
- `PermanentBackendError`: the backend refused this batch for good; a person must fix the cause.
- `OutcomeUnknown`: a write was sent and its answer lost; it may have happened. Never re-send
  blindly: look the batch up by its external id first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.db import transaction

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from adapters.models import BackendConnection


@dataclass(frozen=True)
class RemoteLocation:
    external_id: str
    name: str
    parent_external_id: str | None = None
    active: bool = True


@dataclass(frozen=True)
class RemoteItem:
    external_id: str
    sku: str
    name: str = ""
    barcode: str = ""
    average_cost: Decimal | None = None
    active: bool = True


@dataclass(frozen=True)
class RemoteBalance:
    item_external_id: str
    location_external_id: str
    on_hand: Decimal
    reserved: Decimal = Decimal("0")


@dataclass(frozen=True)
class AdjustmentLine:
    item_external_id: str
    location_external_id: str
    delta: Decimal
    memo: str = ""
    unit_cost: Decimal | None = None


@dataclass(frozen=True)
class AdjustmentBatch:
    external_id: str
    location_external_id: str
    tran_date: date
    memo: str
    lines: tuple[AdjustmentLine, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "location_external_id": self.location_external_id,
            "tran_date": self.tran_date.isoformat(),
            "memo": self.memo,
            "lines": [
                {
                    "item_external_id": line.item_external_id,
                    "location_external_id": line.location_external_id,
                    "delta": str(line.delta),
                    "memo": line.memo,
                    "unit_cost": None if line.unit_cost is None else str(line.unit_cost),
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdjustmentBatch:
        return cls(
            external_id=data["external_id"],
            location_external_id=data["location_external_id"],
            tran_date=date.fromisoformat(data["tran_date"]),
            memo=data["memo"],
            lines=tuple(
                AdjustmentLine(
                    item_external_id=line["item_external_id"],
                    location_external_id=line["location_external_id"],
                    delta=Decimal(line["delta"]),
                    memo=line["memo"],
                    unit_cost=None if line.get("unit_cost") is None else Decimal(line["unit_cost"]),
                )
                for line in data["lines"]
            ),
        )


@dataclass(frozen=True)
class PushReceipt:
    record_id: str
    duplicate: bool = False
    # True when the batch was handed over (a file to import) and a person confirms it landed.
    awaiting_confirmation: bool = False


class BackendError(Exception):
    """Base of what a backend raises; the message is safe to show (it never holds secrets)."""


class TransientBackendError(BackendError):
    def __init__(self, message: str, *, retry_after: float | None = None, retry_soon: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # False for problems a quick retry will not fix (refused credentials): wait for the backoff.
        self.retry_soon = retry_soon


class PermanentBackendError(BackendError):
    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code


class OutcomeUnknown(BackendError):
    """The request may have taken effect; its answer never arrived."""


class InventoryBackend(Protocol):
    """What Cyclecount needs from a system of record. Reads stream; writes are whole batches."""

    max_batch_lines: int
    concurrency: int
    # True when the backend knows items by SKU and locations by code (files), so no mapping is kept.
    maps_by_code: bool

    def fetch_locations(self) -> Iterator[RemoteLocation]: ...

    def fetch_items(self) -> Iterator[RemoteItem]: ...

    def fetch_balances(self) -> Iterator[RemoteBalance]: ...

    def push_adjustments(self, batch: AdjustmentBatch) -> PushReceipt:
        """Apply the batch all or nothing; a batch whose external id exists is not applied again."""
        ...

    def find_batch(self, external_id: str) -> PushReceipt | None:
        """The record a batch created, if the backend has it."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    """How a kind of backend is configured and built."""

    kind: str
    factory: Callable[[dict[str, Any], dict[str, str]], InventoryBackend]
    required_settings: tuple[str, ...] = ()
    secret_keys: tuple[str, ...] = ()
    optional_settings: tuple[str, ...] = ()
    validate: Callable[[dict[str, Any]], dict[str, str]] = field(default=lambda values: {})


_REGISTRY: dict[str, BackendSpec] = {}


def backend_register(spec: BackendSpec) -> None:
    _REGISTRY[spec.kind] = spec


def backend_spec(kind: str) -> BackendSpec:
    _load_builtin_backends()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise LookupError(f"no backend registered for kind {kind!r}") from None


def backend_for(connection: BackendConnection) -> InventoryBackend:
    """The backend implementation configured by `connection` (secrets decrypted in memory only)."""
    from adapters.secrets import secrets_decrypt

    spec = backend_spec(connection.kind)
    return spec.factory(dict(connection.settings), secrets_decrypt(connection.secrets_encrypted))


def _load_builtin_backends() -> None:
    # Imported lazily so importing the interface never pulls in vendor HTTP code.
    if "netsuite" not in _REGISTRY:
        import adapters.netsuite  # each backend package registers itself on import
    if "file" not in _REGISTRY:
        import adapters.file
    if "shopify" not in _REGISTRY:
        import adapters.shopify
    if "hotwax" not in _REGISTRY:
        import adapters.hotwax  # noqa: F401


def push_requested(*, organization_id: int) -> None:
    """Ask for a drain of the organization's outbox once the current transaction commits.

    Called by services that approve adjustments; it never calls a backend itself.
    """
    transaction.on_commit(lambda: _enqueue_drain(organization_id))


def _enqueue_drain(organization_id: int) -> None:
    from adapters.tasks import push_drain_organization_task

    try:
        push_drain_organization_task.apply_async((organization_id,), retry=False)
    except Exception:
        # The broker being down must never fail an approval that already committed: the
        # beat sweep drains within a minute of it coming back.
        logger.warning("could not enqueue a drain for organization %s; the sweep will", organization_id, exc_info=True)
