"""The names of the 11 Hephaestus telemetry events.

An event name is a tuple of strings. Each event has a function that returns
its name (``step_stop_event()``), and ``events()`` returns all 11, in the order
of the catalogue: the workflow span, the step span, then the standalone events.
The names are public API: they never change in a patch release.
"""

from __future__ import annotations

from ._registry import EventName

__all__ = [
    "engine_advance_event",
    "events",
    "runner_init_event",
    "step_async_event",
    "step_exception_event",
    "step_resume_event",
    "step_start_event",
    "step_stop_event",
    "workflow_exception_event",
    "workflow_start_event",
    "workflow_stop_event",
    "workflow_transition_event",
]

WORKFLOW_START: EventName = ("hephaestus", "workflow", "start")
WORKFLOW_STOP: EventName = ("hephaestus", "workflow", "stop")
WORKFLOW_EXCEPTION: EventName = ("hephaestus", "workflow", "exception")
STEP_START: EventName = ("hephaestus", "step", "start")
STEP_STOP: EventName = ("hephaestus", "step", "stop")
STEP_EXCEPTION: EventName = ("hephaestus", "step", "exception")
STEP_ASYNC: EventName = ("hephaestus", "step", "async")
STEP_RESUME: EventName = ("hephaestus", "step", "resume")
WORKFLOW_TRANSITION: EventName = ("hephaestus", "workflow", "transition")
ENGINE_ADVANCE: EventName = ("hephaestus", "engine", "advance")
RUNNER_INIT: EventName = ("hephaestus", "runner", "init")

STEP_SCOPE_HOOK: EventName = ("hephaestus", "hook", "step_scope")
"""Not an event: the runners enter the context managers of its "handlers" (factories,
``factory(instance, step, item, attempt)``) around each attempt's ``execute``.

``attempt`` is None on a worker that runs a spread step for the worker driving
its instance: there the instance's ``telemetry_metadata`` also holds what the
driver's scopes set in :data:`hephaestus.telemetry._registry.carried`."""

START_HOOK: EventName = ("hephaestus", "hook", "start")
"""Not an event: each ``runner.start(...)`` calls its "handlers",
``hook(workflow, telemetry_metadata)``, in the caller's context before anything is
stored. The entries of the mapping a hook returns are added to the new
instance's ``telemetry_metadata`` (the caller's own keys win), so they are
stored with the instance and reach every event of it, in every process."""

_ALL: tuple[EventName, ...] = (
    WORKFLOW_START,
    WORKFLOW_STOP,
    WORKFLOW_EXCEPTION,
    STEP_START,
    STEP_STOP,
    STEP_EXCEPTION,
    STEP_ASYNC,
    STEP_RESUME,
    WORKFLOW_TRANSITION,
    ENGINE_ADVANCE,
    RUNNER_INIT,
)


def events() -> tuple[EventName, ...]:
    """All 11 Hephaestus event names, workflow span first, standalone events last."""
    return _ALL


def workflow_start_event() -> EventName:
    """``("hephaestus", "workflow", "start")``: an instance was created."""
    return WORKFLOW_START


def workflow_stop_event() -> EventName:
    """``("hephaestus", "workflow", "stop")``: an instance completed."""
    return WORKFLOW_STOP


def workflow_exception_event() -> EventName:
    """``("hephaestus", "workflow", "exception")``: an instance failed."""
    return WORKFLOW_EXCEPTION


def step_start_event() -> EventName:
    """``("hephaestus", "step", "start")``: a step's ``execute`` is about to run."""
    return STEP_START


def step_stop_event() -> EventName:
    """``("hephaestus", "step", "stop")``: a step returned ``Ok``."""
    return STEP_STOP


def step_exception_event() -> EventName:
    """``("hephaestus", "step", "exception")``: a step returned ``Error``, raised or timed out."""
    return STEP_EXCEPTION


def step_async_event() -> EventName:
    """``("hephaestus", "step", "async")``: a step returned ``Async()`` and parks."""
    return STEP_ASYNC


def step_resume_event() -> EventName:
    """``("hephaestus", "step", "resume")``: a parked step was resumed."""
    return STEP_RESUME


def workflow_transition_event() -> EventName:
    """``("hephaestus", "workflow", "transition")``: a completed step activated its targets."""
    return WORKFLOW_TRANSITION


def engine_advance_event() -> EventName:
    """``("hephaestus", "engine", "advance")``: the runner called the engine's ``advance``."""
    return ENGINE_ADVANCE


def runner_init_event() -> EventName:
    """``("hephaestus", "runner", "init")``: a runner started."""
    return RUNNER_INIT
