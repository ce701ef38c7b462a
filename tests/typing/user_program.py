"""A user's program, fully annotated: it must type-check under mypy --strict and pyright.

tests/test_typing.py copies it out of the repository and checks it against the
installed package, as a user's project would be checked. Nothing here silences
a checker.
"""

from __future__ import annotations

from typing import Any

import anyio

from hephaestus import (
    Async,
    Config,
    Context,
    Done,
    Error,
    Instance,
    LocalRunner,
    Map,
    Ok,
    Result,
    Retry,
    Status,
    Step,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.telemetry import EventName, Measurements, Metadata
from hephaestus.testing import VirtualClock, until_parked


class Validate(Step):
    """A plain ``def`` that returns one of two results."""

    events = ("valid",)

    def execute(self, instance: Instance, config: Config, context: Context) -> Ok | Error:
        items: list[str] = context.initial["items"]
        if not items:
            return Error("no items")
        return Ok("valid", {"count": len(items)}, metadata={"checked_by": instance.id})


class Pack(Step):
    """An ``async def`` run once per item of a Map; its config carries the item."""

    events = ("packed",)
    retry = Retry(max_attempts=2, backoff="constant", base=0.01)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        item = config["item"] if config else None
        return Ok("packed", {"item": item})


class Approve(Step):
    """Parks until resumed: ``Async``, annotated with the general ``Result``."""

    events = ("approved", "rejected")

    async def execute(self, instance: Instance, config: Config, context: Context) -> Result:
        return Async()


class Confirm(WaitForEvent):
    """A built-in step, configured by its transition."""


def items_of(context: Context) -> list[str]:
    items: list[str] = context.initial["items"]
    return items


class Orders(Workflow):
    start = Validate
    transitions = {
        Validate: {"valid": Map(Pack, items=items_of, max_concurrency=2)},
        Pack: {"packed": Approve},
        Approve: {"approved": (Confirm, {"events": ("confirmed",)}), "rejected": Done},
        Confirm: {"confirmed": Done},
    }


stops: list[float] = []


def on_stop(
    event_name: EventName, measurements: Measurements, metadata: Metadata, config: Any
) -> None:
    stops.append(measurements["duration"])


def on_anything(
    event_name: EventName, measurements: Measurements, metadata: Metadata, config: Any
) -> None:
    del event_name, measurements, metadata, config


async def main() -> Status:
    telemetry.attach("stops", telemetry.step_stop_event(), on_stop)
    telemetry.attach_many("all", telemetry.events(), on_anything, config={"verbose": False})
    clock = VirtualClock()
    try:
        async with LocalRunner(clock=clock, max_concurrency=4) as runner:
            instance_id: str = await runner.start(Orders, {"items": ["mug", "tea"]})
            parked: Instance = await until_parked(runner, instance_id, Approve)
            await runner.resume(parked.id, "approved", step=Approve)
            await until_parked(runner, instance_id, "confirm")
            await runner.resume(instance_id, "confirmed", {"by": "ada"})
            done: Instance = await runner.wait(instance_id, timeout=10)
            failed: Instance = await runner.run(Orders, {"items": []})
            assert failed.status is Status.FAILED
            return done.status
    finally:
        telemetry.detach("stops")
        telemetry.detach("all")


if __name__ == "__main__":
    print(anyio.run(main))
