"""Branches advance on their own: a step's successors start as soon as its result is folded."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hephaestus import (
    Context,
    Done,
    Instance,
    Map,
    Ok,
    Status,
    Step,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.testing import capture_events

from .conftest import GUARD

# ---------------------------------------------------------------- uneven branches


class Fan(Step):
    events = ("go",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("go")


class Fast(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done")


class FastNext(Step):
    """Lets Slow finish: if it could only start after Slow, the instance would hang."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        context.initial["fast_next_ran"].set()
        return Ok("done")


class Slow(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await context.initial["fast_next_ran"].wait()
        return Ok("done")


class Meet(Step):
    events = ("met",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("met")


class Uneven(Workflow):
    start = Fan
    transitions = {
        Fan: {"go": [Fast, Slow]},
        Fast: {"done": FastNext},
        FastNext: {"done": Meet},
        Slow: {"done": Meet},
        Meet: {"met": Done},
    }


class TestUnevenBranches:
    async def test_the_fast_branch_goes_on_while_the_slow_one_runs(self) -> None:
        """FastNext runs before Slow ends: Slow waits for it, so lock-step would hang."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    instance = await runner.run(Uneven, {"fast_next_ran": anyio.Event()})
        assert Status.COMPLETED == instance.status
        order = [
            (name[-1], m["step"])
            for name, _, m in events
            if name in (telemetry.step_start_event(), telemetry.step_stop_event())
        ]
        assert order.index(("stop", Fast)) < order.index(("start", FastNext))
        assert order.index(("stop", FastNext)) < order.index(("stop", Slow))

    async def test_a_step_stop_is_emitted_when_the_step_ends(self) -> None:
        """Fast's step:stop comes before Slow's, in Fast's own time."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    await runner.run(Uneven, {"fast_next_ran": anyio.Event()})
        stops = [m["step"] for name, _, m in events if name == telemetry.step_stop_event()]
        assert [Fan, Fast, FastNext, Slow, Meet, Done] == stops

    async def test_the_join_fires_once_after_both_branches(self) -> None:
        """Meet starts once, after FastNext and Slow both stopped."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    await runner.run(Uneven, {"fast_next_ran": anyio.Event()})
        starts = [m["step"] for name, _, m in events if name == telemetry.step_start_event()]
        assert 1 == starts.count(Meet)

    async def test_advances_count_the_steps_started(self) -> None:
        """engine:advance comes once when the instance opens and once per fold that
        activated steps; a branch that only reaches a join does not advance."""
        with capture_events() as events:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    await runner.run(Uneven, {"fast_next_ran": anyio.Event()})
        advances = [m for name, m, _ in events if name == telemetry.engine_advance_event()]
        # open (Fan), Fan -> [Fast, Slow], Fast -> FastNext, Slow -> Meet, Meet -> Done;
        # FastNext reaching the join advanced nothing, so the next advance counts it too.
        assert 5 == len(advances)
        assert [0, 1, 1, 2, 1] == [m["completed_in_advance"] for m in advances]
        stop = next(m for name, m, _ in events if name == telemetry.workflow_stop_event())
        assert 5 == stop["advance_count"]


# ---------------------------------------------------------------- any completion order


def _step_class(name: str, reads: tuple[str, ...]) -> type[Step]:
    """A step whose updates depend only on what it reads and its item: never on timing."""

    async def execute(self: Step, instance: Instance, config: Any, context: Context) -> Ok:
        delays: dict[str, int] = context.initial["delays"]
        key = type(self).step_key
        index = None if config is None else config.get("index")
        for _ in range(delays.get(f"{key}/{index}", 0)):
            await anyio.lowlevel.checkpoint()
        seen = []
        for read in reads:
            value = context.steps.get(read)
            if value is not None:
                seen.append([read, value])
        return Ok(
            "ok", {"from": key, "item": None if config is None else config["item"], "seen": seen}
        )

    return type(name, (Step,), {"events": ("ok",), "execute": execute, "step_key": name.lower()})


@st.composite
def dags(draw: st.DrawFn) -> tuple[type[Workflow], dict[str, int]]:
    """A layered DAG of 2 to 4 layers: fan-outs, joins, maps of 0 to 3 items; random delays."""
    layers = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    names = [["Start"]] + [[f"S{i}x{j}" for j in range(width)] for i, width in enumerate(layers)]
    preds: dict[str, list[str]] = {name: [] for layer in names for name in layer}
    for above, below in itertools.pairwise(names):
        for name in below:  # every step has at least one predecessor in the layer above
            chosen = draw(st.sets(st.sampled_from(above), min_size=1))
            preds[name].extend(sorted(chosen))
        for name in above:  # every step leads somewhere below
            if not any(name in preds[b] for b in below):
                preds[draw(st.sampled_from(below))].append(name)
    mapped = {name: draw(st.integers(0, 3)) for layer in names[1:] for name in layer}
    mapped = {name: n for name, n in mapped.items() if draw(st.booleans())}
    classes = {
        name: _step_class(name, tuple(p.lower() for p in preds[name]))
        for layer in names
        for name in layer
    }
    end = _step_class("End", tuple(n.lower() for n in names[-1]))
    targets: dict[str, Any] = {}
    for name, count in mapped.items():
        targets[name] = Map(classes[name], items=lambda ctx, count=count: list(range(count)))
    transitions: dict[type[Step], dict[str, Any]] = {}
    for layer in names:
        for name in layer:
            below = [b for b in preds if name in preds[b]]
            nexts = [targets.get(b, classes[b]) for b in sorted(below)] or [end]
            transitions[classes[name]] = {"ok": nexts if len(nexts) > 1 else nexts[0]}
    transitions[end] = {"ok": Done}
    workflow = type(
        "RandomDag", (Workflow,), {"start": classes["Start"], "transitions": transitions}
    )
    keys = [f"{n.lower()}/{i}" for layer in names for n in layer for i in [None, 0, 1, 2]]
    delays = draw(st.fixed_dictionaries({}, optional=dict.fromkeys(keys, st.integers(0, 4))))
    return workflow, delays


class TestAnyCompletionOrder:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(dags())
    def test_the_final_state_does_not_depend_on_which_step_ends_first(
        self, case: tuple[type[Workflow], dict[str, int]]
    ) -> None:
        """Random DAGs with maps and joins, random step durations: the same final state."""
        workflow, delays = case

        async def run(delays: dict[str, int]) -> Instance:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    return await runner.run(workflow, {"delays": delays})

        reference = anyio.run(run, {})
        shuffled = anyio.run(run, delays)
        assert Status.COMPLETED == reference.status
        assert Status.COMPLETED == shuffled.status
        assert reference.context.steps == shuffled.context.steps
        assert reference.completed_steps == shuffled.completed_steps
        assert {} == shuffled.pending_joins
        assert sorted((e.step.step_key, e.item) for e in reference.execution_history) == sorted(
            (e.step.step_key, e.item) for e in shuffled.execution_history
        )
