"""The last telemetry event of an instance, the same for every runner.

A failed instance is also logged, one ``error`` line through
``structlog.get_logger("hephaestus")``, unless the ``LogHandler`` writes its
own line for ``workflow:exception``: a failure is never silent, and never
logged twice. A completed instance logs nothing.
"""

from __future__ import annotations

from typing import Any

import structlog

from hephaestus import telemetry as emit
from hephaestus.core.instance import Failure, Instance, Status
from hephaestus.core.step import Step
from hephaestus.telemetry import _registry, names
from hephaestus.telemetry.log_handler import LogHandler

__all__ = ["announce_end"]

_logger = structlog.get_logger("hephaestus")

_stop_slot = _registry._slot(names.WORKFLOW_STOP)
_exception_slot = _registry._slot(names.WORKFLOW_EXCEPTION)


def announce_end(
    instance: Instance,
    advances: int,
    stacktrace: list[Any] | None,
    runner: type,
    clock: emit.EventClock | None = None,
) -> None:
    """``workflow:stop`` for a completed instance, ``workflow:exception`` for a failed one.

    A cancelled instance emits nothing: none of the 11 events describes it. A
    failed one is logged too when the ``LogHandler`` does not log it.
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
        if not _logged(_exception_slot[0]):
            _log_failure(instance, error)


def _logged(handlers: _registry._Handlers) -> bool:
    """Whether the LogHandler is among ``workflow:exception``'s handlers."""
    return any(handler.id == LogHandler.HANDLER_ID for _, _, handler in handlers)


def _log_failure(instance: Instance, error: Failure) -> None:
    """The line the LogHandler would write for ``workflow:exception``, and the failed item."""
    step = error.step.__qualname__
    if error.item is not None:
        step = f"{step} (item {error.item})"
    _logger.error(
        f"[{instance.id}] Workflow {instance.workflow.__qualname__} failed at {step}: "
        f"{error.explanation} ({error.kind})",
        instance_id=instance.id,
        workflow=instance.workflow.__qualname__,
        step=error.step.__qualname__,
        **({} if error.item is None else {"item": error.item}),
        kind=error.kind,
    )


def _qualname(step: type[Step]) -> str:
    return step.__qualname__
