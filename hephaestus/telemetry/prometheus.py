"""Prometheus metrics from the telemetry events (extra ``prometheus``: ``prometheus_client``).

```python
from prometheus_client import start_http_server
from hephaestus.telemetry.metrics import metrics
from hephaestus.telemetry.prometheus import PrometheusReporter

reporter = PrometheusReporter(metrics())   # the default registry, no namespace
reporter.attach()
start_http_server(9464, addr="127.0.0.1")  # or your app's /metrics
```

Each :class:`~hephaestus.telemetry.metrics.Metric` becomes one instrument,
named after it with ``_`` for ``.`` and the conventions of Prometheus:

- a counter counts its events: ``hephaestus.workflow.start.count`` is
  ``hephaestus_workflow_start_total``;
- a distribution is a histogram in seconds: ``hephaestus.step.stop.duration``
  is ``hephaestus_step_stop_duration_seconds`` (``_bucket``, ``_sum``,
  ``_count``), with buckets that suit its event (``BUCKETS``);
- a last value is a gauge, a summary a summary.

Labels are the metric's tags: a class by its qualified name (``workflow``,
``step``), an enum by its value. ``namespace`` prefixes every name.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.metrics_core import (
    Metric as Family,
)
from prometheus_client.registry import Collector

from ._reporting import BUCKETS, Census, Recorder, Reporter, buckets_of, seconds
from .metrics import Metric

__all__ = ["BUCKETS", "PrometheusReporter"]


def _name(metric: Metric) -> str:
    name = metric.name.replace(".", "_")
    if metric.kind == "counter":
        return name.removesuffix("_count")  # prometheus_client adds _total
    if metric.kind in ("distribution", "summary") and metric.unit is not None:
        return f"{name}_seconds"
    return name


class _Collector(Collector):
    """One metric's values, by label values, for ``registry`` to collect when scraped.

    The values are plain numbers, updated on the event loop without a lock
    (``prometheus_client``'s instruments take a lock per update: most of an
    event's cost); a scrape on another thread reads them as they are.
    """

    def __init__(
        self, name: str, about: str, kind: str, tags: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name = name.removesuffix("_total") if kind == "counter" else name
        self.about = about
        self.kind = kind
        self.tags = list(tags)
        self.bounds = bounds
        # By label values: [value] for a counter or a gauge; [sum, count, *buckets] else.
        self.values: dict[tuple[str, ...], list[float]] = {}

    def recorder(self, scale: float) -> Recorder:
        """What records this metric's events: per label values, a function of the value."""
        values, kind, bounds = self.values, self.kind, self.bounds
        size = 2 + len(bounds) + 1 if kind == "distribution" else 2

        def bind(labels: tuple[str, ...]) -> Callable[[float], None]:
            if kind in ("counter", "last_value"):
                cell = values.setdefault(labels, [0.0])
                if kind == "counter":

                    def count(value: float) -> None:
                        cell[0] += value

                    return count

                def set_(value: float) -> None:
                    cell[0] = value * scale

                return set_
            cell = values.setdefault(labels, [0.0] * size)

            def observe(value: float) -> None:
                seconds = value * scale
                cell[0] += seconds
                cell[1] += 1
                if bounds:
                    cell[2 + bisect.bisect_left(bounds, seconds)] += 1

            return observe

        return bind

    def collect(self) -> Iterable[Family]:
        family: Any
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, self.about, labels=self.tags)
            for labels, (value,) in list(self.values.items()):
                family.add_metric(labels, value)
        elif self.kind == "last_value":
            family = GaugeMetricFamily(self.name, self.about, labels=self.tags)
            for labels, (value,) in list(self.values.items()):
                family.add_metric(labels, value)
        elif self.kind == "summary":
            family = SummaryMetricFamily(self.name, self.about, labels=self.tags)
            for labels, (total, count, *_) in list(self.values.items()):
                family.add_metric(labels, count, total)
        else:
            family = HistogramMetricFamily(self.name, self.about, labels=self.tags)
            for labels, (total, _, *counts) in list(self.values.items()):
                cumulative, buckets = 0.0, []
                for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                    cumulative += count
                    buckets.append(
                        ("+Inf" if bound == math.inf else repr(float(bound)), cumulative)
                    )
                family.add_metric(labels, buckets, total)
        yield family


class _Instances(Collector):
    """The gauge of instances by status and workflow: counted in the storage at each scrape."""

    def __init__(self, name: str, census: Census) -> None:
        self.name = name
        self.census = census

    def collect(self) -> Iterable[Family]:
        family = GaugeMetricFamily(
            self.name, "instances in the storage", labels=["status", "workflow"]
        )
        for (status, workflow), count in sorted(self.census.read().items()):
            family.add_metric([status, workflow], count)
        yield family


class PrometheusReporter(Reporter):
    """Records ``metrics`` into ``prometheus_client`` instruments of ``registry``.

    ``buckets`` overrides the histogram buckets (seconds) of metrics by name.
    The instruments are registered at once; :meth:`attach` starts recording,
    :meth:`close` detaches and unregisters them. Also a context manager.
    """

    def __init__(
        self,
        metrics: Iterable[Metric],
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "",
        buckets: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        super().__init__("prometheus", metrics)
        self.registry = registry
        self.namespace = namespace
        self._collectors: list[Any] = []
        chosen = dict(buckets or {})
        try:
            for metric in self.metrics:
                self._record_with(metric, self._instrument(metric, chosen.get(metric.name)))
        except BaseException:
            self._unregister()
            raise

    def _instrument(self, metric: Metric, buckets: Sequence[float] | None) -> Recorder:
        name = _name(metric)
        if self.namespace:
            name = f"{self.namespace}_{name}"
        about = f"{metric.kind} of {'/'.join(metric.event)}"
        bounds = tuple(buckets or buckets_of(metric)) if metric.kind == "distribution" else ()
        collector = _Collector(name, about, metric.kind, metric.tags, bounds)
        if self.registry is not None:
            self.registry.register(collector)
        self._collectors.append(collector)
        return collector.recorder(1.0 if metric.kind == "counter" else seconds(metric))

    def watch(self, storage: Any, *, timeout: float = 5.0) -> None:
        """Add the gauge ``hephaestus_instances{status, workflow}``, counted in ``storage``.

        Call it on the event loop that uses ``storage``: each scrape counts
        the instances there (``Storage.count``, no instance is loaded),
        waiting at most ``timeout`` seconds. Every status of a workflow that
        has instances is present, 0 included. :meth:`close` removes it.
        """
        name = (
            f"{self.namespace}_hephaestus_instances" if self.namespace else "hephaestus_instances"
        )
        collector = _Instances(name, Census(storage, timeout))
        if self.registry is not None:
            self.registry.register(collector)
        self._collectors.append(collector)

    def _unregister(self) -> None:
        if self.registry is not None:
            for collector in self._collectors:
                self.registry.unregister(collector)
        self._collectors = []

    def close(self) -> None:
        """Stop recording and unregister the instruments (their values are gone)."""
        self.detach()
        self._unregister()

    def __enter__(self) -> PrometheusReporter:
        self.attach()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
