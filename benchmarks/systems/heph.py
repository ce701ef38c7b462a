"""Hephaestus: ``LocalRunner`` on a storage (memory by default), with or without the LogHandler.

The steps are module-level classes, because durable storages store them by
import path. A step's counter lands in ``context.steps[step_key]``: each step
writes ``1 + the counters it reads`` (its predecessor's in a chain; the join
reads the start and the 8 branches), so the last step's counter is the number
of steps run, as in the other systems. Every workflow ends with the built-in
``Done`` step, which Hephaestus requires as the leaf (an 11th step in
``linear10``; it does not count).

``map1000``: ``MapPlan`` lists ``range(n)``, ``Map(MapItem, items=...)``
runs the item step once per item (``config["item"]``), ``MapGather`` sums
the items' updates (``context.steps["map_item"]["items"]``). The gated
variant (the memory figure) uses subclasses whose items first wait at the
gate the session installs (``Gate.current()``).

``otel=True`` instruments the session with the OpenTelemetry bridge (an SDK
tracer provider, a batch span processor, an exporter that discards);
``prometheus=True`` attaches a ``PrometheusReporter(metrics())`` on a
registry of its own.

``log=True`` attaches ``LogHandler`` (all 11 events, default levels) and
configures structlog, for the session only, to render every line (debug
included) with its default processors and print it to ``os.devnull``; the
previous configuration is restored on exit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, ClassVar

import structlog

from benchmarks.systems import Gate
from hephaestus import (
    Context,
    Done,
    Instance,
    LocalRunner,
    Map,
    Ok,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus.telemetry import LogHandler


class Count(Step):
    """Writes ``{"count": 1 + the counters of the steps in reads}``."""

    events = ("done",)
    reads: ClassVar[tuple[str, ...]] = ()

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        steps = context.steps
        count = 1
        for key in self.reads:
            count += steps[key]["count"]
        return Ok("done", {"count": count})


# ---------------------------------------------------------------- linear10


class L1(Count):
    pass


class L2(Count):
    reads = ("l1",)


class L3(Count):
    reads = ("l2",)


class L4(Count):
    reads = ("l3",)


class L5(Count):
    reads = ("l4",)


class L6(Count):
    reads = ("l5",)


class L7(Count):
    reads = ("l6",)


class L8(Count):
    reads = ("l7",)


class L9(Count):
    reads = ("l8",)


class L10(Count):
    reads = ("l9",)


_CHAIN = (L1, L2, L3, L4, L5, L6, L7, L8, L9, L10)


class Linear10(Workflow):
    """Ten steps in a row."""

    start = L1
    transitions = {  # noqa: RUF012 - read by Workflow
        **{step: {"done": after} for step, after in itertools.pairwise(_CHAIN)},
        L10: {"done": Done},
    }


# ---------------------------------------------------------------- fanout8


class FanStart(Count):
    pass


class Branch1(Count):
    pass


class Branch2(Count):
    pass


class Branch3(Count):
    pass


class Branch4(Count):
    pass


class Branch5(Count):
    pass


class Branch6(Count):
    pass


class Branch7(Count):
    pass


class Branch8(Count):
    pass


_BRANCHES = (Branch1, Branch2, Branch3, Branch4, Branch5, Branch6, Branch7, Branch8)


class FanJoin(Count):
    reads = ("fan_start", *(branch.step_key for branch in _BRANCHES))


class FanEnd(Count):
    reads = ("fan_join",)


class Fanout8(Workflow):
    """A start, 8 parallel branches, a join that waits for all 8, an end."""

    start = FanStart
    transitions = {  # noqa: RUF012 - read by Workflow
        FanStart: {"done": list(_BRANCHES)},
        **{branch: {"done": FanJoin} for branch in _BRANCHES},
        FanJoin: {"done": FanEnd},
        FanEnd: {"done": Done},
    }


# ---------------------------------------------------------------- async_resume


class A1(Count):
    pass


class A2(Count):
    reads = ("a1",)


class AsyncResume(Workflow):
    """A step, a park on ``WaitForEvent`` (resumed with ``received``), a step, the end."""

    start = A1
    transitions = {  # noqa: RUF012 - read by Workflow
        A1: {"done": WaitForEvent},
        WaitForEvent: {"received": A2},
        A2: {"done": Done},
    }


# ---------------------------------------------------------------- map1000


class MapPlan(Step):
    """Plans ``context.initial["n"]`` items: ``range(n)``."""

    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("planned", {"items": list(range(context.initial["n"]))})


class MapItem(Step):
    """Runs once per item: ``config["item"] + 1``."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"value": config["item"] + 1})


class MapGather(Step):
    """The join after the map: the sum of every item's value."""

    events = ("summed",)
    mapped: ClassVar[str] = MapItem.step_key

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        items = context.steps[self.mapped]["items"]
        return Ok("summed", {"total": sum(item["value"] for item in items)})


def _planned_items(context: Context) -> Any:
    return context.steps[MapPlan.step_key]["items"]


class MapFlow(Workflow):
    """A plan, one ``MapItem`` per planned item, a join that sums them."""

    start = MapPlan
    transitions = {  # noqa: RUF012 - read by Workflow
        MapPlan: {"planned": Map(MapItem, items=_planned_items)},
        MapItem: {"done": MapGather},
        MapGather: {"summed": Done},
    }


class GatedMapItem(MapItem):
    """``MapItem`` that first waits at the current ``Gate`` until every item is in flight."""

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await Gate.current().wait()
        return await super().execute(instance, config, context)


class GatedMapGather(MapGather):
    """``MapGather`` reading the gated items."""

    mapped = GatedMapItem.step_key


class GatedMapFlow(Workflow):
    """``MapFlow`` whose items wait at the gate."""

    start = MapPlan
    transitions = {  # noqa: RUF012 - read by Workflow
        MapPlan: {"planned": Map(GatedMapItem, items=_planned_items)},
        GatedMapItem: {"done": GatedMapGather},
        GatedMapGather: {"summed": Done},
    }


# ---------------------------------------------------------------- the session


class _Hephaestus:
    def __init__(self, runner: LocalRunner) -> None:
        self.runner = runner

    async def linear10(self) -> int:
        instance = await self.runner.run(Linear10, {})
        return int(instance.context.steps["l10"]["count"])

    async def fanout8(self) -> int:
        instance = await self.runner.run(Fanout8, {})
        return int(instance.context.steps["fan_end"]["count"])

    async def park(self) -> str:
        runner = self.runner
        instance_id = await runner.start(AsyncResume, {})
        while (status := (await runner.get(instance_id)).status) is not Status.WAITING:
            if status.terminal:
                raise AssertionError(f"instance {instance_id} ended {status} before parking")
            await asyncio.sleep(0)
        return instance_id

    async def resume(self, instance_id: str) -> int:
        await self.runner.resume(instance_id, "received")
        instance = await self.runner.wait(instance_id)
        return int(instance.context.steps["a2"]["count"])

    async def map1000(self, count: int, gate: Gate | None = None) -> int:
        if gate is None:
            instance = await self.runner.run(MapFlow, {"n": count})
            return int(instance.context.steps[MapGather.step_key]["total"])
        with gate.installed():
            instance = await self.runner.run(GatedMapFlow, {"n": count})
        return int(instance.context.steps[GatedMapGather.step_key]["total"])


@contextmanager
def null_log_sink() -> Iterator[None]:
    """LogHandler attached; structlog renders every line to ``os.devnull``; all undone on exit."""
    saved = structlog.get_config()
    with open(os.devnull, "w") as devnull:
        structlog.configure(
            logger_factory=structlog.PrintLoggerFactory(devnull),
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        )
        LogHandler.attach()
        try:
            yield
        finally:
            LogHandler.detach()
            structlog.configure(**saved)


@contextmanager
def traced() -> Iterator[None]:
    """The OpenTelemetry bridge on an SDK tracer provider, batched to an exporter that discards."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from hephaestus.telemetry import otel

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    otel.instrument(provider)
    try:
        yield
    finally:
        otel.uninstrument()
        provider.shutdown()


@contextmanager
def measured() -> Iterator[None]:
    """A ``PrometheusReporter(metrics())`` on a registry of its own."""
    from prometheus_client import CollectorRegistry

    from hephaestus.telemetry.metrics import metrics
    from hephaestus.telemetry.prometheus import PrometheusReporter

    with PrometheusReporter(metrics(), registry=CollectorRegistry()):
        yield


@asynccontextmanager
async def session(
    log: bool = False, storage: Any = None, otel: bool = False, prometheus: bool = False
) -> AsyncIterator[_Hephaestus]:
    """A ``LocalRunner`` on ``storage`` (a fresh ``MemoryStorage`` when None).

    A storage that is an async context manager (SQLite, PostgreSQL) is
    entered first and closed last. ``otel`` and ``prometheus`` instrument the
    session (:func:`traced`, :func:`measured`).
    """
    async with AsyncExitStack() as stack:
        if log:
            stack.enter_context(null_log_sink())
        if otel:
            stack.enter_context(traced())
        if prometheus:
            stack.enter_context(measured())
        if storage is not None and hasattr(storage, "__aenter__"):
            await stack.enter_async_context(storage)
        runner = await stack.enter_async_context(LocalRunner(storage))
        yield _Hephaestus(runner)
