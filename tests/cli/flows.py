"""The workflows the command's test databases hold, and the databases themselves.

Durable storages keep a workflow by its import path (``cli.flows:Approval``),
so the classes live here at module level, and the command's process imports
this module under the same name (``tests/`` on its ``PYTHONPATH``).

:func:`populate` gives a storage one instance in every status, each under a
fixed id:

- ``quick-done``: a ``Quick``, completed;
- ``breaks-failed``: a ``Breaks``, failed by an exception in ``Explode``
  (no retry), its stacktrace kept;
- ``approval-timer``: an ``Approval``, waiting for ``approved`` or
  ``rejected``, with a two-day timer;
- ``signoff-waiting``: a ``Signoff``, waiting for ``signed``, no timer;
- ``approval-cancelled``: an ``Approval``, cancelled while it waited;
- ``crawl-mapping``: a ``Crawl``, running, its ``Fetch`` map at 2 of 5
  items (the runner left while the other three ran);
- ``approval-pending``: an ``Approval`` stored as a runner creates it,
  pending, never driven.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from hephaestus import (
    Context,
    Done,
    Instance,
    LocalRunner,
    Map,
    Ok,
    Record,
    Status,
    Step,
    Storage,
    WaitForEvent,
    Workflow,
)

GUARD = 10.0
"""Seconds any wait while a database is built may take before it fails."""

TWO_DAYS = 2 * 86400
PAGES = 5
"""How many items ``Crawl``'s map has; items 0 and 1 complete, the others never do."""

STATUSES = {
    "quick-done": "completed",
    "breaks-failed": "failed",
    "approval-timer": "waiting",
    "signoff-waiting": "waiting",
    "approval-cancelled": "cancelled",
    "crawl-mapping": "running",
    "approval-pending": "pending",
}
"""The status of every instance :func:`populate` stores, in the order it stores them."""

IDS = tuple(STATUSES)


class Prepare(Step):
    """Notes who asked."""

    events = ("prepared",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("prepared", {"by": context.initial.get("by", "nobody")})


class Explode(Step):
    """Raises: the failure whose stacktrace ``instances show`` prints."""

    events = ("exploded",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise RuntimeError("the warehouse is on fire")


class Plan(Step):
    """Lists the pages ``Fetch`` maps over."""

    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("planned", {"pages": [f"page-{n}" for n in range(PAGES)]})


class Fetch(Step):
    """One page: items 0 and 1 complete at once, the others until their runner stops."""

    events = ("fetched",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        if config["index"] >= 2:
            await anyio.sleep_forever()  # the runner's leaving cancels it
        return Ok("fetched", {"page": config["item"]})


class Summarize(Step):
    """Counts the pages fetched."""

    events = ("summarized",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("summarized", {"pages": len(context.steps["fetch"]["items"])})


class Quick(Workflow):
    """Prepare, then done."""

    start = Prepare
    transitions = {Prepare: {"prepared": Done}}


class Breaks(Workflow):
    """Prepare, then Explode fails the instance."""

    start = Prepare
    transitions = {Prepare: {"prepared": Explode}, Explode: {"exploded": Done}}


class Approval(Workflow):
    """Prepare, then wait two days at most for an approval or a rejection."""

    start = Prepare
    transitions = {
        Prepare: {
            "prepared": (WaitForEvent, {"events": ("approved", "rejected"), "timeout": TWO_DAYS})
        },
        WaitForEvent: {"approved": Done, "rejected": Done, "timeout": Done},
    }


class Signoff(Workflow):
    """Prepare, then wait for a signature, as long as it takes."""

    start = Prepare
    transitions = {
        Prepare: {"prepared": (WaitForEvent, {"events": ("signed",)})},
        WaitForEvent: {"signed": Done},
    }


class Crawl(Workflow):
    """Plan, then Fetch each page, then Summarize."""

    start = Plan
    transitions = {
        Plan: {"planned": Map(Fetch, items=lambda ctx: ctx.steps["plan"]["pages"])},
        Fetch: {"fetched": Summarize},
        Summarize: {"summarized": Done},
    }


async def populate(storage: Storage) -> None:
    """Store one instance in every status (see the module's docstring) in ``storage``."""
    async with LocalRunner(storage, name="cli-tests") as runner:
        await runner.run(Quick, {"by": "ana"}, id="quick-done", timeout=GUARD)
        await runner.run(Breaks, {"by": "bo"}, id="breaks-failed", timeout=GUARD)
        await runner.start(Approval, {"by": "cy", "amount": 30}, id="approval-timer")
        await runner.start(Signoff, {"by": "di"}, id="signoff-waiting")
        await runner.start(Approval, {"by": "ed"}, id="approval-cancelled")
        for waiting in ("approval-timer", "signoff-waiting", "approval-cancelled"):
            await stored(storage, waiting, lambda i: i.status is Status.WAITING)
        await runner.cancel("approval-cancelled")
        await runner.start(Crawl, {}, id="crawl-mapping")
        await stored(storage, "crawl-mapping", lambda i: _done_items(i) == 2)
    # Leaving the runner cancelled the items still in flight: the map stays at 2/5.
    pending = Instance(
        "approval-pending",
        Approval,
        Approval.version,
        Status.PENDING,
        Context({"by": "fay"}),
        started_at=time.time_ns(),
    )
    await storage.put(pending, [Record("started", pending.started_at)])


def _done_items(instance: Instance) -> int:
    return sum(state.done_count for state in instance.maps.values())


async def stored(storage: Storage, instance_id: str, check: Callable[[Instance], bool]) -> Instance:
    """The stored instance once ``check(instance)`` holds (polled; fails after ``GUARD``)."""
    with anyio.fail_after(GUARD):
        while True:
            instance = await storage.get(instance_id)
            if instance is not None and check(instance):
                return instance
            await anyio.sleep(0.01)  # polling the storage: nothing here can signal the write
