"""The built-in steps every workflow may use."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import structlog

from hephaestus._show import shown
from hephaestus.core.durations import seconds
from hephaestus.core.instance import Context, Instance
from hephaestus.core.step import Async, Config, Ok, Step

__all__ = ["Debug", "Done", "Wait", "WaitForEvent"]

_UNITS: Mapping[str, float] = {
    "millisecond": 0.001,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
}


class Done(Step):
    """The end of every path: a workflow completes when ``Done`` has run."""

    events = ("done",)
    ends_workflow: ClassVar[bool] = True

    def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        return Ok("done")


class Wait(Step):
    """Parks the instance for a while, then resumes itself with ``"timeout"``.

    Config: ``{"duration": 2, "unit": "second"}`` (units: millisecond, second,
    minute, hour, day; plural forms too) or ``{"seconds": 2.5}``.
    """

    events = ("timeout",)

    def execute(self, instance: Instance, config: Config, context: Context) -> Async:
        return Async()

    @classmethod
    def delay(cls, config: Config) -> float:
        """The wait in seconds; raises ValueError for a missing or malformed config."""
        if not config:
            raise ValueError(
                "Wait needs a config: {'duration': n, 'unit': 'second'} or {'seconds': n}"
            )
        if "seconds" in config:
            _only(config, ("seconds",), "Wait")
            return seconds(config["seconds"], "Wait seconds")
        _only(config, ("duration", "unit"), "Wait")
        duration = config.get("duration")
        unit = config.get("unit", "second")
        factor = _UNITS.get(unit.removesuffix("s")) if isinstance(unit, str) else None
        if factor is None:
            raise ValueError(f"Wait unit must be one of {', '.join(_UNITS)}, got: {shown(unit)}")
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise ValueError(f"Wait duration must be a number, got: {shown(duration)}")
        try:
            total = duration * factor
        except OverflowError:  # an int too large for a float
            total = math.inf
        return seconds(total, f"Wait of {shown(duration)} {unit}")

    @classmethod
    def check_config(cls, config: Config) -> None:
        cls.delay(config)

    @classmethod
    def timer(cls, config: Config) -> float:
        return cls.delay(config)


class WaitForEvent(Step):
    """Parks the instance until a resume (or a message) gives one of its events.

    Config (optional): ``{"events": ("approved", "rejected"), "timeout":
    172800}``. ``events`` are the events it accepts (default:
    ``("received",)``); with a ``timeout`` (seconds) it also declares
    ``"timeout"``, and resumes itself with it when nothing arrived in time.
    Its declared events follow its config, so the definition checks ask
    for a transition on each of them.
    """

    events = ("received",)

    def execute(self, instance: Instance, config: Config, context: Context) -> Async:
        return Async()

    @classmethod
    def accepted(cls, config: Config) -> tuple[str, ...]:
        """The events it accepts from outside under ``config``."""
        if not config or config.get("events") is None:
            return cls.events
        events = config["events"]
        if (
            isinstance(events, str)
            or not isinstance(events, tuple | list)
            or not events
            or not all(isinstance(e, str) and e for e in events)
        ):
            raise ValueError(
                f"WaitForEvent events must be a non-empty list of event names, got: {shown(events)}"
            )
        return tuple(dict.fromkeys(events))

    @classmethod
    def declared_events(cls, config: Config) -> tuple[str, ...]:
        accepted = cls.accepted(config)
        if cls.timer(config) is not None and "timeout" not in accepted:
            return (*accepted, "timeout")
        return accepted

    @classmethod
    def check_config(cls, config: Config) -> None:
        cls.declared_events(config)

    @classmethod
    def timer(cls, config: Config) -> float | None:
        if not config:
            return None
        _only(config, ("events", "timeout"), "WaitForEvent")
        if config.get("timeout") is None:
            return None
        return seconds(config["timeout"], "WaitForEvent timeout")


def _only(config: Mapping[str, Any], keys: tuple[str, ...], step: str) -> None:
    """Refuse a config key ``step`` does not know (a typo would otherwise pass unnoticed)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{step} config must be a dict, got: {shown(config)}")
    unknown = [key for key in config if key not in keys]
    if unknown:
        raise ValueError(
            f"{step} config has unknown key {shown(unknown[0])}; it takes "
            f"{' and '.join(repr(k) for k in keys)}"
        )


class Debug(Step):
    """Logs the context and the execution history at debug level, then completes."""

    events = ("completed",)

    def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        history: list[dict[str, Any]] = [
            {"step": e.step.__qualname__, "event": e.event, "timestamp": e.timestamp}
            for e in instance.execution_history
        ]
        structlog.get_logger("hephaestus.steps").debug(
            f"[{instance.id}] Debug",
            instance_id=instance.id,
            workflow=instance.workflow.__qualname__,
            initial=dict(context.initial),
            steps={k: dict(v) for k, v in context.steps.items()},
            history=history,
        )
        return Ok("completed")
