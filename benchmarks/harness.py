"""The harness: what a scenario declares, how its measurements are run, and their statistics.

A scenario plans groups of trials. A group is one measurement (say "linear10
latency") taken on every system; the harness runs each group ``repeats``
times, and in each repeat runs every system once, starting one place further
along the list each time, so that drift (a noisy neighbour, the CPU clock, a
growing heap) hits every system alike. ``gc.collect()`` runs before every
trial; the collector stays on, as it is for users.

A trial sets its system up, measures, tears it down, and returns samples:
``(metric, system, value)``. The report takes, for each metric and system,
the median over the repeats and its spread.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple


class Sample(NamedTuple):
    """One figure of one trial."""

    metric: str
    system: str
    value: float


@dataclass(frozen=True)
class Metric:
    """What a figure is: its unit and which direction is better."""

    name: str
    unit: str
    better: Literal["lower", "higher"]


@dataclass(frozen=True)
class Trial:
    """One system's run of one measurement; ``run`` returns its samples."""

    system: str
    run: Callable[[], Awaitable[Iterable[Sample]]]


@dataclass(frozen=True)
class Group:
    """One measurement on every system, repeated ``repeats`` times (None: the run's default)."""

    scenario: str
    label: str
    trials: Sequence[Trial]
    repeats: int | None = None


@dataclass
class Config:
    """What the command line chose."""

    quick: bool = False
    repeats: int = 5
    postgres_dsn: str | None = None
    workdir: Path = field(default_factory=Path)


@dataclass
class Plan:
    """What a scenario will measure, and the notes about what it skips."""

    groups: list[Group]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """A family of measurements, with the systems its ratios refer to.

    ``floors`` are the systems every row is compared with first (the plain
    asyncio floor; the bare call; memory storage); ``peers`` are the other
    libraries. ``metric`` describes a metric by name.
    """

    name: str
    summary: str
    metrics: dict[str, Metric]
    floors: tuple[str, ...]
    peers: tuple[str, ...]
    plan: Callable[[Config], Plan]

    def metric(self, name: str) -> Metric:
        return self.metrics.get(name) or Metric(name, "", "lower")


@dataclass
class Stat:
    """The figures of one (scenario, metric, system) over the repeats."""

    scenario: str
    metric: str
    system: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


# ---------------------------------------------------------------- measuring helpers


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def latency(
    one: Callable[[], Awaitable[Any]], expected: Any, runs: int, warmup: int
) -> tuple[float, float]:
    """Median and p99, in microseconds, of ``runs`` sequential calls of ``one``.

    Each call must return ``expected`` (the workflow's final counter): a
    benchmark that stopped doing the work would otherwise look fast.
    """
    for _ in range(warmup):
        _check(await one(), expected)
    durations: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        t0 = clock()
        result = await one()
        durations.append((clock() - t0) / 1_000)
        _check(result, expected)
    return statistics.median(durations), percentile(durations, 99)


async def throughput(
    one: Callable[[], Awaitable[Any]], expected: Any, in_flight: int, warmup: int
) -> float:
    """Workflows per second with ``in_flight`` calls of ``one`` started and awaited together."""
    for _ in range(warmup):
        _check(await one(), expected)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(in_flight)))
    elapsed = time.perf_counter() - t0
    for result in results:
        _check(result, expected)
    return in_flight / elapsed


def _check(result: Any, expected: Any) -> None:
    if result != expected:
        raise AssertionError(f"a workflow ended with counter {result!r}, expected {expected!r}")


# ---------------------------------------------------------------- the run


Progress = Callable[[str], None]
"""Called before each trial with its label; the report's progress bar."""


def rotated(trials: Sequence[Trial], shift: int) -> list[Trial]:
    """``trials`` starting ``shift`` places further along (wrapping)."""
    if not trials:
        return []
    shift %= len(trials)
    return [*trials[shift:], *trials[:shift]]


def trial_count(groups: Iterable[Group], repeats: int) -> int:
    """How many trials ``run`` will run: the progress bar's total."""
    return sum((group.repeats or repeats) * len(group.trials) for group in groups)


async def run(groups: Sequence[Group], repeats: int, progress: Progress) -> list[Stat]:
    """Run every group, interleaving its systems; the samples gathered by key."""
    gathered: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for group in groups:
        count = group.repeats or repeats
        for repeat in range(count):
            for trial in rotated(group.trials, repeat):
                progress(f"{group.label} · {trial.system} ({repeat + 1}/{count})")
                gc.collect()
                for sample in await trial.run():
                    gathered[(group.scenario, sample.metric, sample.system)].append(sample.value)
    return [Stat(*key, samples) for key, samples in gathered.items()]
