"""Workflows of the distributed benchmark, module-level: the worker processes import them."""

from __future__ import annotations

import time
from typing import Any

import anyio

from hephaestus import Context, Done, Instance, Map, Ok, Step, Workflow

IO_SECONDS = 0.02
IO_STEPS = 5
LINEAR_STEPS = 10


def _step(name: str, io: bool, n: int) -> type[Step]:
    async def execute(self: Step, instance: Instance, config: Any, context: Context) -> Ok:
        if io:
            await anyio.sleep(IO_SECONDS)  # a database call, an HTTP request
        return Ok("next", {"count": n + 1})

    cls = type(name, (Step,), {"events": ("next",), "execute": execute, "__module__": __name__})
    cls.__qualname__ = name
    globals()[name] = cls
    return cls


IOS = [_step(f"Io{n}", True, n) for n in range(IO_STEPS)]
NOOPS = [_step(f"Noop{n}", False, n) for n in range(LINEAR_STEPS)]


def _chain(steps: list[type[Step]]) -> dict[type[Step], dict[str, Any]]:
    return {s: {"next": steps[i + 1] if i + 1 < len(steps) else Done} for i, s in enumerate(steps)}


class IoFlow(Workflow):
    """Five I/O-bound steps in a row, each awaiting 20 ms."""

    start = IOS[0]
    transitions = _chain(IOS)


class Linear10(Workflow):
    """Ten no-op steps in a row: what the per-step overhead is measured on."""

    start = NOOPS[0]
    transitions = _chain(NOOPS)


# ---------------------------------------------------------------------- maps, spread or not

MAP_ITEMS = 200
"""Items of the trivial maps."""
BURN_ITEMS = 100
"""Items of the CPU-bound maps."""
BURN_SECONDS = 0.05


def _items(context: Context) -> list[int]:
    return list(range(context.initial["items"]))


def _burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (pure Python: it holds the GIL)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class Plan(Step):
    events = ("ready",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("ready")


class Tiny(Step):
    """A trivial item."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"n": config["item"]})


class TinySpread(Tiny):
    spread = True


class Burn(Step):
    """A CPU-bound item: 50 ms of pure-Python CPU in a thread (``blocking``)."""

    events = ("done",)
    blocking = True

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _burn(BURN_SECONDS)
        return Ok("done", {"n": config["item"]})


class BurnSpread(Burn):
    spread = True


def _mapped(step: type[Step]) -> dict[type[Step], dict[str, Any]]:
    return {Plan: {"ready": Map(step, items=_items)}, step: {"done": Done}}


class TinyMap(Workflow):
    start = Plan
    transitions = _mapped(Tiny)


class TinySpreadMap(Workflow):
    start = Plan
    transitions = _mapped(TinySpread)


class BurnMap(Workflow):
    start = Plan
    transitions = _mapped(Burn)


class BurnSpreadMap(Workflow):
    start = Plan
    transitions = _mapped(BurnSpread)
