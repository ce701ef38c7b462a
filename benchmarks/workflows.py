"""Scenarios ``linear10`` and ``fanout8``: latency one at a time, throughput 1,000 in flight.

Latency: ``runs`` workflows run one after the other, each timed from the
call that starts it to the return of its result (the final counter); the
figures are the median and the 99th percentile of those times. A warm-up
(a twentieth as many runs) precedes them, untimed.

Throughput: 1,000 workflows are started together and awaited together
(``asyncio.gather``); the figure is 1,000 divided by the time from the
gather's start to its end. Each system gets a fresh session (runner,
checkpointer) per trial, set up and torn down outside the timing.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.harness import (
    Config,
    Group,
    Metric,
    Plan,
    Sample,
    Scenario,
    Trial,
    latency,
    throughput,
)
from benchmarks.systems import FANOUT8, FLOORS, LINEAR10, PEERS, WORKFLOW_SYSTEMS, System, installed

METRICS = {
    "latency median": Metric("latency median", "µs", "lower"),
    "latency p99": Metric("latency p99", "µs", "lower"),
    "throughput": Metric("throughput", "wf/s", "higher"),
}


def latency_runs(config: Config) -> int:
    """Workflows timed one at a time per trial."""
    return 50 if config.quick else 2_000


def in_flight(config: Config) -> int:
    """Workflows started together per throughput trial."""
    return 100 if config.quick else 1_000


def latency_trial(system: System, shape: str, expected: int, runs: int) -> Trial:
    """Median and p99 latency of ``shape`` on ``system``, ``runs`` workflows one at a time."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            median, p99 = await latency(
                getattr(session, shape), expected, runs, warmup=max(5, runs // 20)
            )
        return [
            Sample("latency median", system.name, median),
            Sample("latency p99", system.name, p99),
        ]

    return Trial(system.name, run)


def throughput_trial(system: System, shape: str, expected: int, count: int) -> Trial:
    """Workflows per second of ``shape`` on ``system`` with ``count`` in flight."""

    async def run() -> list[Sample]:
        async with system.session() as session:
            rate = await throughput(getattr(session, shape), expected, count, warmup=20)
        return [Sample("throughput", system.name, rate)]

    return Trial(system.name, run)


def _planner(shape: str, expected: int) -> Callable[[Config], Plan]:
    def plan(config: Config) -> Plan:
        systems, notes = installed(WORKFLOW_SYSTEMS)
        runs, count = latency_runs(config), in_flight(config)
        return Plan(
            [
                Group(
                    shape,
                    f"{shape} latency",
                    [latency_trial(system, shape, expected, runs) for system in systems],
                ),
                Group(
                    shape,
                    f"{shape} throughput",
                    [throughput_trial(system, shape, expected, count) for system in systems],
                ),
            ],
            notes,
        )

    return plan


LINEAR10_SCENARIO = Scenario(
    name="linear10",
    summary="ten sequential steps",
    metrics=METRICS,
    floors=FLOORS,
    peers=PEERS,
    plan=_planner("linear10", LINEAR10),
)

FANOUT8_SCENARIO = Scenario(
    name="fanout8",
    summary="a start step, 8 parallel branches, a join after all 8, an end",
    metrics=METRICS,
    floors=FLOORS,
    peers=PEERS,
    plan=_planner("fanout8", FANOUT8),
)
