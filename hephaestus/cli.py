"""The ``hephaestus`` command: ``demo``; ``instances`` and ``workflows`` (``docs/cli.md``);
``web`` (``docs/dashboard.md``); ``worker`` and ``db migrate`` (distributed runner)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

import anyio
import structlog

from hephaestus.core.instance import Instance
from hephaestus.operating.commands import Parser, add_commands
from hephaestus.runtime.storage.sqlite import SQLiteStorage
from hephaestus.telemetry import LogHandler, metrics

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
        if not args.db:
            print("stored in a SQLite file, removed on exit (keep it with --db demo.db)")
            return 0
        waiting = [instance.id for instance in instances if not instance.terminal]
        print(f"stored in {path}; see them with: hephaestus instances list --database {path}")
        for instance_id in waiting:
            print(
                f"{instance_id} waits for its confirmation: hephaestus instances resume "
                f"{instance_id} received --database {path}"
            )
    return 0


async def _run_demo_on(path: str) -> list[Instance]:
    from hephaestus.demo import run_demo  # noqa: PLC0415

    async with SQLiteStorage(path) as storage:
        return await run_demo(storage)


def _dsn(args: argparse.Namespace) -> str:
    """``--dsn``, else ``$HEPHAESTUS_DSN``, else ``$HEPHAESTUS_DATABASE`` (as the operators')."""
    dsn: str | None = (
        args.dsn or os.environ.get("HEPHAESTUS_DSN") or os.environ.get("HEPHAESTUS_DATABASE")
    )
    if not dsn:
        raise SystemExit("hephaestus: give --dsn or set HEPHAESTUS_DSN (or HEPHAESTUS_DATABASE)")
    return dsn


def _worker(args: argparse.Namespace) -> int:
    # The distributed extra is optional: import it only for the commands that need it.
    from hephaestus.distributed import Worker  # noqa: PLC0415

    _configure_logging(args.verbose)
    for module in args.imports:  # the workflows' modules, so that their steps are known
        importlib.import_module(module)
    if args.log_events:
        LogHandler.attach()
    if args.metrics_port is not None:
        _serve_metrics(args.metrics_host, args.metrics_port)
    worker = Worker(
        _dsn(args),
        schema=args.schema,
        concurrency=args.concurrency,
        spread_concurrency=args.spread_concurrency,
        name=args.name,
    )
    anyio.run(worker.run)
    return 0


def _serve_metrics(host: str, port: int) -> None:
    """Record every metric of the events and serve them on ``host:port`` (/metrics)."""
    try:
        from prometheus_client import start_http_server  # noqa: PLC0415

        from hephaestus.telemetry.prometheus import PrometheusReporter  # noqa: PLC0415
    except ImportError:
        raise SystemExit(
            "hephaestus: --metrics-port needs prometheus_client: "
            "pip install 'hephaestus[prometheus]'"
        ) from None
    PrometheusReporter(metrics.metrics()).attach()
    start_http_server(port, addr=host)


def _migrate(args: argparse.Namespace) -> int:
    from hephaestus.distributed import make_pool, migrate  # noqa: PLC0415

    async def run() -> None:
        async with make_pool(_dsn(args), args.schema, 2) as pool:
            await migrate(pool, args.schema)

    anyio.run(run)
    print(f"schema {args.schema!r} is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = Parser(prog="hephaestus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the order demo with the LogHandler printing")
    demo.add_argument("-v", "--verbose", action="store_true", help="show debug events too")
    demo.add_argument(
        "--db", help="the SQLite file to keep the instances in (default: a temporary one)"
    )
    demo.set_defaults(func=_demo)
    add_commands(commands)

    def database(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--dsn", help="the PostgreSQL DSN (default: $HEPHAESTUS_DSN, else $HEPHAESTUS_DATABASE)"
        )
        command.add_argument("--schema", default="hephaestus", help="the PostgreSQL schema")

    worker = commands.add_parser("worker", help="run the distributed runner's jobs")
    database(worker)
    worker.add_argument(
        "--concurrency", type=int, default=100, help="instances driven at once (default 100)"
    )
    worker.add_argument(
        "--spread-concurrency", type=int, default=10, metavar="N",
        help="spread steps (Step.spread) run here at once; 0: none (default 10)",
    )  # fmt: skip
    worker.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve Prometheus metrics on this port (/metrics); one port per worker process",
    )  # fmt: skip
    worker.add_argument(
        "--metrics-host", default="127.0.0.1",
        help="the address the metrics are served on (default 127.0.0.1; 0.0.0.0 for all)",
    )  # fmt: skip
    worker.add_argument("--name", help="the worker's name in telemetry and procrastinate")
    worker.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import this module first (repeatable)",
    )  # fmt: skip
    worker.add_argument("--log-events", action="store_true", help="attach the LogHandler")
    worker.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    worker.set_defaults(func=_worker)

    db = commands.add_parser("db", help="manage the distributed runner's database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_migrate = db_commands.add_parser("migrate", help="create or upgrade the schema")
    database(db_migrate)
    db_migrate.set_defaults(func=_migrate)

    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
