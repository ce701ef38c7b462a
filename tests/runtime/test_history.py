"""The history: what happened to an instance, recorded with each change it made."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hephaestus import (
    Context,
    Done,
    Instance,
    InstanceNotFound,
    LocalRunner,
    Map,
    MemoryStorage,
    Ok,
    Record,
    Retry,
    Status,
    Step,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.core import history

from .conftest import ended, signal, until

QUICK = Retry(max_attempts=2, base=0.001, jitter=0.0)


class Flaky(Step):
    """Fails its first attempt, passes its second."""

    events = ("done",)
    retry = QUICK

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        tries = context.initial["tries"]
        tries.append("flaky")
        if tries.count("flaky") == 1:
            raise ValueError("not yet")
        return Ok("done")


class Slow(Step):
    """Runs past its timeout on its first attempt, passes its second."""

    events = ("done",)
    retry = QUICK
    timeout = 0.05

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        tries = context.initial["tries"]
        tries.append("slow")
        if tries.count("slow") == 1:
            await anyio.Event().wait()  # never set: the timeout ends it
        return Ok("done")


class Approve(WaitForEvent):
    step_key = "approve"


class Hold(WaitForEvent):
    step_key = "hold"


class Everything(Workflow):
    start = Flaky
    transitions = {
        Flaky: {"done": Slow},
        Slow: {"done": (Approve, {"events": ("approved", "rejected")})},
        Approve: {"approved": Hold, "rejected": Done},
        Hold: {"received": Done},
    }


def shape(record: Record, *details: str) -> tuple[Any, ...]:
    """A record without its times: kind, step, item, attempt, event, and the ``details`` named."""
    given = record.details or {}
    return (
        record.kind,
        record.step,
        record.item,
        record.attempt,
        record.event,
        {name: given[name] for name in details if name in given},
    )


class TestAWholeRun:
    async def test_retry_timeout_resume_with_data_and_cancel(self) -> None:
        """Every attempt, the park, the resume with who sent what, the cancel: in order."""
        async with LocalRunner() as runner:
            with signal(telemetry.step_async_event(), step=Approve) as waiting:
                instance_id = await runner.start(Everything, {"tries": []})
                await until(waiting)
            with signal(telemetry.step_async_event(), step=Hold) as holding:
                await runner.resume(instance_id, "approved", {"by": "ada", "note": "ok"})
                await until(holding)
            await runner.cancel(instance_id)
            records = await runner.history(instance_id)
        flaky = {"failure": "exception", "reason": "ValueError: not yet", "retry_in": 0.001}
        slow = {
            "failure": "timeout",
            "reason": "StepTimeout: step Slow timed out after 0.05s",
            "retry_in": 0.001,
        }
        resumed = {"source": "external", "data_keys": ["by", "note"]}
        details = ("failure", "reason", "retry_in", "events", "source")
        assert [
            ("started", None, None, None, None, {}),
            ("step_failed", "flaky", None, 1, None, flaky),
            ("step_completed", "flaky", None, 2, "done", {}),
            ("step_failed", "slow", None, 1, None, slow),
            ("step_completed", "slow", None, 2, "done", {}),
            ("step_parked", "approve", None, 1, None, {"events": ["approved", "rejected"]}),
            ("resumed", "approve", None, None, "approved", resumed),
            ("step_parked", "hold", None, 1, None, {"events": ["received"]}),
            ("cancelled", None, None, None, None, {"stopped": []}),
        ] == [shape(r, *details, "data_keys", "stopped") for r in records]

    async def test_times_and_durations(self) -> None:
        """Records are in time order; attempts carry how long they ran."""
        async with LocalRunner() as runner:
            with signal(telemetry.step_async_event(), step=Approve) as waiting:
                instance_id = await runner.start(Everything, {"tries": []})
                await until(waiting)
            await runner.cancel(instance_id)
            records = await runner.history(instance_id)
        assert records == sorted(records, key=lambda r: r.at)
        timed_out = records[3]
        assert ("step_failed", "timeout") == (timed_out.kind, timed_out.details["failure"])  # type: ignore[index]
        assert timed_out.duration is not None
        assert timed_out.duration >= 50_000_000
        assert all(r.duration is not None for r in records if r.kind.startswith("step_"))
        assert records[0].when.year >= 2024


class Count(Step):
    events = ("counted",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("counted", {"n": config["item"]})


class Fail(Step):
    events = ("never",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise RuntimeError("broken")


class Mapped(Workflow):
    start = Flaky
    transitions = {
        Flaky: {"done": Map(Count, items=lambda ctx: ctx.initial["items"])},
        Count: {"counted": Done},
    }


class Failing(Workflow):
    start = Fail
    transitions = {Fail: {"never": Done}}


class Gated(Step):
    """Waits until the test opens its gate."""

    events = ("open",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await context.initial["gate"].wait()
        return Ok("open")


class Messages(Workflow):
    start = Gated
    transitions = {
        Gated: {"open": (Approve, {"events": ("approved", "rejected")})},
        Approve: {"approved": Hold, "rejected": Done},
        Hold: {"received": Done},
    }


class WithTimer(Workflow):
    start = (Approve, {"events": ("approved",), "timeout": 0.01})
    transitions = {Approve: {"approved": Done, "timeout": Done}}


class TestEachKind:
    async def test_a_map_and_the_end(self) -> None:
        """A map says how many items it has; each item's attempt names its item."""
        async with LocalRunner() as runner:
            done = await runner.run(Mapped, {"tries": ["flaky"], "items": [10, 20]})
            records = await runner.history(done.id)
        assert Status.COMPLETED == done.status
        assert [
            ("started", None, None, None, None, {}),
            ("step_completed", "flaky", None, 1, "done", {}),
            ("map_started", "count", None, None, None, {"items": 2}),
            ("step_completed", "count", 0, 1, "counted", {}),
            ("step_completed", "count", 1, 1, "counted", {}),
            ("step_completed", "done", None, 1, "done", {}),
            ("completed", None, None, None, None, {}),
        ] == [shape(r, "items") for r in records]

    async def test_a_failure(self) -> None:
        """The failed attempt, then the end naming the step, the failure and its reason."""
        async with LocalRunner() as runner:
            done = await runner.run(Failing, {})
            records = await runner.history(done.id)
        failed = {"failure": "exception", "reason": "RuntimeError: broken"}
        assert [
            ("started", None, None, None, None, {}),
            ("step_failed", "fail", None, 1, None, {**failed, "retry_in": None}),
            ("failed", "fail", None, None, None, {**failed, "stopped": []}),
        ] == [shape(r, "failure", "reason", "retry_in", "stopped") for r in records]

    async def test_a_timer_armed_and_fired(self) -> None:
        """The park arms the timer (with its due time); the timer resumes the step."""
        async with LocalRunner() as runner:
            done = await runner.run(WithTimer, {})
            records = await runner.history(done.id)
        assert [
            ("started", None, None, None, None, {}),
            ("step_parked", "approve", None, 1, None, {"events": ["approved", "timeout"]}),
            ("timer_armed", "approve", None, None, "timeout", {}),
            ("resumed", "approve", None, None, "timeout", {"source": "timeout", "data_keys": []}),
            ("step_completed", "done", None, 1, "done", {}),
            ("completed", None, None, None, None, {}),
        ] == [shape(r, "events", "source", "data_keys") for r in records]
        armed = records[2]
        assert armed.details is not None
        assert armed.details["due"] == records[1].at + 10_000_000

    async def test_messages_kept_then_taken(self) -> None:
        """A message that comes early is kept; the park takes it at once."""
        gate = anyio.Event()
        async with LocalRunner() as runner:
            instance_id = await runner.start(Messages, {"gate": gate})
            await runner.send(instance_id, "approved", {"by": "bob"})
            with signal(telemetry.step_async_event(), step=Hold) as holding:
                gate.set()
                await until(holding)
            await runner.send(instance_id, "received")
            await ended(runner, instance_id)
            records = await runner.history(instance_id)
        kinds = [shape(r, "source", "data_keys") for r in records]
        assert ("message_kept", None, None, None, "approved", {"data_keys": ["by"]}) == kinds[1]
        message = {"source": "message"}
        assert [
            ("step_completed", "gated", None, 1, "open", {}),
            ("step_parked", "approve", None, 1, None, {}),
            ("resumed", "approve", None, None, "approved", {**message, "data_keys": ["by"]}),
            ("step_parked", "hold", None, 1, None, {}),
            ("resumed", "hold", None, None, "received", {**message, "data_keys": []}),
            ("step_completed", "done", None, 1, "done", {}),
            ("completed", None, None, None, None, {}),
        ] == kinds[2:]


class TestReading:
    async def test_pages(self) -> None:
        """``offset`` and ``limit`` page through the history."""
        async with LocalRunner() as runner:
            done = await runner.run(Mapped, {"tries": ["flaky"], "items": list(range(10))})
            every = await runner.history(done.id)
            assert every[4:7] == await runner.history(done.id, offset=4, limit=3)
        assert 15 == len(every)

    async def test_unknown_instance(self) -> None:
        """An instance that does not exist has no history: InstanceNotFound."""
        async with LocalRunner() as runner:
            with pytest.raises(InstanceNotFound):
                await runner.history("nobody")

    async def test_bounded_in_memory(self) -> None:
        """MemoryStorage keeps the newest ``history_limit`` records of an instance."""
        storage = MemoryStorage(history_limit=3)
        async with LocalRunner(storage) as runner:
            done = await runner.run(Mapped, {"tries": ["flaky"], "items": list(range(10))})
            records = await runner.history(done.id)
        assert ["step_completed", "step_completed", "completed"] == [r.kind for r in records]
        assert [(9, "count"), (None, "done"), (None, None)] == [(r.item, r.step) for r in records]

    @pytest.mark.parametrize("limit", [0, -1, 1.5, "3", True])
    def test_bad_history_limit(self, limit: object) -> None:
        with pytest.raises(ValueError, match="history_limit must be a positive int or None"):
            MemoryStorage(history_limit=limit)  # type: ignore[arg-type]

    def test_every_kind_is_named(self) -> None:
        """The kinds are the documented strings, each once."""
        assert len(set(history.KINDS)) == len(history.KINDS) == 13
        assert "step_completed" in history.KINDS
