"""Tests for hephaestus.telemetry.events: what each emitter measures and describes."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import ast
import importlib
import pkgutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

import hephaestus.core
from hephaestus import Context, Done, Instance, Ok, Status, Step, Workflow, telemetry
from hephaestus.core import engine
from hephaestus.testing import capture_events

INSTANCE_FIELDS = {"instance_id", "workflow", "workflow_version"}


class A(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class Bravo(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class Charlie(Step):
    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class Flow(Workflow):
    start = A
    transitions = {A: {"done": Done}}


@pytest.fixture(autouse=True)
def _detach_new_handlers() -> Iterator[None]:
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)


def make_instance(**changes: Any) -> Instance:
    base = Instance(
        id="abc",
        workflow=Flow,
        workflow_version=3,
        status=Status.RUNNING,
        context=Context({}),
        telemetry_metadata={"request_id": "r-1"},
        started_at=time.time_ns(),
        started_monotonic=time.monotonic_ns(),
    )
    return attrs.evolve(base, **changes)


def only(records: list[Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    assert 1 == len(records)
    event_name, measurements, metadata = records[0]
    return event_name, measurements, metadata


class Untouchable(Mapping[str, Any]):
    """A mapping that fails the test if anything reads it."""

    def __getitem__(self, key: str) -> Any:
        raise AssertionError("extra_metadata was read")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("extra_metadata was read")

    def __len__(self) -> int:
        raise AssertionError("extra_metadata was read")

    def keys(self) -> Any:
        raise AssertionError("extra_metadata was read")


class TestWorkflowStart:
    def test_measurements_and_metadata(self) -> None:
        """workflow:start measures system_time and describes the instance plus the extras."""
        instance = make_instance()
        with capture_events(telemetry.workflow_start_event()) as records:
            telemetry.workflow_start(instance, {"initial_step": A, "runner": "local"})
        event_name, measurements, metadata = only(records)
        assert ("hephaestus", "workflow", "start") == event_name
        assert {"system_time"} == set(measurements)
        assert isinstance(measurements["system_time"], int)
        expected = {
            "request_id": "r-1",
            "initial_step": A,
            "runner": "local",
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
        }
        assert expected == metadata


class TestWorkflowStop:
    def test_measurements_and_metadata(self) -> None:
        """workflow:stop takes step_count and advance_count out of the extras into measurements."""
        instance = make_instance()
        extra = {"step_count": 3, "advance_count": 4, "completed_steps": [A], "runner": "local"}
        with capture_events(telemetry.workflow_stop_event()) as records:
            telemetry.workflow_stop(instance, extra)
        _, measurements, metadata = only(records)
        assert {"duration", "step_count", "advance_count"} == set(measurements)
        assert (3, 4) == (measurements["step_count"], measurements["advance_count"])
        expected = {
            "request_id": "r-1",
            "completed_steps": [A],
            "runner": "local",
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "status": "completed",
        }
        assert expected == metadata

    def test_caller_extras_are_not_mutated(self) -> None:
        """The caller's extra_metadata keeps the keys the emitter turned into measurements."""
        extra = {"step_count": 3, "advance_count": 4}
        with capture_events(telemetry.workflow_stop_event()):
            telemetry.workflow_stop(make_instance(), extra)
        assert {"step_count": 3, "advance_count": 4} == extra

    def test_duration_is_monotonic_in_this_process(self) -> None:
        """The duration counts from started_monotonic when the instance has one."""
        instance = make_instance(started_monotonic=time.monotonic_ns() - 5_000_000_000)
        with capture_events(telemetry.workflow_stop_event()) as records:
            telemetry.workflow_stop(instance, {})
        _, measurements, _ = only(records)
        assert 5_000_000_000 <= measurements["duration"] < 6_000_000_000

    def test_duration_after_a_restart_uses_the_wall_clock(self) -> None:
        """Without started_monotonic the duration comes from started_at, never None."""
        instance = make_instance(started_at=time.time_ns() - 7_000_000_000, started_monotonic=None)
        with capture_events(telemetry.workflow_stop_event()) as records:
            telemetry.workflow_stop(instance, {})
        _, measurements, _ = only(records)
        assert 7_000_000_000 <= measurements["duration"] < 8_000_000_000

    def test_measurement_keys_of_telemetry_metadata_stay_out_of_metadata(self) -> None:
        """A measurement name is reserved on its event, even in the instance's metadata."""
        instance = make_instance(telemetry_metadata={"step_count": "mine"})
        with capture_events(telemetry.workflow_stop_event()) as records:
            telemetry.workflow_stop(instance, {})
        _, measurements, metadata = only(records)
        assert "step_count" not in metadata
        assert {"duration"} == set(measurements)


class TestWorkflowException:
    def test_measurements_and_metadata(self) -> None:
        """workflow:exception measures the duration and carries kind, reason and stacktrace."""
        reason = ValueError("boom")
        with capture_events(telemetry.workflow_exception_event()) as records:
            telemetry.workflow_exception(
                make_instance(), "exception", reason, [], {"failed_step": A}
            )
        _, measurements, metadata = only(records)
        assert {"duration"} == set(measurements)
        assert measurements["duration"] >= 0
        expected = {
            "request_id": "r-1",
            "failed_step": A,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "kind": "exception",
            "reason": reason,
            "stacktrace": [],
            "status": "failed",
        }
        assert expected == metadata

    def test_duration_after_a_restart_is_not_none(self) -> None:
        """A failed instance recovered after a restart still gets a duration."""
        instance = make_instance(started_monotonic=None)
        with capture_events(telemetry.workflow_exception_event()) as records:
            telemetry.workflow_exception(instance, "error", "declined", None, {})
        _, measurements, _ = only(records)
        assert isinstance(measurements["duration"], int)


class TestWorkflowTransition:
    def test_measurements_and_metadata(self) -> None:
        """workflow:transition counts the targets, sorted by qualified name, and flags a fan-out."""
        with capture_events(telemetry.workflow_transition_event()) as records:
            telemetry.workflow_transition(make_instance(), A, "done", (Charlie, Bravo), {"x": 1})
        _, measurements, metadata = only(records)
        assert {"targets_count", "system_time"} == set(measurements)
        assert 2 == measurements["targets_count"]
        expected = {
            "request_id": "r-1",
            "x": 1,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "from_step": A,
            "event": "done",
            "targets": [Bravo, Charlie],
            "fan_out": True,
        }
        assert expected == metadata

    def test_single_target_is_no_fan_out(self) -> None:
        """One target is not a fan-out."""
        with capture_events(telemetry.workflow_transition_event()) as records:
            telemetry.workflow_transition(make_instance(), A, "done", [Bravo], {})
        _, measurements, metadata = only(records)
        assert (1, [Bravo], False) == (
            measurements["targets_count"],
            metadata["targets"],
            metadata["fan_out"],
        )

    def test_done_has_no_targets(self) -> None:
        """The transition out of Done has an empty target list."""
        with capture_events(telemetry.workflow_transition_event()) as records:
            telemetry.workflow_transition(make_instance(), Done, "done", [], {})
        _, measurements, metadata = only(records)
        assert (0, [], False) == (
            measurements["targets_count"],
            metadata["targets"],
            metadata["fan_out"],
        )

    def test_caller_targets_are_not_mutated(self) -> None:
        """Sorting the targets leaves the caller's list in its order."""
        targets = [Charlie, Bravo]
        with capture_events(telemetry.workflow_transition_event()):
            telemetry.workflow_transition(make_instance(), A, "done", targets, {})
        assert [Charlie, Bravo] == targets


class TestStepEvents:
    def test_step_start(self) -> None:
        """step:start measures system_time and names the step."""
        extra = {"step_key": "a", "concurrent": False, "active_steps_count": 1}
        with capture_events(telemetry.step_start_event()) as records:
            telemetry.step_start(make_instance(), A, extra)
        _, measurements, metadata = only(records)
        assert {"system_time"} == set(measurements)
        expected = {
            "request_id": "r-1",
            **extra,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "step": A,
        }
        assert expected == metadata

    def test_step_stop(self) -> None:
        """step:stop measures the given duration and keeps the extras as metadata."""
        extra = {"step_key": "a", "event": "done", "has_context_updates": True}
        with capture_events(telemetry.step_stop_event()) as records:
            telemetry.step_stop(make_instance(), A, 1_500, extra)
        _, measurements, metadata = only(records)
        assert {"duration": 1_500} == measurements
        expected = {
            "request_id": "r-1",
            **extra,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "step": A,
        }
        assert expected == metadata

    def test_step_exception(self) -> None:
        """step:exception carries kind, reason and stacktrace beside the step."""
        reason = RuntimeError("nope")
        with capture_events(telemetry.step_exception_event()) as records:
            telemetry.step_exception(make_instance(), A, 20, "exception", reason, ["f"], {})
        _, measurements, metadata = only(records)
        assert {"duration": 20} == measurements
        expected = {
            "request_id": "r-1",
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "step": A,
            "kind": "exception",
            "reason": reason,
            "stacktrace": ["f"],
        }
        assert expected == metadata

    def test_step_async(self) -> None:
        """step:async measures the duration before parking."""
        with capture_events(telemetry.step_async_event()) as records:
            telemetry.step_async(make_instance(), A, 30, {"instance_status": Status.WAITING})
        _, measurements, metadata = only(records)
        assert {"duration": 30} == measurements
        expected = {
            "request_id": "r-1",
            "instance_status": Status.WAITING,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "step": A,
        }
        assert expected == metadata

    def test_step_resume(self) -> None:
        """step:resume takes wait_duration out of the extras into measurements."""
        extra = {"wait_duration": 900, "resume_event": "done", "source": "external"}
        with capture_events(telemetry.step_resume_event()) as records:
            telemetry.step_resume(make_instance(), A, extra)
        _, measurements, metadata = only(records)
        assert {"system_time", "wait_duration"} == set(measurements)
        assert 900 == measurements["wait_duration"]
        expected = {
            "request_id": "r-1",
            "resume_event": "done",
            "source": "external",
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
            "step": A,
        }
        assert expected == metadata
        assert 900 == extra["wait_duration"]


class TestEngineAdvance:
    def test_measurements_and_metadata(self) -> None:
        """engine:advance takes active_steps_count and completed_in_advance into measurements."""
        extra = {
            "active_steps_count": 2,
            "completed_in_advance": 1,
            "iteration": 4,
            "status_before": Status.RUNNING,
            "status_after": Status.RUNNING,
        }
        with capture_events(telemetry.engine_advance_event()) as records:
            telemetry.engine_advance(make_instance(), 70, extra)
        _, measurements, metadata = only(records)
        assert {"duration": 70, "active_steps_count": 2, "completed_in_advance": 1} == measurements
        expected = {
            "request_id": "r-1",
            "iteration": 4,
            "status_before": Status.RUNNING,
            "status_after": Status.RUNNING,
            "instance_id": "abc",
            "workflow": Flow,
            "workflow_version": 3,
        }
        assert expected == metadata
        assert 5 == len(extra)


class TestRunnerInit:
    def test_measurements_and_metadata(self) -> None:
        """runner:init measures system_time; its metadata is the extras, copied."""
        extra = {"name": "main", "runner": object, "storage": dict, "pid": 42}
        with capture_events(telemetry.runner_init_event()) as records:
            telemetry.runner_init(extra)
        _, measurements, metadata = only(records)
        assert {"system_time"} == set(measurements)
        assert extra == metadata
        assert extra is not metadata


class TestPrecedence:
    def test_hephaestus_fields_win_over_extras_which_win_over_instance_metadata(self) -> None:
        """Hephaestus fields beat extra_metadata, which beats the instance's telemetry_metadata."""
        instance = make_instance(
            telemetry_metadata={"instance_id": "fake", "tenant": "t-1", "region": "eu"}
        )
        extra = {"step": Bravo, "workflow_version": 99, "region": "us"}
        with capture_events(telemetry.step_stop_event()) as records:
            telemetry.step_stop(instance, A, 1, extra)
        _, _, metadata = only(records)
        assert ("abc", A, 3) == (
            metadata["instance_id"],
            metadata["step"],
            metadata["workflow_version"],
        )
        assert ("t-1", "us") == (metadata["tenant"], metadata["region"])

    def test_status_and_error_fields_win(self) -> None:
        """status, kind, reason and stacktrace cannot be overridden by the extras."""
        extra = {"status": "ok", "kind": "k", "reason": "r", "stacktrace": "s"}
        with capture_events(telemetry.workflow_exception_event()) as records:
            telemetry.workflow_exception(make_instance(), "error", "declined", None, extra)
        _, _, metadata = only(records)
        assert ("failed", "error", "declined", None) == (
            metadata["status"],
            metadata["kind"],
            metadata["reason"],
            metadata["stacktrace"],
        )

    def test_transition_fields_win(self) -> None:
        """from_step, event, targets and fan_out cannot be overridden by the extras."""
        extra = {"from_step": Bravo, "event": "x", "targets": [], "fan_out": True}
        with capture_events(telemetry.workflow_transition_event()) as records:
            telemetry.workflow_transition(make_instance(), A, "done", [Charlie], extra)
        _, _, metadata = only(records)
        assert (A, "done", [Charlie], False) == (
            metadata["from_step"],
            metadata["event"],
            metadata["targets"],
            metadata["fan_out"],
        )


class TestFastPath:
    @pytest.mark.parametrize(
        "emit",
        [
            telemetry.workflow_start,
            telemetry.workflow_stop,
            lambda i, x: telemetry.workflow_exception(i, "error", "r", None, x),
            lambda i, x: telemetry.workflow_transition(i, A, "done", [Bravo], x),
            lambda i, x: telemetry.step_start(i, A, x),
            lambda i, x: telemetry.step_stop(i, A, 1, x),
            lambda i, x: telemetry.step_exception(i, A, 1, "error", "r", None, x),
            lambda i, x: telemetry.step_async(i, A, 1, x),
            lambda i, x: telemetry.step_resume(i, A, x),
            lambda i, x: telemetry.engine_advance(i, 1, x),
            lambda i, x: telemetry.runner_init(x),
        ],
    )
    def test_no_handler_reads_nothing(self, emit: Any) -> None:
        """With nobody listening an emitter returns before it reads its extras."""
        assert emit(make_instance(), Untouchable()) is None

    def test_listening_follows_attach_and_detach(self) -> None:
        """listening() says whether an event has a handler, as soon as it is attached."""
        name = telemetry.step_stop_event()
        assert not telemetry.listening(name)
        telemetry.attach("fast-path", name, lambda *args: None)
        assert telemetry.listening(name)
        telemetry.detach("fast-path")
        assert not telemetry.listening(name)

    def test_emitter_sees_a_handler_attached_after_import(self) -> None:
        """The emitters read the live handler table, not a copy taken at import."""
        seen: list[Any] = []
        telemetry.attach("late", telemetry.step_start_event(), lambda *args: seen.append(args[0]))
        telemetry.step_start(make_instance(), A, {})
        telemetry.detach("late")
        telemetry.step_start(make_instance(), A, {})
        assert [telemetry.step_start_event()] == seen


class TestCoreEmitsNothing:
    def test_core_sources_do_not_import_telemetry(self) -> None:
        """No module of hephaestus.core imports hephaestus.telemetry."""
        offenders = []
        for module in pkgutil.iter_modules(hephaestus.core.__path__):
            path = Path(hephaestus.core.__path__[0]) / f"{module.name}.py"
            importlib.import_module(f"hephaestus.core.{module.name}")
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                    if node.level:
                        names += [f"..{alias.name}" for alias in node.names]
                if any("telemetry" in name for name in names):
                    offenders.append(module.name)
        assert [] == offenders

    def test_pure_functions_emit_nothing(self) -> None:
        """Building an instance and driving the engine records no event."""
        with capture_events() as records:
            instance = make_instance(status=Status.PENDING)
            started = engine.advance(instance)
            applied = engine.apply_result(started, A, Ok("done"), now=time.time_ns())
            engine.advance(applied.instance)
        assert [] == records
