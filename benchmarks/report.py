"""The report: one table of every figure with its ratios, the targets, the machine, and JSON.

Each row is one metric of one system in one scenario: the median over the
repeats, its spread (min-max over the repeats), then its ratio to each floor
of the scenario (the plain-asyncio floors; the bare call; memory storage)
and to each peer measured in the same run. A ratio is the row's figure
divided by the reference's figure, in the figure's own unit: a throughput
ratio of 50x is 50 times the reference's rate, a latency ratio of 0.033x is
a thirtieth of the reference's time.

The table is drawn with rich when it is installed (the ``bench`` extra),
as plain text otherwise.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.harness import Scenario, Stat
from benchmarks.storage import DBOS, SQLITE_FULL, SQLITE_NORMAL

PACKAGES = (
    "hephaestus",
    "langgraph",
    "pydantic-graph",
    "dbos",
    "structlog",
    "anyio",
    "psycopg",
    "rich",
)


def machine(load_at_start: list[float] | None = None) -> dict[str, Any]:
    """What the figures were measured on (``load_at_start``: ``load()`` before the run)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": {"start": load_at_start, "end": load()},
        "packages": versions,
    }


def load() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, when the system tells them."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------- rows and ratios


def _key(stat: Stat) -> tuple[str, str, str]:
    return stat.scenario, stat.metric, stat.system


def rows(stats: Sequence[Stat], scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """One dict per stat, in scenario then metric order, with its ratios to floors and peers."""
    by_key = {_key(stat): stat for stat in stats}
    result: list[dict[str, Any]] = []
    for scenario in scenarios:
        mine = [stat for stat in stats if stat.scenario == scenario.name]
        metric_order = [*scenario.metrics, *(s.metric for s in mine)]
        mine.sort(key=lambda stat: metric_order.index(stat.metric))
        for stat in mine:
            metric = scenario.metric(stat.metric)

            def ratios(names: Sequence[str], stat: Stat = stat) -> dict[str, float]:
                found = {}
                for name in names:
                    reference = by_key.get((stat.scenario, stat.metric, name))
                    if reference is not None and name != stat.system and reference.median:
                        found[name] = stat.median / reference.median
                return found

            result.append(
                {
                    "scenario": stat.scenario,
                    "metric": stat.metric,
                    "unit": metric.unit,
                    "better": metric.better,
                    "system": stat.system,
                    "median": stat.median,
                    "min": stat.low,
                    "max": stat.high,
                    "samples": stat.samples,
                    "vs_floor": ratios(scenario.floors),
                    "vs_peers": ratios(scenario.peers),
                }
            )
    return result


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A ratio (or an absolute figure) the project aims for."""

    label: str
    scenario: str
    metric: str
    system: str
    reference: str | None  # None: compare the figure itself
    op: Literal[">=", "<="]
    bound: float
    shown: str  # the bound as the project states it
    unit: str = "B"  # of an absolute figure


TARGETS = (
    Target("linear10 throughput vs LangGraph", "linear10", "throughput", "Hephaestus",
           "LangGraph", ">=", 50, ">= 50x"),
    Target("linear10 throughput vs pydantic-graph", "linear10", "throughput", "Hephaestus",
           "pydantic-graph", ">=", 25, ">= 25x"),
    Target("linear10 latency vs LangGraph", "linear10", "latency median", "Hephaestus",
           "LangGraph", "<=", 1 / 30, "<= 1/30"),
    Target("fanout8 throughput vs LangGraph", "fanout8", "throughput", "Hephaestus",
           "LangGraph", ">=", 30, ">= 30x"),
    Target("async round trip vs LangGraph", "async_resume", "round trip median", "Hephaestus",
           "LangGraph", "<=", 1 / 30, "<= 1/30"),
    Target("memory per parked workflow", "async_resume", "memory per parked", "Hephaestus",
           None, "<=", 2048, "<= 2 KiB"),
    Target("map1000 throughput vs LangGraph", "map1000", "throughput", "Hephaestus",
           "LangGraph", ">=", 20, ">= 20x"),
    Target("memory per in-flight map item", "map1000", "memory per in-flight item",
           "Hephaestus", None, "<=", 1024, "<= 1 KiB"),
    Target("LogHandler to null, linear10 latency", "linear10", "latency median",
           "Hephaestus + LogHandler", "Hephaestus", "<=", 2, "<= 2x"),
    Target("LogHandler to null, linear10 throughput", "linear10", "throughput",
           "Hephaestus + LogHandler", "Hephaestus", ">=", 0.5, ">= 1/2"),
    Target("OTel bridge on, linear10 throughput vs LangGraph", "linear10", "throughput",
           "Hephaestus + OTel", "LangGraph", ">=", 10, ">= 10x"),
    Target("PrometheusReporter, added per step:stop", "telemetry", "step_stop",
           "PrometheusReporter, added", None, "<=", 2000, "<= 2 µs", "ns"),
    Target("SQLite full vs DBOS SQLite, linear10 throughput", "storage", "linear10 throughput",
           SQLITE_FULL, DBOS, ">=", 30, ">= 30x"),
    Target("SQLite normal vs DBOS SQLite, linear10 throughput", "storage",
           "linear10 throughput", SQLITE_NORMAL, DBOS, ">=", 30, ">= 30x"),
)  # fmt: skip


def _ratio_text(value: float, bound: float) -> str:
    """A ratio as the target states it: ``1/19.2`` beside a ``1/30`` bound, else ``25.3x``."""
    if bound < 1 and value > 0:
        return f"1/{1 / value:.3g}"
    return ratio(value)


def targets(stats: Sequence[Stat]) -> list[dict[str, Any]]:
    """Each target, measured: met or missed, and by how much (None when not measured)."""
    by_key = {_key(stat): stat for stat in stats}
    result = []
    for target in TARGETS:
        mine = by_key.get((target.scenario, target.metric, target.system))
        other = by_key.get((target.scenario, target.metric, target.reference or ""))
        entry: dict[str, Any] = {"target": target.label, "bound": target.shown}
        if mine is None or (target.reference is not None and other is None):
            entry.update(measured=None, met=None, detail="not measured in this run")
            result.append(entry)
            continue
        if other is None:
            value = mine.median
            measured = f"{value:,.0f} {target.unit}"
        else:
            value = mine.median / other.median
            measured = _ratio_text(value, target.bound)
        met = value >= target.bound if target.op == ">=" else value <= target.bound
        # How far from the bound, as a factor >= 1.
        factor = value / target.bound if target.op == ">=" else target.bound / value
        factor = factor if met else 1 / factor
        detail = f"met, {factor:.2f}x margin" if met else f"missed by a factor of {factor:.2f}"
        entry.update(value=value, measured=measured, met=met, detail=detail)
        result.append(entry)
    return result


# ---------------------------------------------------------------- formatting


def number(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def figure(value: float, unit: str) -> str:
    """A figure with its unit; bytes past 10 KiB in KiB."""
    if unit == "B" and value >= 10 * 1024:
        return f"{number(value / 1024)} KiB"
    return f"{number(value)} {unit}".rstrip()


def ratio(value: float) -> str:
    """``1,234x``, ``12.3x``, ``1.23x``, ``0.0123x``: three significant figures, never exponents."""
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    if value >= 1:
        return f"{value:.2f}x"
    return f"{value:#.3g}x"


def _ratios_text(ratios: dict[str, float], short: Callable[[str], str]) -> str:
    return "  ".join(f"{short(name)} {ratio(value)}" for name, value in ratios.items())


def _short(name: str) -> str:
    """Reference names as the ratio columns show them."""
    return {
        "asyncio (await)": "await",
        "asyncio (tasks)": "tasks",
        "asyncio (gather)": "gather",
        "Hephaestus memory": "memory",
        "DBOS SQLite": "DBOS",
    }.get(name, name)


HEADERS = ("Scenario", "Metric", "System", "Median", "Spread (min-max)", "vs floor", "vs peers")


def table_cells(table_rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The table's cells, row by row (the scenario named on its first row only)."""
    cells = []
    previous = None
    for row in table_rows:
        scenario = row["scenario"] if row["scenario"] != previous else ""
        previous = row["scenario"]
        cells.append(
            (
                scenario,
                row["metric"] + (" ↑" if row["better"] == "higher" else ""),
                row["system"],
                figure(row["median"], row["unit"]),
                f"{number(row['min'])}-{number(row['max'])}",
                _ratios_text(row["vs_floor"], _short),
                _ratios_text(row["vs_peers"], _short),
            )
        )
    return cells


def machine_lines(info: dict[str, Any]) -> list[str]:
    """The machine, in a few lines above the table."""
    packages = ", ".join(
        f"{name} {version}" for name, version in info["packages"].items() if version
    )
    return [
        f"{info['cpu']}, {info['cores']} cores; {info['implementation']} {info['python']} "
        f"on {info['platform']}; SQLite {info['sqlite']}",
        f"load average (1, 5, 15 min): {info['load_average']['start']} at the start, "
        f"{info['load_average']['end']} at the end",
        packages,
    ]


def target_lines(measured: Sequence[dict[str, Any]]) -> list[str]:
    """One line per target."""
    lines = []
    for entry in measured:
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[entry["met"]]
        shown = entry["measured"] or "-"
        lines.append(
            f"{mark} {entry['target']}: {shown} (target {entry['bound']}); {entry['detail']}"
        )
    return lines


def print_report(
    table_rows: Sequence[dict[str, Any]],
    measured: Sequence[dict[str, Any]],
    info: dict[str, Any],
    notes: Sequence[str],
    command: str,
) -> None:
    """Print the header, the table, the targets and the notes on stdout."""
    cells = table_cells(table_rows)
    header = [f"$ {command}", *machine_lines(info)]
    footer = [
        "Ratios: the row's median divided by the reference's, in the row's unit "
        "(↑: higher is better; otherwise lower is better).",
        "",
        "Targets:",
        *target_lines(measured),
    ]
    if notes:
        footer += ["", "Notes:", *(f"- {note}" for note in notes)]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(header, cells, footer)
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    for line in header:
        console.print(line, highlight=False, markup=False)
    table = Table(title="Hephaestus benchmarks", show_lines=False)
    for index, name in enumerate(HEADERS):
        table.add_column(name, justify="right" if index in (3, 4) else "left", no_wrap=True)
    previous = None
    for row, cell in zip(table_rows, cells, strict=True):
        if previous is not None and row["scenario"] != previous:
            table.add_section()
        previous = row["scenario"]
        table.add_row(*cell)
    console.print(table)
    for line in footer:
        console.print(line, highlight=False, markup=False)


def _print_plain(header: list[str], cells: list[tuple[str, ...]], footer: list[str]) -> None:
    widths = [max(len(c[i]) for c in [HEADERS, *cells]) for i in range(len(HEADERS))]
    for line in header:
        print(line)
    print("  ".join(name.ljust(width) for name, width in zip(HEADERS, widths, strict=True)))
    for cell in cells:
        print("  ".join(text.ljust(width) for text, width in zip(cell, widths, strict=True)))
    for line in footer:
        print(line)


def write_json(
    path: Path,
    table_rows: Sequence[dict[str, Any]],
    measured: Sequence[dict[str, Any]],
    info: dict[str, Any],
    notes: Sequence[str],
    config: dict[str, Any],
) -> None:
    """Everything in the report, and every sample, as JSON."""
    document = {
        "machine": info,
        "config": config,
        "rows": list(table_rows),
        "targets": list(measured),
        "notes": list(notes),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
