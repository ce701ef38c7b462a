"""The systems under test, each behind the same small session API.

A session is an async context manager that sets a system up (a runner, a
compiled graph, a checkpointer) and offers the scenarios' workflows:

- ``linear10()``: ten sequential steps; returns the final counter (10);
- ``fanout8()``: a start step, 8 parallel branches, a join, an end (11);
- ``park()``: runs a first step and parks waiting for an external event;
  returns once parked, with a handle;
- ``resume(handle)``: delivers the event and returns once the workflow has
  ended (its second step run); returns the final counter (2).

Every step increments a counter in the workflow's state, so each system
does the same work, and the harness checks the final counter of every run.
The peers' modules import their library, so they are imported only when it
is installed; a missing one is skipped with a note.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

LINEAR10 = 10
"""The counter at the end of ``linear10``: one per step."""
FANOUT8 = 11
"""The counter at the end of ``fanout8``: start, 8 branches, join, end."""
ASYNC_RESUME = 2
"""The counter at the end of the async workflow: the step before the park and the one after."""


class Session(Protocol):
    """What a scenario calls on a system; see the module docstring."""

    async def linear10(self) -> int: ...

    async def fanout8(self) -> int: ...

    async def park(self) -> Any: ...

    async def resume(self, handle: Any) -> int: ...


@dataclass(frozen=True)
class System:
    """A system: its display name, the module that runs it, and the packages it needs."""

    name: str
    module: str
    requires: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def missing(self) -> str | None:
        """The first required package that is not installed, or None."""
        for package in self.requires:
            if importlib.util.find_spec(package) is None:
                return package
        return None

    def session(self, **options: Any) -> AbstractAsyncContextManager[Session]:
        """A fresh session (the module's ``session``), with this system's options."""
        module = importlib.import_module(f"benchmarks.systems.{self.module}")
        session: AbstractAsyncContextManager[Session] = module.session(
            **{**self.options, **options}
        )
        return session


FLOOR_AWAIT = System("asyncio (await)", "floor", options={"tasks": False})
FLOOR_TASKS = System("asyncio (tasks)", "floor", options={"tasks": True})
HEPHAESTUS = System("Hephaestus", "heph")
HEPHAESTUS_LOG = System("Hephaestus + LogHandler", "heph", options={"log": True})
LANGGRAPH = System("LangGraph", "langgraph_peer", requires=("langgraph",))
PYDANTIC_GRAPH = System("pydantic-graph", "pydantic_graph_peer", requires=("pydantic_graph",))

WORKFLOW_SYSTEMS = (FLOOR_AWAIT, FLOOR_TASKS, HEPHAESTUS, HEPHAESTUS_LOG, LANGGRAPH, PYDANTIC_GRAPH)
"""The systems of the in-memory scenarios, in the order the table lists them."""
FLOORS = (FLOOR_AWAIT.name, FLOOR_TASKS.name)
PEERS = (LANGGRAPH.name, PYDANTIC_GRAPH.name)


NOT_INSTALLED = "module {} is not installed (pip install -e '.[bench]')"
"""Why a system was skipped, with the missing module in the braces."""


def installed(systems: Sequence[System]) -> tuple[list[System], list[str]]:
    """The systems whose packages are installed, and a note for each one skipped."""
    found: list[System] = []
    notes: list[str] = []
    for system in systems:
        package = system.missing()
        if package is None:
            found.append(system)
        else:
            notes.append(f"{system.name} skipped: {NOT_INSTALLED.format(package)}")
    return found, notes
