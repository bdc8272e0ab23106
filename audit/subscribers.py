"""In-process event subscribers: a small registry, filled in code at start-up.

Register a handler with the decorator, in a module your app imports from its `AppConfig.ready()`
(e.g. `reports/subscribers.py`, imported by `ReportsConfig.ready`)::

    from audit.subscribers import subscribe

    @subscribe("inventory.adjusted")
    def refresh_tile(event: Event) -> None:
        ...

What a handler can rely on (see `audit.services.event_dispatch`):

- It is called with the committed Event, once per dispatch, inside the dispatch's transaction and
  its own savepoint: its database writes commit together with the event's `dispatched_at`, so a
  handler whose dispatch commits has run exactly once; a crash before that re-runs it.
- It must not do I/O itself: anything outside the database belongs in `transaction.on_commit`.
- If it raises, its writes are rolled back, the error is logged and recorded on the event
  (`subscriber_errors`), and the other handlers and the webhook deliveries go ahead. It is not
  retried automatically.
"""

from __future__ import annotations

from collections.abc import Callable

from audit.models import DOMAIN_EVENT_TYPES, Event

Handler = Callable[[Event], None]

_handlers: dict[str, list[Handler]] = {}


def subscribe(event_type: str) -> Callable[[Handler], Handler]:
    """Decorator: call the handler for every dispatched event of `event_type` (registering twice is a no-op)."""
    if event_type not in DOMAIN_EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; expected one of {', '.join(DOMAIN_EVENT_TYPES)}")

    def register(handler: Handler) -> Handler:
        handlers = _handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)
        return handler

    return register


def unsubscribe(event_type: str, handler: Handler) -> None:
    """Remove a handler (tests, mostly); unknown handlers are ignored."""
    handlers = _handlers.get(event_type, [])
    if handler in handlers:
        handlers.remove(handler)


def subscribers_for(event_type: str) -> tuple[Handler, ...]:
    """The handlers of `event_type`, in registration order."""
    return tuple(_handlers.get(event_type, ()))


def handler_name(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"
