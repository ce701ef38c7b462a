"""What every runner checks before a resume or a scheduled resume."""

from __future__ import annotations

import math
from collections.abc import Collection

from hephaestus.core.instance import Instance
from hephaestus.core.step import Step
from hephaestus.exceptions import AmbiguousResume, NotWaiting

__all__ = ["check_delay", "waiting_step"]


def check_delay(delay: object) -> float:
    """``delay`` as seconds; ``ValueError`` unless it is a finite number >= 0."""
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not math.isfinite(delay)
        or delay < 0
    ):
        raise ValueError(f"delay must be a finite number of seconds >= 0, got: {delay!r}")
    return float(delay)


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
    if step not in waiting:
        raise NotWaiting(
            f"instance {instance.id!r} ({instance.status}): step {step.__qualname__} is not waiting"
        )
    return step
