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

from hephaestus import (
    Context,
    Done,
    Instance,
    Map,
    Ok,
    Retry,
    Status,
    Step,
    StepTimeout,
    Workflow,
    telemetry,
)
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


class Fetch(Step):
    events = ("done",)
    retry = Retry(max_attempts=3)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class ExtractImages(Step):
    events = ("done",)
    timeout = 5
    retry = Retry(max_attempts=2)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class OrderFlow(Workflow):
    start = ValidateOrder
    transitions = {ValidateOrder: {"valid": Done}}


class Charge(Step):
    events = ("charged",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("charged")


class Reserve(Step):
    events = ("reserved",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("reserved")


class JoinFlow(Workflow):
    """Ship is a join: it waits for Charge and Reserve."""

    start = ValidateOrder
    transitions = {
        ValidateOrder: {"valid": [Charge, Reserve]},
        Charge: {"charged": Ship},
        Reserve: {"reserved": Ship},
        Ship: {"done": Done},
    }


class Resize(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class MapFlow(Workflow):
    start = ValidateOrder
    transitions = {
        ValidateOrder: {"valid": Map(Resize, items=lambda context: [1, 2, 3])},
        Resize: {"done": Done},
    }


def instance_of(workflow: type[Workflow]) -> Instance:
    return Instance(
        id="orderid::abc",
        workflow=workflow,
        workflow_version=1,
        status=Status.RUNNING,
        context=Context({}),
        started_at=time.time_ns(),
        started_monotonic=time.monotonic_ns(),
    )


INSTANCE = instance_of(OrderFlow)


@pytest.fixture(autouse=True)
def _detach_new_handlers() -> Iterator[None]:
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    LogHandler.detach()
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)


@pytest.fixture(autouse=True)
def _every_level() -> Iterator[None]:
    """structlog configured to let every level through, debug included."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield
    finally:
        structlog.reset_defaults()


EMIT: dict[str, Callable[[], None]] = {
    "workflow_start": lambda: telemetry.workflow_start(INSTANCE, {}),
    "workflow_stop": lambda: telemetry.workflow_stop(INSTANCE, {"step_count": 2}),
    "workflow_exception": lambda: telemetry.workflow_exception(
        INSTANCE, "exception", ValueError("no stock"), [], {"failed_step": Ship}
    ),
    "step_start": lambda: telemetry.step_start(INSTANCE, ValidateOrder, {"attempt": 1}),
    "step_stop": lambda: telemetry.step_stop(
        INSTANCE, ValidateOrder, 2_000_000, {"event": "valid"}
    ),
    "step_exception": lambda: telemetry.step_exception(
        INSTANCE, Ship, 250_000, "error", "declined", None, {"attempt": 1}
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


def log_of(emit: Callable[[], None]) -> MutableMapping[str, Any]:
    """The one line ``emit`` wrote."""
    with capture_logs() as logs:
        emit()
    [entry] = logs
    return entry


def line_of(emit: Callable[[], None]) -> tuple[str, str]:
    """The level and the message of the one line ``emit`` wrote."""
    entry = log_of(emit)
    return entry["log_level"], entry["event"]


def step_exception(
    step: type[Step],
    kind: str,
    reason: object,
    duration: int = 250_000,
    **extra: Any,
) -> Callable[[], None]:
    """An emission of step:exception, its metadata given the runner's ``extra`` fields."""
    return lambda: telemetry.step_exception(INSTANCE, step, duration, kind, reason, None, extra)


class TestLines:
    @pytest.mark.parametrize(
        ("emitter", "line"),
        [
            ("workflow_start", "[orderid::abc] Workflow OrderFlow started"),
            ("workflow_stop", "[orderid::abc] Workflow OrderFlow completed in "),
            (
                "workflow_exception",
                "[orderid::abc] Workflow OrderFlow failed at Ship: "
                "ValueError: no stock (exception)",
            ),
            ("step_start", "[orderid::abc] Step ValidateOrder started"),
            ("step_stop", "[orderid::abc] Step ValidateOrder completed in 2 ms -> valid"),
            ("step_exception", "[orderid::abc] Step Ship failed after 0.25 ms: declined (error)"),
            ("step_async", "[orderid::abc] Step Ship parked, waiting to be resumed"),
            ("step_resume", "[orderid::abc] Step Ship resumed with done (waited 1.5 s)"),
            (
                "workflow_transition",
                "[orderid::abc] Transition: ValidateOrder (valid) -> Pack, Ship",
            ),
            ("engine_advance", "[orderid::abc] Engine advance #2 (0.003 ms)"),
            ("runner_init", "Hephaestus runner initialized: main"),
        ],
    )
    def test_message(self, emitter: str, line: str) -> None:
        """Each event is written as one line, prefixed with the instance id."""
        LogHandler.attach()
        assert log_of(EMIT[emitter])["event"].startswith(line)

    def test_workflow_stop_counts_the_steps(self) -> None:
        """The line of a completed instance says how many steps it ran."""
        LogHandler.attach()
        assert log_of(EMIT["workflow_stop"])["event"].endswith(" (2 steps)")

    def test_a_step_started_again_says_which_attempt(self) -> None:
        """A retry's step:start says which attempt it is, out of the step's max_attempts."""
        LogHandler.attach()
        entry = log_of(lambda: telemetry.step_start(INSTANCE, Fetch, {"attempt": 2}))
        assert "[orderid::abc] Step Fetch started (attempt 2 of 3)" == entry["event"]

    @pytest.mark.parametrize(
        ("nanoseconds", "text"),
        [
            (250_000, "0.25 ms"),
            (999_000_000, "999 ms"),
            (1_500_000_000, "1.5 s"),
            (125_000_000_000, "2 min 5 s"),
            (3 * 3600 * 10**9 + 120 * 10**9, "3 h 2 min"),
            (2 * 86400 * 10**9, "2 d 0 h"),
        ],
    )
    def test_durations_read_as_words(self, nanoseconds: int, text: str) -> None:
        """A wait of two days reads "2 d 0 h", not a count of milliseconds."""
        LogHandler.attach()
        entry = log_of(
            lambda: telemetry.step_resume(
                INSTANCE, Ship, {"wait_duration": nanoseconds, "resume_event": "done"}
            )
        )
        assert f"[orderid::abc] Step Ship resumed with done (waited {text})" == entry["event"]

    def test_step_stop_fields(self) -> None:
        """A step:stop line carries instance_id, workflow, step, step_event and duration_ms."""
        LogHandler.attach()
        entry = log_of(EMIT["step_stop"])
        expected = {
            "instance_id": "orderid::abc",
            "workflow": "OrderFlow",
            "step": "ValidateOrder",
            "step_event": "valid",
            "duration_ms": 2.0,
        }
        assert expected == {key: entry[key] for key in expected}

    def test_step_exception_fields(self) -> None:
        """A step:exception line carries the attempt and the kind of the failure too."""
        LogHandler.attach()
        entry = log_of(EMIT["step_exception"])
        assert (1, "error") == (entry["attempt"], entry["kind"])

    def test_resume_fields_show_the_real_wait(self) -> None:
        """A step:resume line reports wait_duration as duration_ms and the resume event."""
        LogHandler.attach()
        entry = log_of(EMIT["step_resume"])
        assert (1500.0, "done") == (entry["duration_ms"], entry["step_event"])

    def test_missing_fields_are_left_out(self) -> None:
        """runner:init has no instance, so its line has no instance fields."""
        LogHandler.attach()
        entry = log_of(EMIT["runner_init"])
        assert {"event", "log_level"} == set(entry)


class TestStepFailures:
    def test_an_attempt_that_will_be_retried_is_a_warning(self) -> None:
        """A retried attempt says which one of how many failed, why, and when the next runs."""
        LogHandler.attach()
        emit = step_exception(
            Fetch, "exception", ConnectionError("refused"), 2_000_000, attempt=1, retry_in=0.5
        )
        assert (
            "warning",
            "[orderid::abc] Step Fetch: attempt 1 of 3 failed after 2 ms: "
            "ConnectionError: refused; retrying in 0.5 s",
        ) == line_of(emit)

    def test_a_retry_delay_is_shown_to_the_millisecond(self) -> None:
        """A jittered delay reads 0.105 s, not 0.10537..."""
        LogHandler.attach()
        emit = step_exception(Fetch, "exception", "refused", attempt=2, retry_in=0.10537)
        assert line_of(emit)[1].endswith("; retrying in 0.105 s")

    def test_the_last_attempt_is_an_error_that_says_how_many_ran(self) -> None:
        """The attempt that is not retried is the step's failure: an error, attempts counted."""
        LogHandler.attach()
        emit = step_exception(Fetch, "exception", ConnectionError("refused"), 2_000_000, attempt=3)
        assert (
            "error",
            "[orderid::abc] Step Fetch failed after 2 ms: "
            "ConnectionError: refused (exception, attempt 3 of 3)",
        ) == line_of(emit)

    def test_a_first_attempt_that_fails_for_good_is_an_error(self) -> None:
        """A step without retries fails on its first attempt: no attempt count."""
        LogHandler.attach()
        emit = step_exception(Ship, "exception", ValueError("no stock"), attempt=1)
        assert (
            "error",
            "[orderid::abc] Step Ship failed after 0.25 ms: ValueError: no stock (exception)",
        ) == line_of(emit)

    def test_a_timeout_says_so_in_words(self) -> None:
        """A timeout reads "timed out after 5 s": the step's timeout, never a class name."""
        LogHandler.attach()
        reason = StepTimeout("step ExtractImages timed out after 5s")
        level, message = line_of(
            step_exception(ExtractImages, "timeout", reason, 5_000_400_000, attempt=2)
        )
        assert (
            "error",
            "[orderid::abc] Step ExtractImages failed: timed out after 5 s "
            "(timeout, attempt 2 of 2)",
        ) == (level, message)
        assert "StepTimeout" not in message

    def test_a_retried_timeout(self) -> None:
        """A timed-out attempt that will be retried is a warning in the same words."""
        LogHandler.attach()
        reason = StepTimeout("step ExtractImages timed out after 5s")
        emit = step_exception(ExtractImages, "timeout", reason, attempt=1, retry_in=1.0)
        assert (
            "warning",
            "[orderid::abc] Step ExtractImages: attempt 1 of 2 failed: timed out after 5 s; "
            "retrying in 1 s",
        ) == line_of(emit)

    @pytest.mark.parametrize(
        ("reason", "line"),
        [
            ("another step failed", "[orderid::abc] Step Ship was cancelled: another step failed"),
            ("the step was cancelled", "[orderid::abc] Step Ship was cancelled"),
        ],
    )
    def test_a_cancelled_step_is_not_an_error(self, reason: str, line: str) -> None:
        """A step stopped by a cancel, or because another step failed, is logged at info."""
        LogHandler.attach()
        assert ("info", line) == line_of(step_exception(Ship, "cancelled", reason, 0))

    def test_a_failure_outside_execute_shows_no_duration(self) -> None:
        """A change the storage refused has no duration of its own (0): none is shown."""
        LogHandler.attach()
        emit = step_exception(Ship, "storage", RuntimeError("disk full"), 0, attempt=1)
        assert (
            "[orderid::abc] Step Ship failed: RuntimeError: disk full (storage)"
            == (line_of(emit)[1])
        )

    def test_reason_that_is_not_text_is_shown_by_repr(self) -> None:
        """A reason that is neither an exception nor a string is written with repr."""
        LogHandler.attach()
        emit = step_exception(Ship, "error", {"code": 402}, 1_000)
        assert (
            "[orderid::abc] Step Ship failed after 0.001 ms: {'code': 402} (error)"
            == (line_of(emit)[1])
        )


class TestMapItems:
    def test_the_items_index_is_in_every_step_line(self) -> None:
        """One item of a mapped step is named with its index: start, stop and failure."""
        LogHandler.attach()
        with capture_logs() as logs:
            telemetry.step_start(INSTANCE, Resize, {"attempt": 1, "item": 3})
            telemetry.step_stop(INSTANCE, Resize, 2_000_000, {"event": "done", "item": 3})
            telemetry.step_exception(
                INSTANCE, Resize, 2_000_000, "exception", ValueError("bad"), [], {"item": 3}
            )
        assert [
            "[orderid::abc] Step Resize (item 3) started",
            "[orderid::abc] Step Resize (item 3) completed in 2 ms -> done",
            "[orderid::abc] Step Resize (item 3) failed after 2 ms: ValueError: bad (exception)",
        ] == [entry["event"] for entry in logs]
        assert [3, 3, 3] == [entry["item"] for entry in logs]


class TestTransitions:
    def test_the_transition_out_of_done_ends_the_workflow(self) -> None:
        """The transition out of Done says the workflow ends there."""
        LogHandler.attach()
        entry = log_of(lambda: telemetry.workflow_transition(INSTANCE, Done, "done", [], {}))
        assert "[orderid::abc] Transition: Done (done) -> (end of the workflow)" == entry["event"]

    def test_a_branch_that_reaches_a_waiting_join(self) -> None:
        """A branch that reaches a join whose other branches still run activates nothing yet."""
        LogHandler.attach()
        join = instance_of(JoinFlow)
        entry = log_of(lambda: telemetry.workflow_transition(join, Charge, "charged", [], {}))
        assert (
            "[orderid::abc] Transition: Charge (charged) -> "
            "(none yet: Ship waits for its other branches)"
        ) == entry["event"]

    def test_the_last_branch_to_reach_the_join_activates_it(self) -> None:
        """The last branch to arrive names the join it activated."""
        LogHandler.attach()
        join = instance_of(JoinFlow)
        entry = log_of(lambda: telemetry.workflow_transition(join, Reserve, "reserved", [Ship], {}))
        assert "[orderid::abc] Transition: Reserve (reserved) -> Ship" == entry["event"]

    def test_an_item_of_a_map_that_is_not_the_last(self) -> None:
        """An item of a map activates nothing until the map's other items are done."""
        LogHandler.attach()
        mapped = instance_of(MapFlow)
        entry = log_of(lambda: telemetry.workflow_transition(mapped, Resize, "done", [], {}))
        assert (
            "[orderid::abc] Transition: Resize (done) -> (none yet: the map waits for its "
            "other items)"
        ) == entry["event"]


class TestLevels:
    @pytest.mark.parametrize(
        ("emitter", "level"),
        [
            ("workflow_start", "info"),
            ("workflow_stop", "info"),
            ("workflow_exception", "error"),
            ("step_start", "debug"),
            ("step_stop", "debug"),
            ("step_exception", "error"),
            ("step_async", "info"),
            ("step_resume", "info"),
            ("workflow_transition", "debug"),
            ("engine_advance", "debug"),
            ("runner_init", "info"),
        ],
    )
    def test_default_levels(self, emitter: str, level: str) -> None:
        """The default levels are those of the reference (docs/telemetry.md)."""
        LogHandler.attach()
        assert level == log_of(EMIT[emitter])["log_level"]

    def test_a_park_is_no_warning(self) -> None:
        """A step that parks waits for a resume, as it was written to: info."""
        LogHandler.attach()
        assert "info" == log_of(EMIT["step_async"])["log_level"]

    def test_levels_override_per_event(self) -> None:
        """levels maps an event name to the level it is written at."""
        LogHandler.attach(levels={telemetry.step_stop_event(): "info"})
        assert ("info", "debug") == (
            log_of(EMIT["step_stop"])["log_level"],
            log_of(EMIT["step_start"])["log_level"],
        )

    def test_a_level_given_for_step_exception_is_that_of_every_outcome(self) -> None:
        """A step:exception level replaces the levels by outcome: retried, failed, cancelled."""
        LogHandler.attach(levels={telemetry.step_exception_event(): "critical"})
        with capture_logs() as logs:
            step_exception(Fetch, "exception", "refused", attempt=1, retry_in=0.5)()
            step_exception(Fetch, "exception", "refused", attempt=3)()
            step_exception(Ship, "cancelled", "another step failed", 0)()
        assert ["critical"] * 3 == [entry["log_level"] for entry in logs]

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


def heard() -> set[telemetry.EventName]:
    """The events the LogHandler is attached to."""
    return {h.event_name for h in telemetry.list_handlers() if h.id == LogHandler.HANDLER_ID}


DEBUG_EVENTS = {
    telemetry.step_start_event(),
    telemetry.step_stop_event(),
    telemetry.workflow_transition_event(),
    telemetry.engine_advance_event(),
}


class TestFilteredLevels:
    @pytest.fixture
    def info_and_above(self) -> None:
        """structlog configured as an application would: lines below info are dropped."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

    @pytest.fixture
    def errors_only(self) -> None:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    @pytest.mark.usefixtures("info_and_above")
    def test_events_below_the_configured_level_are_not_attached(self) -> None:
        """With structlog at info, the debug events (step start/stop, transition, advance)
        cost nothing."""
        LogHandler.attach()
        assert set() == heard() & DEBUG_EVENTS
        assert set(telemetry.events()) - DEBUG_EVENTS == heard()

    @pytest.mark.usefixtures("info_and_above")
    def test_a_level_raised_above_the_filter_is_attached(self) -> None:
        """An override to a level structlog lets through is attached."""
        LogHandler.attach(levels={telemetry.engine_advance_event(): "warning"})
        assert telemetry.engine_advance_event() in heard()

    @pytest.mark.usefixtures("errors_only")
    def test_step_exception_writes_only_the_outcomes_structlog_lets_through(self) -> None:
        """With structlog at error, a failure is written; a retry or a cancel is not."""
        LogHandler.attach()
        with capture_logs() as logs:
            step_exception(Fetch, "exception", "refused", attempt=1, retry_in=0.5)()
            step_exception(Ship, "cancelled", "another step failed", 0)()
            step_exception(Fetch, "exception", "refused", attempt=3)()
        assert [
            (
                "error",
                "[orderid::abc] Step Fetch failed after 0.25 ms: refused (exception, "
                "attempt 3 of 3)",
            )
        ] == [(entry["log_level"], entry["event"]) for entry in logs]

    def test_without_a_structlog_configuration_debug_lines_are_left_out(self) -> None:
        """structlog's defaults print every level: until the application configures it,
        the LogHandler writes info and above."""
        structlog.reset_defaults()
        LogHandler.attach()
        assert set(telemetry.events()) - DEBUG_EVENTS == heard()
