"""One trace across processes: a spread map driven by one worker, its items run by another.

The test process instruments Hephaestus (an in-memory exporter), starts the
instance inside a ``request`` span and runs the worker that drives it, which
runs no step job (``spread_concurrency=0``). A worker process instrumented
to a file (``traced_worker``) runs the items, each opening a ``user work``
span. Every span of both processes is in the request's trace, and each user
span is a child of its item's step span, which the driving worker built.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hephaestus import Status
from hephaestus.distributed import DistributedRunner

from . import flows
from .conftest import worker
from .test_crash import DEADLINE, Workers

pytest.importorskip("opentelemetry.sdk")

import traced  # after the skip: it imports the SDK
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from hephaestus.telemetry import otel

ITEMS = 3


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(provider)
    yield provider, exporter
    otel.uninstrument()
    provider.shutdown()


async def test_a_spread_map_over_two_workers_is_one_trace(
    postgres_dsn: str,
    schema: str,
    tmp_path: Path,
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = provider
    spans_file = tmp_path / "spans.jsonl"
    workers = Workers(postgres_dsn, schema, tmp_path, tmp_path / "steps.log")
    try:
        async with (
            worker(postgres_dsn, schema, spread_concurrency=0),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            other = workers.spawn(
                "b", module="distributed.traced_worker", HEPHAESTUS_SPANS=str(spans_file)
            )
            with tracer_provider.get_tracer("caller").start_as_current_span("request"):
                iid = await runner.start(flows.TracedMap, {"numbers": list(range(ITEMS))})
            instance = await runner.wait(iid, timeout=DEADLINE)
    finally:
        workers.stop()
    assert Status.COMPLETED == instance.status, instance.error
    assert [other.pid] * ITEMS == [out["pid"] for out in instance.context.steps["traced"]["items"]]

    here = [traced.described(span) for span in exporter.get_finished_spans()]
    there = traced.read(spans_file)
    assert ["user work"] * ITEMS == [span["name"] for span in there]
    assert 1 == len({span["trace_id"] for span in here + there})
    [request] = [span for span in here if span["name"] == "request"]
    [workflow] = [span for span in here if span["name"] == "workflow TracedMap"]
    assert request["span_id"] == workflow["parent_id"]
    items = {
        span["attributes"]["hephaestus.step.item"]: span
        for span in here
        if span["name"] == "step Traced"
    }
    assert list(range(ITEMS)) == sorted(items)
    for step in items.values():
        assert workflow["span_id"] == step["parent_id"]
    for user in there:
        step = items[user["attributes"]["item"]]
        assert step["span_id"] == user["parent_id"]
        assert step["start"] <= user["start"] <= user["end"] <= step["end"]
