"""The last telemetry event of an instance, the same for every runner."""

from __future__ import annotations

from typing import Any

from hephaestus import telemetry as emit
from hephaestus.core.instance import Instance, Status
from hephaestus.core.step import Step
from hephaestus.telemetry import _registry, names

__all__ = ["announce_end"]

_stop_slot = _registry._slot(names.WORKFLOW_STOP)


def announce_end(
    instance: Instance,
    advances: int,
    stacktrace: list[Any] | None,
    runner: type,
    clock: emit.Clock | None = None,
) -> None:
    """``workflow:stop`` for a completed instance, ``workflow:exception`` for a failed one.

    A cancelled instance emits nothing: none of the 11 events describes it.
    """
    if instance.status is Status.COMPLETED:
        if _stop_slot[0]:  # sorting the completed steps is work nobody may want
            emit.workflow_stop(
                instance,
                {
                    "step_count": len(instance.completed_steps),
                    "advance_count": advances,
                    "completed_steps": sorted(instance.completed_steps, key=_qualname),
                    "runner": runner,
                },
                clock=clock,
            )
    elif instance.status is Status.FAILED and instance.error is not None:
        error = instance.error
        emit.workflow_exception(
            instance,
            error.kind,
            error.reason,
            stacktrace,
            {
                "failed_step": error.step,
                "step_count": len(instance.completed_steps),
                "advance_count": advances,
                "runner": runner,
            },
            clock=clock,
        )


def _qualname(step: type[Step]) -> str:
    return step.__qualname__
