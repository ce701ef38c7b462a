"""The testing helpers and the pytest plugin's fixtures, used as the docs use them."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hephaestus import (
    Async,
    Done,
    Error,
    InvalidStepResult,
    LocalRunner,
    Map,
    NotSerializable,
    Ok,
    Status,
    Step,
    StepTimeout,
    UndeclaredEvent,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.testing import (
    CapturedEvents,
    VirtualClock,
    assert_events,
    assert_path,
    capture_events,
    run_step,
    until_parked,
)

DAY = 86400


class Validate(Step):
    events = ("valid", "invalid")

    async def execute(self, instance, config, context):
        if context.initial["amount"] > 0:
            return Ok("valid", {"amount": context.initial["amount"]})
        return Ok("invalid")


class Approve(WaitForEvent):
    """Waits for a person's answer, two days at most."""


class Ship(Step):
    events = ("shipped",)

    def execute(self, instance, config, context):
        return Ok("shipped", {"by": context.steps["approve"]["by"]})


class Order(Workflow):
    start = Validate
    transitions = {
        Validate: {
            "valid": (Approve, {"events": ("approved", "rejected"), "timeout": 2 * DAY}),
            "invalid": Done,
        },
        Approve: {"approved": Ship, "rejected": Done, "timeout": Done},
        Ship: {"shipped": Done},
    }


class TestUntilParked:
    async def test_it_returns_the_instance_parked_on_the_step(
        self, heph_runner: LocalRunner
    ) -> None:
        iid = await heph_runner.start(Order, {"amount": 3})
        instance = await until_parked(heph_runner, iid, Approve)
        assert {Approve} == instance.waiting_steps
        assert Status.WAITING == instance.status

    async def test_the_step_may_be_named_by_its_key(self, heph_runner: LocalRunner) -> None:
        iid = await heph_runner.start(Order, {"amount": 3})
        assert {Approve} == (await until_parked(heph_runner, iid, "approve")).waiting_steps

    async def test_time_skips_to_it_and_stops_there(
        self, heph_runner: LocalRunner, heph_clock: VirtualClock
    ) -> None:
        class Later(Workflow):
            start = (Wait, {"duration": 1, "unit": "day"})
            transitions = {
                Wait: {"timeout": (Approve, {"events": ("approved",), "timeout": 2 * DAY})},
                Approve: {"approved": Done, "timeout": Done},
            }

        iid = await heph_runner.start(Later, {})
        await until_parked(heph_runner, iid, Approve)
        assert DAY == heph_clock.elapsed  # the day's wait passed; the two days' did not start

    async def test_an_instance_that_ends_without_parking_there_fails_the_test(
        self, heph_runner: LocalRunner
    ) -> None:
        iid = await heph_runner.start(Order, {"amount": 0})
        with pytest.raises(
            AssertionError,
            match=r"is completed and never parked on Approve; it went through: \[Validate, Done\]",
        ):
            await until_parked(heph_runner, iid, Approve)

    async def test_it_gives_up_after_its_timeout(self, heph_runner: LocalRunner) -> None:
        class Forever(Workflow):
            start = WaitForEvent  # no timeout: it waits for a resume that never comes
            transitions = {WaitForEvent: {"received": Done}}

        iid = await heph_runner.start(Forever, {})
        with pytest.raises(TimeoutError):
            await until_parked(heph_runner, iid, Ship, timeout=0.05)

    async def test_a_step_that_is_not_a_step_is_refused(self, heph_runner: LocalRunner) -> None:
        with pytest.raises(TypeError, match="a step is a Step subclass or a step key, got: 3"):
            await until_parked(heph_runner, "x", 3)  # type: ignore[arg-type]

    async def test_it_waits_on_the_system_clock_too(self) -> None:
        async with LocalRunner() as runner:
            iid = await runner.start(Order, {"amount": 3})
            assert {Approve} == (await until_parked(runner, iid, Approve)).waiting_steps


class TestAssertPath:
    async def test_the_path_taken_passes(self, heph_runner: LocalRunner) -> None:
        instance = await heph_runner.run(Order, {"amount": 0})
        assert_path(instance, [Validate, Done])
        assert_path(instance, ["validate", "done"])

    async def test_another_path_fails_showing_both(self, heph_runner: LocalRunner) -> None:
        instance = await heph_runner.run(Order, {"amount": 0})
        with pytest.raises(AssertionError) as raised:
            assert_path(instance, [Validate, Approve, Done])
        assert "expected: [Validate, Approve, Done]\n  taken:    [Validate, Done]" in str(
            raised.value
        )
        with pytest.raises(AssertionError):
            assert_path(instance, [Validate])  # a prefix is not the path

    async def test_concurrent_steps_go_in_a_set(self, heph_runner: LocalRunner) -> None:
        class Left(Validate):
            pass

        class Right(Validate):
            pass

        class Join(Begin):
            pass

        class Both(Workflow):
            start = Begin
            transitions = {
                Begin: {"begun": [Left, Right]},
                Left: {"valid": Join, "invalid": Join},
                Right: {"valid": Join, "invalid": Join},
                Join: {"begun": Done},
            }

        instance = await heph_runner.run(Both, {"amount": 1})
        assert_path(instance, [Begin, {Left, Right}, Join, Done])
        with pytest.raises(AssertionError):
            assert_path(instance, [Begin, {Left, Begin}, Join, Done])

    async def test_a_mapped_step_appears_once(self, heph_runner: LocalRunner) -> None:
        class Double(Step):
            events = ("doubled",)

            async def execute(self, instance, config, context):
                return Ok("doubled", {"value": config["item"] * 2})

        class Doubling(Workflow):
            start = Begin
            transitions = {
                Begin: {"begun": Map(Double, items=lambda ctx: [1, 2, 3])},
                Double: {"doubled": Done},
            }

        instance = await heph_runner.run(Doubling, {})
        assert_path(instance, [Begin, Double, Done])


class Begin(Step):
    events = ("begun",)

    async def execute(self, instance, config, context):
        return Ok("begun")


class TestAssertEvents:
    async def test_the_kinds_named_are_compared_in_order(
        self, heph_runner: LocalRunner, heph_events: CapturedEvents
    ) -> None:
        iid = await heph_runner.start(Order, {"amount": 3})
        await until_parked(heph_runner, iid, Approve)
        await heph_runner.resume(iid, "approved", {"by": "ana"})
        await heph_runner.wait(iid)
        assert_events(
            heph_events,
            [
                ("step:stop", Validate),
                ("step:async", Approve),
                ("step:resume", "approve"),
                ("step:stop", Ship),
                ("step:stop", Done),
            ],
        )
        assert_events(heph_events, ["workflow:start", "workflow:stop"])
        (resumed,) = heph_events.named("step:resume")
        assert "external" == resumed.metadata["source"]

    async def test_a_difference_fails_showing_both(self, heph_runner: LocalRunner) -> None:
        with capture_events("step:stop") as events:
            await heph_runner.run(Order, {"amount": 0})
        with pytest.raises(AssertionError) as raised:
            assert_events(events, [("step:stop", Validate), ("step:stop", Ship)])
        assert (
            "expected: step:stop Validate, step:stop Ship\n  emitted:  step:stop Validate, "
            "step:stop Done"
        ) in str(raised.value)

    def test_a_name_that_is_not_an_event_name_is_refused(self) -> None:
        with pytest.raises(ValueError, match="short name is like 'step:stop', got: 'stop'"):
            assert_events([], ["stop"])


class TestRunStep:
    async def test_it_returns_the_steps_result_from_its_context(self) -> None:
        assert Ok("valid", {"amount": 3}) == await run_step(Validate, {"amount": 3})

    async def test_outputs_of_earlier_steps_and_a_plain_def(self) -> None:
        result = await run_step(Ship, steps={"approve": {"by": "ana"}})
        assert Ok("shipped", {"by": "ana"}) == result

    async def test_a_mapped_steps_item_comes_in_its_config(self) -> None:
        class Fetch(Step):
            events = ("fetched",)

            async def execute(self, instance, config, context):
                return Ok("fetched", {"url": config["item"], "index": config["index"]})

        result = await run_step(Fetch, config={"item": "https://a.test", "index": 4})
        assert Ok("fetched", {"url": "https://a.test", "index": 4}) == result

    async def test_the_instance_is_real_and_running(self) -> None:
        seen = []

        class Look(Step):
            events = ("looked",)

            async def execute(self, instance, config, context):
                seen.append((instance.id, instance.status, instance.active_steps))
                return Ok("looked")

        await run_step(Look, instance_id="order-7")
        assert [("order-7", Status.RUNNING, frozenset({Look}))] == seen

    async def test_async_and_error_results_come_back_as_they_are(self) -> None:
        class Park(Step):
            events = ("resumed",)

            async def execute(self, instance, config, context):
                return Async()

        class Refuse(Step):
            events = ("ok",)

            async def execute(self, instance, config, context):
                return Error("no stock")

        assert Async() == await run_step(Park)
        assert Error("no stock") == await run_step(Refuse)

    async def test_what_the_runner_would_refuse_raises(self) -> None:
        class Typo(Step):
            events = ("shipped",)

            async def execute(self, instance, config, context):
                return Ok("shiped")

        class NotAResult(Step):
            events = ("x",)

            async def execute(self, instance, config, context):
                return "x"

        class Unstorable(Step):
            events = ("x",)

            async def execute(self, instance, config, context):
                return Ok("x", {"when": object()})

        with pytest.raises(UndeclaredEvent, match="shiped"):
            await run_step(Typo)
        with pytest.raises(InvalidStepResult, match="not Ok, Async or Error"):
            await run_step(NotAResult)
        with pytest.raises(NotSerializable, match="Unstorable"):
            await run_step(Unstorable)

    async def test_what_execute_raises_is_raised(self) -> None:
        class Broken(Step):
            events = ("x",)

            async def execute(self, instance, config, context):
                raise ConnectionError("the payment provider is down")

        with pytest.raises(ConnectionError, match="payment provider"):
            await run_step(Broken)

    async def test_blocking_steps_and_timeouts_run_as_in_a_runner(self) -> None:
        class Blocking(Step):
            events = ("done",)
            blocking = True

            def execute(self, instance, config, context):
                import threading

                return Ok("done", {"thread": threading.current_thread().name})

        class Stuck(Step):
            events = ("done",)
            timeout = 0.01

            async def execute(self, instance, config, context):
                await anyio.sleep_forever()

        result = await run_step(Blocking)
        assert isinstance(result, Ok)
        assert "MainThread" != result.updates["thread"]
        with pytest.raises(StepTimeout):
            await run_step(Stuck)

    async def test_a_step_that_is_not_a_step_is_refused(self) -> None:
        with pytest.raises(TypeError, match="run_step needs a Step subclass, got: 'Ship'"):
            await run_step("Ship")  # type: ignore[arg-type]


class TestFixtures:
    async def test_the_sqlite_runner_stores_in_a_temporary_file(
        self, heph_sqlite_runner: LocalRunner, heph_sqlite_path: Path
    ) -> None:
        instance = await heph_sqlite_runner.run(Order, {"amount": 0})
        stored = await heph_sqlite_runner.storage.get(instance.id)
        assert stored is not None
        assert (Status.COMPLETED, instance.context) == (stored.status, stored.context)
        assert heph_sqlite_path.stat().st_size > 0  # noqa: ASYNC240  # one stat, in a test

    async def test_the_runners_read_the_virtual_clock(
        self, heph_runner: LocalRunner, heph_clock: VirtualClock
    ) -> None:
        assert heph_clock is heph_runner.clock
        iid = await heph_runner.start(Order, {"amount": 3})
        instance = await heph_runner.wait(iid)  # the two days' timeout passes at once
        assert 2 * DAY == heph_clock.elapsed
        assert_path(instance, [Validate, Approve, Done])
