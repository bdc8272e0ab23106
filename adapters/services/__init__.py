"""Writes of the adapters app: connections, the push drain, and sync with parity."""

from adapters.services.connections import ConnectionBusy, ConnectionInvalid, backend_connect, connection_worker
from adapters.services.drain import DrainResult, NotRetryable, push_batch_retry, push_drain, push_retry
from adapters.services.sync import SyncResult, backend_sync

__all__ = [
    "ConnectionBusy",
    "ConnectionInvalid",
    "DrainResult",
    "NotRetryable",
    "SyncResult",
    "backend_connect",
    "backend_sync",
    "connection_worker",
    "push_batch_retry",
    "push_drain",
    "push_retry",
]
