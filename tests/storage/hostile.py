"""Workflows and values for the hostile-input and fault tests (module level: durable storages
import steps by path).

A step cannot find a hostile value in its context (the context must be
stored first), so the tests hand values to the steps through ``GIVEN``,
keyed by a token the context carries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hephaestus import Async, Context, Done, Instance, Ok, Step, WaitForEvent, Workflow

GIVEN: dict[str, Any] = {}
"""What ``Returns`` returns as updates and ``Raises`` raises, by the context's ``"token"``."""


class Returns(Step):
    """Returns ``GIVEN[token]`` as its updates."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"value": GIVEN[context.initial["token"]]})


class Raises(Step):
    """Raises ``GIVEN[token]``."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise GIVEN[context.initial["token"]]


class Parks(Step):
    """Parks until resumed with "go" (or "timeout", by a scheduled resume)."""

    events = ("go", "timeout")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class First(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"first": True})


class CancelledByOthers(Step):
    """Awaits a future that something else cancels: ``CancelledError`` without a cancel."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.cancel)
        await future
        return Ok("done")


class ReturnsFlow(Workflow):
    start = First
    transitions = {First: {"done": Returns}, Returns: {"done": Done}}


class RaisesFlow(Workflow):
    start = Raises
    transitions = {Raises: {"done": Done}}


class ParksFlow(Workflow):
    start = Parks
    transitions = {Parks: {"go": Done, "timeout": Done}}


class WaitsFlow(Workflow):
    """Waits for an event, or an hour."""

    start = (WaitForEvent, {"timeout": 3600})
    transitions = {WaitForEvent: {"received": Done, "timeout": Done}}


class CancelledFlow(Workflow):
    start = CancelledByOthers
    transitions = {CancelledByOthers: {"done": Done}}


class PlainFlow(Workflow):
    start = First
    transitions = {First: {"done": Done}}


def deep(levels: int) -> Any:
    """A list nested ``levels`` deep."""
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


class BadStr(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")
