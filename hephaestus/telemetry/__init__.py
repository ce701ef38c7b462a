"""Telemetry: the 11 Hephaestus events, their handler registry, a log handler and metrics.

It works like Erlang's ``:telemetry``. Attach a handler to event names; the
runners call one emitter per lifecycle point, and each emitter calls the
handlers of its event, synchronously, in attach order::

    from hephaestus import telemetry

    def on_stop(event_name, measurements, metadata, config):
        print(metadata["step"].__qualname__, measurements["duration"])

    telemetry.attach("latency", telemetry.step_stop_event(), on_stop)
    telemetry.attach_many("everything", telemetry.events(), on_stop)
    telemetry.detach("latency")

An event nobody listens to costs about one empty function call: the emitter
returns before it builds anything. ``listening(event_name)`` tells a runner
whether to bother computing extra metadata. A handler that raises is detached
from all its events, logged and reported as ``("telemetry", "handler",
"failure")``; the emitter's caller never sees the exception.

Event names, measurements and metadata are public API: a patch release only
adds fields, it never removes or renames one. ``docs/telemetry.md`` is the
reference.
"""

from __future__ import annotations

from . import metrics as metrics
from ._registry import HANDLER_FAILURE_EVENT as HANDLER_FAILURE_EVENT
from ._registry import EventName as EventName
from ._registry import Handler as Handler
from ._registry import HandlerFunction as HandlerFunction
from ._registry import HandlerId as HandlerId
from ._registry import Measurements as Measurements
from ._registry import Metadata as Metadata
from ._registry import attach as attach
from ._registry import attach_many as attach_many
from ._registry import detach as detach
from ._registry import execute as execute
from ._registry import list_handlers as list_handlers
from ._registry import listening as listening
from .events import EventClock as EventClock
from .events import engine_advance as engine_advance
from .events import now_ns as now_ns
from .events import runner_init as runner_init
from .events import step_async as step_async
from .events import step_exception as step_exception
from .events import step_resume as step_resume
from .events import step_start as step_start
from .events import step_stop as step_stop
from .events import workflow_exception as workflow_exception
from .events import workflow_start as workflow_start
from .events import workflow_stop as workflow_stop
from .events import workflow_transition as workflow_transition
from .log_handler import LogHandler as LogHandler
from .metrics import Metric as Metric
from .names import engine_advance_event as engine_advance_event
from .names import events as events
from .names import runner_init_event as runner_init_event
from .names import step_async_event as step_async_event
from .names import step_exception_event as step_exception_event
from .names import step_resume_event as step_resume_event
from .names import step_start_event as step_start_event
from .names import step_stop_event as step_stop_event
from .names import workflow_exception_event as workflow_exception_event
from .names import workflow_start_event as workflow_start_event
from .names import workflow_stop_event as workflow_stop_event
from .names import workflow_transition_event as workflow_transition_event

__all__ = [
    "HANDLER_FAILURE_EVENT",
    "EventClock",
    "EventName",
    "Handler",
    "HandlerFunction",
    "HandlerId",
    "LogHandler",
    "Measurements",
    "Metadata",
    "Metric",
    "attach",
    "attach_many",
    "detach",
    "engine_advance",
    "engine_advance_event",
    "events",
    "execute",
    "list_handlers",
    "listening",
    "metrics",
    "now_ns",
    "runner_init",
    "runner_init_event",
    "step_async",
    "step_async_event",
    "step_exception",
    "step_exception_event",
    "step_resume",
    "step_resume_event",
    "step_start",
    "step_start_event",
    "step_stop",
    "step_stop_event",
    "workflow_exception",
    "workflow_exception_event",
    "workflow_start",
    "workflow_start_event",
    "workflow_stop",
    "workflow_stop_event",
    "workflow_transition",
    "workflow_transition_event",
]
