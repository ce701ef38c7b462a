"""``python -m benchmarks``: every scenario in one process, one table of figures and ratios.

Options: ``--quick`` (a smoke run: tiny counts, one repeat), ``--json PATH``
(every figure and sample), ``--only SCENARIO[,...]``, ``--repeats N``
(default 5; 1 with ``--quick``), ``--postgres DSN`` (default
``$HEPHAESTUS_BENCH_DSN``, else ``$HEPHAESTUS_TEST_DSN``, else the local
``test`` database; ``none`` skips PostgreSQL). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks import async_resume, map1000, report, storage, telemetry_scenario, workflows
from benchmarks.harness import Config, Group, Scenario, Stat, run, trial_count

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        workflows.LINEAR10_SCENARIO,
        workflows.FANOUT8_SCENARIO,
        async_resume.SCENARIO,
        map1000.SCENARIO,
        telemetry_scenario.SCENARIO,
        storage.SCENARIO,
    )
}

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Hephaestus beside plain asyncio, LangGraph, pydantic-graph and DBOS.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, 1 repeat")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    parser.add_argument(
        "--only",
        metavar="SCENARIO[,...]",
        help=f"run only these scenarios (of: {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 5)")
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        default=os.environ.get(
            "HEPHAESTUS_BENCH_DSN", os.environ.get("HEPHAESTUS_TEST_DSN", DEFAULT_DSN)
        ),
        help="PostgreSQL for the storage scenario ('none' to skip it)",
    )
    args = parser.parse_args(argv)
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown or not names:
            parser.error(f"--only: unknown scenario {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(SCENARIOS)}")  # fmt: skip
        args.only = names
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr (nothing without rich); yields the harness's callback."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        yield lambda label: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    started = 0
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=total)

        def advance(label: str) -> None:
            nonlocal started
            bar.update(task, description=label, completed=started)
            started += 1

        yield advance
        bar.update(task, completed=total)


async def measure(groups: Sequence[Group], repeats: int) -> list[Stat]:
    with progress_bar(trial_count(groups, repeats)) as advance:
        return await run(groups, repeats, advance)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    chosen = [SCENARIOS[name] for name in (args.only or SCENARIOS)]
    repeats = args.repeats or (1 if args.quick else 5)
    dsn = None if args.postgres.lower() in ("", "none") else args.postgres
    with tempfile.TemporaryDirectory(prefix="heph-bench-") as workdir:
        config = Config(quick=args.quick, repeats=repeats, postgres_dsn=dsn, workdir=Path(workdir))
        groups: list[Group] = []
        notes: list[str] = []
        for scenario in chosen:
            plan = scenario.plan(config)
            groups += plan.groups
            notes += [note for note in plan.notes if note not in notes]
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        load_at_start = report.load()
        stats = asyncio.run(measure(groups, repeats))
    table_rows = report.rows(stats, chosen)
    measured = report.targets(stats)
    info = report.machine(load_at_start)
    command = " ".join(["python -m benchmarks", *argv])
    report.print_report(table_rows, measured, info, notes, command)
    if args.json:
        settings = {
            "command": command,
            "quick": args.quick,
            "repeats": repeats,
            "scenarios": [scenario.name for scenario in chosen],
            "postgres": dsn is not None,
        }
        report.write_json(args.json, table_rows, measured, info, notes, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
