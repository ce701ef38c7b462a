"""What LocalRunner emits: the exact event sequences of DESIGN.md and the fields they carry."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import os
from typing import Any

import pytest
import structlog

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    Instance,
    Ok,
    Status,
    Step,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import MemoryStorage
from hephaestus.testing import capture_events

from .conftest import (
    Blocks,
    Captured,
    Meets,
    Passes,
    Probe,
    ended,
    named,
    short,
    signal,
    until,
)

RUNNER_INIT = telemetry.runner_init_event()
WORKFLOW_START = telemetry.workflow_start_event()
WORKFLOW_STOP = telemetry.workflow_stop_event()
WORKFLOW_EXCEPTION = telemetry.workflow_exception_event()
WORKFLOW_TRANSITION = telemetry.workflow_transition_event()
ENGINE_ADVANCE = telemetry.engine_advance_event()
STEP_START = telemetry.step_start_event()
STEP_STOP = telemetry.step_stop_event()
STEP_EXCEPTION = telemetry.step_exception_event()
STEP_ASYNC = telemetry.step_async_event()
STEP_RESUME = telemetry.step_resume_event()

# ---------------------------------------------------------------- steps and workflows


class A(Passes):
    events = ("done",)


class B(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"seen": True}, {"by": "b"})


class Linear(Workflow):
    start = A
    transitions = {A: {"done": B}, B: {"done": Done}}


class Hold(Step):
    events = ("ok",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Parks(Workflow):
    start = A
    transitions = {A: {"done": Hold}, Hold: {"ok": B}, B: {"done": Done}}


class Split(Passes):
    events = ("go",)


class X(Meets):
    events = ("done",)


class Y(Meets):
    events = ("done",)


class Z(Meets):
    events = ("done",)


class J(Passes):
    events = ("joined",)


class FanOut(Workflow):
    start = Split
    transitions = {
        Split: {"go": [X, Y, Z]},
        X: {"done": J},
        Y: {"done": J},
        Z: {"done": J},
        J: {"joined": Done},
    }


class Raises(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise ValueError("bad input")


class Failing(Workflow):
    start = Raises
    transitions = {Raises: {"done": Done}}


class Boom(Step):
    """Raises once its two siblings run."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await context.initial["probe"].all_arrived.wait()
        raise RuntimeError("boom")


class Sibling(Blocks):
    events = ("done",)


class Xray(Sibling):
    pass


class Zulu(Sibling):
    pass


class FailingFanOut(Workflow):
    start = Split
    transitions = {
        Split: {"go": [Boom, Xray, Zulu]},
        Boom: {"done": J},
        Xray: {"done": J},
        Zulu: {"done": J},
        J: {"joined": Done},
    }


class Stalls(Blocks):
    events = ("done",)
    timeout = 0.01


class Liar(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("bogus")


class Refuses(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        return Error("no")


def single(step: type[Step]) -> type[Workflow]:
    """A workflow of ``step`` then Done."""

    class Single(Workflow):
        start = step
        transitions = {step: {"done": Done}}

    return Single


class Keyed(Passes):
    events = ("done",)
    step_key = "custom_key"


class KeyedV2(Workflow):
    version = 2
    start = Keyed
    transitions = {Keyed: {"done": Done}}


class Work(Blocks):
    events = ("done",)


class Busy(Workflow):
    start = Work
    transitions = {Work: {"done": Done}}


def instance_scoped(events: list[Captured]) -> list[Captured]:
    """Every event about an instance: all but runner:init."""
    return [event for event in events if event[0] != RUNNER_INIT]


# ---------------------------------------------------------------- tests


class TestLinearSequence:
    async def test_the_exact_sequence(self) -> None:
        """A -done-> B -done-> Done emits the sequence DESIGN.md lists, in that order."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                await runner.run(Linear, {"order": 1}, timeout=5)

        assert [
            ("runner:init",),
            ("workflow:start", A),
            ("engine:advance", 1, 0, 1),
            ("step:start", A),
            ("step:stop", A, "done"),
            ("workflow:transition", A, (B,)),
            ("engine:advance", 2, 1, 1),
            ("step:start", B),
            ("step:stop", B, "done"),
            ("workflow:transition", B, (Done,)),
            ("engine:advance", 3, 1, 1),
            ("step:start", Done),
            ("step:stop", Done, "done"),
            ("workflow:transition", Done, ()),
            ("workflow:stop", 3, 3),
        ] == [short(event) for event in events]

    async def test_advances_report_the_status_before_and_after(self) -> None:
        """The first advance takes the instance from pending to running; later ones keep it."""
        with capture_events(ENGINE_ADVANCE) as events:
            async with LocalRunner() as runner:
                await runner.run(Linear, {}, timeout=5)

        assert [
            (Status.PENDING, Status.RUNNING),
            (Status.RUNNING, Status.RUNNING),
            (Status.RUNNING, Status.RUNNING),
        ] == [(meta["status_before"], meta["status_after"]) for _, _, meta in events]

    async def test_step_events_carry_their_fields(self) -> None:
        """step:start and step:stop say how the step ran and what it returned."""
        with capture_events(STEP_START, STEP_STOP) as events:
            async with LocalRunner() as runner:
                await runner.run(Linear, {}, timeout=5)

        (_, _, start_a), (_, _, stop_a), (_, _, start_b), (_, stop_b_measured, stop_b) = events[:4]
        assert ("a", False, 1) == (
            start_a["step_key"],
            start_a["concurrent"],
            start_a["active_steps_count"],
        )
        assert (False, False, [B]) == (
            stop_a["has_context_updates"],
            stop_a["has_metadata_updates"],
            stop_a["transitions_to"],
        )
        assert "b" == start_b["step_key"]
        assert (True, True, [Done]) == (
            stop_b["has_context_updates"],
            stop_b["has_metadata_updates"],
            stop_b["transitions_to"],
        )
        assert isinstance(stop_b_measured["duration"], int)

    async def test_runner_init_describes_the_runner(self) -> None:
        """runner:init carries the runner's name and class, the storage class and the pid."""
        with capture_events(RUNNER_INIT) as events:
            async with LocalRunner(MemoryStorage(), name="tests"):
                pass

        ((_, measurements, metadata),) = events
        assert {"name": "tests", "runner": LocalRunner, "storage": MemoryStorage} == {
            key: metadata[key] for key in ("name", "runner", "storage")
        }
        assert os.getpid() == metadata["pid"]
        assert isinstance(measurements["system_time"], int)

    async def test_workflow_start_and_stop_describe_the_instance(self) -> None:
        """workflow:start names the start step and context keys; workflow:stop the steps done."""
        with capture_events(WORKFLOW_START, WORKFLOW_STOP) as events:
            async with LocalRunner() as runner:
                instance = await runner.run(Linear, {"order": 1, "user": 2}, timeout=5)

        (_, _, start), (_, stopped, stop) = events
        assert (instance.id, Linear, A, ["order", "user"], LocalRunner) == (
            start["instance_id"],
            start["workflow"],
            start["initial_step"],
            start["context_keys"],
            start["runner"],
        )
        assert (Status.COMPLETED, [A, B, Done]) == (stop["status"], stop["completed_steps"])
        assert isinstance(stopped["duration"], int)
        assert 0 < stopped["duration"]

    async def test_measurements_are_not_repeated_in_metadata(self) -> None:
        """step_count, advance_count, active_steps_count and the like are measurements only."""
        with capture_events(WORKFLOW_STOP, ENGINE_ADVANCE) as events:
            async with LocalRunner() as runner:
                await runner.run(Linear, {}, timeout=5)

        moved = {"step_count", "advance_count", "active_steps_count", "completed_in_advance"}
        assert [set(), set(), set(), set()] == [moved & set(meta) for _, _, meta in events]


class TestAsyncResumeSequence:
    async def test_the_exact_sequence(self) -> None:
        """A -> Hold (Async, resumed with ok) -> B -> Done emits DESIGN.md's second sequence."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                with signal(STEP_ASYNC) as parked:
                    instance_id = await runner.start(Parks, {})
                    await until(parked)
                await runner.resume(instance_id, "ok")
                await ended(runner, instance_id)

        assert [
            ("runner:init",),
            ("workflow:start", A),
            ("engine:advance", 1, 0, 1),
            ("step:start", A),
            ("step:stop", A, "done"),
            ("workflow:transition", A, (Hold,)),
            ("engine:advance", 2, 1, 1),
            ("step:start", Hold),
            ("step:async", Hold),
            ("step:resume", Hold, "ok", "external"),
            ("workflow:transition", Hold, (B,)),
            ("engine:advance", 3, 1, 1),
            ("step:start", B),
            ("step:stop", B, "done"),
            ("workflow:transition", B, (Done,)),
            ("engine:advance", 4, 1, 1),
            ("step:start", Done),
            ("step:stop", Done, "done"),
            ("workflow:transition", Done, ()),
            ("workflow:stop", 4, 4),
        ] == [short(event) for event in events]

    async def test_async_and_resume_carry_their_fields(self) -> None:
        """step:async says the instance waits; step:resume measures how long it waited."""
        with capture_events(STEP_ASYNC, STEP_RESUME) as events:
            async with LocalRunner() as runner:
                with signal(STEP_ASYNC) as parked:
                    instance_id = await runner.start(Parks, {})
                    await until(parked)
                await runner.resume(instance_id, "ok")
                await ended(runner, instance_id)

        (_, _, parked_meta), (_, resumed, resume_meta) = events
        assert ("hold", Status.WAITING) == (parked_meta["step_key"], parked_meta["instance_status"])
        assert ("hold", "ok", "external") == (
            resume_meta["step_key"],
            resume_meta["resume_event"],
            resume_meta["source"],
        )
        assert isinstance(resumed["wait_duration"], int)
        assert 0 < resumed["wait_duration"]
        assert "wait_duration" not in resume_meta


class TestFanOutSequence:
    async def test_the_exact_sequence(self) -> None:
        """One advance starts the batch of three; they run at once and fold in sorted order."""
        probe = Probe(expected=3)
        with capture_events() as events:
            async with LocalRunner() as runner:
                await runner.run(FanOut, {"probe": probe}, timeout=5)

        assert [
            ("runner:init",),
            ("workflow:start", Split),
            ("engine:advance", 1, 0, 1),
            ("step:start", Split),
            ("step:stop", Split, "go"),
            ("workflow:transition", Split, (X, Y, Z)),
            ("engine:advance", 2, 1, 3),
            ("step:start", X),
            ("step:start", Y),
            ("step:start", Z),
            ("step:stop", X, "done"),
            ("workflow:transition", X, ()),
            ("step:stop", Y, "done"),
            ("workflow:transition", Y, ()),
            ("step:stop", Z, "done"),
            ("workflow:transition", Z, (J,)),
            ("engine:advance", 3, 3, 1),
            ("step:start", J),
            ("step:stop", J, "joined"),
            ("workflow:transition", J, (Done,)),
            ("engine:advance", 4, 1, 1),
            ("step:start", Done),
            ("step:stop", Done, "done"),
            ("workflow:transition", Done, ()),
            ("workflow:stop", 6, 4),
        ] == [short(event) for event in events]

    async def test_batch_steps_say_they_run_concurrently(self) -> None:
        """Each step:start of the batch has concurrent=True and active_steps_count=3."""
        probe = Probe(expected=3)
        with capture_events(STEP_START, WORKFLOW_TRANSITION) as events:
            async with LocalRunner() as runner:
                await runner.run(FanOut, {"probe": probe}, timeout=5)

        starts = named(events, STEP_START)
        assert [(True, 3)] * 3 == [
            (meta["concurrent"], meta["active_steps_count"])
            for _, _, meta in starts
            if meta["step"] in (X, Y, Z)
        ]
        ((_, fanned, fan_meta),) = [
            e for e in named(events, WORKFLOW_TRANSITION) if e[2]["fan_out"]
        ]
        assert (Split, 3) == (fan_meta["from_step"], fanned["targets_count"])


class TestFailureSequence:
    async def test_the_exact_sequence(self) -> None:
        """A raising step emits step:exception then workflow:exception, and no workflow:stop."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                await runner.run(Failing, {}, timeout=5)

        assert [
            ("runner:init",),
            ("workflow:start", Raises),
            ("engine:advance", 1, 0, 1),
            ("step:start", Raises),
            ("step:exception", Raises, "exception"),
            ("workflow:exception", Raises, "exception"),
        ] == [short(event) for event in events]

    async def test_workflow_exception_carries_the_failure(self) -> None:
        """workflow:exception names the failed step, the kind and the reason; status failed."""
        with capture_events(WORKFLOW_EXCEPTION) as events:
            async with LocalRunner() as runner:
                instance = await runner.run(Failing, {}, timeout=5)

        ((_, measurements, meta),) = events
        assert (instance.id, Raises, "exception", Status.FAILED) == (
            meta["instance_id"],
            meta["failed_step"],
            meta["kind"],
            meta["status"],
        )
        assert "bad input" == str(meta["reason"])
        assert isinstance(meta["stacktrace"], list)
        assert isinstance(measurements["duration"], int)

    async def test_a_failing_fan_out_ends_with_workflow_exception(self) -> None:
        """The failed and the cancelled steps emit step:exception; workflow:exception is last."""
        probe = Probe(expected=2)
        with capture_events(STEP_EXCEPTION, WORKFLOW_EXCEPTION, WORKFLOW_STOP) as events:
            async with LocalRunner() as runner:
                await runner.run(FailingFanOut, {"probe": probe}, timeout=5)

        *steps, last = [short(event) for event in events]
        assert ("workflow:exception", Boom, "exception") == last
        assert [
            ("step:exception", Boom, "exception"),
            ("step:exception", Xray, "cancelled"),
            ("step:exception", Zulu, "cancelled"),
        ] == sorted(steps, key=lambda event: event[1].__qualname__)

    @pytest.mark.parametrize(
        ("step", "kind"),
        [
            (Raises, "exception"),
            (Refuses, "error"),
            (Stalls, "timeout"),
            (Liar, "invalid_result"),
        ],
    )
    async def test_workflow_exception_repeats_the_step_failure(
        self, step: type[Step], kind: str
    ) -> None:
        """workflow:exception has the kind, reason and stacktrace of the step:exception."""
        with capture_events(STEP_EXCEPTION, WORKFLOW_EXCEPTION) as events:
            async with LocalRunner() as runner:
                await runner.run(single(step), {"probe": Probe()}, timeout=5)

        (_, _, step_meta), (_, _, workflow_meta) = events
        assert kind == step_meta["kind"]
        assert [(kind, step_meta["reason"], step_meta["stacktrace"])] == [
            (workflow_meta["kind"], workflow_meta["reason"], workflow_meta["stacktrace"])
        ]


class TestCancelTelemetry:
    async def test_a_step_interrupted_by_cancel_ends_with_step_exception(self) -> None:
        """A running step interrupted by cancel gets its step:exception, kind "cancelled"."""
        probe = Probe()
        with capture_events(STEP_START, STEP_STOP, STEP_EXCEPTION) as events:
            async with LocalRunner() as runner:
                instance_id = await runner.start(Busy, {"probe": probe})
                await until(probe.all_arrived)
                await runner.cancel(instance_id)
                await until(probe.cancelled)

        assert [("step:start", Work), ("step:exception", Work, "cancelled")] == [
            short(event) for event in events
        ]

    async def test_a_step_interrupted_by_the_runner_stopping_ends_with_step_exception(
        self,
    ) -> None:
        """Leaving async with interrupts a running step: its step:exception, kind "cancelled"."""
        probe = Probe()
        with capture_events(STEP_START, STEP_STOP, STEP_EXCEPTION, WORKFLOW_EXCEPTION) as events:
            async with LocalRunner() as runner:
                await runner.start(Busy, {"probe": probe})
                await until(probe.all_arrived)

        assert ["work"] == probe.interrupted
        assert [("step:start", Work), ("step:exception", Work, "cancelled")] == [
            short(event) for event in events
        ]


class TestMetadata:
    async def test_step_key_is_the_context_key_string(self) -> None:
        """step_key in step events is the step's context key, an explicit one included."""
        with capture_events(STEP_START, STEP_STOP) as events:
            async with LocalRunner() as runner:
                await runner.run(KeyedV2, {}, timeout=5)

        assert ["custom_key", "custom_key", "done", "done"] == [
            meta["step_key"] for _, _, meta in events
        ]

    async def test_every_instance_event_carries_the_workflow_version(self) -> None:
        """Every instance-scoped event has instance_id, workflow and workflow_version."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                instance = await runner.run(KeyedV2, {}, timeout=5)

        scoped = instance_scoped(events)
        assert 10 == len(scoped)  # workflow:start, 3 advances, 2 x 3 step events, workflow:stop
        assert [(instance.id, KeyedV2, 2)] * 10 == [
            (meta["instance_id"], meta["workflow"], meta["workflow_version"])
            for _, _, meta in scoped
        ]

    async def test_telemetry_metadata_is_merged_and_hephaestus_fields_win(self) -> None:
        """start(telemetry_metadata=) fields appear on instance events; Hephaestus fields win."""
        caller = {
            "request_id": "r-1",
            "instance_id": "spoofed",
            "workflow": "spoofed",
            "workflow_version": 99,
            "step": "spoofed",
            "step_key": "spoofed",
            "status": "spoofed",
        }
        with capture_events() as events:
            async with LocalRunner() as runner:
                instance_id = await runner.start(Linear, {}, telemetry_metadata=caller)
                await ended(runner, instance_id)

        scoped = instance_scoped(events)
        assert {"r-1"} == {meta["request_id"] for _, _, meta in scoped}
        assert {(instance_id, Linear, 1)} == {
            (meta["instance_id"], meta["workflow"], meta["workflow_version"])
            for _, _, meta in scoped
        }
        step_events = [e for e in scoped if e[0] in (STEP_START, STEP_STOP)]
        assert [A, A, B, B, Done, Done] == [meta["step"] for _, _, meta in step_events]
        assert ["a", "a", "b", "b", "done", "done"] == [
            meta["step_key"] for _, _, meta in step_events
        ]
        ((_, _, stop),) = named(events, WORKFLOW_STOP)
        assert Status.COMPLETED == stop["status"]
        ((_, _, init),) = named(events, RUNNER_INIT)
        assert "request_id" not in init

    async def test_a_raising_handler_does_not_disturb_the_workflow(self) -> None:
        """A handler that raises is detached and reported; the workflow completes as usual."""

        def explode(name: Any, measurements: Any, metadata: Any, config: Any) -> None:
            raise RuntimeError("handler bug")

        telemetry.attach("tests.runtime.explode", STEP_START, explode)
        with (
            structlog.testing.capture_logs() as logs,
            capture_events(telemetry.HANDLER_FAILURE_EVENT) as failures,
            capture_events(STEP_START, WORKFLOW_STOP) as events,
        ):
            async with LocalRunner() as runner:
                instance = await runner.run(Linear, {}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert [A, B, Done] == [meta["step"] for _, _, meta in named(events, STEP_START)]
        assert 1 == len(named(events, WORKFLOW_STOP))
        assert ["tests.runtime.explode"] == [meta["handler_id"] for _, _, meta in failures]
        assert [] == [h for h in telemetry.list_handlers() if h.id == "tests.runtime.explode"]
        assert ["telemetry handler raised and was detached"] == [
            log["event"] for log in logs if log["log_level"] == "error"
        ]
