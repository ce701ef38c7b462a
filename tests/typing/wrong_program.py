"""A user's program with mistakes a type checker must catch: one on each line marked ``# wrong``.

tests/test_typing.py checks that mypy --strict and pyright report an error on every
marked line and on no other: were hephaestus untyped, or not found, this would fail.
"""

from __future__ import annotations

from typing import Any

from hephaestus import Config, Context, Instance, LocalRunner, Ok, Result, Step, telemetry
from hephaestus.telemetry import EventName, Measurements, Metadata


class TakesADict(Step):
    """The natural mistake: a config is a read-only Mapping, or None, not a dict."""

    events = ("ok",)

    def execute(self, instance: Instance, config: dict[str, Any], context: Context) -> Ok:  # wrong
        return Ok("ok", dict(config))


class ReturnsAString(Step):
    events = ("ok",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Result:
        return "ok"  # wrong


class NamesANumber(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        return Ok(200)  # wrong


def writes_its_measurements(
    event_name: EventName, measurements: Measurements, metadata: Metadata, config: Any
) -> None:
    measurements["seen"] = True  # wrong


def takes_two(event_name: EventName, measurements: Measurements) -> None:
    del event_name, measurements


def attach_them() -> None:
    telemetry.attach("writer", telemetry.step_stop_event(), writes_its_measurements)
    telemetry.attach_many("pair", telemetry.events(), takes_two)  # wrong


async def resume_with_a_number(runner: LocalRunner, instance_id: str) -> None:
    await runner.resume(instance_id, 42)  # wrong
