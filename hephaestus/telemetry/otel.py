"""An OpenTelemetry tracing bridge: one trace per workflow instance, built from telemetry events.

::

    from hephaestus.telemetry import otel

    otel.instrument()  # the global tracer provider; or instrument(provider)
    ...
    otel.uninstrument()

Each instance gets a ``workflow {Workflow}`` span, and each step attempt a
``step {Step}`` child span (one item of a mapped step is one attempt like any
other). Transitions, parks and resumes are events of the workflow span. The
caller's current span at ``runner.start(...)`` is the workflow span's parent
(``parent="parent"``) or a link (``parent="link"``). ``docs/observability.md``
is the guide.

No span is held open. Events arrive after the fact, so every span is built
when its outcome is known, with the start and end times its events measured:
a step span at ``step:stop`` (``step:exception``, ``step:async``), the
workflow span at ``workflow:stop`` (``workflow:exception``). Children are
created under span ids chosen in advance: what the bridge keeps per live
instance is a ``_Trace`` (trace id, workflow span id, flags, the caller's
span context, the workflow span's pending events), not a span. Forcing the
span id of a span built later relies on the SDK's ``Tracer.id_generator``
(the bridge wraps it on its own tracer); with another tracer the ids are the
tracer's and nothing is recorded by the no-op API tracer anyway.

A step span is the current span while the step's ``execute`` runs, so spans
created inside ``execute`` are its children: the LocalRunner wraps each
attempt in the context managers of the handlers attached to
:data:`STEP_SCOPE_HOOK`, and :func:`instrument` attaches one.

Importing this module imports ``opentelemetry`` (the ``otel`` extra);
nothing else in Hephaestus does.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

from . import _registry, names

__all__ = ["STEP_SCOPE_HOOK", "instrument", "instrumented", "uninstrument"]

HANDLER_ID: Final = "hephaestus-otel"
"""The id of the bridge's handler of the 11 events."""

SCOPE_HANDLER_ID: Final = "hephaestus-otel-step-scope"
"""The id of the bridge's step-scope hook (see :data:`STEP_SCOPE_HOOK`)."""

STEP_SCOPE_HOOK: Final = names.STEP_SCOPE_HOOK
"""Not an event: a hook the runners consult around each attempt's ``execute``.

A "handler" attached to it is a context manager factory,
``factory(instance, step, item, attempt)``; the runner enters what it returns
around ``execute``. The registry keeps who is attached in a slot, so with no
hook the runner pays one list read per attempt.
"""

_EVENTS: Final = (
    names.WORKFLOW_START,
    names.WORKFLOW_STOP,
    names.WORKFLOW_EXCEPTION,
    names.WORKFLOW_TRANSITION,
    names.STEP_START,
    names.STEP_STOP,
    names.STEP_EXCEPTION,
    names.STEP_ASYNC,
    names.STEP_RESUME,
)

# Kinds of step:exception that measured no duration (the runner reports 0):
# the span ends when the event is emitted.
_UNMEASURED: Final = frozenset({"cancelled", "storage", "runner"})

_Key = tuple[type, int | None]
"""A step attempt within its instance: the step and, for a mapped step, the item."""


class _Attempt:
    """A step attempt that started: its span id, start (wall-clock ns) and number."""

    __slots__ = ("attempt", "span_id", "start")

    def __init__(self, span_id: int, start: int, attempt: int | None) -> None:
        self.span_id = span_id
        self.start = start
        self.attempt = attempt


class _Trace:
    """What the bridge keeps for one instance until it ends: ids, and the workflow span's events."""

    __slots__ = ("attempts", "context", "events", "link", "parent")

    def __init__(
        self, context: SpanContext, parent: SpanContext | None, link: SpanContext | None
    ) -> None:
        self.context = context  # the workflow span's, decided at workflow:start
        self.parent = parent
        self.link = link
        self.events: list[tuple[str, dict[str, AttributeValue], int]] = []
        self.attempts: dict[_Key, _Attempt] = {}


# The span ids (trace id, span id) the next span the bridge starts must have.
_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "hephaestus_otel_forced_ids", default=None
)


class _ForcedIds:
    """Wraps a tracer's id generator: returns the forced ids while the bridge builds a span."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced is not None else int(self.wrapped.generate_trace_id())

    def generate_span_id(self) -> int:
        forced = _forced.get()
        return forced[1] if forced is not None else int(self.wrapped.generate_span_id())

    def __getattr__(self, name: str) -> Any:  # is_trace_id_random, and what comes next
        return getattr(self.wrapped, name)


class _StepScope:
    """Makes an attempt's step span current while its ``execute`` runs."""

    __slots__ = ("bridge", "instance_id", "key", "token")

    def __init__(self, bridge: _Bridge, instance: Any, step: type, item: int | None) -> None:
        self.bridge = bridge
        self.instance_id: str = instance.id
        self.key: _Key = (step, item)
        self.token: object = None

    def __enter__(self) -> None:
        state = self.bridge.traces.get(self.instance_id)
        if state is None:
            return
        attempt = state.attempts.get(self.key)
        if attempt is None:
            return
        attempt.start = time_ns()  # closer to execute than step:start's system_time
        span = NonRecordingSpan(
            SpanContext(state.context.trace_id, attempt.span_id, False, state.context.trace_flags)
        )
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]  # attach's own token


class _Bridge:
    """The handlers of one ``instrument()``: builds spans from the events of every instance."""

    def __init__(
        self, tracer: Tracer, parent: Literal["parent", "link"], copy_metadata: Sequence[str]
    ) -> None:
        self.tracer = tracer
        self.link = parent == "link"
        self.copy_metadata = tuple(copy_metadata)
        self.traces: dict[str, _Trace] = {}
        self.ids: Any = getattr(tracer, "id_generator", None)
        self.wrapped = self.ids is not None and not isinstance(self.ids, _ForcedIds)
        if self.wrapped:
            tracer.id_generator = _ForcedIds(self.ids)  # type: ignore[attr-defined]  # SDK tracer
        self.dispatch = {
            names.WORKFLOW_START: self.workflow_start,
            names.WORKFLOW_STOP: self.workflow_stop,
            names.WORKFLOW_EXCEPTION: self.workflow_exception,
            names.WORKFLOW_TRANSITION: self.transition,
            names.STEP_START: self.step_start,
            names.STEP_STOP: self.step_stop,
            names.STEP_EXCEPTION: self.step_exception,
            names.STEP_ASYNC: self.step_async,
            names.STEP_RESUME: self.step_resume,
        }

    def restore(self) -> None:
        if self.wrapped:
            self.tracer.id_generator = self.ids  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ ids

    def span_id(self) -> int:
        if self.ids is not None:
            return int(self.ids.generate_span_id())
        return random.getrandbits(64) or 1

    def trace_id(self) -> int:
        if self.ids is not None:
            return int(self.ids.generate_trace_id())
        return random.getrandbits(128) or 1

    def sampled(self, parent: SpanContext | None, trace_id: int, name: str) -> TraceFlags:
        """The flags of a new workflow span: what the tracer's sampler decides for it."""
        sampler = getattr(self.tracer, "sampler", None)
        if sampler is None:  # not an SDK tracer: follow the parent
            if parent is not None:
                return parent.trace_flags
            return TraceFlags(TraceFlags.SAMPLED)
        result = sampler.should_sample(_context_of(parent), trace_id, name)
        return TraceFlags(TraceFlags.SAMPLED if result.decision.is_sampled() else 0)

    # ------------------------------------------------------------------ the handler

    def handle(
        self,
        event_name: tuple[str, ...],
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        config: Any,
    ) -> None:
        self.dispatch[event_name](measurements, metadata)

    def trace_of(self, metadata: Mapping[str, Any]) -> _Trace:
        """The instance's trace; a new root one for an instance started before ``instrument``."""
        state = self.traces.get(metadata["instance_id"])
        if state is None:
            name = _workflow_span_name(metadata)
            trace_id = self.trace_id()
            context = SpanContext(
                trace_id, self.span_id(), False, self.sampled(None, trace_id, name)
            )
            state = self.traces[metadata["instance_id"]] = _Trace(context, None, None)
        return state

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

    def workflow_start(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        # Runs inside runner.start(): the current span is the caller's.
        current = trace.get_current_span().get_span_context()
        caller = current if current.is_valid else None
        parent = None if self.link else caller
        trace_id = parent.trace_id if parent is not None else self.trace_id()
        flags = self.sampled(parent, trace_id, _workflow_span_name(metadata))
        context = SpanContext(trace_id, self.span_id(), False, flags)
        self.traces[metadata["instance_id"]] = _Trace(
            context, parent, caller if self.link else None
        )

    def workflow_stop(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        span, end = self.workflow_span(measurements, metadata)
        span.end(end)

    def workflow_exception(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        span, end = self.workflow_span(measurements, metadata)
        reason = metadata["reason"]
        span.set_attribute("error.type", _error_type(metadata["kind"], reason))
        span.set_status(Status(StatusCode.ERROR, _describe(reason)))
        span.end(end)

    def workflow_span(
        self, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> tuple[trace.Span, int]:
        """The workflow span, built now that it ends (from the instance's start); and its end."""
        state = self.traces.pop(metadata["instance_id"], None)
        if state is None:
            state = self.trace_of(metadata)
            del self.traces[metadata["instance_id"]]
        end = time_ns()
        parent = state.parent
        ctx = _context_of(parent)
        links = () if state.link is None else (Link(state.link),)
        token = _forced.set((state.context.trace_id, state.context.span_id))
        try:
            span = self.tracer.start_span(
                _workflow_span_name(metadata),
                ctx,
                attributes=self.attributes(metadata),
                links=links,
                start_time=end - measurements["duration"],
            )
        finally:
            _forced.reset(token)
        for name, attributes, timestamp in state.events:
            span.add_event(name, attributes, timestamp)
        return span, end

    def transition(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        attributes: dict[str, AttributeValue] = {
            "hephaestus.step.name": metadata["from_step"].__qualname__,
            "hephaestus.step.event": metadata["event"],
            "hephaestus.transition.targets": [t.__qualname__ for t in metadata["targets"]],
        }
        event = ("transition", attributes, measurements["system_time"])
        self.trace_of(metadata).events.append(event)

    def step_start(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        key = (metadata["step"], metadata.get("item"))
        attempt = _Attempt(self.span_id(), measurements["system_time"], metadata.get("attempt"))
        self.trace_of(metadata).attempts[key] = attempt

    def step_span(
        self, metadata: Mapping[str, Any], duration: int, *, measured: bool = True
    ) -> tuple[trace.Span, int]:
        """The attempt's step span, started at its real start; and when it ended."""
        state = self.trace_of(metadata)
        item = metadata.get("item")
        attempt = state.attempts.pop((metadata["step"], item), None)
        now = time_ns()
        if attempt is None:  # started before instrument(), or never started (refused)
            attempt = _Attempt(self.span_id(), now - duration, metadata.get("attempt"))
        end = attempt.start + duration if measured else now
        attributes = self.attributes(metadata)
        attributes["hephaestus.step.name"] = metadata["step"].__qualname__
        number = attempt.attempt or metadata.get("attempt")
        if number is not None:
            attributes["hephaestus.step.attempt"] = number
        if item is not None:
            attributes["hephaestus.step.item"] = item
        ctx = trace.set_span_in_context(NonRecordingSpan(state.context))
        token = _forced.set((state.context.trace_id, attempt.span_id))
        try:
            span = self.tracer.start_span(
                f"step {metadata['step'].__qualname__}",
                ctx,
                attributes=attributes,
                start_time=attempt.start,
            )
        finally:
            _forced.reset(token)
        return span, end

    def step_stop(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        span, end = self.step_span(metadata, measurements["duration"])
        span.set_attribute("hephaestus.step.event", metadata["event"])
        span.end(end)

    def step_exception(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        kind = metadata["kind"]
        measured = kind not in _UNMEASURED or measurements["duration"] > 0
        span, end = self.step_span(metadata, measurements["duration"], measured=measured)
        reason = metadata["reason"]
        if isinstance(reason, BaseException):
            span.record_exception(reason, timestamp=end)
        span.set_attribute("error.type", _error_type(kind, reason))
        span.set_status(Status(StatusCode.ERROR, _describe(reason)))
        span.end(end)

    def step_async(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        span, end = self.step_span(metadata, measurements["duration"])
        span.set_attribute("hephaestus.step.parked", True)
        span.end(end)
        attributes: dict[str, AttributeValue] = {
            "hephaestus.step.name": metadata["step"].__qualname__
        }
        self.trace_of(metadata).events.append(("park", attributes, end))

    def step_resume(self, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        attributes: dict[str, AttributeValue] = {
            "hephaestus.step.name": metadata["step"].__qualname__,
            "hephaestus.step.event": metadata["resume_event"],
            "hephaestus.resume.source": metadata["source"],
            "hephaestus.resume.wait_duration": measurements["wait_duration"],
        }
        event = ("resume", attributes, measurements["system_time"])
        self.trace_of(metadata).events.append(event)

    def scope(self, instance: Any, step: type, item: int | None, attempt: int) -> _StepScope:
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
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        tracer = provider.get_tracer("hephaestus")
        bridge = _Bridge(tracer, parent, copy_metadata)
        _registry.attach_many(HANDLER_ID, _EVENTS, bridge.handle)
        _registry.attach(SCOPE_HANDLER_ID, STEP_SCOPE_HOOK, bridge.scope)  # type: ignore[arg-type]
        _bridge = bridge


def uninstrument() -> bool:
    """Detach the bridge; False when it was not instrumented. Traces in progress are dropped."""
    global _bridge  # noqa: PLW0603
    with _lock:
        bridge = _bridge
        if bridge is None:
            return False
        _registry.detach(SCOPE_HANDLER_ID)
        _registry.detach(HANDLER_ID)
        bridge.restore()
        _bridge = None
        return True


def instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _bridge is not None
