"""``LogHandler``: a telemetry handler that writes one structlog line per event.

Opt in once, at start-up::

    from hephaestus.telemetry import LogHandler

    LogHandler.attach()                                   # all 11 events, default levels
    LogHandler.attach(levels={("hephaestus", "step", "stop"): "debug"},
                      events=[("hephaestus", "step", "stop"), ("hephaestus", "step", "exception")])
    LogHandler.detach()

Lines go through ``structlog.get_logger("hephaestus")``, so they follow the
application's structlog configuration (this module never configures
structlog). Each message starts with the instance id::

    [orderid::abc] Step ValidateOrder completed in 2ms -> valid

and carries the fields ``instance_id``, ``workflow``, ``step`` (qualified
names), ``step_event`` (the event a step returned, or the resume event) and
``duration_ms``; a field without a value is left out. The event a step
returned is called ``step_event`` because structlog keeps the message itself
under the key ``event``.

Default levels: ``error`` for ``workflow:exception`` and ``step:exception``,
``warning`` for ``step:async``, ``debug`` for ``workflow:transition`` and
``engine:advance``, ``info`` for the rest. The level and the message format of
each event are resolved once, in ``attach``, and so is the filtering: an event
whose level the application's structlog configuration filters out (say
``debug`` under ``make_filtering_bound_logger(logging.INFO)``) is not attached,
and costs nothing. Configure structlog first; attach again after changing its
level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeAlias

import structlog

from . import names
from ._registry import EventName, attach_many, detach

__all__ = ["LogHandler"]

_logger = structlog.get_logger("hephaestus")

_LEVEL_NAMES = ("debug", "info", "warning", "error", "critical")

_DEFAULT_LEVELS: Mapping[EventName, str] = {
    names.WORKFLOW_START: "info",
    names.WORKFLOW_STOP: "info",
    names.WORKFLOW_EXCEPTION: "error",
    names.STEP_START: "info",
    names.STEP_STOP: "info",
    names.STEP_EXCEPTION: "error",
    names.STEP_ASYNC: "warning",
    names.STEP_RESUME: "info",
    names.WORKFLOW_TRANSITION: "debug",
    names.ENGINE_ADVANCE: "debug",
    names.RUNNER_INIT: "info",
}

_Render: TypeAlias = Callable[[dict[str, Any], dict[str, Any]], str]


def _name(value: object) -> str | None:
    """A class by its qualified name; anything else by ``str``; None stays None."""
    if value is None:
        return None
    qualname = getattr(value, "__qualname__", None)
    return qualname if isinstance(qualname, str) else str(value)


def _ms(nanoseconds: int) -> float:
    """Nanoseconds as milliseconds, to the microsecond."""
    return round(nanoseconds / 1_000_000, 3)


def _ms_text(nanoseconds: object) -> str:
    """``2000000`` -> ``"2ms"``, ``250000`` -> ``"0.25ms"``; ``"?ms"`` when missing."""
    if not isinstance(nanoseconds, int | float):
        return "?ms"
    return f"{_ms(int(nanoseconds)):.3f}".rstrip("0").rstrip(".") + "ms"


def _reason(reason: object) -> str:
    """An exception as ``Type: message``, a string as itself, anything else by ``repr``."""
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    if isinstance(reason, str):
        return reason
    return repr(reason)


def _workflow_start(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return f"Workflow {_name(metadata.get('workflow'))} started"


def _workflow_stop(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    workflow = _name(metadata.get("workflow"))
    return f"Workflow {workflow} completed in {_ms_text(measurements.get('duration'))}"


def _workflow_exception(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    step = _name(metadata.get("failed_step", metadata.get("step")))
    workflow = _name(metadata.get("workflow"))
    return f"Workflow {workflow} failed at {step}: {_reason(metadata.get('reason'))}"


def _workflow_transition(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    targets = ", ".join(str(_name(target)) for target in metadata.get("targets") or ()) or "(end)"
    return f"Transition: {_name(metadata.get('from_step'))} ({metadata.get('event')}) -> {targets}"


def _step_start(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return f"Step {_name(metadata.get('step'))} started"


def _step_stop(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return (
        f"Step {_name(metadata.get('step'))} completed in "
        f"{_ms_text(measurements.get('duration'))} -> {metadata.get('event')}"
    )


def _step_exception(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return (
        f"Step {_name(metadata.get('step'))} failed ({metadata.get('kind')}) after "
        f"{_ms_text(measurements.get('duration'))}: {_reason(metadata.get('reason'))}"
    )


def _step_async(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return f"Step {_name(metadata.get('step'))} waiting for async event"


def _step_resume(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return (
        f"Step {_name(metadata.get('step'))} resumed with {metadata.get('resume_event')} "
        f"(waited {_ms_text(measurements.get('wait_duration'))})"
    )


def _engine_advance(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    return f"Engine advance #{metadata.get('iteration')} ({_ms_text(measurements.get('duration'))})"


def _runner_init(measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
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


def _fields(measurements: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The structured fields of a line; those without a value are left out."""
    duration = measurements.get("duration", measurements.get("wait_duration"))
    step = metadata.get("step") or metadata.get("from_step") or metadata.get("failed_step")
    fields = {
        "instance_id": metadata.get("instance_id"),
        "workflow": _name(metadata.get("workflow")),
        "step": _name(step),
        "step_event": metadata.get("event", metadata.get("resume_event")),
        "duration_ms": _ms(duration) if isinstance(duration, int) else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _handle(
    event_name: EventName,
    measurements: dict[str, Any],
    metadata: dict[str, Any],
    config: Mapping[EventName, tuple[str, _Render]],
) -> None:
    """Write the line of one event at the level chosen when the handler was attached."""
    level, render = config[event_name]
    message = render(measurements, metadata)
    instance_id = metadata.get("instance_id")
    if instance_id is not None:
        message = f"[{instance_id}] {message}"
    getattr(_logger, level)(message, **_fields(measurements, metadata))


_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _enabled_levels() -> frozenset[str]:
    """The level names the current structlog configuration lets through."""
    probe = structlog.get_logger("hephaestus").bind()
    check = getattr(probe, "is_enabled_for", None) or getattr(probe, "isEnabledFor", None)
    if check is None:  # a wrapper that cannot say: assume every level is wanted
        return frozenset(_LEVEL_NAMES)
    return frozenset(name for name in _LEVEL_NAMES if check(_LEVEL_NUMBERS[name]))


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
        ``"error"`` or ``"critical"``. Attaching again replaces the previous
        attachment and its options, so a reloaded configuration simply calls
        ``attach`` again. Raises ``ValueError`` for an event that is not one of
        the 11 or a level name it does not know, and attaches nothing then.
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
        config = {
            event: (overrides.get(event, _DEFAULT_LEVELS[event]), _RENDERERS[event])
            for event in chosen
        }
        # Decide once: an event whose level the application's structlog filters
        # out is not attached at all, so it costs nothing when emitted.
        enabled = _enabled_levels()
        heard = tuple(event for event in chosen if config[event][0] in enabled)
        detach(cls.HANDLER_ID)
        if heard:
            attach_many(cls.HANDLER_ID, heard, _handle, config)

    @classmethod
    def detach(cls) -> bool:
        """Stop logging; False if the handler was not attached."""
        return detach(cls.HANDLER_ID)
