"""Scenario ``telemetry``: ``benchmarks.telemetry_overhead``'s figures, repeated like the others.

Each repeat calls ``telemetry_overhead.run(quick)``, which times each emitter
with 0, 1 and 5 no-op handlers, and a bare function with the same
arguments, in nanoseconds per call (each figure the median of several
``timeit`` repeats). The rows are per emitter; the floor is the bare call.
"""

from __future__ import annotations

from benchmarks import telemetry_overhead
from benchmarks.harness import Config, Group, Metric, Plan, Sample, Scenario, Trial

BARE = "bare call"
"""The system name of the floor rows."""


def _system(handlers: int | str | None) -> str:
    if handlers is None:
        return BARE
    if isinstance(handlers, str):  # a reporter
        return handlers
    return f"{handlers} handler" + ("" if handlers == 1 else "s")


def _trial(quick: bool) -> Trial:
    async def run() -> list[Sample]:
        samples = []
        for row in telemetry_overhead.run(quick):
            case = row["case"]
            if row["handlers"] is None:  # "bare call (step_stop args)"
                case = case.removeprefix("bare call (").removesuffix(" args)")
            samples.append(Sample(case, _system(row["handlers"]), row["ns"]))
        return samples

    return Trial("emitters", run)


def plan(config: Config) -> Plan:
    """One trial per repeat: the whole ``telemetry_overhead.run``."""
    return Plan([Group("telemetry", "telemetry emitters", [_trial(config.quick)])])


SCENARIO = Scenario(
    name="telemetry",
    summary="one telemetry emitter call with 0, 1, 5 no-op handlers, beside a bare call",
    metrics={case: Metric(case, "ns", "lower") for case in telemetry_overhead.CASES},
    floors=(BARE,),
    peers=(),
    plan=plan,
)
