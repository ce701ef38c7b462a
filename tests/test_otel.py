"""Tests for hephaestus.telemetry.otel: the spans a run leaves, read from the real SDK."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import traced
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hephaestus import (
    Async,
    Context,
    Done,
    Instance,
    Map,
    Ok,
    Retry,
    SQLiteStorage,
    Status,
    Step,
    Workflow,
    telemetry,
)
from hephaestus.runtime import local
from hephaestus.runtime.local import LocalRunner
from hephaestus.telemetry import otel

GUARD = 5.0
TESTS = Path(__file__).parent

# ---------------------------------------------------------------- steps and workflows


class A(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done")


class B(A):
    pass


class C(A):
    pass


class Linear(Workflow):
    start = A
    transitions = {A: {"done": B}, B: {"done": Done}}


class Join(A):
    pass


class FanOut(Workflow):
    start = A
    transitions = {A: {"done": [B, C]}, B: {"done": Join}, C: {"done": Join}, Join: {"done": Done}}


class Plan(Step):
    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("planned", {"items": [1, 2, 3]})


class Square(Step):
    events = ("squared",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("squared", {"square": config["item"] ** 2})


def items_of(context: Context) -> list[Any]:
    return list(context.steps["plan"]["items"])


class Mapped(Workflow):
    start = Plan
    transitions = {Plan: {"planned": Map(Square, items=items_of)}, Square: {"squared": Done}}


class Flaky(Step):
    """Raises on its first attempt, passes on the second."""

    events = ("done",)
    retry = Retry(max_attempts=2, base=0.001)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        calls: list[int] = context.initial["calls"]
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt")
        return Ok("done")


class Retried(Workflow):
    start = Flaky
    transitions = {Flaky: {"done": Done}}


class Broken(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise RuntimeError("broken")


class Failing(Workflow):
    start = A
    transitions = {A: {"done": Broken}, Broken: {"done": Done}}


class Timed(Step):
    """Records the wall clock when its execute begins and ends; opens a span with "tracer"."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        seen: dict[str, int] = context.initial["seen"]
        seen["entered"] = time.time_ns()
        with context.initial["tracer"].start_as_current_span("user work"):
            await anyio.lowlevel.checkpoint()
        seen["left"] = time.time_ns()
        return Ok("done")


class TimedFlow(Workflow):
    start = Timed
    transitions = {Timed: {"done": Done}}


class Parks(Step):
    events = ("ok",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Parked(Workflow):
    start = A
    transitions = {A: {"done": Parks}, Parks: {"ok": Done}}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


@pytest.fixture
def exporter(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """What ``provider`` exports, instrumented for the test and uninstrumented after it."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(provider)
    yield exporter
    otel.uninstrument()


async def run(workflow: type[Workflow], context: dict[str, Any] | None = None) -> Instance:
    async with LocalRunner() as runner:
        with anyio.fail_after(GUARD):
            return await runner.run(workflow, context or {})


@pytest.fixture
def parked() -> Iterator[anyio.Event]:
    """Set once a step has parked (``step:async`` is emitted once the park is stored)."""
    event = anyio.Event()
    telemetry.attach("parked", telemetry.step_async_event(), lambda *_: event.set())
    yield event
    telemetry.detach("parked")


def by_name(spans: Any) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def tree(spans: Any) -> list[tuple[str, str | None, str]]:
    """(name, parent's name, status) per span, sorted: the shape of a trace."""
    names = {span.context.span_id: span.name for span in spans}
    return sorted(
        (
            span.name,
            None if span.parent is None else names.get(span.parent.span_id, "?"),
            span.status.status_code.name,
        )
        for span in spans
    )


# ---------------------------------------------------------------- tests


class TestInstrument:
    def test_instrument_twice_raises(self, exporter: InMemorySpanExporter) -> None:
        """A second instrument() while the first holds is refused."""
        with pytest.raises(ValueError, match="already instrumented"):
            otel.instrument(TracerProvider())

    def test_uninstrument_when_not_instrumented(self) -> None:
        """uninstrument() says False when there is nothing to undo."""
        assert False is otel.uninstrument()

    def test_parent_must_be_parent_or_link(self) -> None:
        """Any other parent mode is refused, naming the value."""
        with pytest.raises(ValueError, match="got: 'child'"):
            otel.instrument(TracerProvider(), parent="child")  # type: ignore[arg-type]

    async def test_uninstrumented_runs_attach_nothing(self) -> None:
        """After uninstrument no handler is left, and a run still completes."""
        otel.instrument(TracerProvider())
        assert True is otel.uninstrument()
        assert [] == telemetry.list_handlers()
        assert Status.COMPLETED == (await run(Linear)).status

    def test_hook_name_matches_the_runner(self) -> None:
        """The runner reads the slot of the hook the bridge attaches to."""
        assert telemetry._registry._slot(otel.STEP_SCOPE_HOOK) is local._scope_slot

    def test_importing_hephaestus_imports_no_opentelemetry(self) -> None:
        """Only importing the bridge itself brings opentelemetry in."""
        code = (
            "import sys, hephaestus, hephaestus.runtime.local, hephaestus.testing;"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "[]" == out.stdout.strip()

    def test_no_other_module_imports_opentelemetry(self) -> None:
        """Only the bridges (telemetry/otel*.py) import opentelemetry."""
        package = Path(otel.__file__).parent.parent
        importers = []
        for path in sorted(package.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    modules = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module or ""]
                    )
                    if any(m.startswith("opentelemetry") for m in modules):
                        importers.append(path.relative_to(package).as_posix())
        assert [] == [p for p in importers if not p.startswith("telemetry/otel")]
        assert "telemetry/otel.py" in importers


class TestSpanTree:
    async def test_linear_workflow(self, exporter: InMemorySpanExporter) -> None:
        """One workflow span, a child per step, all in one trace, with their attributes."""
        instance = await run(Linear)
        spans = exporter.get_finished_spans()
        assert [
            ("step A", "workflow Linear", "UNSET"),
            ("step B", "workflow Linear", "UNSET"),
            ("step Done", "workflow Linear", "UNSET"),
            ("workflow Linear", None, "UNSET"),
        ] == tree(spans)
        assert 1 == len({span.context.trace_id for span in spans})
        named = by_name(spans)
        assert {
            "hephaestus.instance.id": instance.id,
            "hephaestus.workflow.name": "Linear",
            "hephaestus.workflow.version": instance.workflow_version,
        } == dict(named["workflow Linear"].attributes or {})
        assert {
            "hephaestus.instance.id": instance.id,
            "hephaestus.workflow.name": "Linear",
            "hephaestus.workflow.version": instance.workflow_version,
            "hephaestus.step.name": "A",
            "hephaestus.step.attempt": 1,
            "hephaestus.step.event": "done",
        } == dict(named["step A"].attributes or {})

    async def test_a_transition_is_an_event_of_the_step_span_that_made_it(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """Each step span ends with a transition event: the event it returned and its targets."""
        await run(Linear)
        spans = by_name(exporter.get_finished_spans())
        assert [
            ("step A", "transition", "done", ("B",)),
            ("step B", "transition", "done", ("Done",)),
            ("step Done", "transition", "done", ()),
        ] == [
            (
                name,
                e.name,
                e.attributes["hephaestus.step.event"],
                tuple(e.attributes["hephaestus.transition.targets"]),  # type: ignore[arg-type]
            )
            for name in ("step A", "step B", "step Done")
            for e in spans[name].events
            if e.attributes is not None
        ]
        assert [] == list(spans["workflow Linear"].events)

    async def test_the_trace_context_is_stored_with_the_instance(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """start() adds the workflow span's traceparent to the instance's telemetry_metadata."""
        instance = await run(Linear)
        workflow = by_name(exporter.get_finished_spans())["workflow Linear"]
        context = workflow.context
        assert {
            otel.TRACE_KEY: f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
        } == instance.telemetry_metadata

    async def test_fan_out(self, exporter: InMemorySpanExporter) -> None:
        """Both branches are children of the workflow span."""
        await run(FanOut)
        assert [
            ("step A", "workflow FanOut", "UNSET"),
            ("step B", "workflow FanOut", "UNSET"),
            ("step C", "workflow FanOut", "UNSET"),
            ("step Done", "workflow FanOut", "UNSET"),
            ("step Join", "workflow FanOut", "UNSET"),
            ("workflow FanOut", None, "UNSET"),
        ] == tree(exporter.get_finished_spans())

    async def test_map(self, exporter: InMemorySpanExporter) -> None:
        """Each item of a map is a step span of its own, with its index."""
        await run(Mapped)
        spans = exporter.get_finished_spans()
        assert [
            ("step Done", "workflow Mapped", "UNSET"),
            ("step Plan", "workflow Mapped", "UNSET"),
            ("step Square", "workflow Mapped", "UNSET"),
            ("step Square", "workflow Mapped", "UNSET"),
            ("step Square", "workflow Mapped", "UNSET"),
            ("workflow Mapped", None, "UNSET"),
        ] == tree(spans)
        items = sorted(
            (span.attributes or {})["hephaestus.step.item"]
            for span in spans
            if span.name == "step Square"
        )
        assert [0, 1, 2] == items

    async def test_retried_attempt(self, exporter: InMemorySpanExporter) -> None:
        """The failed attempt's span is ERROR with the exception; the workflow then succeeds."""
        await run(Retried, {"calls": []})
        spans = exporter.get_finished_spans()
        assert [
            ("step Done", "workflow Retried", "UNSET"),
            ("step Flaky", "workflow Retried", "ERROR"),
            ("step Flaky", "workflow Retried", "UNSET"),
            ("workflow Retried", None, "UNSET"),
        ] == tree(spans)
        failed, passed = sorted(
            (s for s in spans if s.name == "step Flaky"),
            key=lambda s: (s.attributes or {})["hephaestus.step.attempt"],
        )
        assert 1 == (failed.attributes or {})["hephaestus.step.attempt"]
        assert 2 == (passed.attributes or {})["hephaestus.step.attempt"]
        assert "ValueError" == (failed.attributes or {})["error.type"]
        assert ["exception"] == [event.name for event in failed.events]
        assert failed.end_time is not None
        assert passed.start_time is not None
        assert failed.end_time <= passed.start_time

    async def test_failing_workflow(self, exporter: InMemorySpanExporter) -> None:
        """A step that fails for good makes both its span and the workflow span ERROR."""
        instance = await run(Failing)
        assert Status.FAILED == instance.status
        spans = exporter.get_finished_spans()
        assert [
            ("step A", "workflow Failing", "UNSET"),
            ("step Broken", "workflow Failing", "ERROR"),
            ("workflow Failing", None, "ERROR"),
        ] == tree(spans)
        workflow = by_name(spans)["workflow Failing"]
        assert "RuntimeError" == (workflow.attributes or {})["error.type"]
        assert StatusCode.ERROR == workflow.status.status_code


class TestTimes:
    async def test_step_span_covers_execute(self, exporter: InMemorySpanExporter) -> None:
        """The step span starts before execute begins and ends after it returns, not later."""
        seen: dict[str, int] = {}
        before = time.time_ns()
        await run(TimedFlow, {"seen": seen, "tracer": trace.NoOpTracer()})
        after = time.time_ns()
        spans = by_name(exporter.get_finished_spans())
        step = spans["step Timed"]
        workflow = spans["workflow TimedFlow"]
        assert step.start_time is not None
        assert step.end_time is not None
        assert before <= step.start_time <= seen["entered"]
        assert seen["left"] <= step.end_time <= spans["step Done"].start_time  # type: ignore[operator]
        assert workflow.start_time is not None
        assert workflow.end_time is not None
        assert before <= workflow.start_time <= step.start_time
        assert spans["step Done"].end_time <= workflow.end_time <= after  # type: ignore[operator]

    async def test_user_span_is_a_child_of_the_step_span(
        self, exporter: InMemorySpanExporter, provider: TracerProvider
    ) -> None:
        """A span opened inside execute nests under its step span."""
        tracer = provider.get_tracer("user")
        await run(TimedFlow, {"seen": {}, "tracer": tracer})
        spans = by_name(exporter.get_finished_spans())
        user = spans["user work"]
        assert user.parent is not None
        assert spans["step Timed"].context.span_id == user.parent.span_id
        assert spans["step Timed"].context.trace_id == user.context.trace_id


class TestCaller:
    async def test_caller_span_is_the_parent(
        self, exporter: InMemorySpanExporter, provider: TracerProvider
    ) -> None:
        """The span current at start() is the workflow span's parent, in the same trace."""
        with provider.get_tracer("caller").start_as_current_span("caller") as caller:
            await run(Linear)
        spans = by_name(exporter.get_finished_spans())
        workflow = spans["workflow Linear"]
        assert workflow.parent is not None
        assert caller.get_span_context().span_id == workflow.parent.span_id
        assert caller.get_span_context().trace_id == workflow.context.trace_id

    async def test_caller_span_as_link(self) -> None:
        """With parent="link" the workflow span starts its own trace and links to the caller."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel.instrument(provider, parent="link")
        try:
            with provider.get_tracer("caller").start_as_current_span("caller") as caller:
                await run(Linear)
        finally:
            otel.uninstrument()
        spans = by_name(exporter.get_finished_spans())
        workflow = spans["workflow Linear"]
        assert workflow.parent is None
        assert caller.get_span_context().trace_id != workflow.context.trace_id
        expected = caller.get_span_context()
        assert [(expected.trace_id, expected.span_id)] == [
            (link.context.trace_id, link.context.span_id) for link in workflow.links
        ]
        assert workflow.context.span_id == spans["step A"].parent.span_id  # type: ignore[union-attr]


class TestMetadata:
    async def test_copy_metadata(self) -> None:
        """Keys named in copy_metadata are copied from telemetry_metadata; others are not."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel.instrument(provider, copy_metadata=["tenant"])
        try:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    await runner.run(
                        Linear, {}, telemetry_metadata={"tenant": "acme", "secret": "x"}
                    )
        finally:
            otel.uninstrument()
        for span in exporter.get_finished_spans():
            assert "acme" == (span.attributes or {})["tenant"]
            assert "secret" not in (span.attributes or {})


class TestParking:
    async def test_a_wait_span_runs_from_the_park_to_the_resume(
        self, exporter: InMemorySpanExporter, parked: anyio.Event
    ) -> None:
        """The parked step's span ends at its park; a wait span covers the wait until the resume."""
        async with LocalRunner() as runner:
            with anyio.fail_after(GUARD):
                iid = await runner.start(Parked, {})
                await parked.wait()
                assert ["step A", "step Parks"] == sorted(
                    s.name for s in exporter.get_finished_spans()
                )
                resumed_at = time.time_ns()
                await runner.resume(iid, "ok")
                await runner.wait(iid)
        spans = by_name(exporter.get_finished_spans())
        step, wait = spans["step Parks"], spans["wait Parks"]
        assert ["park"] == [e.name for e in step.events]
        assert True is (step.attributes or {})["hephaestus.step.parked"]
        assert ("wait Parks", "workflow Parked", "UNSET") in tree(spans.values())
        assert step.end_time is not None
        assert wait.start_time is not None
        assert wait.end_time is not None
        assert abs(wait.start_time - step.end_time) < 50_000_000  # two clocks: the same instant
        assert resumed_at <= wait.end_time
        assert ["resume"] == [e.name for e in wait.events]
        assert {"hephaestus.step.event": "ok", "hephaestus.resume.source": "external"}.items() <= (
            wait.attributes or {}
        ).items()

    async def test_parked_in_one_process_and_resumed_in_another_is_one_trace(
        self, exporter: InMemorySpanExporter, tmp_path: Path
    ) -> None:
        """Started under a request span and parked on SQLite by a process that exits; resumed here.

        Both processes' spans make one trace: the workflow span (built here)
        starts when the instance started there, under the request span.
        """
        database, spans_file = tmp_path / "flows.db", tmp_path / "spans.jsonl"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-c", "import traced; traced.main()", "park"]
        with anyio.fail_after(60):
            child = await anyio.run_process(
                [*command, str(database), str(spans_file)], env=env, check=False
            )
        assert 0 == child.returncode, child.stderr.decode()
        iid = child.stdout.decode().strip()
        async with SQLiteStorage(database) as storage, LocalRunner(storage) as runner:
            with anyio.fail_after(GUARD):
                await runner.resume(iid, "approved")
                instance = await runner.wait(iid)
        there = traced.read(spans_file)
        here = [traced.described(span) for span in exporter.get_finished_spans()]
        assert ["request", "step Review", "step Submit"] == sorted(s["name"] for s in there)
        assert ["step Done", "wait Review", "workflow Approval"] == sorted(s["name"] for s in here)
        spans = {s["name"]: s for s in there + here}
        assert 1 == len({s["trace_id"] for s in spans.values()})
        workflow = spans["workflow Approval"]
        assert spans["request"]["span_id"] == workflow["parent_id"]
        for name in ("step Submit", "step Review", "wait Review", "step Done"):
            assert workflow["span_id"] == spans[name]["parent_id"], name
        assert instance.started_at <= workflow["start"] <= spans["step Submit"]["start"]
        assert spans["step Done"]["end"] <= workflow["end"]
        assert {"otel.traceparent", "otel.caller"} == set(instance.telemetry_metadata)

    async def test_an_instance_started_before_instrument_gets_ids_from_its_id(
        self, provider: TracerProvider, parked: anyio.Event
    ) -> None:
        """Started with the bridge off, then resumed instrumented: one trace, its ids derived."""
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        try:
            async with LocalRunner() as runner:
                with anyio.fail_after(GUARD):
                    iid = await runner.start(Parked, {})
                    await parked.wait()
                    otel.instrument(provider)
                    await runner.resume(iid, "ok")
                    instance = await runner.wait(iid)
        finally:
            otel.uninstrument()
        spans = exporter.get_finished_spans()
        assert [
            ("step Done", "workflow Parked", "UNSET"),
            ("wait Parks", "workflow Parked", "UNSET"),
            ("workflow Parked", None, "UNSET"),
        ] == tree(spans)
        assert {} == instance.telemetry_metadata
        assert {otel._derived(iid)[0]} == {span.context.trace_id for span in spans}
