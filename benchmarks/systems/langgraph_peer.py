"""LangGraph: a ``StateGraph`` over a TypedDict state, compiled once, run with ``ainvoke``.

Every node returns ``{"count": 1}``, folded into the state by the
``operator.add`` reducer (the reducer is what lets the 8 parallel branches
write the same key). ``linear10`` and ``fanout8`` run without a
checkpointer, LangGraph's fastest path. The async workflow needs one to
park: it is compiled with an ``InMemorySaver``, a fresh one per session;
the ``hold`` node calls ``interrupt()`` and ``Command(resume=...)`` resumes
the thread.
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
from langgraph.types import Command, interrupt


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


LINEAR = _linear()
FANOUT = _fanout()
PARKING = _parking()


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


@asynccontextmanager
async def session() -> AsyncIterator[_LangGraph]:
    """The compiled graphs; a fresh checkpointer for the async workflow."""
    yield _LangGraph()
