"""A runner reads one clock; a virtual clock makes days of waiting take milliseconds."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import datetime

import anyio
import pytest

from hephaestus import (
    Async,
    Done,
    LocalRunner,
    NotWaiting,
    Ok,
    Retry,
    Status,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.core import history as h
from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock
from hephaestus.testing import VirtualClock, capture_events, until_parked

SECOND = 1_000_000_000
HOUR = 3600
DAY = 86400


class Begin(Step):
    events = ("begun",)

    async def execute(self, instance, config, context):
        return Ok("begun")


class TwoDays(Workflow):
    start = Begin
    transitions = {
        Begin: {"begun": (Wait, {"duration": 2, "unit": "days"})},
        Wait: {"timeout": Done},
    }


def waiting(seconds: float) -> type[Workflow]:
    class Waiting(Workflow):
        start = Begin
        transitions = {Begin: {"begun": (Wait, {"seconds": seconds})}, Wait: {"timeout": Done}}

    Waiting.__qualname__ = f"Waiting{int(seconds)}"
    return Waiting


class Again(Step):
    """Parks, and resumes itself with "timeout" an hour later."""

    events = ("timeout",)

    async def execute(self, instance, config, context):
        return Async()

    @classmethod
    def timer(cls, config):
        return HOUR


class Approval(Workflow):
    start = Begin
    transitions = {
        Begin: {"begun": (WaitForEvent, {"events": ("approved",), "timeout": 2 * DAY})},
        WaitForEvent: {"approved": Done, "timeout": Done},
    }


class TestTheClockARunnerReads:
    def test_a_runner_reads_the_system_clock_unless_given_one(self) -> None:
        assert LocalRunner().clock is SYSTEM_CLOCK
        clock = VirtualClock()
        assert LocalRunner(clock=clock).clock is clock

    def test_a_clock_that_is_not_a_clock_is_refused_by_name(self) -> None:
        with pytest.raises(TypeError, match=r"clock must be .*'tomorrow'"):
            LocalRunner(clock="tomorrow")  # type: ignore[arg-type]

    def test_the_system_clock_is_the_system_time(self) -> None:
        import time

        before = time.time_ns()
        assert before <= SYSTEM_CLOCK.time_ns() <= time.time_ns()
        assert isinstance(SYSTEM_CLOCK, Clock)
        assert not SYSTEM_CLOCK.virtual


class TestAVirtualClock:
    def test_it_starts_when_told_and_stands_still(self) -> None:
        start = datetime.datetime(2030, 1, 1, 9, 0, tzinfo=datetime.UTC)
        clock = VirtualClock(start)
        assert start == clock.now()
        assert clock.time_ns() == clock.time_ns()
        assert 0 == clock.elapsed

    def test_a_start_without_a_timezone_is_refused(self) -> None:
        with pytest.raises(TypeError, match="aware datetime"):
            VirtualClock(datetime.datetime(2030, 1, 1))  # naive: the point of the test

    async def test_advance_moves_both_times_and_wakes_sleepers_in_due_order(self) -> None:
        clock = VirtualClock()
        wall, mono = clock.time_ns(), clock.monotonic_ns()
        woke: list[int] = []

        async def sleeper(seconds: int) -> None:
            await clock.sleep(seconds)
            woke.append(seconds)

        async with anyio.create_task_group() as tg:
            for seconds in (30, 10, 20):
                tg.start_soon(sleeper, seconds)
            await anyio.lowlevel.checkpoint()
            await clock.advance(25)
            assert [10, 20] == woke
            await clock.advance(5)
        assert [10, 20, 30] == woke
        assert 30 * SECOND == clock.time_ns() - wall == clock.monotonic_ns() - mono

    async def test_advance_refuses_going_backwards(self) -> None:
        with pytest.raises(ValueError, match="advance takes a number of seconds >= 0, got: -1"):
            await VirtualClock().advance(-1)

    async def test_a_deadline_already_due_cancels_at_once_and_none_never(self) -> None:
        clock = VirtualClock()
        with clock.move_on_after(0) as due:
            await anyio.lowlevel.checkpoint()
        assert due.cancelled_caught
        with clock.move_on_after(None) as never:
            await clock.advance(10 * DAY)
        assert not never.cancel_called

    async def test_move_on_after_is_cancelled_when_the_clock_gets_there(self) -> None:
        clock = VirtualClock()
        cancelled = anyio.Event()

        async def guarded() -> None:
            with clock.move_on_after(60) as scope:
                await anyio.sleep_forever()
            assert scope.cancelled_caught
            cancelled.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded)
            await anyio.lowlevel.checkpoint()
            await clock.advance(59)
            assert not cancelled.is_set()
            await clock.advance(1)
            with anyio.fail_after(5):
                await cancelled.wait()


class TestSkippingAhead:
    async def test_a_two_day_wait_completes_at_once_and_its_telemetry_shows_two_days(
        self,
    ) -> None:
        clock = VirtualClock()
        with capture_events("step:resume", "workflow:stop") as events:
            async with LocalRunner(clock=clock) as runner:
                with anyio.fail_after(1):  # real seconds: the two days are virtual
                    instance = await runner.run(TwoDays, {})
        assert Status.COMPLETED == instance.status
        ((_, resumed, _), (_, stopped, _)) = events
        assert 2 * DAY * SECOND == resumed["wait_duration"]
        assert 2 * DAY * SECOND <= stopped["duration"]
        assert 2 * DAY == clock.elapsed

    async def test_the_history_is_stamped_with_the_clock(self) -> None:
        start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        clock = VirtualClock(start)
        async with LocalRunner(clock=clock) as runner:
            instance = await runner.run(TwoDays, {}, timeout=5)
            records = await runner.history(instance.id)
        begun = int(start.timestamp()) * SECOND
        assert begun == instance.started_at == records[0].at
        resumed = next(record for record in records if record.kind == h.RESUMED)
        assert begun + 2 * DAY * SECOND == resumed.at
        armed = next(record for record in records if record.kind == h.TIMER_ARMED)
        assert begun + 2 * DAY * SECOND == armed.details["due"]

    async def test_it_does_not_skip_while_a_step_runs(self) -> None:
        clock = VirtualClock()
        seen: list[float] = []

        class Slow(Step):
            events = ("done",)

            async def execute(self, instance, config, context):
                seen.append(clock.elapsed)
                await anyio.sleep(0.2)  # a step's real work, while the other instance waits
                seen.append(clock.elapsed)
                return Ok("done")

        class SlowFlow(Workflow):
            start = Slow
            transitions = {Slow: {"done": Done}}

        async with LocalRunner(clock=clock) as runner:
            parked = await runner.start(TwoDays, {})
            slow = await runner.start(SlowFlow, {})
            with anyio.fail_after(5):
                await runner.wait(slow)
                assert [0, 0] == seen
                await runner.wait(parked)
        assert 2 * DAY == clock.elapsed

    async def test_time_stands_still_unless_a_test_awaits_an_outcome(self) -> None:
        clock = VirtualClock()
        async with LocalRunner(clock=clock) as runner:
            iid = await runner.start(TwoDays, {})
            await until_parked(runner, iid, Wait)
            with pytest.raises(TimeoutError):
                await runner.wait(iid, timeout=0)  # no time for a skip: nothing moved
            assert 0 == clock.elapsed
            assert Status.WAITING == (await runner.get(iid)).status

    async def test_without_auto_skip_only_advance_moves_it(self) -> None:
        clock = VirtualClock(auto_skip=False)
        async with LocalRunner(clock=clock) as runner:
            iid = await runner.start(TwoDays, {})
            with pytest.raises(TimeoutError):
                await runner.wait(iid, timeout=0.05)
            assert 0 == clock.elapsed
            await clock.advance(2 * DAY)
            assert Status.COMPLETED == (await runner.get(iid)).status

    async def test_a_retry_waits_its_delay_on_the_clock(self) -> None:
        clock = VirtualClock()
        attempts: list[float] = []

        class Flaky(Step):
            events = ("done",)
            retry = Retry(max_attempts=3, backoff="constant", base=600, max_backoff=600, jitter=0)

            async def execute(self, instance, config, context):
                attempts.append(clock.elapsed)
                if len(attempts) < 3:
                    raise ConnectionError("not yet")
                return Ok("done")

        class FlakyFlow(Workflow):
            start = Flaky
            transitions = {Flaky: {"done": Done}}

        async with LocalRunner(clock=clock) as runner:
            instance = await runner.run(FlakyFlow, {}, timeout=5)
        assert Status.COMPLETED == instance.status
        assert [0, 600, 1200] == attempts


class TestTimersAndResumes:
    async def test_timers_of_several_instances_fire_in_due_order(self) -> None:
        clock = VirtualClock()
        with capture_events("step:resume") as events:
            async with LocalRunner(clock=clock) as runner:
                ids = {
                    await runner.start(waiting(seconds), {}, id=f"after-{seconds}"): seconds
                    for seconds in (3 * HOUR, HOUR, 2 * HOUR)
                }
                await clock.advance(4 * HOUR)
                for iid in ids:
                    assert Status.COMPLETED == (await runner.get(iid)).status
        order = [metadata["instance_id"] for _, _, metadata in events]
        assert [f"after-{s}" for s in (HOUR, 2 * HOUR, 3 * HOUR)] == order
        begun = events[0][1]["system_time"] - HOUR * SECOND
        assert [begun + ids[i] * SECOND for i in order] == [m["system_time"] for _, m, _ in events]

    async def test_a_timer_armed_by_a_timer_fires_within_the_same_advance(self) -> None:
        clock = VirtualClock()

        class Twice(Workflow):
            start = (Wait, {"seconds": HOUR})
            transitions = {Wait: {"timeout": Again}, Again: {"timeout": Done}}

        async with LocalRunner(clock=clock) as runner:
            iid = await runner.start(Twice, {})
            await clock.advance(2 * HOUR)
            assert Status.COMPLETED == (await runner.get(iid)).status

    async def test_a_resume_before_the_timer_wins_and_the_timer_does_nothing(self) -> None:
        clock = VirtualClock()
        async with LocalRunner(clock=clock) as runner:
            iid = await runner.start(Approval, {})
            await until_parked(runner, iid, WaitForEvent)
            await clock.advance(DAY)  # a day passes: the two-day timeout is still ahead
            await runner.resume(iid, "approved", {"by": "ana"})
            instance = await runner.wait(iid, timeout=5)
            await clock.advance(3 * DAY)  # past the timeout's due time
            records = await runner.history(iid)
        assert Status.COMPLETED == instance.status
        assert {"by": "ana"} == instance.context.steps["wait_for_event"]
        resumes = [record for record in records if record.kind == h.RESUMED]
        assert [("approved", "external")] == [(r.event, r.details["source"]) for r in resumes]
        assert instance == await runner.get(iid)

    async def test_a_resume_racing_the_timer_loses_or_wins_as_with_real_time(self) -> None:
        clock = VirtualClock()
        refused: list[Exception] = []

        async def approve(runner: LocalRunner, iid: str) -> None:
            try:
                await runner.resume(iid, "approved")
            except NotWaiting as exc:  # the timer came first
                refused.append(exc)

        async with LocalRunner(clock=clock) as runner:
            iid = await runner.start(Approval, {})
            await until_parked(runner, iid, WaitForEvent)
            async with anyio.create_task_group() as tg:
                tg.start_soon(clock.advance, 2 * DAY)
                tg.start_soon(approve, runner, iid)
            instance = await runner.wait(iid, timeout=5)
            records = await runner.history(iid)
        resumes = [record for record in records if record.kind == h.RESUMED]
        assert 1 == len(resumes)  # one of the two took the step, once
        assert Status.COMPLETED == instance.status
        expected = "timeout" if refused else "approved"
        assert expected == resumes[0].event


class TestTelemetryReadsTheClock:
    async def test_a_handler_reads_the_emitting_runners_time(self) -> None:
        start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        clock = VirtualClock(start)
        seen: list[int] = []

        def handler(name, measurements, metadata, config):
            seen.append(telemetry.now_ns())

        telemetry.attach("now", telemetry.step_resume_event(), handler)
        try:
            async with LocalRunner(clock=clock) as runner:
                await runner.run(TwoDays, {}, timeout=5)
        finally:
            telemetry.detach("now")
        assert [(int(start.timestamp()) + 2 * DAY) * SECOND] == seen
