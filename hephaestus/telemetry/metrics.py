"""Metric definitions for Hephaestus events, as data for any reporter.

``metrics()`` returns nine ``Metric`` records; ``metrics("workflow")``,
``metrics("step")`` and ``metrics("engine")`` return one scope. A reporter
(Prometheus, OpenTelemetry, StatsD) turns each record into an instrument and
attaches a handler to ``metric.event`` that records
``measurements[metric.measurement]`` (or counts the event when ``measurement``
is None) under the label values ``metadata[tag]`` for each of ``metric.tags``.

``kind`` is ``"counter"`` (count the events), ``"summary"``,
``"distribution"`` (a histogram of the measurement) or ``"last_value"`` (a
gauge). ``unit`` is ``(from, to)``, e.g. ``("nanosecond", "millisecond")``:
the measurement comes in nanoseconds and is reported in milliseconds;
``Metric.convert`` does the conversion.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from . import names
from ._registry import EventName

__all__ = ["Metric", "MetricKind", "Scope", "metrics"]

MetricKind: TypeAlias = Literal["counter", "summary", "distribution", "last_value"]
"""How a reporter aggregates a metric."""

Scope: TypeAlias = Literal["workflow", "step", "engine"]
"""The groups of metrics ``metrics(scope)`` selects from."""

_NANOSECONDS_PER: dict[str, int] = {
    "nanosecond": 1,
    "microsecond": 1_000,
    "millisecond": 1_000_000,
    "second": 1_000_000_000,
}


@attrs.frozen
class Metric:
    """One metric: its name, how it aggregates, the event and measurement it reads, its tags."""

    name: str
    kind: MetricKind
    event: EventName
    measurement: str | None = None
    tags: tuple[str, ...] = ()
    unit: tuple[str, str] | None = None

    def convert(self, value: float) -> float:
        """``value`` of ``measurement`` expressed in the reported unit (unchanged without unit)."""
        if self.unit is None:
            return value
        source, target = self.unit
        return value * _NANOSECONDS_PER[source] / _NANOSECONDS_PER[target]


_TO_MS = ("nanosecond", "millisecond")

_WORKFLOW: tuple[Metric, ...] = (
    Metric(
        "hephaestus.workflow.start.count",
        "counter",
        names.WORKFLOW_START,
        "system_time",
        ("workflow",),
    ),
    Metric(
        "hephaestus.workflow.stop.count", "counter", names.WORKFLOW_STOP, "duration", ("workflow",)
    ),
    Metric(
        "hephaestus.workflow.exception.count",
        "counter",
        names.WORKFLOW_EXCEPTION,
        None,
        ("workflow", "failed_step"),
    ),
    Metric(
        "hephaestus.workflow.stop.duration",
        "distribution",
        names.WORKFLOW_STOP,
        "duration",
        ("workflow",),
        _TO_MS,
    ),
)

_STEP: tuple[Metric, ...] = (
    Metric(
        "hephaestus.step.stop.duration",
        "distribution",
        names.STEP_STOP,
        "duration",
        ("workflow", "step"),
        _TO_MS,
    ),
    Metric(
        "hephaestus.step.exception.count",
        "counter",
        names.STEP_EXCEPTION,
        None,
        ("workflow", "step", "kind"),
    ),
    Metric("hephaestus.step.async.count", "counter", names.STEP_ASYNC, None, ("workflow", "step")),
    Metric(
        "hephaestus.step.resume.wait_duration",
        "distribution",
        names.STEP_RESUME,
        "wait_duration",
        ("workflow", "step", "source"),
        _TO_MS,
    ),
)

_ENGINE: tuple[Metric, ...] = (
    Metric(
        "hephaestus.engine.advance.active_steps_count",
        "last_value",
        names.ENGINE_ADVANCE,
        "active_steps_count",
        ("workflow",),
    ),
)

_SCOPES: dict[str, tuple[Metric, ...]] = {"workflow": _WORKFLOW, "step": _STEP, "engine": _ENGINE}


def metrics(scope: Scope | None = None) -> list[Metric]:
    """The metric definitions of ``scope`` (``"workflow"``, ``"step"``, ``"engine"``), or all nine.

    Raises ``ValueError`` naming an unknown scope.
    """
    if scope is None:
        return [*_WORKFLOW, *_STEP, *_ENGINE]
    selected = _SCOPES.get(scope)
    if selected is None:
        raise ValueError(
            f"unknown metrics scope {scope!r}; expected 'workflow', 'step', 'engine' or None"
        )
    return list(selected)
