"""``hephaestus instances ...`` and ``hephaestus workflows ...``: see ``docs/cli.md``.

Reading commands open the storage alone; acting commands (``cancel``,
``resume``, ``send``) go through a runner (``hephaestus.operating.database``).
Exit codes: 0 done; 1 the command could not be carried out (no such
instance or database, the storage is held, the runner refused the change,
the confirmation was not given); 2 the command line is wrong. Errors are one
line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn, TextIO

import anyio
import structlog

from hephaestus._show import text_of
from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import (
    HephaestusError,
    InstanceNotFound,
    NotSerializable,
    StorageHeld,
)
from hephaestus.operating import catalog, text, views
from hephaestus.operating.database import (
    ENV,
    Database,
    NoDatabase,
    acting,
    delivery,
    follows,
    reading,
)
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.base import COUNT_FIELDS, MAX_PAGE, Page, Storage

__all__ = ["Parser", "UsageError", "add_commands"]

_UNFINISHED: Final = ("pending", "running", "waiting")
_FORMATS: Final = ("text", "json", "jsonl")
_GRAPH_FORMATS: Final = ("text", "json", "mermaid")
_AGO: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """The command line is wrong: exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: the command, the error, a pointer."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


Action = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


# ---------------------------------------------------------------------- the parser

_EXAMPLES: Final = {
    "list": "hephaestus instances list --database demo.db --status failed,waiting --limit 20",
    "count": "hephaestus instances count --database demo.db --by status,workflow",
    "show": "hephaestus instances show order-1 --database demo.db --context",
    "history": "hephaestus instances history order-1 --database demo.db --follow",
    "cancel": (
        "hephaestus instances cancel order-1 order-2 --database demo.db\n"
        "  hephaestus instances cancel --status waiting --started-before 2d --yes"
    ),
    "resume": (
        'hephaestus instances resume order-1 approved --data \'{"by": "ana"}\' --database demo.db'
    ),
    "send": 'hephaestus instances send order-1 approved --data \'{"by": "ana"}\'',
    "graph": "hephaestus instances graph order-1 --database demo.db -o mermaid",
    "workflows list": "hephaestus workflows list --app shop.flows --database demo.db",
    "workflows graph": "hephaestus workflows graph shop.flows:Checkout -o mermaid",
    "web": "hephaestus web --database demo.db --app shop.flows --port 8050 --read-write",
}


def add_commands(commands: Any) -> None:
    """Add ``instances`` and ``workflows`` to the ``hephaestus`` command's subcommands."""
    common = Parser(add_help=False)
    common.add_argument(
        "--database", "-d", metavar="DB",
        help=f"a SQLite file or a PostgreSQL DSN (default: ${ENV})",
    )  # fmt: skip
    common.add_argument(
        "--schema", default="hephaestus", help="the PostgreSQL schema (default: hephaestus)"
    )
    common.add_argument(
        "--app", action="append", default=[], metavar="MODULE",
        help="import this module first, for its workflows (repeatable)",
    )  # fmt: skip

    def output(choices: Sequence[str]) -> Parser:
        parent = Parser(add_help=False)
        parent.add_argument(
            "-o", "--output", choices=choices, default="text",
            help=f"output format: {', '.join(choices)} (default: text)",
        )  # fmt: skip
        return parent

    rows = output(_FORMATS)

    def leaf(
        group: Any, name: str, summary: str, action: Action, *parents: Parser, family: str = ""
    ) -> Parser:
        example = _EXAMPLES[f"{family} {name}" if family else name]
        parser: Parser = group.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common, *parents],
        )
        parser.set_defaults(func=_runs(action))
        return parser

    instances = commands.add_parser(
        "instances",
        help="see and steer workflow instances (list, show, history, cancel, ...)",
        description="See and steer the instances of a database (docs/cli.md).",
    )
    group = instances.add_subparsers(dest="instances_command", required=True, metavar="COMMAND")

    listing = leaf(group, "list", "list instances, newest first", _list, rows)
    _filters(listing)
    listing.add_argument(
        "--limit", type=int, default=20, help=f"instances per page (1 to {MAX_PAGE}; default 20)"
    )
    listing.add_argument("--after", metavar="CURSOR", help="the page after this cursor")
    listing.add_argument("--oldest-first", action="store_true", help="oldest first")
    listing.add_argument(
        "--all", action="store_true", help="every matching instance, page after page"
    )

    counting = leaf(group, "count", "count instances by status and workflow", _count, rows)
    counting.add_argument(
        "--by", default="status,workflow", metavar="FIELDS",
        help=f"fields to group by, of {', '.join(COUNT_FIELDS)} (default: status,workflow)",
    )  # fmt: skip

    showing = leaf(group, "show", "show an instance: status, steps, failure, context", _show, rows)
    showing.add_argument("id", type=_instance_id, help="the instance's id")
    showing.add_argument("--context", action="store_true", help="show the context's values")

    history = leaf(group, "history", "show an instance's history", _history, rows)
    history.add_argument("id", type=_instance_id, help="the instance's id")
    history.add_argument(
        "--follow", "-f", action="store_true", help="print new records until the instance ends"
    )
    history.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS",
        help="how often --follow reads the history (default 0.5)",
    )  # fmt: skip

    cancelling = leaf(group, "cancel", "cancel instances, by id or by filter", _cancel, rows)
    cancelling.add_argument(
        "ids", nargs="*", type=_instance_id, metavar="ID", help="the instances' ids"
    )
    _filters(cancelling)
    cancelling.add_argument(
        "--yes", "-y", action="store_true", help="cancel what the filters match without asking"
    )

    resuming = leaf(group, "resume", "give a waiting step its event", _resume, rows)
    resuming.add_argument("id", type=_instance_id, help="the instance's id")
    resuming.add_argument("event", help="the event, one the waiting step declares")
    resuming.add_argument("--data", metavar="JSON", help="a JSON object: the step's output")
    resuming.add_argument("--step", help="the waiting step's key, when several wait")

    sending = leaf(group, "send", "send an instance an event, kept until a step takes it", _send)
    sending.add_argument("id", type=_instance_id, help="the instance's id")
    sending.add_argument("event", help="the event, one a step of the workflow declares")
    sending.add_argument("--data", metavar="JSON", help="a JSON object: the step's output")
    sending.add_argument(
        "-o", "--output", choices=_FORMATS, default="text", help="output format (default: text)"
    )

    shapes = output(_GRAPH_FORMATS)
    drawing = leaf(group, "graph", "draw an instance's workflow, its steps' states", _graph, shapes)
    drawing.add_argument("id", type=_instance_id, help="the instance's id")

    workflows = commands.add_parser(
        "workflows",
        help="list workflow definitions and draw their graphs",
        description="The workflow definitions of --app and of a database (docs/cli.md).",
    )
    wgroup = workflows.add_subparsers(dest="workflows_command", required=True, metavar="COMMAND")
    leaf(
        wgroup, "list", "list workflows and their instances by status", _workflows, rows,
        family="workflows",
    )  # fmt: skip
    wgraph = leaf(
        wgroup, "graph", "draw a workflow's graph", _workflow_graph, shapes, family="workflows"
    )
    wgraph.add_argument("workflow", help="an import path (shop.flows:Checkout) or a class name")
    wgraph.add_argument("--version", type=int, help="the version of a workflow family")

    web = leaf(commands, "web", "serve the dashboard (docs/dashboard.md)", _web)
    web.add_argument(
        "--host", default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1; the dashboard has no login)",
    )  # fmt: skip
    web.add_argument("--port", type=int, default=8050, help="the port (default 8050; 0: any)")
    web.add_argument(
        "--read-write", action="store_true",
        help="offer actions (cancel, resume, send); read-only without it",
    )  # fmt: skip
    web.add_argument(
        "--refresh", type=float, default=2.0, metavar="SECONDS",
        help="how often live parts of the pages refresh (default 2)",
    )  # fmt: skip


def _instance_id(text: str) -> str:
    """An id argument as the runners check it: one they would refuse is a usage error."""
    try:
        return check_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _filters(parser: Parser) -> None:
    parser.add_argument(
        "--status", metavar="S[,S]",
        help=f"any of these statuses: {', '.join(s.value for s in Status)}",
    )  # fmt: skip
    parser.add_argument("--workflow", "-w", help="an import path (shop.flows:Checkout)")
    parser.add_argument("--version", type=int, help="the workflow's version")
    parser.add_argument("--id-prefix", metavar="PREFIX", help="ids starting with PREFIX")
    for field in ("started", "updated"):
        for side in ("after", "before"):
            parser.add_argument(
                f"--{field}-{side}", metavar="TIME",
                help=f"{field} {side} TIME (ISO 8601, or an age: 30s, 15m, 2h, 7d)",
            )  # fmt: skip


# ---------------------------------------------------------------------- running


def _runs(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        _log_to_stderr()
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: the project's own modules
        try:
            for module in args.app:
                _import(module)
            return anyio.run(action, args)
        except UsageError as exc:
            return _fail(args, str(exc), 2)
        except (HephaestusError, OSError) as exc:
            return _fail(args, _reason(exc), 1)
        except KeyboardInterrupt:
            return 130

    return run


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    command = " ".join(
        part
        for part in ("hephaestus", args.command, getattr(args, f"{args.command}_command", None))
        if part
    )
    print(f"{command}: {' '.join(message.split())}", file=sys.stderr)
    return code


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StorageHeld):
        return (
            f"{exc.storage} is held by {exc.holder}: a LocalRunner drives its instances; "
            "act through that runner's API in its process (runner.cancel, runner.resume, "
            "runner.send), or stop it and run this command again"
        )
    if isinstance(exc, (InstanceNotFound, NoDatabase)):
        return str(exc)
    return text_of(exc)


def _log_to_stderr(level: int = logging.WARNING) -> None:
    """The library's warnings (an instance a page skipped) go to standard error."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"--app {module}: {text_of(exc)}") from None


def _database(args: argparse.Namespace) -> Database:
    target = args.database or os.environ.get(ENV)
    if not target:
        raise UsageError(f"give --database (a SQLite file or a PostgreSQL DSN) or set ${ENV}")
    return Database(target, args.schema)


def _emit(args: argparse.Namespace, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON (``-o json``, ``-o jsonl``: one line) or render it as text."""
    if args.output == "text":
        render()
    else:
        _json_line(sys.stdout, data, indent=2 if args.output == "json" else None)


def _json_line(out: TextIO, data: Any, *, indent: int | None = None) -> None:
    out.write(json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")
    out.flush()


# ---------------------------------------------------------------------- filters


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """The filters of ``list`` and ``cancel`` as ``Storage.page``'s arguments."""
    chosen: dict[str, Any] = {}
    if args.status:
        statuses = [part.strip() for part in args.status.split(",") if part.strip()]
        known = [status.value for status in Status]
        for status in statuses:
            if status not in known:
                raise UsageError(
                    f"--status {status!r} is not a status: choose from {', '.join(known)}"
                )
        chosen["status_in"] = statuses
    if args.workflow:
        chosen["workflow"] = _workflow_path(args.workflow)
    if args.version is not None:
        chosen["workflow_version"] = args.version
    if args.id_prefix:
        chosen["id_prefix"] = args.id_prefix
    now = datetime.now(UTC)
    for field in ("started", "updated"):
        for side in ("after", "before"):
            value = getattr(args, f"{field}_{side}")
            if value is not None:
                chosen[f"{field}_{side}"] = _when(f"--{field}-{side}", value, now)
    return chosen


def _workflow_path(text: str) -> str:
    """A ``--workflow`` as the import path instances are stored under."""
    if ":" in text:
        return text
    found = [w for w in catalog.imported() if w.__qualname__ == text]
    paths = sorted({codec.import_path(w) for w in found})
    if len(paths) == 1:
        return paths[0]
    if not paths:
        raise UsageError(
            f"--workflow {text!r}: give its import path (module:Class), "
            "or import its module with --app"
        )
    raise UsageError(f"--workflow {text!r} is ambiguous: one of {', '.join(paths)}")


def _when(option: str, text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when it has no offset), or an age before ``now``."""
    ago = _AGO.fullmatch(text.strip())
    try:
        if ago:
            return now - timedelta(seconds=float(ago[1]) * _UNITS[ago[2]])
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise UsageError(
            f"{option} {text!r} is neither an ISO 8601 time (2026-11-25T14:00) "
            "nor an age (30s, 15m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _pages(
    storage: Storage, chosen: Mapping[str, Any], *, size: int = 1000
) -> AsyncIterator[list[Instance]]:
    after = None
    while True:
        page = await _page(storage, {**chosen, "limit": size, "after": after})
        yield page.instances
        if page.next is None:
            return
        after = page.next


async def _page(storage: Storage, arguments: Mapping[str, Any]) -> Page:
    try:
        return await storage.page(**arguments)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------- instances


async def _list(args: argparse.Namespace) -> int:
    chosen = _selection(args)
    chosen["newest_first"] = not args.oldest_first
    out = text.console()
    async with reading(_database(args)) as storage:
        if args.all:
            shown: list[dict[str, Any]] = []
            async for instances in _pages(storage, chosen):
                rows = [views.summary(instance) for instance in instances]
                if args.output == "jsonl":
                    for row in rows:
                        _json_line(sys.stdout, row)
                elif args.output == "text":
                    text.print_instances(out, rows, None)
                else:
                    shown.extend(rows)
            if args.output == "json":
                _json_line(sys.stdout, {"instances": shown, "next": None}, indent=2)
            return 0
        page = await _page(storage, {**chosen, "limit": args.limit, "after": args.after})
    rows = [views.summary(instance) for instance in page.instances]
    if args.output == "jsonl":
        for row in rows:
            _json_line(sys.stdout, row)
    else:
        _emit(
            args,
            {"instances": rows, "next": page.next},
            lambda: text.print_instances(out, rows, page.next),
        )
    return 0


async def _count(args: argparse.Namespace) -> int:
    by = [part.strip() for part in args.by.split(",") if part.strip()]
    async with reading(_database(args)) as storage:
        try:
            counts = await storage.count(by=by)
        except ValueError as exc:
            raise UsageError(f"--by: {exc}") from None
    groups = [
        {**dict(zip(by, key, strict=True)), "count": n}
        for key, n in sorted(counts.items(), key=lambda item: tuple(map(str, item[0])))
    ]
    if args.output == "jsonl":
        for group in groups:
            _json_line(sys.stdout, group)
        return 0
    total = sum(counts.values())
    _emit(
        args,
        {"by": by, "counts": groups, "total": total},
        lambda: text.print_counts(text.console(), by, groups),
    )
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with reading(_database(args)) as storage:
        instance = await _get(storage, args.id)
        records = await storage.history(args.id)
    data = views.detail(instance, records, context=args.context, now=time.time_ns())
    _emit(args, data, lambda: text.print_detail(text.console(), data))
    return 0


async def _get(storage: Storage, instance_id: str) -> Instance:
    instance = await storage.get(instance_id)
    if instance is None:
        raise InstanceNotFound(instance_id)
    return instance


async def _history(args: argparse.Namespace) -> int:
    if args.follow and args.output == "json":
        raise UsageError("--follow prints records as they come: use -o text or -o jsonl")
    if not 0 < args.interval < float("inf"):  # nan too
        raise UsageError(f"--interval must be a number of seconds > 0, got: {args.interval}")
    out = text.console()
    async with reading(_database(args)) as storage:
        instance = await _get(storage, args.id)
        records = await storage.history(args.id)
        if args.output == "json":
            rows = [views.record(rec) for rec in records]
            _json_line(sys.stdout, {"id": args.id, "records": rows}, indent=2)
            return 0
        seen = 0
        while True:
            rows = [views.record(rec) for rec in records]
            seen += len(rows)
            if args.output == "jsonl":
                for row in rows:
                    _json_line(sys.stdout, row)
            else:
                text.print_records(out, rows)
            if not args.follow or instance.terminal:
                return 0
            await anyio.sleep(args.interval)
            instance = await _get(storage, args.id)  # read first: no record after its end
            records = await storage.history(args.id, offset=seen)


async def _cancel(args: argparse.Namespace) -> int:
    chosen = _selection(args)
    if args.ids and chosen:
        raise UsageError("give instance ids or filters, not both")
    if not args.ids and not chosen:
        raise UsageError("give the ids of the instances to cancel, or filters that select them")
    database = _database(args)
    if args.ids:
        ids = list(dict.fromkeys(args.ids))
    else:
        statuses = chosen.get("status_in", _UNFINISHED)
        ended = [status for status in statuses if status not in _UNFINISHED]
        if ended:
            raise UsageError(
                f"--status {','.join(ended)}: only unfinished instances can be cancelled"
            )
        chosen["status_in"] = statuses
        ids = []
        async with reading(database) as storage:
            async for instances in _pages(storage, chosen):
                ids.extend(instance.id for instance in instances)
        if not ids:
            print("no unfinished instance matches: nothing to cancel", file=sys.stderr)
            _emit(args, {"cancelled": [], "unchanged": [], "not_found": []}, lambda: None)
            return 0
        if not args.yes and not _confirm(f"cancel {len(ids)} instance(s) of {database}?"):
            return _fail(args, "not confirmed: nothing cancelled (--yes skips the question)", 1)
    report: dict[str, list[Any]] = {"cancelled": [], "unchanged": [], "not_found": []}
    async with acting(database, f"cli-{os.getpid()}") as runner:
        for instance_id in ids:
            try:
                before = await runner.get(instance_id)
                after = await runner.cancel(instance_id)
            except InstanceNotFound:
                report["not_found"].append(instance_id)
                continue
            if before.terminal:
                report["unchanged"].append({"id": instance_id, "status": after.status.value})
            else:
                report["cancelled"].append(instance_id)
    out = text.console()

    def render() -> None:
        for instance_id in report["cancelled"]:
            out.print(f"{instance_id}: cancelled")
        for row in report["unchanged"]:
            out.print(f"{row['id']}: already {row['status']}, unchanged")

    _emit(args, report, render)
    for instance_id in report["not_found"]:
        _fail(args, str(InstanceNotFound(instance_id)), 1)
    return 1 if report["not_found"] else 0


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _data(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.data is None:
        return None
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--data must be a JSON object ({{...}}), got: {args.data}")
    return data


@contextlib.contextmanager
def _checked() -> Iterator[None]:
    """The runner's refusals of its arguments (an event, a step, data) as usage errors."""
    try:
        yield
    except NotSerializable as exc:
        raise UsageError(f"--data: {exc}") from None
    except HephaestusError:
        raise  # a refusal (NotWaiting, UndeclaredEvent, ...), not a usage error
    except (TypeError, ValueError) as exc:
        raise UsageError(text_of(exc)) from None


async def _resume(args: argparse.Namespace) -> int:
    data = _data(args)
    async with acting(_database(args), f"cli-{os.getpid()}") as runner:
        instance = await runner.get(args.id)
        waiting = {step.step_key for step in instance.waiting_steps}
        with _checked():
            await runner.resume(args.id, args.event, data, step=args.step)
        after = await runner.get(args.id)
    step = args.step or (next(iter(waiting)) if len(waiting) == 1 else None)
    report = {"id": args.id, "step": step, "event": args.event, "status": after.status.value}
    then = follows(runner, after.status)
    _emit(
        args,
        report,
        lambda: text.console().print(f"{args.id}: {step} resumed with {args.event!r}; {then}"),
    )
    return 0


async def _send(args: argparse.Namespace) -> int:
    data = _data(args)
    async with acting(_database(args), f"cli-{os.getpid()}") as runner:
        before = await runner.get(args.id)
        with _checked():
            await runner.send(args.id, args.event, data)
        after = await runner.get(args.id)
    delivered = delivery(runner, len(before.messages), len(after.messages))
    report = {"id": args.id, "event": args.event, "delivery": delivered}
    what = {
        "kept": "kept until a step waits for it",
        "taken": f"taken by the waiting step; {follows(runner, after.status)}",
        "sent": "sent: a worker of the distributed runner delivers it",
    }[delivered]
    _emit(args, report, lambda: text.console().print(f"{args.id}: {args.event!r} {what}"))
    return 0


async def _web(args: argparse.Namespace) -> int:
    if not 0 < args.refresh < float("inf"):
        raise UsageError(f"--refresh must be a number of seconds > 0, got: {args.refresh}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535, got: {args.port}")
    try:
        from hephaestus.web.serve import serve  # noqa: PLC0415  # the web extra
    except ImportError as exc:
        missing = exc.name or "a module"
        raise NoDatabase(
            f"the dashboard needs the web extra ({missing} is missing): "
            "pip install 'hephaestus[web]'"
        ) from None
    database = _database(args)
    _log_to_stderr(logging.INFO)  # the actions, one line each
    await serve(
        database,
        host=args.host,
        port=args.port,
        read_write=args.read_write,
        refresh=args.refresh,
    )
    return 0


async def _graph(args: argparse.Namespace) -> int:
    async with reading(_database(args)) as storage:
        instance = await _get(storage, args.id)
    _draw(args, instance.workflow, instance)
    return 0


def _draw(args: argparse.Namespace, workflow: type[Workflow], instance: Instance | None) -> None:
    if args.output == "mermaid":
        sys.stdout.write(views.mermaid(workflow, instance))
        return
    data = views.graph(workflow, instance)
    _emit(args, data, lambda: text.print_graph(text.console(), data))


# ---------------------------------------------------------------------- workflows


async def _workflows(args: argparse.Namespace) -> int:
    counts = None
    if args.database or os.environ.get(ENV):
        async with reading(_database(args)) as storage:
            counts = await storage.count(by=("workflow", "workflow_version", "status"))
    ordered = catalog.rows(catalog.imported(), counts)
    if args.output == "jsonl":
        for row in ordered:
            _json_line(sys.stdout, row)
        return 0
    _emit(args, {"workflows": ordered}, lambda: text.print_workflows(text.console(), ordered))
    return 0


async def _workflow_graph(args: argparse.Namespace) -> int:
    name = args.workflow
    if ":" in name:
        try:
            found = codec.resolve(name)
        except Exception as exc:
            raise NoDatabase(f"cannot import workflow {name!r}: {text_of(exc)}") from None
        if not (isinstance(found, type) and issubclass(found, Workflow)):
            raise UsageError(f"{name!r} is not a Workflow class")
        family: type[Workflow] = found
    else:
        matches = _matching(name, catalog.imported())
        if not matches:
            raise NoDatabase(
                f"no workflow named {name!r}: give its import path (module:Class) "
                "or import its module with --app"
            )
        family = matches[0]
    try:
        workflow = family.resolve(args.version)
    except (ValueError, HephaestusError) as exc:
        raise UsageError(text_of(exc)) from None
    _draw(args, workflow, None)
    return 0


def _matching(name: str, workflows: Iterable[type[Workflow]]) -> list[type[Workflow]]:
    matches = sorted(
        (w for w in workflows if name in (w.__qualname__, w.__name__)),
        key=lambda w: (w.__module__, w.__qualname__, w.version),
    )
    paths = {codec.import_path(w) for w in matches}
    if len(paths) > 1:
        raise UsageError(f"{name!r} is ambiguous: one of {', '.join(sorted(paths))}")
    return matches[-1:] if matches else []
