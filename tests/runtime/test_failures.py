"""Failures: retries, timeouts, raises, Error results, bad results, failing fan-outs."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
import traceback
from typing import Any

import anyio
import pytest

from hephaestus import (
    Context,
    Done,
    Error,
    Instance,
    InvalidStepResult,
    Ok,
    Retry,
    Route,
    RouteError,
    Status,
    Step,
    UndeclaredEvent,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import MemoryStorage
from hephaestus.testing import capture_events

from .conftest import Blocks, Passes, Probe, ended, named, probe_of, settled, until

STEP_START = telemetry.step_start_event()
STEP_STOP = telemetry.step_stop_event()
STEP_EXCEPTION = telemetry.step_exception_event()
WORKFLOW_STOP = telemetry.workflow_stop_event()
WORKFLOW_EXCEPTION = telemetry.workflow_exception_event()

QUICK_RETRY = Retry(max_attempts=3, base=0.001)

# ---------------------------------------------------------------- steps and workflows


class Flaky(Step):
    """Raises on its first two attempts, then succeeds."""

    events = ("done",)
    retry = QUICK_RETRY

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(Flaky)
        probe.leave()
        if probe.calls < 3:
            raise ConnectionError(f"attempt {probe.calls} failed")
        return Ok("done")


class Broken(Step):
    """Raises on every attempt."""

    events = ("done",)
    retry = QUICK_RETRY

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(Broken)
        probe.leave()
        raise ConnectionError(f"attempt {probe.calls} failed")


class Raises(Step):
    """Raises once, without retry."""

    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise KeyError("missing")


class Refuses(Step):
    """Returns Error; it declares a retry that must not apply."""

    events = ("done",)
    retry = QUICK_RETRY

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        probe_of(context).arrive(Refuses)
        return Error({"code": 42})


class Stalls(Blocks):
    """Blocks until released: past its timeout, unless released first."""

    events = ("done",)
    timeout = 0.01


class StallsOnce(Step):
    """Stalls past its timeout on the first attempt; the retry succeeds."""

    events = ("done",)
    timeout = 0.01
    retry = Retry(max_attempts=2, base=0.001)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(StallsOnce)
        if probe.calls == 1:
            await anyio.sleep_forever()
        return Ok("done")


class Liar(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("bogus")


class NotAResult(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Any:
        return 42


class BadUpdates(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", ["not", "a", "dict"])  # type: ignore[arg-type]


def single(step: type[Step]) -> type[Workflow]:
    """A workflow of ``step`` then Done."""

    class Single(Workflow):
        start = step
        transitions = {step: {step.events[0]: Done}}

    Single.__qualname__ = f"Single{step.__qualname__}"
    return Single


class Alpha(Passes):
    events = ("done",)


class Bravo(Passes):
    events = ("done",)


def choose_badly(context: Context) -> Any:
    return context.initial["choice"]


class Routed(Workflow):
    start = Alpha
    transitions = {
        Alpha: {"done": Route(choose_badly, targets=[Bravo])},
        Bravo: {"done": Done},
    }


class Split(Passes):
    events = ("go",)


class Sibling(Blocks):
    events = ("done",)


class Xray(Sibling):
    pass


class Zulu(Sibling):
    pass


class Boom(Step):
    """Waits until its two siblings run, then raises."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        await probe.all_arrived.wait()
        raise RuntimeError("boom")


class Denied(Step):
    """Waits until its two siblings run, then returns Error."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        probe = probe_of(context)
        await probe.all_arrived.wait()
        return Error("denied")


class Join(Passes):
    events = ("joined",)


def fan_out(failing: type[Step]) -> type[Workflow]:
    """Split -> [failing, Xray, Zulu] -> Join -> Done."""

    class FanOut(Workflow):
        start = Split
        transitions = {
            Split: {"go": [failing, Xray, Zulu]},
            failing: {"done": Join},
            Xray: {"done": Join},
            Zulu: {"done": Join},
            Join: {"joined": Done},
        }

    return FanOut


class Work(Blocks):
    events = ("done",)


class Busy(Workflow):
    start = Work
    transitions = {Work: {"done": Done}}


# ---------------------------------------------------------------- tests


class TestRetry:
    async def test_a_retried_step_succeeds(self) -> None:
        """A step that raises twice then succeeds, with three attempts, completes the workflow."""
        probe = Probe()
        with capture_events() as events:
            async with LocalRunner() as runner:
                instance = await runner.run(single(Flaky), {"probe": probe}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert 3 == probe.calls
        assert [1, 2, 3] == [
            meta["attempt"] for _, _, meta in named(events, STEP_START) if meta["step"] is Flaky
        ]
        exceptions = named(events, STEP_EXCEPTION)
        assert [("exception", 1), ("exception", 2)] == [
            (meta["kind"], meta["attempt"]) for _, _, meta in exceptions
        ]
        assert ["attempt 1 failed", "attempt 2 failed"] == [
            str(meta["reason"]) for _, _, meta in exceptions
        ]
        assert [Flaky, Done] == [meta["step"] for _, _, meta in named(events, STEP_STOP)]

    async def test_spent_retries_fail_the_workflow(self) -> None:
        """A step that raises on every attempt fails the instance after max_attempts."""
        probe = Probe()
        storage = MemoryStorage()
        with capture_events() as events:
            async with LocalRunner(storage) as runner:
                instance = await runner.run(single(Broken), {"probe": probe}, timeout=5)

        assert Status.FAILED == instance.status
        assert 3 == probe.calls
        assert [Broken] * 3 == [meta["step"] for _, _, meta in named(events, STEP_EXCEPTION)]
        ((_, _, failure),) = named(events, WORKFLOW_EXCEPTION)
        assert Broken is failure["failed_step"]
        assert "exception" == failure["kind"]
        assert "attempt 3 failed" == str(failure["reason"])
        assert [] == named(events, WORKFLOW_STOP)
        assert instance == await storage.get(instance.id)


class TestStepTimeout:
    async def test_a_step_past_its_timeout_fails_with_kind_timeout(self) -> None:
        """A step running past its timeout is interrupted; the instance fails, kind "timeout"."""
        probe = Probe()
        async with LocalRunner() as runner:
            instance = await runner.run(single(Stalls), {"probe": probe}, timeout=5)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert Stalls is instance.error.step
        assert "timeout" == instance.error.kind
        assert "step Stalls timed out after 0.01s" == str(instance.error.reason)
        assert ["stalls"] == probe.interrupted

    async def test_a_timed_out_step_is_retried(self) -> None:
        """Timeouts are retried like raises: a second, quick attempt completes the workflow."""
        probe = Probe()
        async with LocalRunner() as runner:
            instance = await runner.run(single(StallsOnce), {"probe": probe}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert 2 == probe.calls


class TestRaise:
    async def test_a_raise_fails_with_kind_exception_and_its_frames(self) -> None:
        """A raising step fails the instance: kind "exception", the exception, a list of frames."""
        with capture_events(STEP_EXCEPTION) as events:
            async with LocalRunner() as runner:
                instance = await runner.run(single(Raises), {}, timeout=5)

        assert instance.error is not None
        assert "exception" == instance.error.kind
        assert isinstance(instance.error.reason, KeyError)
        ((_, _, meta),) = events
        assert "exception" == meta["kind"]
        assert instance.error.reason is meta["reason"]
        stacktrace = meta["stacktrace"]
        assert isinstance(stacktrace, list)
        assert all(isinstance(frame, traceback.FrameSummary) for frame in stacktrace)
        assert ("execute", __file__) == (stacktrace[-1].name, stacktrace[-1].filename)


class TestError:
    async def test_an_error_result_fails_with_kind_error_and_is_not_retried(self) -> None:
        """Error(reason) fails the instance with kind "error" at once, retry or not."""
        probe = Probe()
        with capture_events(STEP_EXCEPTION) as events:
            async with LocalRunner() as runner:
                instance = await runner.run(single(Refuses), {"probe": probe}, timeout=5)

        assert Status.FAILED == instance.status
        assert 1 == probe.calls
        assert instance.error is not None
        assert ("error", {"code": 42}) == (instance.error.kind, instance.error.reason)
        assert [("error", {"code": 42}, None)] == [
            (meta["kind"], meta["reason"], meta["stacktrace"]) for _, _, meta in events
        ]


class TestInvalidResults:
    async def test_an_undeclared_event_fails_naming_the_step_and_event(self) -> None:
        """Returning an event the step does not declare fails; the message names both."""
        async with LocalRunner() as runner:
            instance = await runner.run(single(Liar), {}, timeout=5)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert Liar is instance.error.step
        assert isinstance(instance.error.reason, UndeclaredEvent)
        assert "step Liar does not declare event 'bogus'; it declares 'done'" == str(
            instance.error.reason
        )

    async def test_a_value_that_is_not_a_result_fails_naming_the_step_and_value(self) -> None:
        """Returning something that is not a result fails; the message names step and value."""
        async with LocalRunner() as runner:
            instance = await runner.run(single(NotAResult), {}, timeout=5)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert isinstance(instance.error.reason, InvalidStepResult)
        assert "step NotAResult returned 42, which is not Ok, Async or Error" == str(
            instance.error.reason
        )

    async def test_updates_that_are_not_a_dict_fail(self) -> None:
        """Ok with updates that are not a dict fails; the message names the step and value."""
        async with LocalRunner() as runner:
            instance = await runner.run(single(BadUpdates), {}, timeout=5)

        assert instance.error is not None
        assert isinstance(instance.error.reason, InvalidStepResult)
        assert "BadUpdates" in str(instance.error.reason)
        assert "['not', 'a', 'dict']" in str(instance.error.reason)

    @pytest.mark.parametrize(
        ("choice", "message"),
        [
            (Alpha, "chose <class '.*Alpha'>, which is not one of its targets"),
            (None, "chose None, which is not a step or a list of steps"),
        ],
        ids=["not-a-target", "not-a-step"],
    )
    async def test_a_route_choosing_badly_fails(self, choice: Any, message: str) -> None:
        """A route choosing something it does not name fails the instance with RouteError."""
        async with LocalRunner() as runner:
            instance = await runner.run(Routed, {"choice": choice}, timeout=5)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert Alpha is instance.error.step
        assert isinstance(instance.error.reason, RouteError)
        assert re.search(message, str(instance.error.reason))


class TestFanOutFailure:
    async def test_a_raise_cancels_the_siblings_and_fails_the_instance(self) -> None:
        """A branch that raises cancels its running siblings; the instance ends failed."""
        probe = Probe(expected=2)
        async with LocalRunner() as runner:
            instance = await runner.run(fan_out(Boom), {"probe": probe}, timeout=5)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert Boom is instance.error.step
        assert ["xray", "zulu"] == sorted(probe.interrupted)
        assert frozenset() == instance.active_steps

    async def test_another_instance_runs_on_unaffected(self) -> None:
        """An instance running beside a failing fan-out completes unaffected."""
        failing_probe = Probe(expected=2)
        other_probe = Probe()
        async with LocalRunner() as runner:
            other_id = await runner.start(Busy, {"probe": other_probe})
            await until(other_probe.all_arrived)
            failed = await runner.run(fan_out(Boom), {"probe": failing_probe}, timeout=5)
            other_probe.release.set()
            other = await ended(runner, other_id)

        assert Status.FAILED == failed.status
        assert Status.COMPLETED == other.status
        assert [] == other_probe.interrupted

    async def test_an_error_result_cancels_the_siblings_and_fails_the_instance(self) -> None:
        """A branch returning Error cancels its running siblings; the instance ends failed."""
        probe = Probe(expected=2)
        async with LocalRunner() as runner:
            instance_id = await runner.start(fan_out(Denied), {"probe": probe})
            await until(probe.all_arrived)
            await settled()  # Denied returned Error; nothing else can happen on its own
            instance = await runner.get(instance_id)

        assert ["xray", "zulu"] == sorted(probe.interrupted)
        assert Status.FAILED == instance.status
