"""The emitters: one function per event, called by runners at each lifecycle point.

Each emitter builds the event's measurements and metadata and hands them to
the registry's handlers. When no handler listens it returns before building
anything: its first statement reads the event's handler tuple from a slot the
registry keeps up to date, so an unobserved event costs about one empty
function call.

Metadata is merged in this order, later wins: the instance's
``telemetry_metadata``, then ``extra_metadata``, then the Hephaestus fields
(``instance_id``, ``workflow``, ``workflow_version``, ``step``, ``status``,
``kind``, ``reason``, ``stacktrace``, ``from_step``, ``event``, ``targets``,
``fan_out``). A key an emitter turns into a measurement (``step_count``,
``advance_count``, ``wait_duration``, ``active_steps_count``,
``completed_in_advance``) is read from ``extra_metadata`` and never appears in
that event's metadata. The caller's mappings are never mutated.

Durations are integer nanoseconds of ``time.monotonic_ns()``; ``system_time``
is ``time.time_ns()``: both read from the emitting runner's clock when it
passes one (``clock=``; ``hephaestus.runtime.clock``), and a handler reads that
clock's time with :func:`now_ns`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import attrgetter
from time import monotonic_ns, time_ns
from typing import TYPE_CHECKING, Any, Protocol

from hephaestus.core.instance import Status

from . import names
from ._registry import _dispatch, _slot, event_clock

if TYPE_CHECKING:
    from hephaestus.core.instance import Instance
    from hephaestus.core.step import Step

__all__ = [
    "EventClock",
    "engine_advance",
    "now_ns",
    "runner_init",
    "step_async",
    "step_exception",
    "step_resume",
    "step_start",
    "step_stop",
    "workflow_exception",
    "workflow_start",
    "workflow_stop",
    "workflow_transition",
]

_WORKFLOW_START = names.WORKFLOW_START
_WORKFLOW_STOP = names.WORKFLOW_STOP
_WORKFLOW_EXCEPTION = names.WORKFLOW_EXCEPTION
_WORKFLOW_TRANSITION = names.WORKFLOW_TRANSITION
_STEP_START = names.STEP_START
_STEP_STOP = names.STEP_STOP
_STEP_EXCEPTION = names.STEP_EXCEPTION
_STEP_ASYNC = names.STEP_ASYNC
_STEP_RESUME = names.STEP_RESUME
_ENGINE_ADVANCE = names.ENGINE_ADVANCE
_RUNNER_INIT = names.RUNNER_INIT

# One slot per event: slot[0] is the tuple of its handlers, () when none.
_workflow_start = _slot(_WORKFLOW_START)
_workflow_stop = _slot(_WORKFLOW_STOP)
_workflow_exception = _slot(_WORKFLOW_EXCEPTION)
_workflow_transition = _slot(_WORKFLOW_TRANSITION)
_step_start = _slot(_STEP_START)
_step_stop = _slot(_STEP_STOP)
_step_exception = _slot(_STEP_EXCEPTION)
_step_async = _slot(_STEP_ASYNC)
_step_resume = _slot(_STEP_RESUME)
_engine_advance = _slot(_ENGINE_ADVANCE)
_runner_init = _slot(_RUNNER_INIT)

_qualname = attrgetter("__qualname__")

# The emitters build metadata as ``{**telemetry_metadata, **extra_metadata}``
# followed by item assignments rather than one dict display holding all the
# fields: the display builds an intermediate dict and costs about 40% more.


class EventClock(Protocol):
    """What the emitters read from a runner's clock (``hephaestus.runtime.clock.Clock``)."""

    def time_ns(self) -> int:
        """The wall-clock time, in nanoseconds since the epoch."""

    def monotonic_ns(self) -> int:
        """The monotonic time, in nanoseconds: durations are differences of it."""


def now_ns() -> int:
    """The wall-clock time by the clock of the event being handled, in ns since the epoch.

    Inside a handler, the time of the clock of the runner that emits the
    event (a test's virtual clock, say); elsewhere, and for a runner on the
    system's clock, ``time.time_ns()``.
    """
    clock = event_clock.get()
    return time_ns() if clock is None else clock.time_ns()


def _send(
    handlers: Any,
    name: Any,
    measurements: dict[str, Any],
    metadata: dict[str, Any],
    clock: EventClock,
) -> None:
    """Dispatch, with ``clock`` made the one :func:`now_ns` reads while the handlers run."""
    token = event_clock.set(clock)
    try:
        _dispatch(handlers, name, measurements, metadata)
    finally:
        event_clock.reset(token)


def _elapsed(instance: Instance, clock: EventClock | None) -> int:
    """Nanoseconds since the instance started: monotonic in its own process, else wall clock.

    After a restart the monotonic start belonged to another process and is not
    kept, so the duration comes from the wall clock; a clock set backwards
    gives 0 rather than a negative duration.
    """
    if clock is not None:
        if instance.started_monotonic is not None:
            return clock.monotonic_ns() - instance.started_monotonic
        return max(clock.time_ns() - instance.started_at, 0)
    if instance.started_monotonic is not None:
        return monotonic_ns() - instance.started_monotonic
    return max(time_ns() - instance.started_at, 0)


def _take(
    metadata: dict[str, Any],
    extra_metadata: Mapping[str, Any],
    keys: tuple[str, ...],
    measurements: dict[str, Any],
) -> None:
    """Move ``keys`` out of ``metadata`` into ``measurements``, valued from ``extra_metadata``."""
    for key in keys:
        if key in extra_metadata:
            measurements[key] = extra_metadata[key]
        metadata.pop(key, None)


def workflow_start(
    instance: Instance, extra_metadata: Mapping[str, Any], *, clock: EventClock | None = None
) -> None:
    """Emit ``workflow:start`` when a runner creates an instance (not when it recovers one).

    Measurements: ``system_time``. Metadata: ``instance_id``, ``workflow``,
    ``workflow_version``, plus ``extra_metadata`` (``initial_step``,
    ``context_keys``, ``runner``) and the instance's ``telemetry_metadata``.
    """
    handlers = _workflow_start[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    now = time_ns() if clock is None else clock.time_ns()
    if clock is None:
        _dispatch(handlers, _WORKFLOW_START, {"system_time": now}, metadata)
    else:
        _send(handlers, _WORKFLOW_START, {"system_time": now}, metadata, clock)


def workflow_stop(
    instance: Instance, extra_metadata: Mapping[str, Any], *, clock: EventClock | None = None
) -> None:
    """Emit ``workflow:stop`` when an instance completes.

    Measurements: ``duration`` (since the instance started), ``step_count``
    and ``advance_count`` (taken from ``extra_metadata``). Metadata:
    ``instance_id``, ``workflow``, ``workflow_version``, ``status``
    (``"completed"``), plus ``extra_metadata`` (``completed_steps``,
    ``runner``) and the instance's ``telemetry_metadata``.
    """
    handlers = _workflow_stop[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["status"] = Status.COMPLETED
    measurements: dict[str, Any] = {"duration": _elapsed(instance, clock)}
    _take(metadata, extra_metadata, ("step_count", "advance_count"), measurements)
    if clock is None:
        _dispatch(handlers, _WORKFLOW_STOP, measurements, metadata)
    else:
        _send(handlers, _WORKFLOW_STOP, measurements, metadata, clock)


def workflow_exception(
    instance: Instance,
    kind: str,
    reason: object,
    stacktrace: list[Any] | None,
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``workflow:exception`` when an instance fails.

    Measurements: ``duration`` (since the instance started). Metadata:
    ``instance_id``, ``workflow``, ``workflow_version``, ``kind``, ``reason``,
    ``stacktrace`` (frames, or None for an ``Error`` result), ``status``
    (``"failed"``), plus ``extra_metadata`` (``failed_step``, ``runner``) and
    the instance's ``telemetry_metadata``.
    """
    handlers = _workflow_exception[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["kind"] = kind
    metadata["reason"] = reason
    metadata["stacktrace"] = stacktrace
    metadata["status"] = Status.FAILED
    measurements = {"duration": _elapsed(instance, clock)}
    if clock is None:
        _dispatch(handlers, _WORKFLOW_EXCEPTION, measurements, metadata)
    else:
        _send(handlers, _WORKFLOW_EXCEPTION, measurements, metadata, clock)


def workflow_transition(
    instance: Instance,
    from_step: type[Step],
    event: str,
    targets: Iterable[type[Step]],
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``workflow:transition`` after a completed step's targets are activated.

    Measurements: ``targets_count``, ``system_time``. Metadata:
    ``instance_id``, ``workflow``, ``workflow_version``, ``from_step``,
    ``event``, ``targets`` (a list sorted by qualified name; empty after
    ``Done``), ``fan_out`` (more than one target), plus ``extra_metadata``
    and the instance's ``telemetry_metadata``.
    """
    handlers = _workflow_transition[0]
    if not handlers:
        return
    ordered = list(targets)
    count = len(ordered)
    if count > 1:
        ordered.sort(key=_qualname)
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["from_step"] = from_step
    metadata["event"] = event
    metadata["targets"] = ordered
    metadata["fan_out"] = count > 1
    now = time_ns() if clock is None else clock.time_ns()
    measurements = {"targets_count": count, "system_time": now}
    if clock is None:
        _dispatch(handlers, _WORKFLOW_TRANSITION, measurements, metadata)
    else:
        _send(handlers, _WORKFLOW_TRANSITION, measurements, metadata, clock)


def step_start(
    instance: Instance,
    step: type[Step],
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``step:start`` before a step's ``execute`` runs.

    Measurements: ``system_time``. Metadata: ``instance_id``, ``workflow``,
    ``workflow_version``, ``step``, plus ``extra_metadata`` (``step_key``,
    ``concurrent``, ``active_steps_count``) and the instance's
    ``telemetry_metadata``.
    """
    handlers = _step_start[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["step"] = step
    now = time_ns() if clock is None else clock.time_ns()
    if clock is None:
        _dispatch(handlers, _STEP_START, {"system_time": now}, metadata)
    else:
        _send(handlers, _STEP_START, {"system_time": now}, metadata, clock)


def step_stop(
    instance: Instance,
    step: type[Step],
    duration: int,
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``step:stop`` when a step returns ``Ok``.

    Measurements: ``duration`` (of ``execute``). Metadata: ``instance_id``,
    ``workflow``, ``workflow_version``, ``step``, plus ``extra_metadata``
    (``step_key``, ``event``, ``has_context_updates``,
    ``has_metadata_updates``, ``transitions_to``) and the instance's
    ``telemetry_metadata``.
    """
    handlers = _step_stop[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["step"] = step
    if clock is None:
        _dispatch(handlers, _STEP_STOP, {"duration": duration}, metadata)
    else:
        _send(handlers, _STEP_STOP, {"duration": duration}, metadata, clock)


def step_exception(
    instance: Instance,
    step: type[Step],
    duration: int,
    kind: str,
    reason: object,
    stacktrace: list[Any] | None,
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``step:exception`` when a step returns ``Error``, raises or times out.

    Measurements: ``duration``. Metadata: ``instance_id``, ``workflow``,
    ``workflow_version``, ``step``, ``kind``, ``reason``, ``stacktrace``
    (frames for a raise, None for ``Error``), plus ``extra_metadata``
    (``step_key``) and the instance's ``telemetry_metadata``.
    """
    handlers = _step_exception[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["step"] = step
    metadata["kind"] = kind
    metadata["reason"] = reason
    metadata["stacktrace"] = stacktrace
    if clock is None:
        _dispatch(handlers, _STEP_EXCEPTION, {"duration": duration}, metadata)
    else:
        _send(handlers, _STEP_EXCEPTION, {"duration": duration}, metadata, clock)


def step_async(
    instance: Instance,
    step: type[Step],
    duration: int,
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``step:async`` when a step returns ``Async()`` and parks.

    Measurements: ``duration`` (of ``execute``, before parking). Metadata:
    ``instance_id``, ``workflow``, ``workflow_version``, ``step``, plus
    ``extra_metadata`` (``step_key``, ``instance_status``) and the instance's
    ``telemetry_metadata``.
    """
    handlers = _step_async[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["step"] = step
    if clock is None:
        _dispatch(handlers, _STEP_ASYNC, {"duration": duration}, metadata)
    else:
        _send(handlers, _STEP_ASYNC, {"duration": duration}, metadata, clock)


def step_resume(
    instance: Instance,
    step: type[Step],
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``step:resume`` when a parked step is resumed (by a caller or its timer).

    Measurements: ``system_time``, ``wait_duration`` (taken from
    ``extra_metadata``). Metadata: ``instance_id``, ``workflow``,
    ``workflow_version``, ``step``, plus ``extra_metadata`` (``step_key``,
    ``resume_event``, ``source``: ``"external"`` or ``"timeout"``) and the
    instance's ``telemetry_metadata``.
    """
    handlers = _step_resume[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    metadata["step"] = step
    now = time_ns() if clock is None else clock.time_ns()
    measurements: dict[str, Any] = {"system_time": now}
    _take(metadata, extra_metadata, ("wait_duration",), measurements)
    if clock is None:
        _dispatch(handlers, _STEP_RESUME, measurements, metadata)
    else:
        _send(handlers, _STEP_RESUME, measurements, metadata, clock)


def engine_advance(
    instance: Instance,
    duration: int,
    extra_metadata: Mapping[str, Any],
    *,
    clock: EventClock | None = None,
) -> None:
    """Emit ``engine:advance`` after each call of the engine's ``advance`` by the runner.

    Measurements: ``duration`` (of the advance), ``active_steps_count`` and
    ``completed_in_advance`` (taken from ``extra_metadata``). Metadata:
    ``instance_id``, ``workflow``, ``workflow_version``, plus
    ``extra_metadata`` (``iteration``, ``status_before``, ``status_after``)
    and the instance's ``telemetry_metadata``.
    """
    handlers = _engine_advance[0]
    if not handlers:
        return
    metadata = {**instance.telemetry_metadata, **extra_metadata}
    metadata["instance_id"] = instance.id
    metadata["workflow"] = instance.workflow
    metadata["workflow_version"] = instance.workflow_version
    measurements: dict[str, Any] = {"duration": duration}
    _take(metadata, extra_metadata, ("active_steps_count", "completed_in_advance"), measurements)
    if clock is None:
        _dispatch(handlers, _ENGINE_ADVANCE, measurements, metadata)
    else:
        _send(handlers, _ENGINE_ADVANCE, measurements, metadata, clock)


def runner_init(extra_metadata: Mapping[str, Any], *, clock: EventClock | None = None) -> None:
    """Emit ``runner:init`` once when a runner starts.

    Measurements: ``system_time``. Metadata: ``extra_metadata`` as given
    (``name``, ``runner``, ``storage``, ``pid``), copied.
    """
    handlers = _runner_init[0]
    if not handlers:
        return
    now = time_ns() if clock is None else clock.time_ns()
    if clock is None:
        _dispatch(handlers, _RUNNER_INIT, {"system_time": now}, dict(extra_metadata))
    else:
        _send(handlers, _RUNNER_INIT, {"system_time": now}, dict(extra_metadata), clock)
