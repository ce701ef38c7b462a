"""The workflow of the map crash tests, imported by the killed process and by the one recovering.

``MapCrashFlow`` plans ``n`` items, maps ``Item`` over them (at most
``MAX_CONCURRENCY`` at once) and gathers their results. Every step appends
``instance step index start|end phase pid`` to the file named by
``HEPHAESTUS_CRASH_LOG`` (one ``os.write`` per line, O_APPEND: lines never
interleave); ``phase`` is ``HEPHAESTUS_CRASH_PHASE`` (``start`` or
``recover``) and ``index`` is ``-`` for the steps that are not items. So the
test can count how often each item ran, and in which process.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from hephaestus import Context, Done, Instance, Map, Ok, Step, Workflow

MAX_CONCURRENCY = 20
ITEM_SECONDS = 0.005

_fd: int | None = None


def _write(line: str) -> None:
    global _fd  # noqa: PLW0603  # one descriptor per process, opened on first use
    if _fd is None:
        _fd = os.open(os.environ["HEPHAESTUS_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    phase = os.environ.get("HEPHAESTUS_CRASH_PHASE", "-")
    os.write(_fd, f"{line} {phase} {os.getpid()}\n".encode())


def _log(instance: Instance, step: str, index: int | None, what: str) -> None:
    _write(f"{instance.id} {step} {'-' if index is None else index} {what}")


def mark_started() -> None:
    """Log that every instance has been started (and stored)."""
    _write("- - - started")


def item_of(instance_id: str, index: int) -> str:
    """Item ``index`` of the list that ``Plan`` computes for ``instance_id``."""
    return f"{instance_id}/{index}"


def expected_item(instance_id: str, index: int) -> dict[str, Any]:
    """What item ``index`` of ``instance_id`` returns as its updates."""
    return {"index": index, "value": f"{item_of(instance_id, index)}*2"}


def expected_gather(count: int) -> dict[str, Any]:
    """What ``Gather`` stores once the ``count`` items are in, each once, in item order."""
    return {"count": count, "in_order": True}


class Plan(Step):
    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _log(instance, "plan", None, "start")
        items = [item_of(instance.id, i) for i in range(context.initial["n"])]
        _log(instance, "plan", None, "end")
        return Ok("planned", {"items": items})


class Item(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        index = config["index"]
        _log(instance, "item", index, "start")
        await anyio.sleep(ITEM_SECONDS)
        _log(instance, "item", index, "end")
        return Ok("done", {"index": index, "value": f"{config['item']}*2"})


class Gather(Step):
    events = ("gathered",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _log(instance, "gather", None, "start")
        items = context.steps["item"]["items"]
        in_order = [item["index"] for item in items] == list(range(len(items)))
        _log(instance, "gather", None, "end")
        return Ok("gathered", {"count": len(items), "in_order": in_order})


class MapCrashFlow(Workflow):
    """Plan ``n`` items, run ``Item`` once per item (``MAX_CONCURRENCY`` at once), gather."""

    start = Plan
    transitions = {  # a workflow's definition
        Plan: {
            "planned": Map(
                Item,
                items=lambda context: context.steps["plan"]["items"],
                max_concurrency=MAX_CONCURRENCY,
            )
        },
        Item: {"done": Gather},
        Gather: {"gathered": Done},
    }
