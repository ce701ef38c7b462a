"""An OpenTelemetry tracing bridge: one trace per workflow instance, built from telemetry events.

::

    from hephaestus.telemetry import otel

    otel.instrument()  # the global tracer provider; or instrument(provider)
    ...
    otel.uninstrument()

Each instance gets a ``workflow {Workflow}`` span, and each step attempt a
``step {Step}`` child span (one item of a mapped step is one attempt like any
other); a step that parked and was resumed adds a ``wait {Step}`` span from
its park to its resume. The caller's current span at ``runner.start(...)`` is
the workflow span's parent (``parent="parent"``) or a link
(``parent="link"``). ``docs/observability.md`` is the guide.

The trace travels with the instance. When a runner starts an instance, the
bridge's start hook decides the workflow span's ids and sampling and adds them
to the instance's ``telemetry_metadata`` (``otel.traceparent``, and the
caller's span as ``otel.caller``), which is stored with it and read back with
every event, in whatever process drives it later. No span is held open and
nothing is kept per parked instance: every span is built when its outcome is
known, with the start and end times its events measured (a step span at
``step:stop``, ``step:exception`` or ``step:async``, the workflow span at
``workflow:stop`` or ``workflow:exception``, from the instance's stored start).
What the bridge keeps in memory is the span id and start of each attempt that
is running in this process. A finished span is handed to the SDK tracer
provider's span processors as the ``ReadableSpan`` it would end as, with the
ids chosen in advance (by the tracer's id generator); with the API's no-op
provider nothing is recorded.

A step span is the current span while the step's ``execute`` runs, so spans
created inside ``execute`` are its children: the runners wrap each attempt in
the context managers of the handlers attached to :data:`STEP_SCOPE_HOOK`,
:func:`instrument` attaches one, and a spread step's run on another worker of
the distributed runner gets the step span's ``traceparent`` with its job.

Importing this module imports ``opentelemetry`` (the ``otel`` extra);
nothing else in Hephaestus does.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import random
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

from . import _registry, names
from .events import now_ns

__all__ = [
    "CALLER_KEY",
    "STEP_KEY",
    "STEP_SCOPE_HOOK",
    "TRACE_KEY",
    "instrument",
    "instrumented",
    "uninstrument",
]

HANDLER_ID: Final = "hephaestus-otel"
"""The id of the bridge's handler of the 11 events."""

SCOPE_HANDLER_ID: Final = "hephaestus-otel-step-scope"
"""The id of the bridge's step-scope hook (see :data:`STEP_SCOPE_HOOK`)."""

START_HANDLER_ID: Final = "hephaestus-otel-start"
"""The id of the bridge's start hook (see :data:`hephaestus.telemetry.names.START_HOOK`)."""

STEP_SCOPE_HOOK: Final = names.STEP_SCOPE_HOOK
"""Not an event: a hook the runners consult around each attempt's ``execute``.

A "handler" attached to it is a context manager factory,
``factory(instance, step, item, attempt)``; the runner enters what it returns
around ``execute``. The registry keeps who is attached in a slot, so with no
hook the runner pays one list read per attempt.
"""

TRACE_KEY: Final = "otel.traceparent"
"""The ``telemetry_metadata`` key of the workflow span's context, a W3C ``traceparent``."""

CALLER_KEY: Final = "otel.caller"
"""The ``telemetry_metadata`` key of the caller's span at ``start``: the parent, or the link."""

STEP_KEY: Final = "otel.step"
"""The key a spread step's remote run finds its step span's ``traceparent`` under."""

_EVENTS: Final = (
    names.WORKFLOW_STOP,
    names.WORKFLOW_EXCEPTION,
    names.STEP_START,
    names.STEP_STOP,
    names.STEP_EXCEPTION,
    names.STEP_ASYNC,
    names.STEP_RESUME,
)

# Kinds of step:exception that measured no duration (the runner reports 0):
# the span ends when the event is emitted.
_UNMEASURED: Final = frozenset({"cancelled", "storage", "runner"})

_Key = tuple[str, type, int | None]
"""A step attempt: its instance's id, the step and, for a mapped step, the item."""


class _Attempt:
    """A step attempt that started here: its span id, start (wall-clock ns) and number."""

    __slots__ = ("attempt", "span_id", "start")

    def __init__(self, span_id: int, start: int, attempt: int | None) -> None:
        self.span_id = span_id
        self.start = start
        self.attempt = attempt


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@functools.lru_cache(maxsize=4096)
def _parse(value: object) -> SpanContext | None:
    """The span context a W3C ``traceparent`` (version 00) names; None when it is not one."""
    if type(value) is not str or len(value) != 55 or value[:3] != "00-":
        return None
    if value[35] != "-" or value[52] != "-":
        return None
    try:
        trace_id, span_id, flags = int(value[3:35], 16), int(value[36:52], 16), int(value[53:], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(flags))


@functools.lru_cache(maxsize=4096)
def _derived(instance_id: str) -> tuple[int, int]:
    """A trace id and workflow span id made from an instance id, the same in every process."""
    digest = hashlib.blake2b(instance_id.encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16]) or 1, int.from_bytes(digest[16:]) or 1


_Event = tuple[str, Mapping[str, AttributeValue], int]
"""A span event: its name, attributes and time."""

_UNSET_STATUS: Final = Status(StatusCode.UNSET)


class _Recorder:
    """Where finished spans go: an SDK tracer's span processor, resource, scope, ids, sampler."""

    __slots__ = ("event", "ids", "processor", "readable", "resource", "sampler", "scope")

    def __init__(self, tracer: Any) -> None:
        # An SDK tracer: the SDK is installed (the bridge itself needs only the API).
        from opentelemetry.sdk.trace import Event, ReadableSpan  # noqa: PLC0415

        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.scope = getattr(tracer, "_instrumentation_scope", None)
        self.ids = tracer.id_generator
        self.sampler = tracer.sampler
        self.readable = ReadableSpan
        self.event = Event

    def record(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, AttributeValue],
        start: int,
        end: int,
        events: Sequence[_Event] = (),
        links: Sequence[Link] = (),
        status: Status = _UNSET_STATUS,
    ) -> None:
        """Hand a finished span to the tracer's span processors (their ``on_end``)."""
        span = self.readable(
            name,
            context,
            parent,
            self.resource,
            attributes,
            [self.event(n, a, t) for n, a, t in events],
            links,
            SpanKind.INTERNAL,
            None,
            status,
            start,
            end,
            self.scope,
        )
        self.processor.on_end(span)


def _recorder_of(provider: TracerProvider) -> _Recorder | None:
    """The provider's tracer as a recorder; None when it is not the SDK's (nothing recorded)."""
    tracer = provider.get_tracer("hephaestus")
    if getattr(tracer, "span_processor", None) is None:  # the API's no-op, or a proxy
        return None
    return _Recorder(tracer)


class _StepScope:
    """Makes an attempt's step span current while its ``execute`` runs."""

    __slots__ = ("bridge", "carried", "instance", "key", "spread", "token")

    def __init__(self, bridge: _Bridge, instance: Any, step: type, item: int | None) -> None:
        self.bridge = bridge
        self.instance = instance
        self.key: _Key = (instance.id, step, item)
        self.spread: bool = getattr(step, "spread", False)
        self.token: object = None
        self.carried: contextvars.Token[Mapping[str, str] | None] | None = None

    def __enter__(self) -> None:
        metadata = self.instance.telemetry_metadata
        attempt = self.bridge.attempts.get(self.key)
        if attempt is not None:
            workflow = self.bridge.context_of(metadata, self.instance.id, self.instance.workflow)
            context = SpanContext(workflow.trace_id, attempt.span_id, False, workflow.trace_flags)
        else:  # a spread step's run for a driver elsewhere, or started before instrument()
            found = _parse(metadata.get(STEP_KEY))
            if found is None:
                return
            context = found
        self.token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context)))
        if self.spread:  # its run may go to another worker: the step span goes with it
            self.carried = _registry.carried.set({STEP_KEY: _traceparent(context)})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.carried is not None:
            _registry.carried.reset(self.carried)
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]  # attach's own token


class _Bridge:
    """The handlers of one ``instrument()``: builds spans from the events of every instance."""

    def __init__(
        self,
        provider: TracerProvider | None,
        parent: Literal["parent", "link"],
        copy_metadata: Sequence[str],
    ) -> None:
        self.provider = provider  # None: the global one, read again until it is set
        self.link = parent == "link"
        self.copy_metadata = tuple(copy_metadata)
        self.attempts: dict[_Key, _Attempt] = {}
        self.seen: TracerProvider | None = None
        self.current: _Recorder | None = None
        self.dispatch = {
            names.WORKFLOW_STOP: self.workflow_stop,
            names.WORKFLOW_EXCEPTION: self.workflow_exception,
            names.STEP_START: self.step_start,
            names.STEP_STOP: self.step_stop,
            names.STEP_EXCEPTION: self.step_exception,
            names.STEP_ASYNC: self.step_async,
            names.STEP_RESUME: self.step_resume,
        }

    def recorder(self) -> _Recorder | None:
        """The tracer's recorder (the global provider's may be set after ``instrument()``)."""
        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        if provider is not self.seen:
            self.current = _recorder_of(provider)
            self.seen = provider
        return self.current

    # ------------------------------------------------------------------ ids

    def span_id(self) -> int:
        recorder = self.recorder()
        if recorder is not None:
            return int(recorder.ids.generate_span_id())
        return random.getrandbits(64) or 1

    def trace_id(self) -> int:
        recorder = self.recorder()
        if recorder is not None:
            return int(recorder.ids.generate_trace_id())
        return random.getrandbits(128) or 1

    def sampled(self, parent: SpanContext | None, trace_id: int, name: str) -> TraceFlags:
        """The flags of a new workflow span: what the tracer's sampler decides for it."""
        recorder = self.recorder()
        if recorder is None:  # nothing is recorded: follow the parent
            if parent is not None:
                return parent.trace_flags
            return TraceFlags(TraceFlags.SAMPLED)
        result = recorder.sampler.should_sample(_context_of(parent), trace_id, name)
        return TraceFlags(TraceFlags.SAMPLED if result.decision.is_sampled() else 0)

    def started(self, workflow: type, telemetry_metadata: Mapping[str, Any]) -> dict[str, str]:
        """The start hook, in the caller's context: the workflow span's ids and sampling."""
        current = trace.get_current_span().get_span_context()
        caller = current if current.is_valid else None
        parent = None if self.link else caller
        trace_id = parent.trace_id if parent is not None else self.trace_id()
        flags = self.sampled(parent, trace_id, f"workflow {workflow.__qualname__}")
        added = {TRACE_KEY: _traceparent(SpanContext(trace_id, self.span_id(), False, flags))}
        if caller is not None:
            added[CALLER_KEY] = _traceparent(caller)
        return added

    def context_of(
        self, metadata: Mapping[str, Any], instance_id: str, workflow: type
    ) -> SpanContext:
        """The instance's workflow span context, as stored with it at start.

        An instance started with the bridge off has none: its ids are derived
        from its id, so every process still puts its spans in one trace.
        """
        context = _parse(metadata.get(TRACE_KEY))
        if context is not None:
            return context
        trace_id, span_id = _derived(instance_id)
        flags = self.sampled(None, trace_id, f"workflow {workflow.__qualname__}")
        return SpanContext(trace_id, span_id, False, flags)

    # ------------------------------------------------------------------ the handler

    def handle(
        self,
        event_name: tuple[str, ...],
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        config: Any,
    ) -> None:
        self.dispatch[event_name](measurements, metadata)

    def attributes(self, metadata: Mapping[str, Any]) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "hephaestus.instance.id": metadata["instance_id"],
            "hephaestus.workflow.name": metadata["workflow"].__qualname__,
            "hephaestus.workflow.version": metadata["workflow_version"],
        }
        for key in self.copy_metadata:
            if key in metadata:
                attributes[key] = _attribute(metadata[key])
        return attributes

    def workflow_stop(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.workflow_span(measurements, metadata, _UNSET_STATUS)

    def workflow_exception(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        reason = metadata["reason"]
        status = Status(StatusCode.ERROR, _describe(reason))
        self.workflow_span(measurements, metadata, status, _error_type(metadata["kind"], reason))

    def workflow_span(
        self,
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        status: Status,
        error_type: str | None = None,
    ) -> None:
        """The workflow span, built now that it ends, from the instance's start."""
        context = self.context_of(metadata, metadata["instance_id"], metadata["workflow"])
        recorder = self.recorder()
        if recorder is None or not context.trace_flags.sampled:
            return
        caller = _parse(metadata.get(CALLER_KEY))
        parent = link = None
        if caller is not None:
            if caller.trace_id == context.trace_id:
                parent = caller
            else:
                link = caller
        attributes = self.attributes(metadata)
        if error_type is not None:
            attributes["error.type"] = error_type
        end = now_ns()  # the emitting runner's clock
        recorder.record(
            _workflow_span_name(metadata),
            context,
            parent,
            attributes,
            end - measurements["duration"],
            end,
            links=() if link is None else (Link(link),),
            status=status,
        )

    def step_start(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        key = (metadata["instance_id"], metadata["step"], metadata.get("item"))
        attempt = _Attempt(self.span_id(), measurements["system_time"], metadata.get("attempt"))
        self.attempts[key] = attempt

    def step_span(
        self,
        metadata: Mapping[str, Any],
        duration: int,
        attributes: dict[str, AttributeValue],
        events: Sequence[tuple[str, Mapping[str, AttributeValue]]],
        status: Status = _UNSET_STATUS,
        *,
        measured: bool = True,
    ) -> None:
        """The attempt's step span, from its real start, with the outcome's attributes.

        ``events`` (name, attributes) happen when it ends.
        """
        instance_id = metadata["instance_id"]
        item = metadata.get("item")
        attempt = self.attempts.pop((instance_id, metadata["step"], item), None)
        context = self.context_of(metadata, instance_id, metadata["workflow"])
        recorder = self.recorder()
        if recorder is None or not context.trace_flags.sampled:
            return
        now = now_ns()
        if attempt is None:  # started before instrument(), or never started (refused)
            attempt = _Attempt(self.span_id(), now - duration, metadata.get("attempt"))
        end = attempt.start + duration if measured else now
        attributes.update(self.attributes(metadata))
        attributes["hephaestus.step.name"] = metadata["step"].__qualname__
        number = attempt.attempt or metadata.get("attempt")
        if number is not None:
            attributes["hephaestus.step.attempt"] = number
        if item is not None:
            attributes["hephaestus.step.item"] = item
        recorder.record(
            f"step {metadata['step'].__qualname__}",
            SpanContext(context.trace_id, attempt.span_id, False, context.trace_flags),
            context,
            attributes,
            attempt.start,
            end,
            [(name, fields, end) for name, fields in events],
            status=status,
        )

    def step_stop(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        event = metadata["event"]
        targets = [target.__qualname__ for target in metadata.get("transitions_to", ())]
        transition: dict[str, AttributeValue] = {
            "hephaestus.step.event": event,
            "hephaestus.transition.targets": targets,
        }
        attributes: dict[str, AttributeValue] = {"hephaestus.step.event": event}
        self.step_span(metadata, measurements["duration"], attributes, [("transition", transition)])

    def step_exception(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        kind = metadata["kind"]
        measured = kind not in _UNMEASURED or measurements["duration"] > 0
        reason = metadata["reason"]
        events = [("exception", _exception(reason))] if isinstance(reason, BaseException) else []
        attributes: dict[str, AttributeValue] = {"error.type": _error_type(kind, reason)}
        status = Status(StatusCode.ERROR, _describe(reason))
        self.step_span(
            metadata, measurements["duration"], attributes, events, status, measured=measured
        )

    def step_async(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        attributes: dict[str, AttributeValue] = {"hephaestus.step.parked": True}
        self.step_span(metadata, measurements["duration"], attributes, [("park", {})])

    def step_resume(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        """A ``wait {Step}`` span, from the step's park to its resume."""
        context = self.context_of(metadata, metadata["instance_id"], metadata["workflow"])
        recorder = self.recorder()
        if recorder is None or not context.trace_flags.sampled:
            return
        end = measurements["system_time"]
        attributes = self.attributes(metadata)
        attributes["hephaestus.step.name"] = metadata["step"].__qualname__
        attributes["hephaestus.step.event"] = metadata["resume_event"]
        attributes["hephaestus.resume.source"] = metadata["source"]
        recorder.record(
            f"wait {metadata['step'].__qualname__}",
            SpanContext(context.trace_id, self.span_id(), False, context.trace_flags),
            context,
            attributes,
            end - measurements["wait_duration"],
            end,
            [("resume", {}, end)],
        )

    def scope(self, instance: Any, step: type, item: int | None, attempt: int | None) -> _StepScope:
        return _StepScope(self, instance, step, item)


def _context_of(parent: SpanContext | None) -> otel_context.Context:
    """A context whose span is ``parent``; an empty one (not the current one) for None."""
    if parent is None:
        return otel_context.Context()
    return trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())


def _workflow_span_name(metadata: Mapping[str, Any]) -> str:
    return f"workflow {metadata['workflow'].__qualname__}"


def _attribute(value: object) -> AttributeValue:
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _error_type(kind: str, reason: object) -> str:
    """A raised exception's class name; else the failure kind (``error``, ``timeout``...)."""
    if isinstance(reason, BaseException) and kind == "exception":
        return type(reason).__qualname__
    return kind


def _exception(exc: BaseException) -> dict[str, AttributeValue]:
    """The attributes of an ``exception`` span event, per OpenTelemetry's conventions."""
    kind = type(exc)
    module = kind.__module__
    return {
        "exception.type": kind.__qualname__
        if module in ("builtins", "")
        else f"{module}.{kind.__qualname__}",
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        "exception.escaped": "False",
    }


def _describe(reason: object) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__qualname__}: {reason}"
    return str(reason)


_lock = threading.Lock()
_bridge: _Bridge | None = None


def instrument(
    tracer_provider: TracerProvider | None = None,
    *,
    parent: Literal["parent", "link"] = "parent",
    copy_metadata: Sequence[str] = (),
) -> None:
    """Trace every workflow instance: attach the bridge's handlers and step-scope hook.

    ``tracer_provider`` defaults to the global one. ``parent`` says what the
    caller's current span at ``runner.start(...)`` is to the workflow span:
    its parent, or a link (the workflow span then starts a trace of its
    own). ``copy_metadata`` names ``telemetry_metadata`` keys copied onto the
    spans as attributes. Raises ``ValueError`` when already instrumented or
    ``parent`` is neither.
    """
    global _bridge  # noqa: PLW0603  # the module's one bridge, like the registry's tables
    if parent not in ("parent", "link"):
        raise ValueError(f"parent must be 'parent' or 'link', got: {parent!r}")
    if isinstance(copy_metadata, str):
        raise TypeError(f"copy_metadata must be a sequence of keys, got: {copy_metadata!r}")
    with _lock:
        if _bridge is not None:
            raise ValueError("hephaestus is already instrumented: call uninstrument() first")
        bridge = _Bridge(tracer_provider, parent, copy_metadata)
        _registry.attach_many(HANDLER_ID, _EVENTS, bridge.handle)
        _registry.attach(SCOPE_HANDLER_ID, STEP_SCOPE_HOOK, bridge.scope)  # type: ignore[arg-type]
        _registry.attach(START_HANDLER_ID, names.START_HOOK, bridge.started)  # type: ignore[arg-type]
        _bridge = bridge


def uninstrument() -> bool:
    """Detach the bridge; False when it was not instrumented. Traces in progress are dropped."""
    global _bridge  # noqa: PLW0603
    with _lock:
        bridge = _bridge
        if bridge is None:
            return False
        _registry.detach(START_HANDLER_ID)
        _registry.detach(SCOPE_HANDLER_ID)
        _registry.detach(HANDLER_ID)
        _bridge = None
        return True


def instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _bridge is not None
