"""The ``hephaestus`` command: ``hephaestus demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

import anyio
import structlog

from hephaestus.core.instance import Instance
from hephaestus.demo import run_demo
from hephaestus.runtime.storage.sqlite import SQLiteStorage
from hephaestus.telemetry import LogHandler

__all__ = ["main"]


def _configure_logging(verbose: bool) -> None:
    """The command is an application: it may configure structlog (the library never does)."""
    level = logging.DEBUG if verbose else logging.INFO
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
    )


def _demo(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    with tempfile.TemporaryDirectory(prefix="hephaestus-demo-") as folder:
        path = args.db or os.path.join(folder, "demo.db")
        LogHandler.attach()
        try:
            instances = anyio.run(_run_demo_on, path)
        finally:
            LogHandler.detach()
        for instance in instances:
            steps = " -> ".join(entry.step.__qualname__ for entry in instance.execution_history)
            print(f"{instance.id}: {instance.status} ({steps})")
        print(f"stored in {path}" if args.db else "stored in a SQLite file, removed on exit")
    return 0


async def _run_demo_on(path: str) -> list[Instance]:
    async with SQLiteStorage(path) as storage:
        return await run_demo(storage)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="hephaestus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the order demo with the LogHandler printing")
    demo.add_argument("-v", "--verbose", action="store_true", help="show debug events too")
    demo.add_argument(
        "--db", help="the SQLite file to keep the instances in (default: a temporary one)"
    )
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
