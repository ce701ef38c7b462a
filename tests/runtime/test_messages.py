"""Events that carry data (resume) and messages that may arrive before the step waits (send)."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hephaestus import (
    Context,
    Done,
    Instance,
    LocalRunner,
    NotWaiting,
    Ok,
    Status,
    Step,
    UndeclaredEvent,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.testing import capture_events

from .conftest import GUARD, ended, signal, until

APPROVAL = {"events": ("approved", "rejected"), "timeout": 3600}


class Ask(Step):
    """Blocks until the test lets it go (so that a message can come before the park)."""

    events = ("asked",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        gate = context.initial.get("gate")
        if gate is not None:
            await gate.wait()
        return Ok("asked")


class Record(Step):
    """Writes down what the approval step left in the context."""

    events = ("recorded",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("recorded", {"saw": context.steps.get("wait_for_event")})


class Approval(Workflow):
    start = Ask
    transitions = {
        Ask: {"asked": (WaitForEvent, APPROVAL)},
        WaitForEvent: {"approved": Record, "rejected": Record, "timeout": Record},
        Record: {"recorded": Done},
    }


class First(WaitForEvent):
    step_key = "first"


class Second(WaitForEvent):
    step_key = "second"


class TwoWaits(Workflow):
    start = Ask
    transitions = {
        Ask: {"asked": (First, {"events": ("note",)})},
        First: {"note": (Second, {"events": ("note",)})},
        Second: {"note": Done},
    }


async def parked(runner: LocalRunner, workflow: type[Workflow], **context: Any) -> str:
    """Start ``workflow`` and return its id once it waits."""
    with signal(telemetry.step_async_event()) as waiting:
        instance_id = await runner.start(workflow, context)
        await until(waiting)
    return instance_id


class TestResumeWithData:
    async def test_data_lands_where_the_steps_own_result_would(self) -> None:
        """The resumed step's output is the data; the next step reads it as usual."""
        async with LocalRunner() as runner:
            instance_id = await parked(runner, Approval)
            await runner.resume(instance_id, "approved", {"by": "ada", "amount": 30})
            done = await ended(runner, instance_id)
        assert {"by": "ada", "amount": 30} == done.context.steps["wait_for_event"]
        assert {"saw": {"by": "ada", "amount": 30}} == done.context.steps["record"]
        entry = next(e for e in done.execution_history if e.step is WaitForEvent)
        assert ("approved", {"by": "ada", "amount": 30}) == (entry.event, entry.updates)

    async def test_data_that_is_not_a_dict_is_refused(self) -> None:
        """Data must be a dict: refused, and the step still waits."""
        async with LocalRunner() as runner:
            instance_id = await parked(runner, Approval)
            with pytest.raises(TypeError, match="must be a dict or None, got: 'ada'"):
                await runner.resume(instance_id, "approved", "ada")  # type: ignore[arg-type]
            assert Status.WAITING == (await runner.get(instance_id)).status
            await runner.cancel(instance_id)

    async def test_an_undeclared_event_is_refused(self) -> None:
        """The configured events are the ones it takes: 'received' is not one of them."""
        async with LocalRunner() as runner:
            instance_id = await parked(runner, Approval)
            with pytest.raises(UndeclaredEvent, match="'received'"):
                await runner.resume(instance_id, "received")
            await runner.cancel(instance_id)


class TestSend:
    async def test_a_message_to_a_waiting_step_is_taken_at_once(self) -> None:
        """send() to a parked step resumes it with the data, source 'message'."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                instance_id = await parked(runner, Approval)
                await runner.send(instance_id, "rejected", {"why": "too dear"})
                done = await ended(runner, instance_id)
        assert {"why": "too dear"} == done.context.steps["wait_for_event"]
        resumes = [m for name, _, m in events if name == telemetry.step_resume_event()]
        assert [("rejected", "message")] == [(m["resume_event"], m["source"]) for m in resumes]

    async def test_a_message_sent_early_is_taken_when_the_step_parks(self) -> None:
        """Sent while Ask still runs: kept, then taken the moment WaitForEvent parks."""
        gate = anyio.Event()
        async with LocalRunner() as runner:
            instance_id = await runner.start(Approval, {"gate": gate})
            await runner.send(instance_id, "approved", {"by": "early"})
            kept = await runner.get(instance_id)
            gate.set()
            done = await ended(runner, instance_id)
        assert ["approved"] == [m.event for m in kept.messages]
        assert (Status.COMPLETED, ()) == (done.status, done.messages)
        assert {"saw": {"by": "early"}} == done.context.steps["record"]

    async def test_messages_are_taken_in_the_order_they_arrived(self) -> None:
        """Two notes sent before anything waits: First takes the first, Second the second."""
        gate = anyio.Event()
        async with LocalRunner() as runner:
            instance_id = await runner.start(TwoWaits, {"gate": gate})
            await runner.send(instance_id, "note", {"n": 1})
            await runner.send(instance_id, "note", {"n": 2})
            gate.set()
            done = await ended(runner, instance_id)
        assert ({"n": 1}, {"n": 2}) == (done.context.steps["first"], done.context.steps["second"])

    async def test_an_event_no_step_declares_is_refused(self) -> None:
        async with LocalRunner() as runner:
            instance_id = await parked(runner, Approval)
            with pytest.raises(
                UndeclaredEvent, match="no step of workflow Approval declares event 'maybe'"
            ):
                await runner.send(instance_id, "maybe")
            assert () == (await runner.get(instance_id)).messages
            await runner.cancel(instance_id)

    async def test_a_message_to_an_ended_instance_is_refused(self) -> None:
        async with LocalRunner() as runner:
            instance_id = await parked(runner, Approval)
            await runner.resume(instance_id, "approved")
            await ended(runner, instance_id)
            with pytest.raises(NotWaiting, match="has ended"):
                await runner.send(instance_id, "approved")

    async def test_a_hundred_senders_at_once(self) -> None:
        """100 concurrent sends to one waiting step: one is taken, 99 are kept, in order."""
        async with LocalRunner() as runner:
            instance_id = await parked(runner, TwoWaits)
            with anyio.fail_after(GUARD):
                async with anyio.create_task_group() as tg:
                    for n in range(100):
                        tg.start_soon(runner.send, instance_id, "note", {"n": n})
            done = await ended(runner, instance_id)
        taken = [done.context.steps["first"]["n"], done.context.steps["second"]["n"]]
        left = [m.data["n"] for m in done.messages if m.data is not None]
        assert 2 == len(set(taken))
        assert 98 == len(left)
        assert sorted(taken + left) == list(range(100))
        assert taken + left == sorted(taken + left)  # taken and kept in arrival order


class TestApproval:
    async def test_nobody_answers_in_time(self) -> None:
        """With a short timeout and no answer, the step resumes itself with 'timeout'."""

        class Quick(Workflow):
            start = Ask
            transitions = {
                Ask: {"asked": (WaitForEvent, {"events": ("approved",), "timeout": 0.01})},
                WaitForEvent: {"approved": Record, "timeout": Record},
                Record: {"recorded": Done},
            }

        async with LocalRunner() as runner:
            with anyio.fail_after(GUARD):
                done = await runner.run(Quick, {})
        assert "timeout" == next(e.event for e in done.execution_history if e.step is WaitForEvent)
