"""The handler registry: ``attach``, ``detach``, ``execute``, shaped like Erlang's ``:telemetry``.

Who listens to what is decided when a handler is attached or detached, never
when an event is emitted. The registry keeps, per event name, a tuple of
``(function, config, handler)`` entries; attach and detach build new tuples
under a lock and swap them in (copy-on-write), so an emission reads one tuple
without locking and never sees a half-built table.

For the 11 Hephaestus events the emitters read their tuple through a *slot*: a
one-element list created once per event name (``_slot(event_name)``) that the
registry updates in place. Reading ``slot[0]`` costs less than a dict lookup,
which is why an emitter with no handler costs barely more than an empty
function call.

A handler that raises an ``Exception`` is detached from all its events, the
failure is logged (``structlog.get_logger("hephaestus.telemetry")``), and
``("telemetry", "handler", "failure")`` is emitted through this registry. The
other handlers of the event still run and the emitter's caller sees nothing.
``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
``SystemExit``, ``asyncio.CancelledError``) is not caught: swallowing a
cancellation would break the runner that emits.
"""

from __future__ import annotations

import contextvars
import threading
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from time import monotonic_ns, time_ns
from typing import Any, TypeAlias

import attrs
import structlog

__all__ = [
    "HANDLER_FAILURE_EVENT",
    "EventName",
    "Handler",
    "HandlerFunction",
    "HandlerId",
    "Measurements",
    "Metadata",
    "attach",
    "attach_many",
    "detach",
    "execute",
    "list_handlers",
    "listening",
]

EventName: TypeAlias = tuple[str, ...]
"""An event name: a tuple of strings, ``("hephaestus", "step", "stop")``."""

HandlerId: TypeAlias = Hashable
"""What identifies a handler: any hashable value, usually a string."""

Measurements: TypeAlias = Mapping[str, Any]
"""What a handler reads as ``measurements``: annotate the parameter with it.

The emitters pass a fresh dict, shared by every handler of the emission; a read-only
``Mapping`` lets a type checker catch a handler that writes to it.
"""

Metadata: TypeAlias = Mapping[str, Any]
"""What a handler reads as ``metadata``, read-only like ``Measurements``."""

HandlerFunction: TypeAlias = Callable[[EventName, dict[str, Any], dict[str, Any], Any], object]
"""``function(event_name, measurements, metadata, config)``; its return value is ignored.

``measurements`` and ``metadata`` are fresh dicts for each emission, shared by
every handler of that emission: read them, do not mutate them. A handler
annotated ``(EventName, Measurements, Metadata, Any) -> None`` is one.
"""

HANDLER_FAILURE_EVENT: EventName = ("telemetry", "handler", "failure")
"""Emitted when a handler raised and was detached (not one of the 11 Hephaestus events)."""

_logger = structlog.get_logger("hephaestus.telemetry")

event_clock: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "hephaestus_event_clock", default=None
)
"""The clock of the runner whose event the handlers are handling (None: the system's)."""

carried: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "hephaestus_carried", default=None
)
"""What a step-scope hook sets while an attempt runs for a run elsewhere to read.

When the distributed runner sends a spread step's run to another worker, it
sends this mapping along; that worker adds it to the instance's
``telemetry_metadata`` before entering its own step-scope hooks. The
OpenTelemetry bridge puts the step span's ``traceparent`` here, so spans made
inside a remote ``execute`` are children of the step span.
"""


@attrs.frozen
class Handler:
    """One handler attached to one event: what ``list_handlers`` describes."""

    id: HandlerId
    event_name: EventName
    function: HandlerFunction
    config: Any = None


_Entry: TypeAlias = tuple[HandlerFunction, Any, Handler]
_Handlers: TypeAlias = tuple[_Entry, ...]

_lock = threading.Lock()
# Every attached handler by id, in attach order (dicts keep insertion order).
_by_id: dict[HandlerId, tuple[Handler, ...]] = {}
# event name -> entries in attach order; an event nobody listens to has no key.
# The dict object is never replaced: the values are swapped one key at a time.
_listeners: dict[EventName, _Handlers] = {}
# event name -> [entries]; the emitters keep a reference to their slot.
_slots: dict[EventName, list[_Handlers]] = {}


def _slot(event_name: EventName) -> list[_Handlers]:
    """The one-element list that always holds the current handlers of ``event_name``."""
    with _lock:
        slot = _slots.get(event_name)
        if slot is None:
            slot = _slots[event_name] = [_listeners.get(event_name, ())]
        return slot


def _publish(event_name: EventName, entries: _Handlers) -> None:
    """Swap in the new handler tuple of ``event_name`` (call with the lock held)."""
    if entries:
        _listeners[event_name] = entries
    else:
        _listeners.pop(event_name, None)
    slot = _slots.get(event_name)
    if slot is not None:
        slot[0] = entries


def _event_name(value: object) -> EventName:
    """Check and normalise an event name: a non-empty sequence of strings, kept as a tuple."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"an event name must be a tuple of strings, got: {value!r}")
    name = tuple(value)
    if not name or not all(isinstance(part, str) for part in name):
        raise TypeError(f"an event name must be a non-empty tuple of strings, got: {value!r}")
    return name


def attach(
    handler_id: HandlerId,
    event_name: EventName,
    function: HandlerFunction,
    config: Any = None,
) -> None:
    """Call ``function(event_name, measurements, metadata, config)`` on each ``event_name``.

    Raises ``ValueError`` when a handler with ``handler_id`` is already attached.
    """
    attach_many(handler_id, (event_name,), function, config)


def attach_many(
    handler_id: HandlerId,
    event_names: Iterable[EventName],
    function: HandlerFunction,
    config: Any = None,
) -> None:
    """Attach one handler, under one id, to several events (duplicates count once).

    Raises ``ValueError`` when a handler with ``handler_id`` is already attached
    or ``event_names`` is empty, and ``TypeError`` for a malformed event name or
    a ``function`` that is not callable.
    """
    if not callable(function):
        raise TypeError(f"a telemetry handler must be callable, got: {function!r}")
    single = isinstance(event_names, tuple | list) and all(isinstance(n, str) for n in event_names)
    if single and event_names:
        raise TypeError(
            f"attach_many takes a list of event names, got one name: {event_names!r}; "
            "use attach for a single event"
        )
    names = tuple(dict.fromkeys(_event_name(name) for name in event_names))
    if not names:
        raise ValueError(f"handler {handler_id!r} must be attached to at least one event")
    handlers = tuple(Handler(handler_id, name, function, config) for name in names)
    with _lock:
        if handler_id in _by_id:
            raise ValueError(f"a telemetry handler with id {handler_id!r} is already attached")
        _by_id[handler_id] = handlers
        for handler in handlers:
            entry = (function, config, handler)
            _publish(handler.event_name, (*_listeners.get(handler.event_name, ()), entry))


def _remove(handlers: tuple[Handler, ...]) -> None:
    """Take ``handlers`` (one attachment) out of every event table (call with the lock held)."""
    for handler in handlers:
        entries = _listeners.get(handler.event_name, ())
        _publish(handler.event_name, tuple(e for e in entries if e[2] is not handler))


def detach(handler_id: HandlerId) -> bool:
    """Detach the handler ``handler_id`` from all its events; False if none was attached."""
    with _lock:
        handlers = _by_id.pop(handler_id, None)
        if handlers is None:
            return False
        _remove(handlers)
        return True


def list_handlers(prefix: Sequence[str] = ()) -> list[Handler]:
    """The attached handlers, one per (handler, event), in attach order.

    ``prefix`` keeps the events whose name starts with it:
    ``list_handlers(("hephaestus", "step"))``; ``()`` keeps all.
    """
    if isinstance(prefix, str):
        raise TypeError(f"a prefix must be a tuple of strings, got: {prefix!r}")
    prefix = tuple(prefix)
    size = len(prefix)
    with _lock:
        attached = [handler for handlers in _by_id.values() for handler in handlers]
    return [handler for handler in attached if handler.event_name[:size] == prefix]


def listening(event_name: EventName) -> bool:
    """True when at least one handler is attached to ``event_name``.

    A runner asks this before it computes costly extra metadata; the emitters
    already return at once when nobody listens.
    """
    return event_name in _listeners


def execute(event_name: EventName, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Call every handler attached to ``event_name``, in attach order."""
    if type(event_name) is not tuple:
        event_name = _event_name(event_name)
    handlers = _listeners.get(event_name)
    if handlers:
        _dispatch(handlers, event_name, measurements, metadata)


def _dispatch(
    handlers: _Handlers,
    event_name: EventName,
    measurements: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Run ``handlers``; one that raises is detached and reported, the others still run."""
    for function, config, handler in handlers:
        try:
            function(event_name, measurements, metadata, config)
        except Exception as exc:  # a handler must never disturb the code that emits
            _handler_failed(handler, event_name, exc)


def _hooked(event_name: EventName, *args: Any) -> list[Any]:
    """What each "handler" of a hook returns; one that raises is detached and reported."""
    answers = []
    for function, _, handler in _listeners.get(event_name, ()):
        hook: Any = function  # a hook's own signature, not a handler's
        try:
            answers.append(hook(*args))
        except Exception as exc:  # a hook must never disturb the runner that calls it
            _handler_failed(handler, event_name, exc)
    return answers


def _handler_failed(handler: Handler, event_name: EventName, exc: Exception) -> None:
    """Detach the failed handler from all its events, log the failure and emit it."""
    with _lock:
        # Detach this very attachment only: the id may since have been detached
        # and attached again, and the new handler has done nothing wrong.
        attached = _by_id.get(handler.id, ())
        if any(h is handler for h in attached):
            del _by_id[handler.id]
            _remove(attached)
    _logger.error(
        "telemetry handler raised and was detached",
        handler_id=handler.id,
        event_name=event_name,
        exc_info=exc,
    )
    execute(
        HANDLER_FAILURE_EVENT,
        {"monotonic_time": monotonic_ns(), "system_time": time_ns()},
        {
            "event_name": event_name,
            "handler_id": handler.id,
            "handler_config": handler.config,
            "kind": type(exc).__name__,
            "reason": exc,
            "stacktrace": list(traceback.extract_tb(exc.__traceback__)),
        },
    )
