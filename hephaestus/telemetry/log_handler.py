"""``LogHandler``: a telemetry handler that writes one structlog line per event.

Opt in once, at start-up::

    from hephaestus.telemetry import LogHandler

    LogHandler.attach()                                   # all 11 events, default levels
    LogHandler.attach(levels={("hephaestus", "step", "stop"): "info"},
                      events=[("hephaestus", "step", "stop"), ("hephaestus", "step", "exception")])
    LogHandler.detach()

Lines go through ``structlog.get_logger("hephaestus")``, so they follow the
application's structlog configuration (this module never configures
structlog). Each message starts with the instance id::

    [orderid::abc] Step Fetch: attempt 1 of 3 failed after 2 ms: TimeoutError; retrying in 0.5 s

and carries the fields ``instance_id``, ``workflow``, ``step`` (qualified
names), ``item`` (a map item's index), ``attempt``, ``kind`` (of a failure),
``step_event`` (the event a step returned, or the resume event) and
``duration_ms``; a field without a value is left out. The event a step
returned is called ``step_event`` because structlog keeps the message itself
under the key ``event``.

Default levels, those of an operator who reads the lines of a production
system: ``info`` for the life of an instance (``workflow:start``,
``workflow:stop``, ``step:async``, ``step:resume``) and ``runner:init``;
``error`` for ``workflow:exception``; ``step:exception`` by its outcome,
``warning`` for an attempt that will be retried (its metadata has
``retry_in``), ``info`` for a cancelled step, ``error`` otherwise; ``debug``
for what happens at every step (``step:start``, ``step:stop``,
``workflow:transition``, ``engine:advance``). So an instance that runs
through takes two lines, plus two per park.

The level and the message format of each event are resolved once, in
``attach``, and so is the filtering: an event whose level the application's
structlog configuration filters out (say ``debug`` under
``make_filtering_bound_logger(logging.INFO)``) is not attached, and costs
nothing. While the application has not configured structlog at all (whose
defaults print every level), the ``debug`` events are left out. Configure
structlog first; attach again after changing its level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeAlias

import structlog

from hephaestus._show import seconds
from hephaestus.core.instance import Failure

from . import names
from ._registry import EventName, attach_many, detach

__all__ = ["LogHandler"]

_logger = structlog.get_logger("hephaestus")

_LEVEL_NAMES = ("debug", "info", "warning", "error", "critical")

_BY_OUTCOME = "by outcome"
"""The default level of ``step:exception``: chosen for each line by :func:`_exception_level`."""

_OUTCOME_LEVELS = ("info", "warning", "error")
"""The levels :func:`_exception_level` chooses from."""

_DEFAULT_LEVELS: Mapping[EventName, str] = {
    names.WORKFLOW_START: "info",
    names.WORKFLOW_STOP: "info",
    names.WORKFLOW_EXCEPTION: "error",
    names.STEP_START: "debug",
    names.STEP_STOP: "debug",
    names.STEP_EXCEPTION: _BY_OUTCOME,
    names.STEP_ASYNC: "info",
    names.STEP_RESUME: "info",
    names.WORKFLOW_TRANSITION: "debug",
    names.ENGINE_ADVANCE: "debug",
    names.RUNNER_INIT: "info",
}

_UNCONFIGURED_LEVELS = frozenset(("info", "warning", "error", "critical"))
"""What is written while the application has not configured structlog (whose defaults
print every level): the debug lines are left out."""

_Render: TypeAlias = Callable[[Mapping[str, Any], Mapping[str, Any]], str]


def _name(value: object) -> str | None:
    """A class by its qualified name; anything else by ``str``; None stays None."""
    if value is None:
        return None
    qualname = getattr(value, "__qualname__", None)
    return qualname if isinstance(qualname, str) else str(value)


def _ms(nanoseconds: int) -> float:
    """Nanoseconds as milliseconds, to the microsecond."""
    return round(nanoseconds / 1_000_000, 3)


def _duration(nanoseconds: object) -> str:
    """A duration in ns, to 3 figures: ``"0.25 ms"``, ``"101 ms"``, ``"1.5 s"``, ``"3 min 5 s"``."""
    if not isinstance(nanoseconds, int | float) or isinstance(nanoseconds, bool):
        return "? ms"
    if nanoseconds < 999_500_000:
        return f"{nanoseconds / 1_000_000:.3g} ms"
    seconds = nanoseconds / 1_000_000_000
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _seconds(value: object) -> str:
    """Seconds given as a number (a retry's delay): ``"0.105 s"``, ``"5 s"``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{value} s"
    return f"{seconds(value)} s"


def _step(metadata: Mapping[str, Any]) -> str | None:
    """The step of a step event, with the item's index for one item of a mapped step."""
    name = _name(metadata.get("step"))
    item = metadata.get("item")
    return name if item is None else f"{name} (item {item})"


def _attempt(metadata: Mapping[str, Any]) -> str:
    """``"attempt 2 of 3"``: the attempt, out of the step's ``retry.max_attempts``."""
    retry = getattr(metadata.get("step"), "retry", None)
    most = getattr(retry, "max_attempts", None)
    attempt = metadata.get("attempt")
    return f"attempt {attempt}" if most is None else f"attempt {attempt} of {most}"


def _later(metadata: Mapping[str, Any]) -> bool:
    """Whether the line is about an attempt after the first (a retry)."""
    attempt = metadata.get("attempt")
    return isinstance(attempt, int) and attempt > 1


def _explanation(step: object, metadata: Mapping[str, Any]) -> str:
    """What went wrong, as ``str(instance.error)`` says it: ``"timed out after 5 s"``."""
    return Failure(step, str(metadata.get("kind")), metadata.get("reason")).explanation  # type: ignore[arg-type]


def _exception_level(metadata: Mapping[str, Any]) -> str:
    """A step:exception's level: a cancelled step is no error, a retried attempt a warning."""
    kind = metadata.get("kind")
    if kind == "cancelled":
        return "info"
    return "warning" if "retry_in" in metadata else "error"


def _workflow_start(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    return f"Workflow {_name(metadata.get('workflow'))} started"


def _workflow_stop(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    workflow = _name(metadata.get("workflow"))
    line = f"Workflow {workflow} completed in {_duration(measurements.get('duration'))}"
    count = measurements.get("step_count")
    if isinstance(count, int):
        line += f" ({count} step{'' if count == 1 else 's'})"
    return line


def _workflow_exception(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    step = metadata.get("failed_step", metadata.get("step"))
    workflow = _name(metadata.get("workflow"))
    what = _explanation(step, metadata)
    return f"Workflow {workflow} failed at {_name(step)}: {what} ({metadata.get('kind')})"


def _workflow_transition(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    head = f"Transition: {_name(metadata.get('from_step'))} ({metadata.get('event')}) -> "
    targets = metadata.get("targets")
    if targets:
        return head + ", ".join(str(_name(target)) for target in targets)
    return head + _nothing_activated(metadata)


def _nothing_activated(metadata: Mapping[str, Any]) -> str:
    """Why a transition activated no step: the workflow ended, or a join or a map waits."""
    source = metadata.get("from_step")
    if getattr(source, "ends_workflow", False):
        return "(end of the workflow)"
    definition = getattr(metadata.get("workflow"), "definition", None)
    if definition is None:
        return "(nothing)"
    edge = definition.edges.get(source, {}).get(metadata.get("event"))
    joins = sorted(
        str(_name(target))
        for target in (edge.targets if edge is not None else ())
        if target in definition.join_counts
    )
    waits = ""
    if len(joins) == 1:
        waits = f"{joins[0]} waits for its other branches"
    elif joins:
        waits = f"{', '.join(joins)} wait for their other branches"
    if source in definition.maps:  # an item that is not the map's last one (or a join waits)
        items = "the map waits for its other items"
        return f"(none yet: {items}, or {waits})" if waits else f"(none yet: {items})"
    return f"(none yet: {waits})" if waits else "(nothing)"


def _step_start(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    line = f"Step {_step(metadata)} started"
    return f"{line} ({_attempt(metadata)})" if _later(metadata) else line


def _step_stop(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    return (
        f"Step {_step(metadata)} completed in "
        f"{_duration(measurements.get('duration'))} -> {metadata.get('event')}"
    )


_CANCELLED = "the step was cancelled"
"""The reason of a step stopped by ``cancel()`` or by its runner stopping."""


def _step_exception(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    step = _step(metadata)
    kind = metadata.get("kind")
    what = _explanation(metadata.get("step"), metadata)
    if kind == "cancelled":
        return f"Step {step} was cancelled" + ("" if what == _CANCELLED else f": {what}")
    # A timeout's explanation says how long the attempt ran; a failure outside
    # execute (the storage refused the change, say) has no duration (0).
    duration = measurements.get("duration")
    after = "" if kind == "timeout" or not duration else f" after {_duration(duration)}"
    if "retry_in" in metadata:
        return (
            f"Step {step}: {_attempt(metadata)} failed{after}: {what}; "
            f"retrying in {_seconds(metadata['retry_in'])}"
        )
    attempts = f", {_attempt(metadata)}" if _later(metadata) else ""
    return f"Step {step} failed{after}: {what} ({kind}{attempts})"


def _step_async(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    return f"Step {_step(metadata)} parked, waiting to be resumed"


def _step_resume(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    return (
        f"Step {_step(metadata)} resumed with {metadata.get('resume_event')} "
        f"(waited {_duration(measurements.get('wait_duration'))})"
    )


def _engine_advance(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    duration = _duration(measurements.get("duration"))
    return f"Engine advance #{metadata.get('iteration')} ({duration})"


def _runner_init(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    return f"Hephaestus runner initialized: {_name(metadata.get('name'))}"


_RENDERERS: Mapping[EventName, _Render] = {
    names.WORKFLOW_START: _workflow_start,
    names.WORKFLOW_STOP: _workflow_stop,
    names.WORKFLOW_EXCEPTION: _workflow_exception,
    names.WORKFLOW_TRANSITION: _workflow_transition,
    names.STEP_START: _step_start,
    names.STEP_STOP: _step_stop,
    names.STEP_EXCEPTION: _step_exception,
    names.STEP_ASYNC: _step_async,
    names.STEP_RESUME: _step_resume,
    names.ENGINE_ADVANCE: _engine_advance,
    names.RUNNER_INIT: _runner_init,
}


def _fields(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The structured fields of a line; those without a value are left out."""
    duration = measurements.get("duration", measurements.get("wait_duration"))
    step = metadata.get("step") or metadata.get("from_step") or metadata.get("failed_step")
    fields = {
        "instance_id": metadata.get("instance_id"),
        "workflow": _name(metadata.get("workflow")),
        "step": _name(step),
        "item": metadata.get("item"),
        "attempt": metadata.get("attempt"),
        "kind": metadata.get("kind"),
        "step_event": metadata.get("event", metadata.get("resume_event")),
        "duration_ms": _ms(duration) if isinstance(duration, int) else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


_Config: TypeAlias = Mapping[EventName, tuple[str, _Render, frozenset[str]]]
"""Per event: its level (or ``_BY_OUTCOME``), its renderer, the levels structlog lets through."""


def _handle(
    event_name: EventName,
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any],
    config: _Config,
) -> None:
    """Write the line of one event at the level chosen when the handler was attached."""
    level, render, enabled = config[event_name]
    if level == _BY_OUTCOME:
        level = _exception_level(metadata)
        if level not in enabled:
            return
    message = render(measurements, metadata)
    instance_id = metadata.get("instance_id")
    if instance_id is not None:
        message = f"[{instance_id}] {message}"
    getattr(_logger, level)(message, **_fields(measurements, metadata))


_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _enabled_levels() -> frozenset[str]:
    """The level names the current structlog configuration lets through.

    Info and above while the application has not configured structlog: its
    defaults would print the debug lines too.
    """
    if not structlog.is_configured():
        return _UNCONFIGURED_LEVELS
    probe = structlog.get_logger("hephaestus").bind()
    check = getattr(probe, "is_enabled_for", None) or getattr(probe, "isEnabledFor", None)
    if check is None:  # a wrapper that cannot say: assume every level is wanted
        return frozenset(_LEVEL_NAMES)
    return frozenset(name for name in _LEVEL_NAMES if check(_LEVEL_NUMBERS[name]))


def _heard(level: str, enabled: frozenset[str]) -> bool:
    """Whether a line at ``level`` can be written at all under ``enabled``."""
    if level == _BY_OUTCOME:
        return not enabled.isdisjoint(_OUTCOME_LEVELS)
    return level in enabled


class LogHandler:
    """Logs Hephaestus telemetry events as structlog lines; see the module docstring."""

    HANDLER_ID: ClassVar[str] = "hephaestus-log-handler"

    @classmethod
    def attach(
        cls,
        levels: Mapping[EventName, str] | None = None,
        events: Iterable[EventName] | None = None,
    ) -> None:
        """Start logging ``events`` (default: all 11), at the default levels unless ``levels`` says.

        ``levels`` maps an event name to ``"debug"``, ``"info"``, ``"warning"``,
        ``"error"`` or ``"critical"``; a level given for ``step:exception``
        is the level of all its lines (by default it depends on the outcome:
        a retried attempt, a final failure, a cancelled step). Attaching again
        replaces the previous attachment and its options, so a reloaded
        configuration simply calls ``attach`` again. Raises ``ValueError`` for
        an event that is not one of the 11 or a level name it does not know,
        and attaches nothing then.
        """
        chosen = names.events() if events is None else tuple(tuple(e) for e in events)
        if not chosen:
            raise ValueError("LogHandler: events must name at least one event")
        overrides = {tuple(event): level for event, level in (levels or {}).items()}
        for event in (*chosen, *overrides):
            if event not in _DEFAULT_LEVELS:
                raise ValueError(f"LogHandler: {event!r} is not a Hephaestus telemetry event")
        for event, level in overrides.items():
            if level not in _LEVEL_NAMES:
                raise ValueError(
                    f"LogHandler: the level of {event!r} must be one of "
                    f"{', '.join(_LEVEL_NAMES)}, got: {level!r}"
                )
        # Decide once: an event whose level the application's structlog filters
        # out is not attached at all, so it costs nothing when emitted.
        enabled = _enabled_levels()
        config = {
            event: (overrides.get(event, _DEFAULT_LEVELS[event]), _RENDERERS[event], enabled)
            for event in chosen
        }
        heard = tuple(event for event in chosen if _heard(config[event][0], enabled))
        detach(cls.HANDLER_ID)
        if heard:
            attach_many(cls.HANDLER_ID, heard, _handle, config)

    @classmethod
    def detach(cls) -> bool:
        """Stop logging; False if the handler was not attached."""
        return detach(cls.HANDLER_ID)
