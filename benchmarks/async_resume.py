"""Scenario ``async_resume``: a step, a park for an external event, the resume, a step, the end.

Round trip: each of ``runs`` workflows is started and left to park
(untimed); then the clock runs from the resume call until the workflow has
ended and its result (the final counter) is back. Starting and parking are
not counted. The figures are the median and p99 over the runs.

Memory: ``count`` workflows are parked and kept parked; the figure is the
difference between two ``tracemalloc`` snapshots (before the first start,
after the last park, each after ``gc.collect()``), divided by ``count``. It
counts everything the system keeps for a parked workflow (instance, task,
checkpoint, state) plus the handle the benchmark keeps to resume it. One
park and resume run before the first snapshot, so that caches filled on
first use are not counted. The memory is measured in one repeat only: it
varies by a few percent at most between runs, and ``tracemalloc`` slows the
peers down a lot (LangGraph's 10,000 parks take about a minute under it).
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import Any

from benchmarks.harness import Config, Group, Metric, Plan, Sample, Scenario, Trial, percentile
from benchmarks.systems import ASYNC_RESUME, FLOORS, PEERS, WORKFLOW_SYSTEMS, Session, System
from benchmarks.systems import installed as installed_systems

METRICS = {
    "round trip median": Metric("round trip median", "µs", "lower"),
    "round trip p99": Metric("round trip p99", "µs", "lower"),
    "memory per parked": Metric("memory per parked", "B", "lower"),
}


def round_trips(config: Config) -> int:
    """Workflows parked and resumed per round-trip trial."""
    return 50 if config.quick else 2_000


def parked_count(config: Config) -> int:
    """Workflows kept parked for the memory figure."""
    return 500 if config.quick else 10_000


async def _round_trip(session: Session, runs: int) -> tuple[float, float]:
    clock = time.perf_counter_ns
    warmup = max(5, runs // 20)
    durations: list[float] = []
    for index in range(warmup + runs):
        handle = await session.park()
        t0 = clock()
        result = await session.resume(handle)
        elapsed = (clock() - t0) / 1_000
        if result != ASYNC_RESUME:
            raise AssertionError(f"a resumed workflow ended with counter {result!r}")
        if index >= warmup:
            durations.append(elapsed)
    return statistics.median(durations), percentile(durations, 99)


async def _memory_per_parked(session: Session, count: int) -> float:
    await session.resume(await session.park())  # fill what is cached on first use
    gc.collect()
    tracemalloc.start()
    try:
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        before = tracemalloc.take_snapshot().filter_traces(ignore)
        handles: list[Any] = [await session.park() for _ in range(count)]
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(ignore)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del handles
    return grown / count


def round_trip_trial(system: System, runs: int) -> Trial:
    """Median and p99 of resume-to-end on ``system``."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            median, p99 = await _round_trip(session, runs)
        return [
            Sample("round trip median", system.name, median),
            Sample("round trip p99", system.name, p99),
        ]

    return Trial(system.name, run)


def memory_trial(system: System, count: int) -> Trial:
    """Bytes per parked workflow on ``system`` with ``count`` parked."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            per_workflow = await _memory_per_parked(session, count)
        return [Sample("memory per parked", system.name, per_workflow)]

    return Trial(system.name, run)


def plan(config: Config) -> Plan:
    """The round trip and the memory, on every installed system."""
    systems, notes = installed_systems(WORKFLOW_SYSTEMS)
    runs, count = round_trips(config), parked_count(config)
    return Plan(
        [
            Group(
                "async_resume",
                "async_resume round trip",
                [round_trip_trial(system, runs) for system in systems],
            ),
            Group(
                "async_resume",
                "async_resume memory",
                [memory_trial(system, count) for system in systems],
                repeats=1,
            ),
        ],
        notes,
    )


SCENARIO = Scenario(
    name="async_resume",
    summary="a step, a park for an external event, the resume, a step, the end",
    metrics=METRICS,
    floors=FLOORS,
    peers=PEERS,
    plan=plan,
)
