"""Workflows of the distributed benchmark, module-level: the worker processes import them."""

from __future__ import annotations

from typing import Any

import anyio

from hephaestus import Context, Done, Instance, Ok, Step, Workflow

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
