"""OpenTelemetry metrics from the telemetry events (extra ``otel``: ``opentelemetry-api``).

```python
from hephaestus.telemetry.metrics import metrics
from hephaestus.telemetry.otel_metrics import OTelMetricsReporter

reporter = OTelMetricsReporter(metrics())  # the global meter provider
reporter.attach()
```

Each :class:`~hephaestus.telemetry.metrics.Metric` becomes one instrument of
the meter ``hephaestus``, under the metric's own name: a counter counts its
events, a distribution is a histogram in seconds (unit ``s``, with the
Prometheus reporter's buckets as advice), a last value a gauge. The tags are
attributes, valued as the Prometheus labels are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics as otel

from ._reporting import Census, Recorder, Reporter, buckets_of, seconds
from .metrics import Metric

__all__ = ["OTelMetricsReporter"]


class OTelMetricsReporter(Reporter):
    """Records ``metrics`` into instruments of ``meter_provider`` (the global one by default)."""

    def __init__(
        self, metrics: Iterable[Metric], *, meter_provider: otel.MeterProvider | None = None
    ) -> None:
        super().__init__("otel_metrics", metrics)
        provider = meter_provider or otel.get_meter_provider()
        self.meter = provider.get_meter("hephaestus")
        for metric in self.metrics:
            self._record_with(metric, self._instrument(metric))

    def _instrument(self, metric: Metric) -> Recorder:
        about = f"{metric.kind} of {'/'.join(metric.event)}"
        tags = metric.tags
        if metric.kind == "counter":
            counter = self.meter.create_counter(metric.name, "1", about)

            def bind_counter(labels: tuple[str, ...]) -> Callable[[float], None]:
                attributes = dict(zip(tags, labels, strict=True))
                return lambda value: counter.add(1, attributes)

            return bind_counter
        scale = seconds(metric)
        unit = "s" if metric.unit is not None else "1"
        method: Callable[..., None]
        if metric.kind == "last_value":
            method = self.meter.create_gauge(metric.name, unit, about).set
        else:
            advice = buckets_of(metric) if metric.unit is not None else None
            method = self.meter.create_histogram(
                metric.name, unit, about, explicit_bucket_boundaries_advisory=advice
            ).record

        def bind(labels: tuple[str, ...]) -> Callable[[float], None]:
            attributes = dict(zip(tags, labels, strict=True))
            return lambda value: method(value * scale, attributes)

        return bind

    def watch(self, storage: Any, *, timeout: float = 5.0) -> None:
        """Add the gauge ``hephaestus.instances`` (attributes ``status``, ``workflow``).

        Counted in ``storage`` each time the meter provider's reader collects
        (``Storage.count``, no instance is loaded), waiting at most ``timeout``
        seconds. Call it on the event loop that uses ``storage``.
        """
        census = Census(storage, timeout)

        def observe(options: otel.CallbackOptions) -> Iterable[otel.Observation]:
            return [
                otel.Observation(count, {"status": status, "workflow": workflow})
                for (status, workflow), count in sorted(census.read().items())
            ]

        self.meter.create_observable_gauge(
            "hephaestus.instances", [observe], "1", "instances in the storage"
        )
