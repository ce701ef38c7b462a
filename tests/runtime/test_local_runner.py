"""LocalRunner end to end: workflows run to their end in this process, on asyncio."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import functools
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from hephaestus import (
    Context,
    Done,
    Error,
    Instance,
    InstanceNotFound,
    NotWaiting,
    Ok,
    Route,
    Status,
    Step,
    Wait,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import MemoryStorage
from hephaestus.testing import capture_events

from .conftest import Blocks, Meets, Passes, Probe, ended, probe_of, settled, until

# ---------------------------------------------------------------- steps and workflows


class Alpha(Passes):
    events = ("done",)


class Bravo(Passes):
    events = ("done",)


class Linear(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Bravo}, Bravo: {"done": Done}}


class Validate(Step):
    events = ("valid", "invalid")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("valid" if context.initial["count"] > 0 else "invalid")


class Prepare(Passes):
    events = ("ready",)


class Reject(Passes):
    events = ("rejected",)


class Order(Workflow):
    start = Validate
    transitions = {
        Validate: {"valid": Prepare, "invalid": Reject},
        Prepare: {"ready": Done},
        Reject: {"rejected": Done},
    }


class Split(Passes):
    events = ("go",)


class Xray(Meets):
    events = ("done",)


class Yankee(Meets):
    events = ("done",)


class Zulu(Meets):
    events = ("done",)


class Join(Passes):
    events = ("joined",)


class FanOut(Workflow):
    start = Split
    transitions = {
        Split: {"go": [Xray, Yankee, Zulu]},
        Xray: {"done": Join},
        Yankee: {"done": Join},
        Zulu: {"done": Join},
        Join: {"joined": Done},
    }


class Express(Passes):
    events = ("shipped",)


class Standard(Passes):
    events = ("shipped",)


def choose_shipping(context: Context) -> type[Step]:
    return Express if context.initial["express"] else Standard


class Shipping(Workflow):
    start = Alpha
    transitions = {
        Alpha: {"done": Route(choose_shipping, targets=[Express, Standard])},
        Express: {"shipped": Done},
        Standard: {"shipped": Done},
    }


def choose_both(context: Context) -> list[type[Step]]:
    return [Express, Standard] if context.initial["both"] else [Standard]


class Converge(Passes):
    events = ("done",)


class SplitShipping(Workflow):
    start = Alpha
    transitions = {
        Alpha: {"done": Route(choose_both, targets=[Express, Standard])},
        Express: {"shipped": Converge},
        Standard: {"shipped": Converge},
        Converge: {"done": Done},
    }


class Greet(Step):
    events = ("greeted",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("greeted", {"config": config})


class Count(Step):
    events = ("counted",)
    step_key = "tally"

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("counted", {"config": config}, {"counted_by": "tally"})


class Configured(Workflow):
    start = (Greet, {"greeting": "hello"})
    transitions = {Greet: {"greeted": (Count, {"up_to": 3})}, Count: {"counted": Done}}


class Inline(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe_of(context).threads.append(threading.get_ident())
        return Ok("done")


class Threaded(Step):
    events = ("done",)
    blocking = True

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe_of(context).threads.append(threading.get_ident())
        return Ok("done")


class PlainDef(Workflow):
    start = Inline
    transitions = {Inline: {"done": Done}}


class BlockingDef(Workflow):
    start = Threaded
    transitions = {Threaded: {"done": Done}}


class Work(Blocks):
    events = ("done",)


class Blocked(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Work}, Work: {"done": Done}}


class Quick(Passes):
    events = ("done",)
    timeout = 0.05


class QuickFlow(Workflow):
    start = Quick
    transitions = {Quick: {"done": Done}}


class Pause(Workflow):
    """A clock: completes once twice Quick's timeout has passed."""

    start = (Wait, {"seconds": 0.1})
    transitions = {Wait: {"timeout": Done}}


class Refuse(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        return Error("no")


class Refusing(Workflow):
    start = Refuse
    transitions = {Refuse: {"done": Done}}


class FirstEdition(Passes):
    events = ("done",)


class SecondEdition(Passes):
    events = ("done",)


class ReportV1(Workflow):
    version = 1
    start = FirstEdition
    transitions = {FirstEdition: {"done": Done}}


class ReportV2(Workflow):
    version = 2
    start = SecondEdition
    transitions = {SecondEdition: {"done": Done}}


class Report(Workflow):
    versions = {1: ReportV1, 2: ReportV2}


class Quits(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await context.initial["runner"].cancel(instance.id)
        return Ok("done")


class CancelsItself(Workflow):
    start = Quits
    transitions = {Quits: {"done": Done}}


def path(instance: Instance) -> list[type[Step]]:
    """The steps the instance completed, in order."""
    return [entry.step for entry in instance.execution_history]


# ---------------------------------------------------------------- tests


class TestEndToEnd:
    async def test_linear(self) -> None:
        """A linear workflow runs each step once, in order, and completes."""
        async with LocalRunner() as runner:
            instance = await runner.run(Linear, {"item": 1})

        assert Status.COMPLETED == instance.status
        assert [Alpha, Bravo, Done] == path(instance)
        assert ["done", "done", "done"] == [e.event for e in instance.execution_history]
        assert frozenset() == instance.active_steps

    @pytest.mark.parametrize(
        ("count", "expected"),
        [(3, [Validate, Prepare, Done]), (0, [Validate, Reject, Done])],
        ids=["valid", "invalid"],
    )
    async def test_branch(self, count: int, expected: list[type[Step]]) -> None:
        """A branch follows the event its step returned, and Done runs on either side."""
        async with LocalRunner() as runner:
            instance = await runner.run(Order, {"count": count})

        assert Status.COMPLETED == instance.status
        assert expected == path(instance)

    async def test_fan_out_runs_branches_concurrently_then_joins(self) -> None:
        """The three branches of a fan-out run at once, and their join runs once after all."""
        probe = Probe(expected=3)  # each branch waits until all three have started
        async with LocalRunner() as runner:
            instance_id = await runner.start(FanOut, {"probe": probe})
            instance = await ended(runner, instance_id)

        assert Status.COMPLETED == instance.status
        assert ["xray", "yankee", "zulu"] == sorted(probe.arrivals)
        assert 3 == probe.max_in_flight
        assert [Split, Xray, Yankee, Zulu, Join, Done] == path(instance)

    @pytest.mark.parametrize(("express", "chosen"), [(True, Express), (False, Standard)])
    async def test_route(self, express: bool, chosen: type[Step]) -> None:
        """A route runs the step its chooser picks from the context, and only that one."""
        async with LocalRunner() as runner:
            instance = await runner.run(Shipping, {"express": express})

        assert Status.COMPLETED == instance.status
        assert [Alpha, chosen, Done] == path(instance)

    @pytest.mark.parametrize(
        ("both", "expected"),
        [
            (True, [Alpha, Express, Standard, Converge, Done]),
            (False, [Alpha, Standard, Converge, Done]),
        ],
        ids=["both", "one"],
    )
    async def test_a_route_may_choose_several_steps(
        self, both: bool, expected: list[type[Step]]
    ) -> None:
        """A route choosing a list runs them all; the join waits only for the chosen ones."""
        async with LocalRunner() as runner:
            instance = await runner.run(SplitShipping, {"both": both}, timeout=5)

        assert Status.COMPLETED == instance.status
        assert expected == path(instance)

    async def test_step_config_reaches_execute(self) -> None:
        """The config of the start step and of a transition's target reach their execute."""
        async with LocalRunner() as runner:
            instance = await runner.run(Configured, {})

        assert {"config": {"greeting": "hello"}} == instance.context.steps["greet"]
        assert {"config": {"up_to": 3}} == instance.context.steps["tally"]

    async def test_updates_and_metadata_land_on_the_instance(self) -> None:
        """Updates land under the step key in context.steps; metadata in runtime_metadata."""
        async with LocalRunner() as runner:
            instance = await runner.run(Configured, {"who": "me"})

        assert {"who": "me"} == instance.context.initial
        assert {"greet", "tally"} == set(instance.context.steps)
        assert {"counted_by": "tally"} == instance.runtime_metadata

    async def test_get_and_list_see_the_stored_instance(self) -> None:
        """get and list return the stored instance once it has ended."""
        async with LocalRunner() as runner:
            instance = await runner.run(Linear, {})
            got = await runner.get(instance.id)
            listed = await runner.list(status=Status.COMPLETED, workflow=Linear)

        assert instance == got
        assert [instance.id] == [i.id for i in listed]

    async def test_wait_on_an_ended_instance_returns_it(self) -> None:
        """wait on an instance that has already ended returns it at once."""
        async with LocalRunner() as runner:
            instance = await runner.run(Linear, {})
            again = await ended(runner, instance.id)

        assert instance == again


def _traced(execute: Any) -> Any:
    """A decorator as users write them: a plain def wrapper returning the coroutine."""

    @functools.wraps(execute)
    def wrapper(*args: Any) -> Any:
        return execute(*args)

    return wrapper


class Decorated(Step):
    events = ("done",)

    @_traced
    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await anyio.lowlevel.checkpoint()
        return Ok("done", {"decorated": True})


class DecoratedFlow(Workflow):
    start = Decorated
    transitions = {Decorated: {"done": Done}}


class TimedDecorated(Decorated):
    timeout = 5.0


class TimedDecoratedFlow(Workflow):
    start = TimedDecorated
    transitions = {TimedDecorated: {"done": Done}}


class TestExecuteStyles:
    @pytest.mark.parametrize("flow", [DecoratedFlow, TimedDecoratedFlow])
    async def test_a_plain_def_returning_a_coroutine_is_awaited(self, flow: Any) -> None:
        """A decorated async execute (a plain def returning a coroutine) is awaited."""
        async with LocalRunner() as runner:
            instance = await runner.run(flow, {})

        assert Status.COMPLETED == instance.status
        assert {"decorated": True} == instance.context.steps[flow.definition.start.step_key]

    async def test_plain_def_runs_inline(self) -> None:
        """A plain def execute runs on the event loop's own thread."""
        probe = Probe()
        async with LocalRunner() as runner:
            instance = await runner.run(PlainDef, {"probe": probe})

        assert Status.COMPLETED == instance.status
        assert [threading.get_ident()] == probe.threads

    async def test_blocking_def_runs_in_a_worker_thread(self) -> None:
        """A plain def execute of a step with blocking = True runs in a worker thread."""
        probe = Probe()
        async with LocalRunner() as runner:
            instance = await runner.run(BlockingDef, {"probe": probe})

        assert Status.COMPLETED == instance.status
        assert 1 == len(probe.threads)
        assert threading.get_ident() != probe.threads[0]


class TestMaxConcurrency:
    @pytest.mark.parametrize(("cap", "expected"), [(2, 2), (None, 5)])
    async def test_caps_steps_in_flight(self, cap: int | None, expected: int) -> None:
        """max_concurrency caps how many steps execute at once across instances (None: no cap)."""
        probe = Probe()
        async with LocalRunner(max_concurrency=cap) as runner:
            ids = [await runner.start(Blocked, {"probe": probe}) for _ in range(5)]
            await settled()  # every step that may run has started; the others queue
            in_flight = probe.in_flight
            probe.release.set()
            statuses = [(await ended(runner, i)).status for i in ids]

        assert expected == in_flight
        assert expected == probe.max_in_flight
        assert [Status.COMPLETED] * 5 == statuses
        assert 5 == probe.arrivals.count("work")

    @pytest.mark.parametrize("cap", [0, -1])
    def test_refuses_a_cap_below_one(self, cap: int) -> None:
        """A cap below one is refused with ValueError naming the value."""
        with pytest.raises(
            ValueError, match=f"max_concurrency must be an int >= 1 or None, got: {cap}"
        ):
            LocalRunner(max_concurrency=cap)

    async def test_queueing_for_a_slot_does_not_count_against_the_timeout(self) -> None:
        """A step that waits for a concurrency slot longer than its timeout still runs."""
        probe = Probe()
        async with LocalRunner(max_concurrency=1) as runner, LocalRunner() as clock:
            hog = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)  # Work holds the only slot
            quick = await runner.start(QuickFlow, {})
            # A clock on another runner: twice Quick's timeout passes while it queues.
            await clock.run(Pause, {}, timeout=5)
            probe.release.set()
            assert Status.COMPLETED == (await ended(runner, hog)).status
            assert Status.COMPLETED == (await ended(runner, quick)).status


class TestVersions:
    async def test_a_family_runs_its_newest_version_by_default(self) -> None:
        """start(Family, ctx) runs the family's highest version."""
        async with LocalRunner() as runner:
            instance = await runner.run(Report, {})

        assert ReportV2 is instance.workflow
        assert 2 == instance.workflow_version
        assert [SecondEdition, Done] == path(instance)

    async def test_a_family_runs_the_version_asked_for(self) -> None:
        """start(Family, ctx, version=1) runs version 1."""
        async with LocalRunner() as runner:
            instance = await runner.run(Report, {}, version=1)

        assert ReportV1 is instance.workflow
        assert 1 == instance.workflow_version
        assert [FirstEdition, Done] == path(instance)

    async def test_an_unknown_version_is_refused(self) -> None:
        """An unknown version raises ValueError and stores nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(ValueError, match="Report has no version 3"):
                await runner.start(Report, {}, version=3)

        assert [] == await storage.query()


class TestCancel:
    async def test_cancel_interrupts_a_running_step(self) -> None:
        """cancel interrupts the running step; the instance ends cancelled, also in storage."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)
            cancelled = await runner.cancel(instance_id)
            await until(probe.cancelled)
            waited = await ended(runner, instance_id)

        assert ["work"] == probe.interrupted
        assert Status.CANCELLED == cancelled.status
        assert Status.CANCELLED == waited.status
        assert waited == await storage.get(instance_id)
        assert frozenset() == waited.active_steps

    async def test_cancel_releases_a_task_blocked_in_wait(self) -> None:
        """A task blocked in wait() gets the instance with status cancelled."""
        probe = Probe()
        waited: list[Instance] = []
        async with LocalRunner() as runner:
            instance_id = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)
            async with anyio.create_task_group() as tg:

                async def wait_for_it() -> None:
                    waited.append(await ended(runner, instance_id))

                tg.start_soon(wait_for_it)
                await settled()  # the waiter is blocked in wait()
                await runner.cancel(instance_id)

        assert [Status.CANCELLED] == [i.status for i in waited]

    async def test_a_cancelled_instance_cannot_be_resumed(self) -> None:
        """A resume after cancel raises NotWaiting."""
        probe = Probe()
        async with LocalRunner() as runner:
            instance_id = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)
            await runner.cancel(instance_id)
            with pytest.raises(NotWaiting, match="cancelled"):
                await runner.resume(instance_id, "done")

    async def test_a_step_may_cancel_its_own_instance(self) -> None:
        """A step that cancels its own instance ends it cancelled; its result is dropped."""
        async with LocalRunner() as runner:
            instance_id = await runner.start(CancelsItself, {"runner": runner})
            instance = await ended(runner, instance_id)

        assert Status.CANCELLED == instance.status
        assert [] == path(instance)

    async def test_cancel_of_an_ended_instance_changes_nothing(self) -> None:
        """Cancelling an instance that has ended returns it unchanged."""
        async with LocalRunner() as runner:
            instance = await runner.run(Linear, {})
            after = await runner.cancel(instance.id)

        assert instance == after

    async def test_cancel_of_an_unknown_instance_is_refused(self) -> None:
        """Cancelling an id nobody has raises InstanceNotFound."""
        async with LocalRunner() as runner:
            with pytest.raises(InstanceNotFound, match="'nope'"):
                await runner.cancel("nope")


class TestLifecycle:
    async def test_start_outside_async_with_is_refused(self) -> None:
        """start before entering the runner raises RuntimeError saying how to use it."""
        runner = LocalRunner()
        with pytest.raises(RuntimeError, match="async with LocalRunner"):
            await runner.start(Linear, {})

    async def test_get_and_wait_refuse_an_unknown_instance(self) -> None:
        """get and wait on an id nobody has raise InstanceNotFound."""
        async with LocalRunner() as runner:
            with pytest.raises(InstanceNotFound, match="no workflow instance has id 'nope'"):
                await runner.get("nope")
            with pytest.raises(InstanceNotFound):
                await ended(runner, "nope")

    async def test_a_context_that_is_not_a_mapping_is_refused(self) -> None:
        """A context that is not a dict raises TypeError and stores nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(TypeError, match="the context must be a dict"):
                await runner.start(Linear, [("item", 1)])  # type: ignore[arg-type]

        assert [] == await storage.query()

    async def test_leaving_cancels_steps_and_keeps_the_instance_running(self) -> None:
        """Leaving async with interrupts in-flight steps; the stored instance stays running."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)

        stored = await storage.get(instance_id)
        assert ["work"] == probe.interrupted
        assert stored is not None
        assert Status.RUNNING == stored.status
        assert frozenset({Work}) == stored.active_steps
        assert [Alpha] == path(stored)

    async def test_a_new_runner_recovers_and_finishes_the_instance(self) -> None:
        """A new runner on the same storage runs the interrupted step again and completes."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(Blocked, {"probe": probe})
            await until(probe.all_arrived)
        probe.release.set()

        with capture_events(telemetry.workflow_start_event()) as starts:
            async with LocalRunner(storage) as runner:
                instance = await ended(runner, instance_id)

        assert Status.COMPLETED == instance.status
        assert [Alpha, Work, Done] == path(instance)
        assert ["work", "work"] == probe.arrivals
        assert [] == starts  # recovery does not start the instance again
        assert instance == await storage.get(instance_id)

    async def test_a_thousand_concurrent_instances_complete(self) -> None:
        """1,000 instances run at once (all are in flight together) and all complete."""
        probe = Probe(expected=1000)
        async with LocalRunner() as runner:
            ids = [await runner.start(Blocked, {"probe": probe}) for _ in range(1000)]
            await until(probe.all_arrived)
            in_flight = probe.in_flight
            probe.release.set()
            instances = [await ended(runner, i) for i in ids]

        assert 1000 == in_flight
        assert 1000 == len(set(ids))
        assert {Status.COMPLETED} == {i.status for i in instances}

    async def test_an_error_result_fails_only_its_instance(self) -> None:
        """An instance that fails leaves the runner running the others."""
        async with LocalRunner() as runner:
            failed = await runner.run(Refusing, {})
            completed = await runner.run(Linear, {})

        assert Status.FAILED == failed.status
        assert Status.COMPLETED == completed.status
