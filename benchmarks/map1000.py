"""Scenario ``map1000``: one workflow maps a trivial async step over 1,000 items, then joins.

The workflow: a step plans the items (``range(1000)``), the item step runs
once per item (it returns ``item + 1``), a join sums the items' results. The
sum is checked on every run (``sum(range(1, 1001))``).

Latency: ``runs`` maps run one after the other, each timed from the call
that starts it to the return of its sum; the figure is the median (a few
untimed runs first). Throughput is items per second of one map: the item
count divided by that median.

Memory per in-flight item: every item waits at a ``Gate`` until all of
them have started, so that all are in flight at once; the figure is the
peak of ``tracemalloc``'s traced memory from the start of the map until the
last item arrives at the gate, minus the traced memory before the start,
divided by the item count. It counts what the system keeps per item in
flight (the item's task, coroutine, config, bookkeeping) plus the planned
list of items. One gated map runs first, untraced, so that caches filled on
first use are not counted. It is measured in one repeat, like the parked
memory of ``async_resume``: it hardly varies, and ``tracemalloc`` slows
LangGraph down.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from benchmarks.harness import Config, Group, Metric, Plan, Sample, Scenario, Trial, latency
from benchmarks.systems import (
    FLOOR_GATHER,
    LANGGRAPH,
    MAP_SYSTEMS,
    Gate,
    Session,
    System,
    installed,
    map_total,
)

NAME = "map1000"

METRICS = {
    "latency median": Metric("latency median", "µs", "lower"),
    "throughput": Metric("throughput", "items/s", "higher"),
    "memory per in-flight item": Metric("memory per in-flight item", "B", "lower"),
}


def item_count(config: Config) -> int:
    """Items per map."""
    return 50 if config.quick else 1_000


def map_runs(config: Config) -> int:
    """Maps timed one at a time per latency trial."""
    return 3 if config.quick else 20


async def gated_map(session: Session, count: int) -> tuple[int, int]:
    """One map whose items all wait until the last has started; (its sum, the traced peak then).

    The peak is ``tracemalloc``'s traced peak when the last item arrives at
    the gate (0 when tracemalloc is off).
    """
    gate = Gate(count)
    run = asyncio.ensure_future(session.map1000(count, gate))
    try:
        await asyncio.wait((run, gate.arrived), return_when=asyncio.FIRST_COMPLETED)
        if not gate.arrived.done():
            run.result()  # raises what the map raised
            raise AssertionError(f"the map ended with {gate.waiting} of {count} items in flight")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        gate.release()
    return await run, peak


async def _memory_per_item(session: Session, count: int) -> float:
    expected = map_total(count)
    total, _ = await gated_map(session, count)  # fill what is cached on first use
    if total != expected:
        raise AssertionError(f"a gated map ended with sum {total!r}, expected {expected!r}")
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        total, peak = await gated_map(session, count)
    finally:
        tracemalloc.stop()
    if total != expected:
        raise AssertionError(f"a gated map ended with sum {total!r}, expected {expected!r}")
    return (peak - baseline) / count


def latency_trial(system: System, count: int, runs: int) -> Trial:
    """Median time of one map of ``count`` items on ``system``, and the items per second."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            median, _ = await latency(
                lambda: session.map1000(count), map_total(count), runs, warmup=max(1, runs // 7)
            )
        return [
            Sample("latency median", system.name, median),
            Sample("throughput", system.name, count / (median / 1e6)),
        ]

    return Trial(system.name, run)


def memory_trial(system: System, count: int) -> Trial:
    """Bytes per in-flight item on ``system`` with ``count`` items in flight."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            per_item = await _memory_per_item(session, count)
        return [Sample("memory per in-flight item", system.name, per_item)]

    return Trial(system.name, run)


def plan(config: Config) -> Plan:
    """The map's latency and throughput, and the memory per in-flight item, on every system."""
    systems, notes = installed(MAP_SYSTEMS)
    count, runs = item_count(config), map_runs(config)
    return Plan(
        [
            Group(
                NAME,
                f"{NAME} latency",
                [latency_trial(system, count, runs) for system in systems],
            ),
            Group(
                NAME,
                f"{NAME} memory",
                [memory_trial(system, count) for system in systems],
                repeats=1,
            ),
        ],
        notes,
    )


SCENARIO = Scenario(
    name=NAME,
    summary="a plan step, a trivial async step mapped over 1,000 items, a join that sums them",
    metrics=METRICS,
    floors=(FLOOR_GATHER.name,),
    peers=(LANGGRAPH.name,),
    plan=plan,
)
