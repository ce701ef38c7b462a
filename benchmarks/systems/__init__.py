"""The systems under test, each behind the same small session API.

A session is an async context manager that sets a system up (a runner, a
compiled graph, a checkpointer) and offers the scenarios' workflows:

- ``linear10()``: ten sequential steps; returns the final counter (10);
- ``fanout8()``: a start step, 8 parallel branches, a join, an end (11);
- ``park()``: runs a first step and parks waiting for an external event;
  returns once parked, with a handle;
- ``resume(handle)``: delivers the event and returns once the workflow has
  ended (its second step run); returns the final counter (2);
- ``map1000(count, gate=None)`` (the floor, Hephaestus and LangGraph
  only): a step that plans ``count`` items, a trivial step run once per
  item (``item + 1``), a join that sums the results; returns the sum
  (``map_total(count)``). With a ``Gate``, every item waits at the gate
  before returning (the memory figure).

Every step increments a counter in the workflow's state (in ``map1000``,
every item adds its value to the sum), so each system does the same work,
and the harness checks the final counter (the sum) of every run.
The peers' modules import their library, so they are imported only when it
is installed; a missing one is skipped with a note.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

LINEAR10 = 10
"""The counter at the end of ``linear10``: one per step."""
FANOUT8 = 11
"""The counter at the end of ``fanout8``: start, 8 branches, join, end."""
ASYNC_RESUME = 2
"""The counter at the end of the async workflow: the step before the park and the one after."""


def map_total(count: int) -> int:
    """The result of ``map1000(count)``: the sum of ``item + 1`` over ``range(count)``."""
    return count * (count + 1) // 2


class Gate:
    """Holds ``count`` map items in flight: each waits here until all have arrived and are released.

    ``arrived`` (a future) is done when the last item arrives; ``release()``
    lets them all go on. Steps that are module-level classes (Hephaestus) or
    functions compiled once (LangGraph) find the gate of the run under way
    with ``Gate.current()``, set by ``with gate.installed():``.
    """

    _current: ClassVar[Gate | None] = None

    def __init__(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        self.count = count
        self.waiting = 0
        self.arrived: asyncio.Future[None] = loop.create_future()
        self._released: asyncio.Future[None] = loop.create_future()

    def wait(self) -> asyncio.Future[None]:
        """Called by an item (``await gate.wait()``): count it in; the release to await.

        A plain function returning one future shared by every item, so that
        the gate adds no coroutine of its own to each item's memory, only a
        callback on that future.
        """
        self.waiting += 1
        if self.waiting == self.count and not self.arrived.done():
            self.arrived.set_result(None)
        return self._released

    def release(self) -> None:
        """Let every item waiting (and every later one) go on."""
        if not self._released.done():
            self._released.set_result(None)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """This gate is ``Gate.current()`` inside the block."""
        Gate._current = self
        try:
            yield
        finally:
            Gate._current = None

    @classmethod
    def current(cls) -> Gate:
        """The installed gate; an error when a gated workflow runs without one."""
        if cls._current is None:
            raise AssertionError("a gated map ran without a gate installed")
        return cls._current


class Session(Protocol):
    """What a scenario calls on a system; see the module docstring."""

    async def linear10(self) -> int: ...

    async def fanout8(self) -> int: ...

    async def park(self) -> Any: ...

    async def resume(self, handle: Any) -> int: ...

    async def map1000(self, count: int, gate: Gate | None = None) -> int: ...


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
FLOOR_GATHER = System("asyncio (gather)", "floor")
HEPHAESTUS = System("Hephaestus", "heph")
HEPHAESTUS_LOG = System("Hephaestus + LogHandler", "heph", options={"log": True})
HEPHAESTUS_OTEL = System(
    "Hephaestus + OTel", "heph", requires=("opentelemetry.sdk",), options={"otel": True}
)
HEPHAESTUS_PROMETHEUS = System(
    "Hephaestus + Prometheus", "heph", requires=("prometheus_client",), options={"prometheus": True}
)
LANGGRAPH = System("LangGraph", "langgraph_peer", requires=("langgraph",))
PYDANTIC_GRAPH = System("pydantic-graph", "pydantic_graph_peer", requires=("pydantic_graph",))

WORKFLOW_SYSTEMS = (
    FLOOR_AWAIT,
    FLOOR_TASKS,
    HEPHAESTUS,
    HEPHAESTUS_LOG,
    HEPHAESTUS_OTEL,
    HEPHAESTUS_PROMETHEUS,
    LANGGRAPH,
    PYDANTIC_GRAPH,
)
"""The systems of the in-memory scenarios, in the order the table lists them."""
FLOORS = (FLOOR_AWAIT.name, FLOOR_TASKS.name)
PEERS = (LANGGRAPH.name, PYDANTIC_GRAPH.name)

MAP_SYSTEMS = (FLOOR_GATHER, HEPHAESTUS, LANGGRAPH)
"""The systems of ``map1000``: the floor is ``asyncio.gather`` over one coroutine per item."""


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
