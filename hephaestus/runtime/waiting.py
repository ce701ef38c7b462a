"""What every runner checks before a resume or a scheduled resume."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from hephaestus._show import shown
from hephaestus.core.durations import seconds
from hephaestus.core.instance import Instance
from hephaestus.core.step import Step
from hephaestus.exceptions import AmbiguousResume, NotWaiting

__all__ = ["check_data", "check_delay", "check_event", "check_step", "waiting_step"]


def check_delay(delay: object) -> float:
    """``delay`` as seconds; ``ValueError`` unless it is a finite number from 0 to 100 years."""
    return seconds(delay, "delay")


def check_data(data: object) -> dict[str, Any] | None:
    """A copy of the data sent with an event: a dict with string keys, or None.

    Whether a durable storage can keep it is checked when it is stored.
    """
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise TypeError(f"the data sent with an event must be a dict or None, got: {shown(data)}")
    for key in data:
        if not isinstance(key, str):
            raise TypeError(
                f"the keys of the data sent with an event must be strings, got: {shown(key)}"
            )
    return dict(data)


def check_event(event: object) -> str:
    """``event`` if it is a string; ``TypeError`` naming it otherwise."""
    if not isinstance(event, str):
        raise TypeError(f"an event must be a string, got: {shown(event)}")
    return event


def check_step(step: object) -> None:
    """``TypeError`` unless ``step`` is a Step class, a step key or None."""
    if not (
        step is None or isinstance(step, str) or (isinstance(step, type) and issubclass(step, Step))
    ):
        raise TypeError(f"step must be a Step class, a step key or None, got: {shown(step)}")


def waiting_step(
    instance: Instance, waiting: Collection[type[Step]], step: type[Step] | str | None
) -> type[Step]:
    """The step a resume is for: ``step`` (a class or a step key), or the only one waiting.

    Raises ``NotWaiting`` when nothing (or not that step) waits, and
    ``AmbiguousResume`` when several steps wait and ``step`` is None.
    """
    if step is None:
        if not waiting:
            raise NotWaiting(f"instance {instance.id!r} is {instance.status}, not waiting")
        if len(waiting) > 1:
            names = ", ".join(sorted(s.__qualname__ for s in waiting))
            raise AmbiguousResume(
                f"instance {instance.id!r} has several waiting steps ({names}): "
                f"say which with step="
            )
        return next(iter(waiting))
    if isinstance(step, str):
        found = instance.workflow.definition.by_key.get(step)
        if found is None:
            raise NotWaiting(
                f"instance {instance.id!r}: workflow {instance.workflow.__qualname__} "
                f"has no step with key {step!r}"
            )
        step = found
    else:
        check_step(step)
    if step not in waiting:
        raise NotWaiting(
            f"instance {instance.id!r} ({instance.status}): step {step.__qualname__} is not waiting"
        )
    return step
