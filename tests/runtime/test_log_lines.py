"""The lines an operator reads: a LocalRunner with the LogHandler at its default levels, or none.

Each test starts from structlog as a new user has it, not configured (its
defaults print every level), unless it says otherwise.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, MutableMapping
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
    Wait,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.telemetry import LogHandler
from hephaestus.testing import VirtualClock

from .conftest import Blocks, Passes, Probe, ended, probe_of, until

Line = tuple[str, str]
"""A line as ``(level, message)``."""


@pytest.fixture(autouse=True)
def _structlog_as_new() -> Iterator[None]:
    """structlog not configured, as in a new user's program; the LogHandler detached after."""
    structlog.reset_defaults()
    try:
        yield
    finally:
        LogHandler.detach()
        structlog.reset_defaults()


def lines(logs: list[MutableMapping[str, Any]], instance: Instance | None = None) -> list[Line]:
    """The lines as ``(level, message)``, the instance id prefix written ``[id]``."""
    found = []
    for entry in logs:
        message = entry["event"]
        if instance is not None:
            message = message.replace(f"[{instance.id}]", "[id]")
        found.append((entry["log_level"], message))
    return found


def without_durations(message: str) -> str:
    """``message`` without the duration of a step (" after 0.146 ms"), which varies."""
    return re.sub(r" after [0-9.]+ ms", "", message)


# ---------------------------------------------------------------- the quickstart


class ValidateOrder(Step):
    events = ("valid", "invalid")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("valid", {"item_count": len(context.initial["items"])})


class Charge(Passes):
    events = ("charged",)


class Reserve(Passes):
    events = ("reserved",)


class Ship(Passes):
    events = ("shipped",)


class Reject(Passes):
    events = ("rejected",)


class OrderFlow(Workflow):
    """The README's quickstart: a fan-out, a join (Ship), a 0.1 s Wait."""

    start = ValidateOrder
    transitions = {
        ValidateOrder: {"valid": [Charge, Reserve], "invalid": Reject},
        Charge: {"charged": Ship},
        Reserve: {"reserved": Ship},
        Ship: {"shipped": (Wait, {"seconds": 0.1})},
        Wait: {"timeout": Done},
        Reject: {"rejected": Done},
    }


class S1(Passes):
    events = ("done",)


class S2(Passes):
    events = ("done",)


class S3(Passes):
    events = ("done",)


class S4(Passes):
    events = ("done",)


class S5(Passes):
    events = ("done",)


class Linear(Workflow):
    """Six steps in a row, Done included."""

    start = S1
    transitions = {S1: {"done": S2}, S2: {"done": S3}, S3: {"done": S4}, S4: {"done": S5}}
    transitions |= {S5: {"done": Done}}


class TestDefaultOutput:
    async def test_a_linear_workflow_takes_two_lines(self) -> None:
        """Six steps that run through: the instance's start and its end, at info."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner(name="main") as runner:
                instance = await runner.run(Linear, {}, timeout=5)

        assert Status.COMPLETED == instance.status
        found = lines(logs, instance)
        assert [
            ("info", "Hephaestus runner initialized: main"),
            ("info", "[id] Workflow Linear started"),
        ] == found[:2]
        [(level, message)] = found[2:]
        assert "info" == level
        assert message.startswith("[id] Workflow Linear completed in ")
        assert message.endswith(" (6 steps)")

    async def test_the_quickstart(self) -> None:
        """The quickstart's fan-out, join and Wait: five lines, all info (docs/telemetry.md)."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner(name="main", clock=VirtualClock()) as runner:
                instance = await runner.run(OrderFlow, {"items": ["mug"]}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert [
            ("info", "Hephaestus runner initialized: main"),
            ("info", "[id] Workflow OrderFlow started"),
            ("info", "[id] Step Wait parked, waiting to be resumed"),
            ("info", "[id] Step Wait resumed with timeout (waited 100 ms)"),
            ("info", "[id] Workflow OrderFlow completed in 100 ms (6 steps)"),
        ] == lines(logs, instance)

    async def test_every_line_at_debug(self) -> None:
        """With structlog at debug, every step's start, stop and transition are written too."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner(clock=VirtualClock()) as runner:
                instance = await runner.run(Linear, {}, timeout=5)

        found = lines(logs, instance)
        assert 6 == sum(message.endswith(" started") and "Step" in message for _, message in found)
        assert {"debug", "info"} == {level for level, _ in found}
        assert ("debug", "[id] Transition: Done (done) -> (end of the workflow)") in found


# ---------------------------------------------------------------- failures


class Flaky(Step):
    """Raises on its first two attempts, then succeeds."""

    events = ("done",)
    retry = Retry(max_attempts=3, base=0.5, jitter=0)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(Flaky)
        probe.leave()
        if probe.calls < 3:
            raise ConnectionError(f"attempt {probe.calls} refused")
        return Ok("done")


class Broken(Step):
    """Raises on both its attempts."""

    events = ("done",)
    retry = Retry(max_attempts=2, base=0.5, jitter=0)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(Broken)
        probe.leave()
        raise ConnectionError(f"attempt {probe.calls} refused")


class ExtractImages(Blocks):
    """Blocks past its timeout."""

    events = ("done",)
    timeout = 0.05


class Boom(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise ValueError("boom")


class FlakyFlow(Workflow):
    start = Flaky
    transitions = {Flaky: {"done": Done}}


class BrokenFlow(Workflow):
    start = Broken
    transitions = {Broken: {"done": Done}}


class TimeoutFlow(Workflow):
    start = ExtractImages
    transitions = {ExtractImages: {"done": Done}}


class BoomFlow(Workflow):
    start = Boom
    transitions = {Boom: {"done": Done}}


class TestRetries:
    async def test_a_retried_attempt_is_a_warning_with_its_number_and_delay(self) -> None:
        """Each retried attempt: which one of how many, why, and when the next one runs."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner(clock=VirtualClock()) as runner:
                instance = await runner.run(FlakyFlow, {"probe": Probe()}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert [
            (
                "warning",
                "[id] Step Flaky: attempt 1 of 3 failed: ConnectionError: attempt 1 refused; "
                "retrying in 0.5 s",
            ),
            (
                "warning",
                "[id] Step Flaky: attempt 2 of 3 failed: ConnectionError: attempt 2 refused; "
                "retrying in 1 s",
            ),
        ] == [line for line in lines(logs, instance) if line[0] != "info"]

    async def test_the_last_attempt_is_the_error(self) -> None:
        """Retries spent: the step's failure and the instance's are errors, written once each."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner(clock=VirtualClock()) as runner:
                instance = await runner.run(BrokenFlow, {"probe": Probe()}, timeout=5)

        assert Status.FAILED == instance.status
        assert [
            (
                "warning",
                "[id] Step Broken: attempt 1 of 2 failed: ConnectionError: attempt 1 refused; "
                "retrying in 0.5 s",
            ),
            (
                "error",
                "[id] Step Broken failed: ConnectionError: attempt 2 refused "
                "(exception, attempt 2 of 2)",
            ),
            (
                "error",
                "[id] Workflow BrokenFlow failed at Broken: ConnectionError: attempt 2 refused "
                "(exception)",
            ),
        ] == [line for line in lines(logs, instance) if line[0] != "info"]


class TestTimeouts:
    async def test_a_timeout_says_so_in_words(self) -> None:
        """A timeout reads "timed out after 0.05 s", in the lines and in str(instance.error)."""
        LogHandler.attach()
        probe = Probe()
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(TimeoutFlow, {"probe": probe}, timeout=5)

        assert "step ExtractImages failed: timed out after 0.05 s (timeout)" == str(instance.error)
        assert [
            ("error", "[id] Step ExtractImages failed: timed out after 0.05 s (timeout)"),
            (
                "error",
                "[id] Workflow TimeoutFlow failed at ExtractImages: timed out after 0.05 s "
                "(timeout)",
            ),
        ] == [line for line in lines(logs, instance) if line[0] == "error"]
        assert not any("StepTimeout" in message for _, message in lines(logs))


# ---------------------------------------------------------------- joins and cancels


class Left(Passes):
    events = ("done",)


class Right(Passes):
    events = ("done",)


class Join(Passes):
    events = ("done",)


class Fork(Passes):
    events = ("go",)


class JoinFlow(Workflow):
    start = Fork
    transitions = {
        Fork: {"go": [Left, Right]},
        Left: {"done": Join},
        Right: {"done": Join},
        Join: {"done": Done},
    }


class Hang(Blocks):
    events = ("done",)


class HangFlow(Workflow):
    start = Hang
    transitions = {Hang: {"done": Done}}


class FailsOnceHangArrived(Step):
    """Raises once Hang runs, so that Hang is cancelled because of it."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await probe_of(context).all_arrived.wait()
        raise ValueError("no stock")


class FailingFanOut(Workflow):
    start = Fork
    transitions = {
        Fork: {"go": [Hang, FailsOnceHangArrived]},
        Hang: {"done": Join},
        FailsOnceHangArrived: {"done": Join},
        Join: {"done": Done},
    }


class TestJoinsAndCancels:
    async def test_a_branch_that_reaches_a_waiting_join(self) -> None:
        """The first branch at the join says the join waits; the last one activates it."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(JoinFlow, {}, timeout=5)

        arrivals = sorted(
            message.split(" -> ")[1]
            for _, message in lines(logs, instance)
            if message.startswith(("[id] Transition: Left", "[id] Transition: Right"))
        )
        assert ["(none yet: Join waits for its other branches)", "Join"] == arrivals

    async def test_a_cancelled_step_is_not_an_error(self) -> None:
        """A step stopped by cancel() is written at info, and nothing is an error."""
        LogHandler.attach()
        probe = Probe()
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance_id = await runner.start(HangFlow, {"probe": probe})
                await until(probe.all_arrived)
                await runner.cancel(instance_id)
                instance = await ended(runner, instance_id)

        assert Status.CANCELLED == instance.status
        assert ("info", "[id] Step Hang was cancelled") in lines(logs, instance)
        assert [] == [line for line in lines(logs, instance) if line[0] != "info"]

    async def test_a_step_cancelled_because_another_failed(self) -> None:
        """A branch stopped by another's failure is written at info, saying why."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(FailingFanOut, {"probe": Probe()}, timeout=5)

        assert Status.FAILED == instance.status
        found = lines(logs, instance)
        assert ("info", "[id] Step Hang was cancelled: another step failed") in found
        assert [
            "[id] Step FailsOnceHangArrived failed: ValueError: no stock (exception)",
            "[id] Workflow FailingFanOut failed at FailsOnceHangArrived: ValueError: no stock "
            "(exception)",
        ] == [without_durations(message) for level, message in found if level == "error"]


# ---------------------------------------------------------------- without the LogHandler


class Resize(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        if config["index"] == 2:
            raise ValueError("not an image")
        return Ok("done")


class Images(Workflow):
    start = Fork
    transitions = {
        Fork: {"go": Map(Resize, items=lambda context: ["a", "b", "c"], max_concurrency=1)},
        Resize: {"done": Done},
    }


class TestWithoutTheLogHandler:
    async def test_a_failed_instance_is_one_error_line(self) -> None:
        """Without the LogHandler, a failure is not silent: the runner writes one line."""
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(BoomFlow, {}, timeout=5)

        assert [
            ("error", "[id] Workflow BoomFlow failed at Boom: ValueError: boom (exception)")
        ] == lines(logs, instance)
        fields = {key: logs[0][key] for key in ("instance_id", "workflow", "step", "kind")}
        assert {
            "instance_id": instance.id,
            "workflow": "BoomFlow",
            "step": "Boom",
            "kind": "exception",
        } == fields

    async def test_the_line_names_the_failed_item(self) -> None:
        """A failed map item is named with its index."""
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(Images, {}, timeout=5)

        assert [
            (
                "error",
                "[id] Workflow Images failed at Resize (item 2): ValueError: not an image "
                "(exception)",
            )
        ] == lines(logs, instance)
        assert "step Resize (item 2) failed: ValueError: not an image (exception)" == str(
            instance.error
        )

    async def test_a_completed_instance_writes_nothing(self) -> None:
        """The runner writes nothing of its own for an instance that completes."""
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                await runner.run(Linear, {}, timeout=5)

        assert [] == logs

    async def test_the_failure_is_not_written_twice_with_the_log_handler(self) -> None:
        """With the LogHandler on workflow:exception, its line is the only one."""
        LogHandler.attach()
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(BoomFlow, {}, timeout=5)

        failed = [message for _, message in lines(logs, instance) if "Workflow BoomFlow" in message]
        assert 1 == sum("failed at Boom" in message for message in failed)

    async def test_a_log_handler_on_other_events_leaves_the_line(self) -> None:
        """A LogHandler attached to step events only leaves the failure line to the runner."""
        LogHandler.attach(events=[telemetry.step_exception_event()])
        with capture_logs() as logs:
            async with LocalRunner() as runner:
                instance = await runner.run(BoomFlow, {}, timeout=5)

        assert [
            "[id] Step Boom failed: ValueError: boom (exception)",
            "[id] Workflow BoomFlow failed at Boom: ValueError: boom (exception)",
        ] == [without_durations(message) for _, message in lines(logs, instance)]
