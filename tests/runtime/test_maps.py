"""Maps: one step run once per item of a list known only at run time."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    Instance,
    Map,
    MapError,
    Ok,
    Retry,
    Status,
    Step,
    Workflow,
    WorkflowDefinitionError,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.testing import capture_events

from .conftest import GUARD, Blocks, Probe, ended, probe_of, until

# ---------------------------------------------------------------- steps and workflows


class Plan(Step):
    """Passes the items of the initial context on."""

    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("planned", {"items": list(context.initial["items"])})


class Square(Step):
    """Squares its item."""

    events = ("squared",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("squared", {"square": config["item"] ** 2, "index": config["index"]})


class Total(Step):
    """Sums what the items gave, without knowing how many there were."""

    events = ("summed",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        squares = [item["square"] for item in context.steps["square"]["items"]]
        return Ok("summed", {"total": sum(squares), "count": len(squares)})


def items_of(context: Context) -> list[Any]:
    return list(context.steps["plan"]["items"])


class SquareFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(Square, items=items_of)},
        Square: {"squared": Total},
        Total: {"summed": Done},
    }


async def run(workflow: type[Workflow], context: dict[str, Any]) -> Instance:
    async with LocalRunner() as runner:
        with anyio.fail_after(GUARD):
            return await runner.run(workflow, context)


# ---------------------------------------------------------------- sizes


class TestSizes:
    @pytest.mark.parametrize("count", [1, 3, 1000])
    async def test_every_item_runs_once_and_lands_in_order(self, count: int) -> None:
        """Each item runs once; the next step finds every result in item order."""
        instance = await run(SquareFlow, {"items": list(range(count))})
        assert Status.COMPLETED == instance.status
        results = instance.context.steps["square"]
        assert [{"square": n * n, "index": n} for n in range(count)] == results["items"]
        assert ["squared"] * count == results["events"]
        assert {"total": sum(n * n for n in range(count)), "count": count} == (
            instance.context.steps["total"]
        )

    async def test_an_empty_list_runs_the_rest_with_no_items(self) -> None:
        """Zero items: the map completes at once and its successors run with an empty list."""
        with capture_events() as events:
            instance = await run(SquareFlow, {"items": []})
        assert Status.COMPLETED == instance.status
        assert {"items": [], "events": []} == instance.context.steps["square"]
        assert {"total": 0, "count": 0} == instance.context.steps["total"]
        started = [m["step"] for name, _, m in events if name == telemetry.step_start_event()]
        assert [Plan, Total, Done] == started

    async def test_an_item_is_a_step_execution_in_the_history(self) -> None:
        """Each item leaves a history entry with its index, event and updates."""
        instance = await run(SquareFlow, {"items": [5, 6]})
        entries = [e for e in instance.execution_history if e.step is Square]
        assert [(0, "squared", 25), (1, "squared", 36)] == sorted(
            (e.item, e.event, e.updates["square"]) for e in entries if e.updates
        )
        assert Square in instance.completed_steps
        assert {} == instance.maps


# ---------------------------------------------------------------- events and paths


class Check(Step):
    """Good for even items, bad for odd ones."""

    events = ("good", "bad")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("good" if config["item"] % 2 == 0 else "bad", {"n": config["item"]})


class Keep(Step):
    events = ("kept",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("kept")


class Drop(Step):
    events = ("dropped",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("dropped")


class Report(Step):
    events = ("reported",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("reported", {"events": context.steps["check"]["events"]})


class CheckFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(Check, items=items_of, empty="good")},
        Check: {"good": Keep, "bad": Drop},
        Keep: {"kept": Report},
        Drop: {"dropped": Report},
        Report: {"reported": Done},
    }


class TestEvents:
    async def test_items_taking_both_events_run_both_successors_once(self) -> None:
        """Some items good, some bad: Keep and Drop each run once, after every item."""
        with capture_events() as events:
            instance = await run(CheckFlow, {"items": [0, 1, 2, 3]})
        started = [m["step"] for name, _, m in events if name == telemetry.step_start_event()]
        assert 1 == started.count(Keep)
        assert 1 == started.count(Drop)
        assert started.index(Keep) > max(i for i, s in enumerate(started) if s is Check)
        assert {"events": ["good", "bad", "good", "bad"]} == instance.context.steps["report"]

    async def test_a_successor_no_item_led_to_is_ruled_out(self) -> None:
        """Every item good: Drop never runs, and Report (its join) still does."""
        instance = await run(CheckFlow, {"items": [0, 2, 4]})
        assert Status.COMPLETED == instance.status
        assert Drop not in instance.completed_steps
        assert {"events": ["good"] * 3} == instance.context.steps["report"]

    async def test_an_empty_map_takes_its_empty_event(self) -> None:
        """No item: the map counts as 'good' (its empty=), so Keep runs and Drop does not."""
        instance = await run(CheckFlow, {"items": []})
        assert Keep in instance.completed_steps
        assert Drop not in instance.completed_steps


# ---------------------------------------------------------------- order


class Staggered(Step):
    """Item i finishes only after item i + 1 has: the items end in reverse order."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        gates: list[anyio.Event] = context.initial["gates"]
        index = config["index"]
        if index + 1 < len(gates):
            await gates[index + 1].wait()
        gates[index].set()
        return Ok("done", {"index": index})


class StaggeredFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(Staggered, items=items_of)},
        Staggered: {"done": Done},
    }


class TestOrder:
    async def test_results_land_in_item_order_whatever_order_items_end_in(self) -> None:
        """Items ending last-first still land first-first, and the history shows the real order."""
        gates = [anyio.Event() for _ in range(5)]
        instance = await run(StaggeredFlow, {"items": list(range(5)), "gates": gates})
        assert [{"index": i} for i in range(5)] == instance.context.steps["staggered"]["items"]
        ended_order = [e.item for e in instance.execution_history if e.step is Staggered]
        assert [4, 3, 2, 1, 0] == ended_order


# ---------------------------------------------------------------- failures


class FailsOnThree(Blocks):
    """Item 3 fails (``fails`` times) once the others arrived; they block until released."""

    events = ("done",)
    retry = Retry(max_attempts=1)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        if config["item"] != 3:
            return await super().execute(instance, config, context)
        await probe_of(context).all_arrived.wait()
        failures: list[int] = context.initial["failures"]
        if len(failures) < context.initial["fails"]:
            failures.append(config["index"])
            raise RuntimeError("item three is broken")
        return Ok("done")


class Retried(FailsOnThree):
    retry = Retry(max_attempts=3, base=0.001, jitter=0)


class FailFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(FailsOnThree, items=items_of)},
        FailsOnThree: {"done": Done},
    }


class RetryFlow(Workflow):
    start = Plan
    transitions = {Plan: {"planned": Map(Retried, items=items_of)}, Retried: {"done": Done}}


class TestFailures:
    async def test_a_failing_item_fails_the_instance_and_cancels_the_others(self) -> None:
        """Item 3 fails: the instance fails naming it, and the blocked items are cancelled."""
        probe = Probe(expected=4)
        context = {"items": [0, 1, 2, 3, 4], "probe": probe, "failures": [], "fails": 1}
        with capture_events() as events:
            instance = await run(FailFlow, context)
        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (FailsOnThree, "exception", 3) == (
            instance.error.step,
            instance.error.kind,
            instance.error.item,
        )
        assert 4 == len(probe.interrupted)
        exceptions = [
            (m.get("item"), m["kind"])
            for name, _, m in events
            if name == telemetry.step_exception_event()
        ]
        assert (3, "exception") == exceptions[0]
        assert [(i, "cancelled") for i in (0, 1, 2, 4)] == sorted(exceptions[1:])
        assert telemetry.workflow_exception_event() == events[-1][0]

    async def test_a_retried_item_succeeds_on_a_later_attempt(self) -> None:
        """Item 3 fails twice, then passes on its third attempt; the others never notice."""
        probe = Probe(expected=4)
        context = {"items": [0, 1, 2, 3, 4], "probe": probe, "failures": [], "fails": 2}
        async with LocalRunner() as runner:
            with capture_events() as events:
                instance_id = await runner.start(RetryFlow, context)
                await until(probe.all_arrived)
                probe.release.set()
                instance = await ended(runner, instance_id)
        assert Status.COMPLETED == instance.status
        retries = [
            (m["item"], m["attempt"])
            for name, _, m in events
            if name == telemetry.step_exception_event()
        ]
        assert [(3, 1), (3, 2)] == retries

    async def test_items_that_raise_fail_the_step_before_the_map(self) -> None:
        """The items function raises: Plan fails (kind exception), naming the map."""

        def broken(context: Context) -> list[int]:
            raise KeyError("urls")

        class BrokenFlow(Workflow):
            start = Plan
            transitions = {Plan: {"planned": Map(Square, items=broken)}, Square: {"squared": Done}}

        instance = await run(BrokenFlow, {"items": [1]})
        assert instance.error is not None
        assert (Plan, "exception") == (instance.error.step, instance.error.kind)
        assert isinstance(instance.error.reason, MapError)
        assert "the items of Map(Square) raised KeyError('urls')" == str(instance.error.reason)

    async def test_items_that_are_not_a_list_fail_the_step_before_the_map(self) -> None:
        """A string is not a list of items: refused, naming it."""

        class StringFlow(Workflow):
            start = Plan
            transitions = {
                Plan: {"planned": Map(Square, items=lambda ctx: "abc")},
                Square: {"squared": Done},
            }

        instance = await run(StringFlow, {"items": [1]})
        assert instance.error is not None
        assert "the items of Map(Square) must be a list, got: 'abc'" == str(instance.error.reason)

    async def test_an_item_cannot_park(self) -> None:
        """An item returning Async() fails the instance (invalid_result), naming the item."""

        class Parks(Step):
            events = ("done",)

            async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
                return Async()

        class ParkFlow(Workflow):
            start = Plan
            transitions = {Plan: {"planned": Map(Parks, items=items_of)}, Parks: {"done": Done}}

        instance = await run(ParkFlow, {"items": [7]})
        assert instance.error is not None
        assert (Parks, "invalid_result", 0) == (
            instance.error.step,
            instance.error.kind,
            instance.error.item,
        )
        assert "cannot park" in str(instance.error.reason)

    async def test_an_item_returning_error_fails_with_its_index(self) -> None:
        """Error from item 1: kind error, item 1."""

        class Refuses(Step):
            events = ("done",)

            async def execute(self, instance: Instance, config: Any, context: Context) -> Any:
                return Error("no") if config["index"] == 1 else Ok("done")

        class RefuseFlow(Workflow):
            start = Plan
            transitions = {
                Plan: {"planned": Map(Refuses, items=items_of)},
                Refuses: {"done": Done},
            }

        instance = await run(RefuseFlow, {"items": [0, 1, 2]})
        assert instance.error is not None
        assert ("error", "no", 1) == (
            instance.error.kind,
            instance.error.reason,
            instance.error.item,
        )


# ---------------------------------------------------------------- concurrency


class Counted(Step):
    """Holds its slot until three items run at once or every remaining item ran."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        state: dict[str, Any] = context.initial["state"]
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        try:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
        finally:
            state["now"] -= 1
        return Ok("done")


class CappedFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(Counted, items=items_of, max_concurrency=3)},
        Counted: {"done": Done},
    }


class UncappedFlow(Workflow):
    start = Plan
    transitions = {Plan: {"planned": Map(Counted, items=items_of)}, Counted: {"done": Done}}


class TestConcurrency:
    async def test_the_cap_is_never_exceeded(self) -> None:
        """max_concurrency=3 over 50 items: at most 3 execute at once, and all 50 run."""
        state = {"now": 0, "max": 0}
        instance = await run(CappedFlow, {"items": list(range(50)), "state": state})
        assert Status.COMPLETED == instance.status
        assert 50 == len(instance.context.steps["counted"]["items"])
        assert 3 == state["max"]

    async def test_without_a_cap_every_item_starts_at_once(self) -> None:
        """No cap: all 20 items are in flight together."""
        state = {"now": 0, "max": 0}
        await run(UncappedFlow, {"items": list(range(20)), "state": state})
        assert 20 == state["max"]


# ---------------------------------------------------------------- placement


class Side(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"side": True})


class Join(Step):
    events = ("joined",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("joined", {"seen": sorted(context.steps)})


class MapInFanOut(Workflow):
    """Plan fans out to a map and a plain step; both feed the join."""

    start = Plan
    transitions = {
        Plan: {"planned": [Map(Square, items=items_of), Side]},
        Square: {"squared": Join},
        Side: {"done": Join},
        Join: {"joined": Done},
    }


class MapAfterJoin(Workflow):
    """Two branches join on a mapped step, whose items come from both."""

    start = Plan
    transitions = {
        Plan: {"planned": [Side, Keep]},
        Side: {"done": (squares := Map(Square, items=lambda ctx: [1, 2, 3]))},
        Keep: {"kept": squares},
        Square: {"squared": Done},
    }


class TestPlacement:
    async def test_a_map_in_a_fan_out_feeds_a_join(self) -> None:
        """The join runs once, after the plain branch and every item."""
        with capture_events() as events:
            instance = await run(MapInFanOut, {"items": [1, 2]})
        assert ["plan", "side", "square"] == instance.context.steps["join"]["seen"]
        started = [m["step"] for name, _, m in events if name == telemetry.step_start_event()]
        assert 1 == started.count(Join)
        assert 2 == started.count(Square)

    async def test_a_join_can_be_mapped(self) -> None:
        """A mapped join starts its items once both branches are done."""
        instance = await run(MapAfterJoin, {"items": []})
        assert [1, 4, 9] == [i["square"] for i in instance.context.steps["square"]["items"]]


# ---------------------------------------------------------------- telemetry


class TestTelemetry:
    async def test_item_events_carry_the_index(self) -> None:
        """step:start and step:stop of an item carry ``item``; a plain step's do not."""
        with capture_events() as events:
            await run(SquareFlow, {"items": [2, 3]})
        starts = [m for name, _, m in events if name == telemetry.step_start_event()]
        stops = [m for name, _, m in events if name == telemetry.step_stop_event()]
        assert [None, 0, 1, None, None] == [m.get("item") for m in starts]
        assert {0, 1} == {m["item"] for m in stops if m["step"] is Square}
        assert all(m["concurrent"] for m in starts if m["step"] is Square)

    async def test_the_last_item_transitions_to_the_successor(self) -> None:
        """Each item's transition names what it activated: only the last one activates Total."""
        with capture_events() as events:
            await run(SquareFlow, {"items": [2, 3]})
        transitions = [
            tuple(m["targets"])
            for name, _, m in events
            if name == telemetry.workflow_transition_event() and m["from_step"] is Square
        ]
        assert [(), (Total,)] == transitions


# ---------------------------------------------------------------- definitions


def problems(transitions: dict[Any, Any], start: Any = Plan) -> list[str]:
    with pytest.raises(WorkflowDefinitionError) as info:
        type("Flow", (Workflow,), {"start": start, "transitions": transitions})
    return list(info.value.problems)


class TestDefinitions:
    def test_a_step_mapped_and_plain(self) -> None:
        """A step runs either once or once per item, not both."""
        found = problems(
            {
                Plan: {"planned": [Map(Square, items=items_of), Side]},
                Side: {"done": Square},
                Square: {"squared": Done},
            }
        )
        assert [
            "Flow: step Square is the target of a Map and of a plain transition; "
            "a step runs either once or once per item"
        ] == found

    def test_two_maps_of_one_step(self) -> None:
        """Two transitions to one mapped step must share one Map."""
        found = problems(
            {
                Plan: {"planned": [Side, Keep]},
                Side: {"done": Map(Square, items=items_of)},
                Keep: {"kept": Map(Square, items=items_of)},
                Square: {"squared": Done},
            }
        )
        assert [
            "Flow: step Square is mapped by 2 different Maps; "
            "give every transition to it the same Map object"
        ] == found

    def test_empty_is_required_when_the_step_has_several_events(self) -> None:
        found = problems(
            {
                Plan: {"planned": Map(Check, items=items_of)},
                Check: {"good": Done, "bad": Done},
            }
        )
        assert [
            "Flow: Map(Check) must say with empty=... which of its events ('good', 'bad') "
            "an empty list of items takes"
        ] == found

    def test_empty_must_be_declared(self) -> None:
        found = problems(
            {
                Plan: {"planned": Map(Check, items=items_of, empty="fine")},
                Check: {"good": Done, "bad": Done},
            }
        )
        assert [
            "Flow: Map(Check).empty is 'fine', which Check does not declare ('good', 'bad')"
        ] == (found)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param(
                {"items": [1, 2]},
                "Map(Square).items must be callable (context -> list), got: [1, 2]",
                id="items",
            ),
            pytest.param(
                {"items": items_of, "max_concurrency": 0},
                "Map(Square).max_concurrency must be an int >= 1 or None, got: 0",
                id="cap",
            ),
            pytest.param(
                {"items": items_of, "config": {"item": 1}},
                "Map(Square).config must not set 'item' or 'index': each item's config gets them",
                id="config",
            ),
            pytest.param(
                {"items": items_of, "config": [1]},
                "Map(Square).config must be a dict or None, got: [1]",
                id="config-type",
            ),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], message: str) -> None:
        found = problems({Plan: {"planned": Map(Square, **options)}, Square: {"squared": Done}})
        assert [f"Flow.transitions[Plan]['planned']: {message}"] == found

    def test_done_cannot_be_mapped(self) -> None:
        found = problems({Plan: {"planned": Map(Done, items=items_of)}})
        assert "Flow.transitions[Plan]['planned']: Done ends the workflow and cannot be mapped" in (
            found
        )

    def test_start_cannot_be_a_map(self) -> None:
        found = problems({Square: {"squared": Done}}, start=Map(Square, items=items_of))
        assert found[0].startswith(
            "Flow.start must be a Step subclass or (Step, config), got: Map(Square)"
        )

    def test_the_definition_knows_its_maps(self) -> None:
        """Definition.maps holds each mapped step's Map, its empty event resolved."""
        spec = SquareFlow.definition.maps[Square]
        assert (Square, "squared", None) == (spec.step, spec.empty, spec.max_concurrency)

    def test_mermaid_marks_a_mapped_step(self) -> None:
        assert '    square[["Square (map)"]]' in SquareFlow.mermaid().splitlines()


# ---------------------------------------------------------------- cancel


class Waits(Blocks):
    """Blocks until released (or cancelled), as one item of a map."""

    events = ("done",)


class WaitsFlow(Workflow):
    start = Plan
    transitions = {
        Plan: {"planned": Map(Waits, items=items_of, max_concurrency=4)},
        Waits: {"done": Done},
    }


class TestCancel:
    async def test_cancel_stops_every_running_item(self) -> None:
        """cancel() mid-map: the four running items are interrupted; no other item starts."""
        probe = Probe(expected=4)
        with capture_events() as events:
            async with LocalRunner() as runner:
                instance_id = await runner.start(
                    WaitsFlow, {"items": list(range(10)), "probe": probe}
                )
                await until(probe.all_arrived)
                await runner.cancel(instance_id)
                instance = await ended(runner, instance_id)
        assert (Status.CANCELLED, 4, 4) == (instance.status, probe.calls, len(probe.interrupted))
        kinds = [m["kind"] for name, _, m in events if name == telemetry.step_exception_event()]
        assert ["cancelled"] * 4 == kinds
