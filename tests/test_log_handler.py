"""Tests for hephaestus.telemetry.log_handler: LogHandler's lines, fields and levels."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from hephaestus import Context, Done, Instance, Ok, Status, Step, Workflow, telemetry
from hephaestus.telemetry import LogHandler


class ValidateOrder(Step):
    events = ("valid",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("valid")


class Ship(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class Pack(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class OrderFlow(Workflow):
    start = ValidateOrder
    transitions = {ValidateOrder: {"valid": Done}}


INSTANCE = Instance(
    id="orderid::abc",
    workflow=OrderFlow,
    workflow_version=1,
    status=Status.RUNNING,
    context=Context({}),
    started_at=time.time_ns(),
    started_monotonic=time.monotonic_ns(),
)


@pytest.fixture(autouse=True)
def _detach_new_handlers() -> Iterator[None]:
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    LogHandler.detach()
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)


EMIT: dict[str, Callable[[], None]] = {
    "workflow_start": lambda: telemetry.workflow_start(INSTANCE, {}),
    "workflow_stop": lambda: telemetry.workflow_stop(INSTANCE, {"step_count": 2}),
    "workflow_exception": lambda: telemetry.workflow_exception(
        INSTANCE, "exception", ValueError("no stock"), [], {"failed_step": Ship}
    ),
    "step_start": lambda: telemetry.step_start(INSTANCE, ValidateOrder, {}),
    "step_stop": lambda: telemetry.step_stop(
        INSTANCE, ValidateOrder, 2_000_000, {"event": "valid"}
    ),
    "step_exception": lambda: telemetry.step_exception(
        INSTANCE, Ship, 250_000, "error", "declined", None, {}
    ),
    "step_async": lambda: telemetry.step_async(INSTANCE, Ship, 1_000, {}),
    "step_resume": lambda: telemetry.step_resume(
        INSTANCE, Ship, {"wait_duration": 1_500_000_000, "resume_event": "done"}
    ),
    "workflow_transition": lambda: telemetry.workflow_transition(
        INSTANCE, ValidateOrder, "valid", [Ship, Pack], {}
    ),
    "engine_advance": lambda: telemetry.engine_advance(INSTANCE, 3_000, {"iteration": 2}),
    "runner_init": lambda: telemetry.runner_init({"name": "main", "pid": 1}),
}


def log_of(emitter: str) -> MutableMapping[str, Any]:
    with capture_logs() as logs:
        EMIT[emitter]()
    [entry] = logs
    return entry


class TestLines:
    @pytest.mark.parametrize(
        ("emitter", "line"),
        [
            ("workflow_start", "[orderid::abc] Workflow OrderFlow started"),
            ("workflow_stop", "[orderid::abc] Workflow OrderFlow completed in "),
            (
                "workflow_exception",
                "[orderid::abc] Workflow OrderFlow failed at Ship: ValueError: no stock",
            ),
            ("step_start", "[orderid::abc] Step ValidateOrder started"),
            ("step_stop", "[orderid::abc] Step ValidateOrder completed in 2ms -> valid"),
            ("step_exception", "[orderid::abc] Step Ship failed (error) after 0.25ms: declined"),
            ("step_async", "[orderid::abc] Step Ship waiting for async event"),
            ("step_resume", "[orderid::abc] Step Ship resumed with done (waited 1500ms)"),
            (
                "workflow_transition",
                "[orderid::abc] Transition: ValidateOrder (valid) -> Pack, Ship",
            ),
            ("engine_advance", "[orderid::abc] Engine advance #2 (0.003ms)"),
            ("runner_init", "Hephaestus runner initialized: main"),
        ],
    )
    def test_message(self, emitter: str, line: str) -> None:
        """Each event is written as one line, prefixed with the instance id."""
        LogHandler.attach()
        assert log_of(emitter)["event"].startswith(line)

    def test_transition_out_of_done(self) -> None:
        """The transition out of Done says the workflow ends there."""
        LogHandler.attach()
        with capture_logs() as logs:
            telemetry.workflow_transition(INSTANCE, Done, "done", [], {})
        assert "[orderid::abc] Transition: Done (done) -> (end)" == logs[0]["event"]

    def test_reason_that_is_not_text_is_shown_by_repr(self) -> None:
        """A reason that is neither an exception nor a string is written with repr."""
        LogHandler.attach()
        with capture_logs() as logs:
            telemetry.step_exception(INSTANCE, Ship, 1_000, "error", {"code": 402}, None, {})
        assert (
            "[orderid::abc] Step Ship failed (error) after 0.001ms: {'code': 402}"
            == (logs[0]["event"])
        )

    def test_step_stop_fields(self) -> None:
        """A step:stop line carries instance_id, workflow, step, step_event and duration_ms."""
        LogHandler.attach()
        entry = log_of("step_stop")
        expected = {
            "instance_id": "orderid::abc",
            "workflow": "OrderFlow",
            "step": "ValidateOrder",
            "step_event": "valid",
            "duration_ms": 2.0,
        }
        assert expected == {key: entry[key] for key in expected}

    def test_resume_fields_show_the_real_wait(self) -> None:
        """A step:resume line reports wait_duration as duration_ms and the resume event."""
        LogHandler.attach()
        entry = log_of("step_resume")
        assert (1500.0, "done") == (entry["duration_ms"], entry["step_event"])

    def test_missing_fields_are_left_out(self) -> None:
        """runner:init has no instance, so its line has no instance fields."""
        LogHandler.attach()
        entry = log_of("runner_init")
        assert {"event", "log_level"} == set(entry)


class TestLevels:
    @pytest.mark.parametrize(
        ("emitter", "level"),
        [
            ("workflow_start", "info"),
            ("workflow_stop", "info"),
            ("workflow_exception", "error"),
            ("step_start", "info"),
            ("step_stop", "info"),
            ("step_exception", "error"),
            ("step_async", "warning"),
            ("step_resume", "info"),
            ("workflow_transition", "debug"),
            ("engine_advance", "debug"),
            ("runner_init", "info"),
        ],
    )
    def test_default_levels(self, emitter: str, level: str) -> None:
        """The default levels are those of the reference."""
        LogHandler.attach()
        assert level == log_of(emitter)["log_level"]

    def test_levels_override_per_event(self) -> None:
        """levels maps an event name to the level it is written at."""
        LogHandler.attach(levels={telemetry.step_stop_event(): "debug"})
        assert ("debug", "info") == (
            log_of("step_stop")["log_level"],
            log_of("step_start")["log_level"],
        )

    def test_unknown_level_raises(self) -> None:
        """A level name that is not a log level raises ValueError and attaches nothing."""
        with pytest.raises(ValueError, match="'loud'"):
            LogHandler.attach(levels={telemetry.step_stop_event(): "loud"})
        assert not LogHandler.detach()

    def test_unknown_event_raises(self) -> None:
        """An event that is not one of the 11 raises ValueError."""
        with pytest.raises(ValueError, match="not a Hephaestus telemetry event"):
            LogHandler.attach(events=[("my", "event")])


class TestAttachDetach:
    def test_no_events_raises(self) -> None:
        """An empty events list raises ValueError."""
        with pytest.raises(ValueError, match="at least one event"):
            LogHandler.attach(events=[])

    def test_events_restricts_what_is_logged(self) -> None:
        """Only the events given are logged."""
        LogHandler.attach(events=[telemetry.step_exception_event()])
        with capture_logs() as logs:
            EMIT["step_stop"]()
            EMIT["step_exception"]()
        assert ["error"] == [entry["log_level"] for entry in logs]

    def test_attach_again_replaces(self) -> None:
        """A second attach replaces the first: one line per event, with the new options."""
        LogHandler.attach()
        LogHandler.attach(levels={telemetry.step_stop_event(): "warning"})
        with capture_logs() as logs:
            EMIT["step_stop"]()
        assert ["warning"] == [entry["log_level"] for entry in logs]

    def test_detach(self) -> None:
        """detach stops the lines and returns whether the handler was attached."""
        LogHandler.attach()
        assert (True, False) == (LogHandler.detach(), LogHandler.detach())
        with capture_logs() as logs:
            EMIT["step_stop"]()
        assert [] == logs

    def test_fixed_handler_id(self) -> None:
        """The handler is attached under one fixed id, to all 11 events by default."""
        LogHandler.attach()
        mine = [h.event_name for h in telemetry.list_handlers() if h.id == LogHandler.HANDLER_ID]
        assert ("hephaestus-log-handler", list(telemetry.events())) == (
            LogHandler.HANDLER_ID,
            mine,
        )


class TestFilteredLevels:
    @pytest.fixture
    def info_and_above(self) -> Iterator[None]:
        """structlog configured as an application would: lines below info are dropped."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        try:
            yield
        finally:
            structlog.reset_defaults()

    @pytest.mark.usefixtures("info_and_above")
    def test_events_below_the_configured_level_are_not_attached(self) -> None:
        """With structlog at info, the debug events (transition, advance) cost nothing."""
        LogHandler.attach()
        heard = {h.event_name for h in telemetry.list_handlers() if h.id == LogHandler.HANDLER_ID}
        assert telemetry.workflow_transition_event() not in heard
        assert telemetry.engine_advance_event() not in heard
        assert telemetry.step_stop_event() in heard
        assert 9 == len(heard)

    @pytest.mark.usefixtures("info_and_above")
    def test_a_level_raised_above_the_filter_is_attached(self) -> None:
        """An override to a level structlog lets through is attached."""
        LogHandler.attach(levels={telemetry.engine_advance_event(): "warning"})
        heard = {h.event_name for h in telemetry.list_handlers() if h.id == LogHandler.HANDLER_ID}
        assert telemetry.engine_advance_event() in heard
