"""What the metric reporters share: one handler that records each event into instruments.

A reporter (``PrometheusReporter``, ``OTelMetricsReporter``) turns each
:class:`Metric` into an instrument of its library and gives this module a
``record(labels, value)`` function per metric. One handler, attached to every
event the metrics read, finds the metrics of the event, reads their tags from
the metadata and their measurement from the measurements, and records. A
missing tag or measurement skips that metric for that event (logged at
debug), never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from hephaestus.core.instance import Status

from . import _registry, names
from ._registry import EventName
from .metrics import _NANOSECONDS_PER, Metric

__all__ = ["BUCKETS", "Census", "Recorder", "Reporter", "buckets_of", "label", "seconds"]

_logger = structlog.get_logger("hephaestus.telemetry")

Recorder = Callable[[tuple[str, ...]], Callable[[float], None]]
"""Given one tuple of label values, the function that records a value under them
(a counter's is called with 1.0 per event)."""

_Entry = tuple[Metric, Callable[[Mapping[str, Any]], Any] | None, str | None, dict[Any, Any]]

_ids = itertools.count(1)


_STEP = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300)
_WORKFLOW = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800)
_WAIT = (0.1, 1, 10, 60, 300, 900, 3600, 14400, 86400, 259200, 604800, 2592000)

BUCKETS: Mapping[EventName, Sequence[float]] = {
    names.STEP_STOP: _STEP,
    names.WORKFLOW_STOP: _WORKFLOW,
    names.STEP_RESUME: _WAIT,
}
"""Histogram buckets (seconds) by event: steps from 0.5 ms to 5 min, workflows from 5 ms to a
week, waits for a resume from 0.1 s to 30 days. Other events get the steps' buckets."""


def buckets_of(metric: Metric) -> Sequence[float]:
    """The histogram buckets (seconds) of a distribution metric, by its event."""
    return BUCKETS.get(metric.event, _STEP)


def label(value: object) -> str:
    """A metadata value as a label: a class by its qualified name, an enum by its value."""
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None:
        return ""
    return str(value)


def seconds(metric: Metric) -> float:
    """The factor that turns ``metric``'s measurement into seconds (1 when it has no unit)."""
    return 1.0 if metric.unit is None else _NANOSECONDS_PER[metric.unit[0]] / 1e9


class Reporter:
    """Attaches one handler that records the events of ``metrics`` through ``recorders``."""

    def __init__(self, kind: str, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)
        if not self.metrics:
            raise ValueError(f"{kind} needs at least one metric, got none")
        for metric in self.metrics:
            if not isinstance(metric, Metric):
                raise TypeError(f"{kind} takes Metric records, got: {metric!r}")
        self.handler_id = f"hephaestus.{kind}.{next(_ids)}"
        # Per event: (metric, the getter of its tags' values, the measurement it reads or None
        # to count, and its recorders by tag values: what each combination records through).
        self._by_event: dict[EventName, list[_Entry]] = {}
        self._recorders: dict[Metric, Recorder] = {}

    def _record_with(self, metric: Metric, recorder: Recorder) -> None:
        """Record ``metric`` through ``recorder``: 1 per event for a counter, else its value."""
        measurement = None if metric.kind == "counter" else metric.measurement
        tags = metric.tags
        getter: Callable[[Mapping[str, Any]], Any] | None = None
        if len(tags) == 1:
            getter = operator.itemgetter(tags[0])
        elif tags:
            getter = operator.itemgetter(*tags)
        self._recorders[metric] = recorder
        entry: _Entry = (metric, getter, measurement, {})
        self._by_event.setdefault(metric.event, []).append(entry)

    def _bound(self, metric: Metric, values: Any, known: dict[Any, Any]) -> Any:
        """The recorder of ``metric`` bound to the labels of ``values``, kept for next time."""
        tags = metric.tags
        raw = (values,) if len(tags) == 1 else (values or ())
        bound = self._recorders[metric](tuple([label(value) for value in raw]))
        with contextlib.suppress(TypeError):  # an unhashable tag value: labelled each time
            known[values] = bound
        return bound

    def attach(self) -> None:
        """Start recording; ``ValueError`` if this reporter records already."""
        _registry.attach_many(self.handler_id, list(self._by_event), self._handle)

    def detach(self) -> bool:
        """Stop recording; False if it was not recording."""
        return _registry.detach(self.handler_id)

    def _handle(
        self,
        event_name: EventName,
        measurements: Mapping[str, Any],
        metadata: Mapping[str, Any],
        config: Any,
    ) -> None:
        for metric, getter, measurement, known in self._by_event[event_name]:
            try:
                values = None if getter is None else getter(metadata)
            except KeyError as missing:
                _logger.debug("metric skipped: no such tag", metric=metric.name, tag=str(missing))
                continue
            try:
                record = known.get(values)
            except TypeError:  # unhashable
                record = None
            if record is None:
                record = self._bound(metric, values, known)
            if measurement is None:  # a counter: the event counts
                record(1.0)
                continue
            value = measurements.get(measurement)
            if value is None:
                _logger.debug(
                    "metric skipped: no such measurement",
                    metric=metric.name,
                    measurement=measurement,
                )
                continue
            record(value)


class Census:
    """How many instances a storage holds by status and workflow, read when a scraper asks.

    Made on the event loop that uses ``storage``; :meth:`read` is called from
    the scraper's thread (prometheus_client's HTTP server, an OpenTelemetry
    metric reader) and runs ``storage.count`` on that loop, waiting at most
    ``timeout`` seconds. Called on the loop's own thread, where it cannot
    wait, it answers what the last read found. A read that fails or times out
    is logged and answers nothing: a scrape never raises.
    """

    def __init__(self, storage: Any, timeout: float) -> None:
        if not hasattr(storage, "count"):
            raise TypeError(f"watch needs a Storage (with count), got: {storage!r}")
        self.storage = storage
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()  # raises outside the loop: its loop is needed
        self.last: dict[tuple[str, str], int] = {}

    def read(self) -> dict[tuple[str, str], int]:
        """``(status, workflow label) -> count``; every status of a workflow seen, 0 included."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return self.last
        future = asyncio.run_coroutine_threadsafe(
            self.storage.count(by=("status", "workflow")), self.loop
        )
        try:
            counts = future.result(self.timeout)
        except Exception as exc:  # closed loop, storage error, timeout: no figures this time
            future.cancel()
            _logger.warning("instances could not be counted", reason=repr(exc))
            return {}
        found: dict[tuple[str, str], int] = {}
        for (status, workflow), count in counts.items():
            name = str(workflow).rpartition(":")[2]  # the import path's qualified name
            for each in Status:
                found.setdefault((each.value, name), 0)
            found[status, name] += count
        self.last = found
        return found
