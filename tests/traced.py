"""Spans across processes: a span exporter to a file, and a process that parks a traced instance.

``python -c "import traced; traced.main()" park <sqlite file> <spans file>`` instruments Hephaestus
with an SDK tracer provider that writes each finished span to the spans file
as a JSON line, starts :class:`Approval` on the SQLite file inside a
``request`` span, waits until it parks, prints its id and exits. The test
that ran it resumes the instance in its own process and reads both processes'
spans.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from hephaestus import (
    Async,
    Context,
    Done,
    Instance,
    Ok,
    SQLiteStorage,
    Status,
    Step,
    Workflow,
    telemetry,
)
from hephaestus.runtime.local import LocalRunner
from hephaestus.telemetry import otel


class Submit(Step):
    events = ("submitted",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("submitted")


class Review(Step):
    events = ("approved",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Approval(Workflow):
    start = Submit
    transitions = {Submit: {"submitted": Review}, Review: {"approved": Done}}


class FileExporter(SpanExporter):
    """Appends each span to a file as one JSON line (written at once: a kill loses nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(described(span)) + "\n")
        return SpanExportResult.SUCCESS


def described(span: ReadableSpan) -> dict[str, Any]:
    """The parts of a span the tests compare, ids as hex, from any process."""
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


def read(path: Path) -> list[dict[str, Any]]:
    """The spans a :class:`FileExporter` wrote to ``path``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def instrument_to(path: Path) -> TracerProvider:
    """Instrument this process with a global provider exporting to ``path``; the provider."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
    trace.set_tracer_provider(provider)
    otel.instrument()
    return provider


async def park(database: Path, spans: Path) -> None:
    provider = instrument_to(spans)
    parked = anyio.Event()
    telemetry.attach("parked", telemetry.step_async_event(), lambda *_: parked.set())
    async with SQLiteStorage(database) as storage, LocalRunner(storage) as runner:
        with provider.get_tracer("caller").start_as_current_span("request"):
            iid = await runner.start(Approval, {})
        with anyio.fail_after(10):
            await parked.wait()  # emitted once the park is stored
        assert Status.WAITING == (await runner.get(iid)).status
    print(iid)


def main() -> None:
    """``park <sqlite file> <spans file>``; run as ``python -c "import traced; traced.main()"``.

    Not as ``-m traced``: the stored instance names its workflow by module,
    which must be ``traced`` for the process that resumes it.
    """
    command, database, spans = sys.argv[1:4]
    assert "park" == command
    anyio.run(park, Path(database), Path(spans))
