"""What a telemetry emitter costs per call, beside a bare Python function call.

Run ``python -m benchmarks.telemetry_overhead`` (``--quick`` for a short run).
For each emitter it measures nanoseconds per call with 0, 1 and 5 no-op
handlers attached, and a bare function with the same arguments that does
nothing, in the same run; each figure is the median of several ``timeit``
repeats. The table shows each figure as a ratio to the bare call.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from hephaestus import Context, Done, Instance, Ok, Status, Step, Workflow, telemetry


class Validate(Step):
    """The step the figures report on; it never runs here."""

    events = ("valid",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("valid")


class Ship(Step):
    """A transition target."""

    events = ("shipped",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("shipped")


class BenchFlow(Workflow):
    """Validate, then Ship."""

    start = Validate
    transitions = {Validate: {"valid": Ship}, Ship: {"shipped": Done}}  # noqa: RUF012 - read by Workflow


INSTANCE = Instance(
    id="bench::1",
    workflow=BenchFlow,
    workflow_version=1,
    status=Status.RUNNING,
    context=Context({}),
    telemetry_metadata={"request_id": "r-1"},
    started_at=time.time_ns(),
    started_monotonic=time.monotonic_ns(),
)
STOP_EXTRA = {"step_key": "validate", "event": "valid", "has_context_updates": False}
TRANSITION_EXTRA: dict[str, Any] = {}


def bare_step_stop(instance: Any, step: Any, duration: Any, extra_metadata: Any) -> None:
    """The floor: a call with step_stop's arguments that does nothing."""


def bare_workflow_transition(
    instance: Any, from_step: Any, event: Any, targets: Any, extra_metadata: Any
) -> None:
    """The floor: a call with workflow_transition's arguments that does nothing."""


def noop(event_name: Any, measurements: Any, metadata: Any, config: Any) -> None:
    """A handler that does nothing."""


CASES: dict[str, tuple[str, Callable[..., None], tuple[Any, ...]]] = {
    "step_stop": (
        "step_stop",
        bare_step_stop,
        (INSTANCE, Validate, 1_500, STOP_EXTRA),
    ),
    "workflow_transition": (
        "workflow_transition",
        bare_workflow_transition,
        (INSTANCE, Validate, "valid", [Ship], TRANSITION_EXTRA),
    ),
}


def _ns_per_call(
    function: Callable[..., None], args: tuple[Any, ...], number: int, repeat: int
) -> float:
    """Median over ``repeat`` runs of the nanoseconds one call of ``function(*args)`` takes."""
    timer = timeit.Timer("f(*a)", globals={"f": function, "a": args})
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e9


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure every case; one row per (emitter, handler count) plus one per bare call."""
    number, repeat = (20_000, 5) if quick else (200_000, 9)
    rows: list[dict[str, Any]] = []
    alone = 0.0
    for label, (emitter_name, bare, args) in CASES.items():
        emitter = getattr(telemetry, emitter_name)
        event_name = getattr(telemetry, f"{emitter_name}_event")()
        bare_ns = _ns_per_call(bare, args, number, repeat)
        rows.append(
            {"case": f"bare call ({label} args)", "handlers": None, "ns": bare_ns, "ratio": 1.0}
        )
        for count in (0, 1, 5):
            ids = [f"benchmark-noop-{index}" for index in range(count)]
            for handler_id in ids:
                telemetry.attach(handler_id, event_name, noop)
            try:
                ns = _ns_per_call(emitter, args, number, repeat)
            finally:
                for handler_id in ids:
                    telemetry.detach(handler_id)
            rows.append({"case": label, "handlers": count, "ns": ns, "ratio": ns / bare_ns})
            if count == 0:
                alone = ns
        if label == "step_stop":  # the event of the step duration histogram
            ns = _with_prometheus(emitter, args, number, repeat)
            rows.append({"case": label, "handlers": PROMETHEUS, "ns": ns, "ratio": ns / bare_ns})
            added = ns - alone
            rows.append({"case": label, "handlers": ADDED, "ns": added, "ratio": added / bare_ns})
    return rows


PROMETHEUS = "PrometheusReporter"
ADDED = "PrometheusReporter, added"
"""The rows of ``step_stop`` with a ``PrometheusReporter(metrics())`` on a registry of its
own: the call, and what the reporter adds to the call with no handler."""


def _with_prometheus(
    emitter: Callable[..., None], args: tuple[Any, ...], number: int, repeat: int
) -> float:
    from prometheus_client import CollectorRegistry

    from hephaestus.telemetry.metrics import metrics
    from hephaestus.telemetry.prometheus import PrometheusReporter

    with PrometheusReporter(metrics(), registry=CollectorRegistry()):
        return _ns_per_call(emitter, args, number, repeat)


def main(argv: list[str]) -> None:
    """Print the table."""
    rows = run(quick="--quick" in argv)
    print(f"{'case':<36} {'handlers':>26} {'ns/call':>9} {'x bare':>7}")
    for row in rows:
        handlers = "" if row["handlers"] is None else str(row["handlers"])
        print(f"{row['case']:<36} {handlers:>26} {row['ns']:>9.1f} {row['ratio']:>7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
