"""PrometheusReporter and OTelMetricsReporter: the metric definitions recorded from real runs.

Prometheus: a real ``CollectorRegistry`` served by ``prometheus_client``'s
HTTP server on 127.0.0.1, scraped and parsed with its text parser.
OpenTelemetry: the SDK's ``MeterProvider`` with an ``InMemoryMetricReader``.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from hephaestus import (
    Context,
    Done,
    Error,
    Instance,
    LocalRunner,
    MemoryStorage,
    Ok,
    Retry,
    SQLiteStorage,
    Status,
    Step,
    Workflow,
    telemetry,
)
from hephaestus.telemetry.metrics import Metric, metrics
from hephaestus.telemetry.otel_metrics import OTelMetricsReporter
from hephaestus.telemetry.prometheus import PrometheusReporter


class Fetch(Step):
    events = ("fetched",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("fetched")


class Store(Step):
    events = ("stored",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("stored")


class Pipeline(Workflow):
    start = Fetch
    transitions = {Fetch: {"fetched": Store}, Store: {"stored": Done}}


class Refuse(Step):
    """Raises once (retried), then refuses for good with Error."""

    events = ("ok",)
    retry = Retry(max_attempts=2, base=0.001, jitter=0)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok | Error:
        if not context.initial.get("raised"):
            context.initial["raised"] = True  # the initial context is this run's own dict
            raise ValueError("first attempt")
        return Error("no")


class Refused(Workflow):
    start = Refuse
    transitions = {Refuse: {"ok": Done}}


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()
    assert [] == telemetry.list_handlers()  # every test detached its reporter


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Serve ``registry`` on 127.0.0.1, GET /metrics, parse it: ``(sample, labels) -> value``."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:  # our own server
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def run_known_workflows(storage: Any = None) -> None:
    async with LocalRunner(storage) as runner:
        for _ in range(3):
            assert Status.COMPLETED == (await runner.run(Pipeline, {})).status
        assert Status.FAILED == (await runner.run(Refused, {})).status


class TestPrometheusReporter:
    async def test_counters_histograms_and_labels_after_known_runs(
        self, registry: CollectorRegistry
    ) -> None:
        """Three Pipelines and one Refused: every count, in Prometheus' names and labels."""
        with PrometheusReporter(metrics(), registry=registry, namespace="app"):
            await run_known_workflows()
            samples = await anyio.to_thread.run_sync(scrape, registry)

        pipeline = (("workflow", "Pipeline"),)
        refused = (("workflow", "Refused"),)
        assert 3.0 == samples[("app_hephaestus_workflow_start_total", pipeline)]
        assert 1.0 == samples[("app_hephaestus_workflow_start_total", refused)]
        assert 3.0 == samples[("app_hephaestus_workflow_stop_total", pipeline)]
        failed = (("failed_step", "Refuse"), ("workflow", "Refused"))
        assert 1.0 == samples[("app_hephaestus_workflow_exception_total", failed)]
        for kind in ("exception", "error"):  # the retried raise, then the Error
            labels = (("kind", kind), ("step", "Refuse"), ("workflow", "Refused"))
            assert 1.0 == samples[("app_hephaestus_step_exception_total", labels)]
        fetch = (("step", "Fetch"), ("workflow", "Pipeline"))
        assert 3.0 == samples[("app_hephaestus_step_stop_duration_seconds_count", fetch)]
        inf = tuple(sorted((*fetch, ("le", "+Inf"))))
        assert 3.0 == samples[("app_hephaestus_step_stop_duration_seconds_bucket", inf)]
        assert 0 < samples[("app_hephaestus_step_stop_duration_seconds_sum", fetch)] < 3.0
        assert 3.0 == samples[("app_hephaestus_workflow_stop_duration_seconds_count", pipeline)]

    async def test_the_instances_gauge_is_counted_in_the_storage_at_each_scrape(
        self, registry: CollectorRegistry, tmp_path: Path
    ) -> None:
        """watch(storage): instances by status and workflow, as stored when scraped."""
        async with SQLiteStorage(tmp_path / "flows.db") as storage:
            with PrometheusReporter(metrics(), registry=registry) as reporter:
                reporter.watch(storage)
                await run_known_workflows(storage)
                first = await anyio.to_thread.run_sync(scrape, registry)
                async with LocalRunner(storage) as runner:
                    await runner.run(Pipeline, {})
                second = await anyio.to_thread.run_sync(scrape, registry)

        def gauge(samples: Any, status: str, workflow: str) -> float:
            labels = (("status", status), ("workflow", workflow))
            return float(samples[("hephaestus_instances", labels)])

        assert 3.0 == gauge(first, "completed", "Pipeline")
        assert 1.0 == gauge(first, "failed", "Refused")
        assert 0.0 == gauge(first, "waiting", "Pipeline")  # every status of a workflow seen
        assert 4.0 == gauge(second, "completed", "Pipeline")
        assert 12 == sum(1 for name, _ in first if name == "hephaestus_instances")

    async def test_a_storage_that_fails_gives_no_gauge_and_raises_nothing(
        self, registry: CollectorRegistry, tmp_path: Path
    ) -> None:
        """A count that fails (the storage is closed) leaves the gauge empty; the scrape works."""
        storage = SQLiteStorage(tmp_path / "flows.db")
        with PrometheusReporter(metrics(), registry=registry) as reporter:
            reporter.watch(storage)
            await storage.aclose()
            samples = await anyio.to_thread.run_sync(scrape, registry)
        assert [] == [key for key in samples if key[0] == "hephaestus_instances"]

    async def test_nothing_is_recorded_once_closed(self, registry: CollectorRegistry) -> None:
        """close() detaches the handler and unregisters the instruments."""
        reporter = PrometheusReporter(metrics(), registry=registry)
        reporter.attach()
        reporter.close()
        await run_known_workflows()
        names = {name for name, _ in await anyio.to_thread.run_sync(scrape, registry)}
        assert not {name for name in names if name.startswith("hephaestus_")}

    async def test_a_missing_tag_skips_the_metric_and_raises_nothing(
        self, registry: CollectorRegistry
    ) -> None:
        """A tag the event does not carry: that metric is skipped, the others recorded."""
        odd = Metric(
            "hephaestus.step.stop.by_tenant.count",
            "counter",
            telemetry.step_stop_event(),
            None,
            ("tenant",),
        )
        with PrometheusReporter([odd, *metrics("step")], registry=registry):
            await run_known_workflows()
            assert [] != telemetry.list_handlers()  # not detached for failing
            samples = await anyio.to_thread.run_sync(scrape, registry)
        assert not [key for key in samples if "by_tenant" in key[0] and key[0].endswith("total")]
        fetch = (("step", "Fetch"), ("workflow", "Pipeline"))
        assert 3.0 == samples[("hephaestus_step_stop_duration_seconds_count", fetch)]

    def test_bad_arguments_are_refused(self, registry: CollectorRegistry) -> None:
        with pytest.raises(ValueError, match="at least one metric"):
            PrometheusReporter([], registry=registry)
        with pytest.raises(TypeError, match="takes Metric records, got: 'nope'"):
            PrometheusReporter(["nope"], registry=registry)  # type: ignore[list-item]


class TestOTelMetricsReporter:
    async def test_counters_and_histograms_in_seconds(self) -> None:
        """The SDK reads what the reporter recorded: counts, and durations in seconds."""
        reader = InMemoryMetricReader()
        reporter = OTelMetricsReporter(metrics(), meter_provider=MeterProvider([reader]))
        reporter.attach()
        try:
            await run_known_workflows()
        finally:
            reporter.detach()
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points[metric.name] = {
                        tuple(sorted(point.attributes.items())): point
                        for point in metric.data.data_points
                    }
        pipeline = (("workflow", "Pipeline"),)
        assert 3 == points["hephaestus.workflow.start.count"][pipeline].value
        fetch = (("step", "Fetch"), ("workflow", "Pipeline"))
        durations = points["hephaestus.step.stop.duration"][fetch]
        assert 3 == durations.count
        assert 0 < durations.sum < 3.0  # seconds, not nanoseconds
        assert 0.0005 == durations.explicit_bounds[0]  # the steps' buckets, as advised

    async def test_the_instances_gauge(self) -> None:
        """watch(storage): an observable gauge counted in the storage when the reader collects."""
        reader = InMemoryMetricReader()
        reporter = OTelMetricsReporter(metrics(), meter_provider=MeterProvider([reader]))
        storage = MemoryStorage()
        reporter.watch(storage)
        await run_known_workflows(storage)
        data = await anyio.to_thread.run_sync(reader.get_metrics_data)  # as a reader's thread
        assert data is not None
        [gauge] = [
            metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "hephaestus.instances"
        ]
        values = {
            (point.attributes["status"], point.attributes["workflow"]): point.value
            for point in gauge.data.data_points
        }
        assert 3 == values["completed", "Pipeline"]
        assert 1 == values["failed", "Refused"]
        assert 0 == values["running", "Refused"]
