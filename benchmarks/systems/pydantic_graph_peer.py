"""pydantic-graph (2.x): ``BaseNode`` classes over a dataclass state, run with ``graph.run``.

Each node increments ``ctx.state.count`` and returns the next node (or
``End``); the graphs are built once with ``GraphBuilder``. A ``BaseNode``
returns a single next node, so it cannot fan out: ``fanout8`` uses the
builder's step functions (a broadcast to 8 steps and a ``Join``), the
library's way to run branches in parallel.

pydantic-graph 2 removed the 1.x state persistence (``FullStatePersistence``,
``iter_from_persistence``). The async workflow parks the way that
persistence did, by stopping at a node: ``graph.iter`` runs until the next
task is ``Hold``, and the run is left with its state and that task kept in
memory (what ``SimpleStatePersistence`` kept). Resuming puts the event in
the state and starts a new ``graph.iter`` whose first tasks are replaced
(``GraphRun.next(tasks)``) by the kept ``Hold`` task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic_graph import (
    BaseNode,
    End,
    EndMarker,
    GraphBuilder,
    GraphRunContext,
    GraphTask,
    GraphTaskRequest,
    StepContext,
    reduce_null,
)


@dataclass
class State:
    """The workflow's state: a counter, and the event a parked run was resumed with."""

    count: int = 0
    event: str | None = None


Ctx = GraphRunContext[State, None]

# ---------------------------------------------------------------- linear10


@dataclass
class L1(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L2:
        ctx.state.count += 1
        return L2()


@dataclass
class L2(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L3:
        ctx.state.count += 1
        return L3()


@dataclass
class L3(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L4:
        ctx.state.count += 1
        return L4()


@dataclass
class L4(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L5:
        ctx.state.count += 1
        return L5()


@dataclass
class L5(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L6:
        ctx.state.count += 1
        return L6()


@dataclass
class L6(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L7:
        ctx.state.count += 1
        return L7()


@dataclass
class L7(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L8:
        ctx.state.count += 1
        return L8()


@dataclass
class L8(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L9:
        ctx.state.count += 1
        return L9()


@dataclass
class L9(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> L10:
        ctx.state.count += 1
        return L10()


@dataclass
class L10(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> End[int]:
        ctx.state.count += 1
        return End(ctx.state.count)


def _linear() -> Any:
    g = GraphBuilder(state_type=State, input_type=L1, output_type=int, auto_instrument=False)
    nodes = (L1, L2, L3, L4, L5, L6, L7, L8, L9, L10)
    g.add(g.edge_from(g.start_node).to(L1), *(g.node(node) for node in nodes))
    return g.build()


# ---------------------------------------------------------------- fanout8


def _fanout() -> Any:
    g = GraphBuilder(state_type=State, output_type=int, auto_instrument=False)

    async def increment(ctx: StepContext[State, None, Any]) -> None:
        ctx.state.count += 1

    async def end(ctx: StepContext[State, None, Any]) -> int:
        ctx.state.count += 1
        return ctx.state.count

    start = g.step(increment, node_id="start")
    branches = [g.step(increment, node_id=f"branch{index}") for index in range(1, 9)]
    join = g.join(reduce_null, initial=None, node_id="join")
    after_join = g.step(increment, node_id="after_join")
    last = g.step(end, node_id="end")
    g.add(
        g.edge_from(g.start_node).to(start),
        g.edge_from(start).to(*branches),
        *(g.edge_from(branch).to(join) for branch in branches),
        g.edge_from(join).to(after_join),
        g.edge_from(after_join).to(last),
        g.edge_from(last).to(g.end_node),
    )
    return g.build()


# ---------------------------------------------------------------- async_resume


@dataclass
class A1(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> Hold:
        ctx.state.count += 1
        return Hold()


@dataclass
class Hold(BaseNode[State, None, int]):
    """Where the run parks; when it runs, the event has arrived."""

    async def run(self, ctx: Ctx) -> A2:
        if ctx.state.event is None:
            raise RuntimeError("Hold ran before its event arrived")
        return A2()


@dataclass
class A2(BaseNode[State, None, int]):
    async def run(self, ctx: Ctx) -> End[int]:
        ctx.state.count += 1
        return End(ctx.state.count)


def _parking() -> Any:
    g = GraphBuilder(state_type=State, input_type=A1, output_type=int, auto_instrument=False)
    g.add(g.edge_from(g.start_node).to(A1), g.node(A1), g.node(Hold), g.node(A2))
    return g.build()


LINEAR = _linear()
FANOUT = _fanout()
PARKING = _parking()


class _PydanticGraph:
    async def linear10(self) -> int:
        return int(await LINEAR.run(state=State(), inputs=L1()))

    async def fanout8(self) -> int:
        return int(await FANOUT.run(state=State()))

    async def park(self) -> tuple[State, Sequence[GraphTask]]:
        state = State()
        async with PARKING.iter(state=state, inputs=A1()) as run:
            async for tasks in run:
                if not isinstance(tasks, EndMarker) and any(
                    isinstance(task.inputs, Hold) for task in tasks
                ):
                    return state, tasks
        raise AssertionError("the graph ended without parking")

    async def resume(self, parked: tuple[State, Sequence[GraphTask]]) -> int:
        state, tasks = parked
        state.event = "received"
        requests = [GraphTaskRequest(task.node_id, task.inputs, task.fork_stack) for task in tasks]
        async with PARKING.iter(state=state) as run:
            event = await run.next(requests)
            while not isinstance(event, EndMarker):
                event = await run.next(event)
        return int(event.value)


@asynccontextmanager
async def session() -> AsyncIterator[_PydanticGraph]:
    """The graphs are built once, at import; nothing to set up."""
    yield _PydanticGraph()
