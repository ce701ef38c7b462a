"""Parking, resuming and timers: Async steps, Wait, WaitForEvent, schedule_resume, recovery."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import math
from typing import Any

import pytest

from hephaestus import (
    AmbiguousResume,
    Async,
    Context,
    Done,
    Instance,
    InstanceNotFound,
    NotWaiting,
    Status,
    Step,
    UndeclaredEvent,
    Wait,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import MemoryStorage
from hephaestus.testing import capture_events

from .conftest import Blocks, Passes, Probe, ended, named, signal, until

STEP_ASYNC = telemetry.step_async_event()
STEP_RESUME = telemetry.step_resume_event()

# ---------------------------------------------------------------- steps and workflows


class Alpha(Passes):
    events = ("done",)


class Bravo(Passes):
    events = ("done",)


class Hold(Step):
    """Parks until a resume gives it "ok"."""

    events = ("ok",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Parks(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Hold}, Hold: {"ok": Bravo}, Bravo: {"done": Done}}


class Left(Hold):
    pass


class Right(Hold):
    step_key = "right_hold"


class Split(Passes):
    events = ("go",)


class Join(Passes):
    events = ("joined",)


class TwoHolds(Workflow):
    start = Split
    transitions = {
        Split: {"go": [Left, Right]},
        Left: {"ok": Join},
        Right: {"ok": Join},
        Join: {"joined": Done},
    }


class Waits(Workflow):
    start = (Wait, {"seconds": 0.01})
    transitions = {Wait: {"timeout": Done}}


class Clock(Workflow):
    """A clock: its Wait's timer falls due after the timers of the test's instance."""

    start = (Wait, {"seconds": 0.15})
    transitions = {Wait: {"timeout": Done}}


class Received(Blocks):
    events = ("handled",)


class TimedOut(Blocks):
    events = ("handled",)


def awaits(timeout: float) -> type[Workflow]:
    """A workflow that waits for an event, for at most ``timeout`` seconds."""

    class Awaits(Workflow):
        start = (WaitForEvent, {"timeout": timeout})
        transitions = {
            WaitForEvent: {"received": Received, "timeout": TimedOut},
            Received: {"handled": Done},
            TimedOut: {"handled": Done},
        }

    return Awaits


AwaitsBriefly = awaits(0.01)
AwaitsLonger = awaits(0.1)  # the Clock's timer falls due after this one


class AwaitsForever(Workflow):
    start = WaitForEvent
    transitions = {WaitForEvent: {"received": Done}}


class Snooze(Step):
    """Parks; "timeout" is one of its events, so schedule_resume may wake it."""

    events = ("ok", "timeout")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Snoozes(Workflow):
    start = Snooze
    transitions = {Snooze: {"ok": Done, "timeout": Done}}


class Work(Blocks):
    events = ("done",)


class Busy(Workflow):
    start = Work
    transitions = {Work: {"done": Done}}


def path(instance: Instance) -> list[tuple[type[Step], str]]:
    """The steps the instance completed and their events, in order."""
    return [(entry.step, entry.event) for entry in instance.execution_history]


async def start_parked(
    runner: LocalRunner, workflow: type[Workflow], context: dict[str, Any], count: int = 1
) -> str:
    """Start ``workflow`` and return its id once ``count`` of its steps have parked."""
    with signal(STEP_ASYNC, count) as parked:
        instance_id = await runner.start(workflow, context)
        await until(parked)
    return instance_id


# ---------------------------------------------------------------- tests


class TestResume:
    async def test_an_async_step_parks_then_a_resume_finishes_the_workflow(self) -> None:
        """A step returning Async() parks the instance; resume carries it on to the end."""
        async with LocalRunner() as runner:
            instance_id = await start_parked(runner, Parks, {})
            parked = await runner.get(instance_id)
            await runner.resume(instance_id, "ok")
            instance = await ended(runner, instance_id)

        assert Status.WAITING == parked.status
        assert frozenset({Hold}) == parked.waiting_steps
        assert Status.COMPLETED == instance.status
        assert [(Alpha, "done"), (Hold, "ok"), (Bravo, "done"), (Done, "done")] == path(instance)
        assert frozenset({Alpha, Hold, Bravo, Done}) == instance.completed_steps

    async def test_a_resume_is_stored(self) -> None:
        """The stored instance is waiting while parked, and completed after the resume."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Parks, {})
            stored_parked = await storage.get(instance_id)
            await runner.resume(instance_id, "ok")
            await ended(runner, instance_id)
            stored_done = await storage.get(instance_id)

        assert stored_parked is not None
        assert stored_done is not None
        assert Status.WAITING == stored_parked.status
        assert Status.COMPLETED == stored_done.status

    @pytest.mark.parametrize("first", [Left, "left"], ids=["class", "step-key"])
    async def test_step_names_which_waiting_step_to_resume(self, first: type[Step] | str) -> None:
        """With several steps waiting, step= (a class or a step key) names the one to resume."""
        async with LocalRunner() as runner:
            instance_id = await start_parked(runner, TwoHolds, {}, count=2)
            await runner.resume(instance_id, "ok", step=first)
            still = await runner.get(instance_id)
            await runner.resume(instance_id, "ok", step="right_hold")
            instance = await ended(runner, instance_id)

        assert frozenset({Right}) == still.waiting_steps
        assert Status.COMPLETED == instance.status
        assert [Split, Left, Right, Join, Done] == [step for step, _ in path(instance)]


class TestRefusedResume:
    async def test_an_unknown_instance(self) -> None:
        """Resuming an id nobody has raises InstanceNotFound."""
        async with LocalRunner() as runner:
            with pytest.raises(InstanceNotFound, match="'nope'"):
                await runner.resume("nope", "ok")

    async def test_a_running_instance(self) -> None:
        """Resuming an instance whose steps are running raises NotWaiting and changes nothing."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(Busy, {"probe": probe})
            await until(probe.all_arrived)
            before = await storage.get(instance_id)
            with pytest.raises(NotWaiting, match="running, not waiting"):
                await runner.resume(instance_id, "done")
            after = await storage.get(instance_id)
            probe.release.set()
            instance = await ended(runner, instance_id)

        assert before == after
        assert Status.COMPLETED == instance.status

    async def test_a_completed_instance(self) -> None:
        """Resuming a completed instance raises NotWaiting and changes nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance = await runner.run(Waits, {})
            with pytest.raises(NotWaiting, match="completed"):
                await runner.resume(instance.id, "timeout")

        assert instance == await storage.get(instance.id)

    async def test_an_event_the_waiting_step_does_not_declare(self) -> None:
        """A resume with an undeclared event raises UndeclaredEvent and changes nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Parks, {})
            before = await storage.get(instance_id)
            with pytest.raises(UndeclaredEvent, match="step Hold does not declare event 'nope'"):
                await runner.resume(instance_id, "nope")
            after = await storage.get(instance_id)
            in_memory = await runner.get(instance_id)
            await runner.resume(instance_id, "ok")  # the instance still takes a good resume
            instance = await ended(runner, instance_id)

        assert before == after == in_memory
        assert Status.COMPLETED == instance.status

    async def test_timeout_is_undeclared_for_a_wait_for_event_without_one(self) -> None:
        """WaitForEvent without a timeout config does not take "timeout"."""
        async with LocalRunner() as runner:
            instance_id = await start_parked(runner, AwaitsForever, {})
            with pytest.raises(UndeclaredEvent, match="it declares 'received'"):
                await runner.resume(instance_id, "timeout")
            await runner.resume(instance_id, "received")
            instance = await ended(runner, instance_id)

        assert Status.COMPLETED == instance.status

    async def test_several_waiting_steps_without_step(self) -> None:
        """Without step=, several waiting steps raise AmbiguousResume; naming one works."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, TwoHolds, {}, count=2)
            before = await storage.get(instance_id)
            with pytest.raises(AmbiguousResume, match=r"several waiting steps \(Left, Right\)"):
                await runner.resume(instance_id, "ok")
            after = await storage.get(instance_id)
            await runner.resume(instance_id, "ok", step=Left)  # naming the step works
            await runner.resume(instance_id, "ok", step="right_hold")
            instance = await ended(runner, instance_id)

        assert before == after
        assert Status.COMPLETED == instance.status

    @pytest.mark.parametrize("step", [Alpha, "alpha", "no_such_step"])
    async def test_a_step_that_is_not_waiting(self, step: type[Step] | str) -> None:
        """step= naming a step that does not wait raises NotWaiting and changes nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Parks, {})
            before = await storage.get(instance_id)
            with pytest.raises(NotWaiting):
                await runner.resume(instance_id, "ok", step=step)
            after = await storage.get(instance_id)

        assert before == after


class TestWait:
    async def test_wait_resumes_itself_with_timeout(self) -> None:
        """Wait parks the instance, then its timer resumes it with "timeout"."""
        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner() as runner:
                instance = await runner.run(Waits, {}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert [(Wait, "timeout"), (Done, "done")] == path(instance)
        assert [("timeout", "timeout")] == [
            (meta["resume_event"], meta["source"]) for _, _, meta in resumes
        ]
        assert {} == instance.timers


class TestWaitForEvent:
    async def test_its_timeout_fires_when_nothing_arrives(self) -> None:
        """WaitForEvent with a timeout resumes itself with "timeout" when nothing arrives."""
        probe = Probe()
        probe.release.set()
        async with LocalRunner() as runner:
            instance = await runner.run(AwaitsBriefly, {"probe": probe}, timeout=5)

        assert [(WaitForEvent, "timeout"), (TimedOut, "handled"), (Done, "done")] == path(instance)

    async def test_a_resume_before_the_timeout_disarms_the_timer(self) -> None:
        """Resumed before its timeout, WaitForEvent goes on; the timer then does nothing."""
        probe = Probe()
        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner() as runner:
                instance_id = await start_parked(runner, AwaitsLonger, {"probe": probe})
                await runner.resume(instance_id, "received")
                await until(probe.all_arrived)  # Received runs...
                await runner.run(Clock, {}, timeout=5)  # ...while the timer falls due
                during = await runner.get(instance_id)
                probe.release.set()
                instance = await ended(runner, instance_id)

        assert Status.RUNNING == during.status
        assert [(WaitForEvent, "received")] == path(during)
        assert [(WaitForEvent, "received"), (Received, "handled"), (Done, "done")] == path(instance)
        assert [("received", "external")] == [
            (meta["resume_event"], meta["source"])
            for _, _, meta in resumes
            if meta["instance_id"] == instance_id
        ]


class TestTimerRace:
    async def test_a_resume_after_the_timer_fired_is_refused(self) -> None:
        """Once the timer has won, an external resume raises NotWaiting and changes nothing."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(AwaitsBriefly, {"probe": probe})
            await until(probe.all_arrived)  # the timer fired: TimedOut runs
            before = await storage.get(instance_id)
            with pytest.raises(NotWaiting):
                await runner.resume(instance_id, "received")
            after = await storage.get(instance_id)
            probe.release.set()
            instance = await ended(runner, instance_id)

        assert before == after
        assert ["timed_out"] == probe.arrivals
        assert [(WaitForEvent, "timeout"), (TimedOut, "handled"), (Done, "done")] == path(instance)


class TestScheduleResume:
    @pytest.mark.parametrize("step", [Snooze, "snooze"], ids=["class", "step-key"])
    async def test_the_step_resumes_itself_with_timeout(self, step: type[Step] | str) -> None:
        """schedule_resume makes the waiting step resume itself with "timeout" after the delay."""
        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner() as runner:
                instance_id = await start_parked(runner, Snoozes, {})
                await runner.schedule_resume(instance_id, step, 0.01)
                instance = await ended(runner, instance_id)

        assert [(Snooze, "timeout"), (Done, "done")] == path(instance)
        assert ["timeout"] == [meta["source"] for _, _, meta in resumes]

    async def test_the_timer_is_stored_with_the_instance(self) -> None:
        """The scheduled timer is part of the stored instance until it fires."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Snoozes, {})
            await runner.schedule_resume(instance_id, Snooze, 60)
            stored = await storage.get(instance_id)

        assert stored is not None
        assert {Snooze} == set(stored.timers)
        assert "timeout" == stored.timers[Snooze].event

    @pytest.mark.parametrize("delay", [-1, True, "1", None, math.inf, math.nan])
    async def test_a_bad_delay_is_refused(self, delay: Any) -> None:
        """A delay that is not a finite number of seconds >= 0 raises ValueError; no change."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Snoozes, {})
            before = await storage.get(instance_id)
            with pytest.raises(
                ValueError, match=r"delay must be a finite number of seconds >= 0 and at most 100"
            ):
                await runner.schedule_resume(instance_id, Snooze, delay)

        assert before == await storage.get(instance_id)

    async def test_a_step_that_does_not_declare_timeout_is_refused(self) -> None:
        """schedule_resume on a step without a "timeout" event raises UndeclaredEvent."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Parks, {})
            before = await storage.get(instance_id)
            with pytest.raises(UndeclaredEvent, match="step Hold does not declare event 'timeout'"):
                await runner.schedule_resume(instance_id, Hold, 0.01)

        assert before == await storage.get(instance_id)

    async def test_unknown_instances_and_steps_are_refused(self) -> None:
        """An unknown instance raises InstanceNotFound; a step that does not wait NotWaiting."""
        async with LocalRunner() as runner:
            instance_id = await start_parked(runner, Parks, {})
            with pytest.raises(InstanceNotFound):
                await runner.schedule_resume("nope", Hold, 0.01)
            with pytest.raises(NotWaiting):
                await runner.schedule_resume(instance_id, Bravo, 0.01)


class TestTimersAfterCancel:
    async def test_a_cancelled_instance_timer_does_nothing(self) -> None:
        """After cancel, the instance's timer falls due and does nothing."""
        storage = MemoryStorage()
        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner(storage) as runner:
                instance_id = await start_parked(runner, AwaitsLonger, {"probe": Probe()})
                await runner.cancel(instance_id)
                await runner.run(Clock, {}, timeout=5)  # the cancelled timer fell due first
                instance = await ended(runner, instance_id)

        assert Status.CANCELLED == instance.status
        assert [] == path(instance)
        assert [] == [meta for _, _, meta in resumes if meta["instance_id"] == instance_id]
        assert instance == await storage.get(instance_id)


class TestRecovery:
    async def test_a_new_runner_rearms_a_waiting_instance_timer(self) -> None:
        """A waiting instance's timer is stored; a new runner on the storage fires it."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Clock, {})
        stored = await storage.get(instance_id)

        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner(storage) as runner:
                instance = await ended(runner, instance_id)

        assert stored is not None
        assert Status.WAITING == stored.status
        assert {Wait} == set(stored.timers)
        assert Status.COMPLETED == instance.status
        assert ["timeout"] == [meta["source"] for _, _, meta in named(resumes, STEP_RESUME)]

    async def test_a_new_runner_takes_a_resume_for_a_recovered_instance(self) -> None:
        """A parked instance recovered by a new runner can be resumed there."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await start_parked(runner, Parks, {})

        with capture_events(STEP_RESUME) as resumes:
            async with LocalRunner(storage) as runner:
                await runner.resume(instance_id, "ok")
                instance = await ended(runner, instance_id)

        assert Status.COMPLETED == instance.status
        assert ["external"] == [meta["source"] for _, _, meta in resumes]
        assert resumes[0][1]["wait_duration"] > 0
