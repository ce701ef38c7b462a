"""LangGraph: a ``StateGraph`` over a TypedDict state, compiled once, run with ``ainvoke``.

Every node returns ``{"count": 1}``, folded into the state by the
``operator.add`` reducer (the reducer is what lets the 8 parallel branches
write the same key). ``linear10`` and ``fanout8`` run without a
checkpointer, LangGraph's fastest path. The async workflow needs one to
park: it is compiled with an ``InMemorySaver``, a fresh one per session;
the ``hold`` node calls ``interrupt()`` and ``Command(resume=...)`` resumes
the thread.

``map1000``: a ``plan`` node lists ``range(n)``; a conditional edge returns
one ``Send("item", {"item": ..., "index": ...})`` per item, so the ``item``
node runs once per item, all in one superstep; each returns ``{"values":
[item + 1]}``, gathered by the ``operator.add`` reducer of ``values``; the
``gather`` node runs once after the superstep and sums them. Like
``linear10`` and ``fanout8`` (it runs to its end, nothing parks), it is
compiled once without a checkpointer, LangGraph's fastest path. The gated
graph (the memory figure) differs only in its ``item`` node, which first
waits at the gate the session installs (``Gate.current()``).
"""

from __future__ import annotations

import itertools
import operator
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt

from benchmarks.systems import Gate


class State(TypedDict):
    """The workflow's state: one counter, summed across writes."""

    count: Annotated[int, operator.add]


async def increment(state: State) -> dict[str, int]:
    """One step: add 1 to the counter."""
    return {"count": 1}


async def hold(state: State) -> dict[str, int]:
    """Park until resumed; the resume value is the external event."""
    interrupt("waiting for an external event")
    return {"count": 0}


def _linear() -> Any:
    builder = StateGraph(State)
    names = [f"s{index}" for index in range(1, 11)]
    for name in names:
        builder.add_node(name, increment)
    builder.add_edge(START, names[0])
    for name, after in itertools.pairwise(names):
        builder.add_edge(name, after)
    builder.add_edge(names[-1], END)
    return builder.compile()


def _fanout() -> Any:
    builder = StateGraph(State)
    branches = [f"branch{index}" for index in range(1, 9)]
    for name in ("start", *branches, "join", "end"):
        builder.add_node(name, increment)
    builder.add_edge(START, "start")
    for branch in branches:
        builder.add_edge("start", branch)
    builder.add_edge(branches, "join")  # waits for all 8
    builder.add_edge("join", "end")
    builder.add_edge("end", END)
    return builder.compile()


def _parking() -> StateGraph[Any]:
    builder = StateGraph(State)
    builder.add_node("s1", increment)
    builder.add_node("hold", hold)
    builder.add_node("s2", increment)
    builder.add_edge(START, "s1")
    builder.add_edge("s1", "hold")
    builder.add_edge("hold", "s2")
    builder.add_edge("s2", END)
    return builder


class MapState(TypedDict, total=False):
    """The map's state: the item count, the planned items, the gathered values, the sum."""

    n: int
    items: list[int]
    values: Annotated[list[int], operator.add]
    total: int


class ItemInput(TypedDict):
    """What each ``Send`` gives the ``item`` node."""

    item: int
    index: int


async def plan(state: MapState) -> dict[str, list[int]]:
    """The map's first step: the items."""
    return {"items": list(range(state["n"]))}


def fan_out(state: MapState) -> list[Send]:
    """One ``Send`` to ``item`` per planned item."""
    return [
        Send("item", {"item": item, "index": index}) for index, item in enumerate(state["items"])
    ]


async def item_step(state: ItemInput) -> dict[str, list[int]]:
    """The map's step, once per item."""
    return {"values": [state["item"] + 1]}


async def gated_item_step(state: ItemInput) -> dict[str, list[int]]:
    """``item_step`` after waiting at the current ``Gate``."""
    await Gate.current().wait()
    return await item_step(state)


async def gather(state: MapState) -> dict[str, int]:
    """The join after the map: the sum of the gathered values."""
    return {"total": sum(state["values"])}


def _map(item: Any) -> Any:
    builder = StateGraph(MapState)
    builder.add_node("plan", plan)
    builder.add_node("item", item)
    builder.add_node("gather", gather)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["item"])
    builder.add_edge("item", "gather")
    builder.add_edge("gather", END)
    # No checkpointer, as for linear10 and fanout8: the map runs to its end.
    return builder.compile()


LINEAR = _linear()
FANOUT = _fanout()
PARKING = _parking()
MAP = _map(item_step)
GATED_MAP = _map(gated_item_step)


class _LangGraph:
    def __init__(self) -> None:
        self.parking = PARKING.compile(checkpointer=InMemorySaver())

    async def linear10(self) -> int:
        return int((await LINEAR.ainvoke({"count": 0}))["count"])

    async def fanout8(self) -> int:
        return int((await FANOUT.ainvoke({"count": 0}))["count"])

    async def park(self) -> dict[str, Any]:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        result = await self.parking.ainvoke({"count": 0}, config)
        if "__interrupt__" not in result:
            raise AssertionError(f"the graph did not park: {result!r}")
        return config

    async def resume(self, config: dict[str, Any]) -> int:
        result = await self.parking.ainvoke(Command(resume="received"), config)
        return int(result["count"])

    async def map1000(self, count: int, gate: Gate | None = None) -> int:
        if gate is None:
            return int((await MAP.ainvoke({"n": count}))["total"])
        with gate.installed():
            return int((await GATED_MAP.ainvoke({"n": count}))["total"])


@asynccontextmanager
async def session() -> AsyncIterator[_LangGraph]:
    """The compiled graphs; a fresh checkpointer for the async workflow."""
    yield _LangGraph()
