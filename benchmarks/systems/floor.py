"""The plain-asyncio floor: the same work with no framework, in two forms.

``tasks=False``: steps are coroutines awaited one after the other; the 8
branches of the fan-out are awaited in turn (they never suspend, so running
them concurrently would only add scheduling). ``tasks=True``: every step is
an asyncio task of its own, as a framework that schedules steps would do;
the branches are 8 tasks gathered. Parking awaits an ``asyncio.Future``;
resuming sets its result. The first step runs in the caller, then a task
takes over the workflow and parks on the future.

``map1000`` (the system ``asyncio (gather)``; ``tasks`` does not change it):
the plan step's list, ``asyncio.gather`` over one coroutine of the item step
per item (gather makes each a task), then the sum of their values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.systems import Gate

State = dict[str, Any]


async def step(state: State) -> None:
    """One step: increment the counter."""
    state["count"] += 1


async def plan(count: int) -> list[int]:
    """The map's first step: the items."""
    return list(range(count))


async def item_step(item: int, index: int, gate: Gate | None = None) -> dict[str, int]:
    """The map's step, once per item (waiting at ``gate`` first, when there is one)."""
    if gate is not None:
        await gate.wait()
    return {"value": item + 1}


class _Floor:
    """Workflows as coroutines; ``_run`` awaits a step inline or as a task."""

    def __init__(self, tasks: bool) -> None:
        self._tasks = tasks
        self._parked: set[asyncio.Task[int]] = set()

    async def _run(self, state: State) -> None:
        if self._tasks:
            await asyncio.create_task(step(state))
        else:
            await step(state)

    async def linear10(self) -> int:
        state = {"count": 0}
        for _ in range(10):
            await self._run(state)
        return state["count"]

    async def fanout8(self) -> int:
        state = {"count": 0}
        await self._run(state)
        if self._tasks:
            await asyncio.gather(*(asyncio.create_task(step(state)) for _ in range(8)))
        else:
            for _ in range(8):
                await step(state)
        await self._run(state)  # the join
        await self._run(state)  # the end
        return state["count"]

    async def _parked_rest(self, state: State, event: asyncio.Future[str]) -> int:
        await event
        await self._run(state)
        return state["count"]

    async def park(self) -> tuple[asyncio.Task[int], asyncio.Future[str]]:
        state: State = {"count": 0}
        await self._run(state)  # the first step
        event: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._parked_rest(state, event))
        self._parked.add(task)
        await asyncio.sleep(0)  # the task starts and parks on the future
        return task, event

    async def resume(self, handle: tuple[asyncio.Task[int], asyncio.Future[str]]) -> int:
        task, event = handle
        event.set_result("received")
        result = await task
        self._parked.discard(task)
        return result

    async def map1000(self, count: int, gate: Gate | None = None) -> int:
        items = await plan(count)
        results = await asyncio.gather(
            *(item_step(item, index, gate) for index, item in enumerate(items))
        )
        return sum(result["value"] for result in results)

    async def aclose(self) -> None:
        for task in self._parked:
            task.cancel()
        if self._parked:
            await asyncio.wait(self._parked)


@asynccontextmanager
async def session(tasks: bool = False) -> AsyncIterator[_Floor]:
    """A floor session; parked workflows left over are cancelled on exit."""
    floor = _Floor(tasks)
    try:
        yield floor
    finally:
        await floor.aclose()
