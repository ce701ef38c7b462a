"""The ``text`` output: the views of ``hephaestus.operating.views`` as terminal tables.

Tables fit the terminal (80 columns when the output is not a terminal):
long cells are cut with an ellipsis, never wrapped into a tangle. Colours
only on a terminal. Every value shown comes from a view's data, printed as
text (``markup`` off): a step name or a context value holding ``[bold]``
shows as itself.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hephaestus.operating.views import iso, short

__all__ = [
    "console",
    "print_counts",
    "print_detail",
    "print_graph",
    "print_instances",
    "print_records",
    "print_workflows",
]

MARKS: Final = {
    "done": ("✓", "green"),
    "running": ("▶", "blue"),
    "waiting": ("⏸", "yellow"),
    "failed": ("✗", "red"),
    "not_reached": ("·", "dim"),
}
STATUS_STYLES: Final = {
    "pending": "dim",
    "running": "blue",
    "waiting": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console() -> Console:
    """The console the commands print to: standard output, no markup, no highlighting."""
    return Console(markup=False, highlight=False, emoji=False, soft_wrap=False)


def _table(*columns: str, **options: Any) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", **options)
    for column in columns:
        table.add_column(column, overflow="ellipsis", no_wrap=True)
    return table


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def print_instances(out: Console, rows: Sequence[Mapping[str, Any]], after: str | None) -> None:
    """A page of ``instances list``; the next page's option when there is one."""
    if not rows:
        out.print("no instance matches")
        return
    table = _table("ID", "STATUS", "WORKFLOW", "STARTED (UTC)", "AT")
    cells = [
        (
            row["id"],
            row["status"],
            f"{row['workflow'].rpartition(':')[2]} v{row['workflow_version']}",
            short(row["started_at"]),
            ", ".join(row["waiting_steps"] or row["active_steps"]),
        )
        for row in rows
    ]
    # The id is what one copies into the next command: cut it last; the status never.
    _fit(
        table, out.width, cells, caps=(40, 0, 24, 0, 0), floors=(12, 0, 8, 10, 6), cut=(4, 2, 3, 0)
    )
    for instance_id, status, workflow, started, at in cells:
        table.add_row(instance_id, _status(status), workflow, started, at)
    out.print(table)
    if after is not None:  # one line, whatever its length, to copy as it is
        out.print(f"more: add --after {shlex.quote(after)}", soft_wrap=True)


def _fit(
    table: Table,
    width: int,
    cells: Sequence[Sequence[str]],
    *,
    caps: Sequence[int],
    floors: Sequence[int],
    cut: Sequence[int],
) -> None:
    """Set the widths of ``table``'s columns so that it fits in ``width``.

    Each column is as wide as its header and widest cell, up to its cap (0:
    none); when they do not fit, the columns in ``cut`` give up width in
    turn, each down to its floor. (Rich alone narrows every column evenly,
    and a column can shrink to nothing: an instance list without its ids.)
    """
    widths = []
    for n, column in enumerate(table.columns):
        widest = max(cell_len(str(column.header)), *(cell_len(row[n]) for row in cells))
        widths.append(min(widest, caps[n]) if caps[n] else widest)
    excess = sum(widths) + 2 * (len(widths) - 1) - width  # two spaces between columns
    for n in cut:
        if excess <= 0:
            break
        given = min(excess, max(widths[n] - floors[n], 0))
        widths[n] -= given
        excess -= given
    for column, fitted in zip(table.columns, widths, strict=True):
        column.width = fitted


def print_counts(out: Console, by: Sequence[str], counts: Sequence[Mapping[str, Any]]) -> None:
    """The groups of ``instances count``, then the total."""
    table = _table(*(field.upper() for field in by), "COUNT")
    table.columns[-1].justify = "right"
    total = sum(group["count"] for group in counts)
    rows = [[*(str(group[field]) for field in by), f"{group['count']:,}"] for group in counts]
    rows.append(["total", *([""] * (len(by) - 1)), f"{total:,}"])
    # A long import path gives way: the counts never.
    wide = [n for n, field in enumerate(by) if field == "workflow"]
    _fit(table, out.width, rows, caps=[0] * (len(by) + 1), floors=[12] * (len(by) + 1), cut=wide)
    for *cells, count in rows[:-1]:
        styled = [_status(c) if f == "status" else c for f, c in zip(by, cells, strict=True)]
        table.add_row(*styled, count)
    table.add_row(*rows[-1][:-1], Text(rows[-1][-1], style="bold"))
    out.print(table)


def print_detail(out: Console, data: Mapping[str, Any]) -> None:
    """``instances show``: the header, its steps, its failure, its context."""
    head = _table("", "", show_header=False)
    head.columns[0].style = "bold"
    head.add_row("id", data["id"])
    head.add_row("workflow", f"{data['workflow']} v{data['workflow_version']}")
    head.add_row("status", _status(data["status"]))
    head.add_row("started", short(data["started_at"]))
    head.add_row("updated", short(data["updated_at"]))
    if data["ended_at"] is not None:
        head.add_row("ended", short(data["ended_at"]))
    head.add_row("duration", _seconds(data["duration"]))
    out.print(head)
    if data["active_steps"]:
        out.print()
        table = _table("ACTIVE STEP", "PROGRESS")
        for step in data["active_steps"]:
            done = step["map"]
            progress = "" if done is None else f"{done['done']}/{done['total']} items done"
            table.add_row(step["step"], progress)
        out.print(table)
    if data["waiting_steps"]:
        out.print()
        table = _table("WAITING STEP", "ACCEPTS", "TIMER (UTC)")
        for step in data["waiting_steps"]:
            timer = step["timer"]
            due = "" if timer is None else f"{timer['event']} at {short(timer['due'])}"
            table.add_row(step["step"], ", ".join(step["events"]), due)
        out.print(table)
    if data["messages"]:
        out.print()
        table = _table("KEPT MESSAGE", "SENT (UTC)", "DATA KEYS")
        for message in data["messages"]:
            table.add_row(
                message["event"], short(message["sent_at"]), ", ".join(message["data_keys"])
            )
        out.print(table)
    error = data["error"]
    if error is not None:
        out.print()
        where = error["step"] if error["item"] is None else f"{error['step']} item {error['item']}"
        out.print(Text(f"failed in {where} ({error['kind']}): {error['reason']}", style="red"))
        if error["stacktrace"]:
            out.print("Traceback (innermost last):")
            out.print(Text(error["stacktrace"].rstrip("\n")), soft_wrap=True)
    out.print()
    context = data["context"]
    if isinstance(context["initial"], Mapping):  # --context: the values
        for part in ("initial", "steps"):
            out.print(Text(f"context.{part}:", style="bold"))
            text = json.dumps(context[part], indent=2, ensure_ascii=False, default=str)
            out.print(Text(text), soft_wrap=True)
    else:
        table = _table("CONTEXT", "KEYS (values: --context)", show_header=True)
        table.add_row("initial", ", ".join(context["initial"]))
        table.add_row("steps", ", ".join(context["steps"]))
        out.print(table)


_KIND_STYLES: Final = {
    "step_failed": "red",
    "failed": "red",
    "completed": "green",
    "cancelled": "magenta",
    "step_parked": "yellow",
    "resumed": "cyan",
    "message_kept": "cyan",
}


def print_records(out: Console, records: Sequence[Mapping[str, Any]]) -> None:
    """History records, one line each: time, kind, step, attempt, what happened."""
    for rec in records:
        step = rec["step"] or ""
        if rec["item"] is not None:
            step = f"{step}[{rec['item']}]"
        attempt = "" if rec["attempt"] is None else f"#{rec['attempt']}"
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{rec['at'][11:23]}  ")
        line.append(f"{rec['kind']:<15}", style=_KIND_STYLES.get(rec["kind"], ""))
        line.append(f"{step[:18]:<19}{attempt:<4}")
        line.append(_what(rec))
        out.print(line, overflow="ellipsis", no_wrap=True, crop=True)


def _what(rec: Mapping[str, Any]) -> str:
    """The rest of a record's line: its event, duration and the details that matter."""
    parts = []
    if rec["event"] is not None:
        parts.append(f"-> {rec['event']}")
    if rec["duration"] is not None:
        parts.append(_seconds(rec["duration"]))
    details = rec["details"] or {}
    if "reason" in details:
        parts.append(str(details["reason"]))
    if details.get("retry_in") is not None:
        parts.append(f"retry in {details['retry_in']:.3g} s")
    for key in ("events", "source", "items", "runner", "stopped"):
        if details.get(key):
            value = details[key]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{key} {shown}")
    if details.get("due") is not None:
        parts.append(f"due {short(iso(details['due']))[5:]}")
    return "  ".join(parts)


def _seconds(value: float) -> str:
    """A duration for people: 85 µs, 12.3 ms, 4.56 s."""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def print_graph(out: Console, data: Mapping[str, Any]) -> None:
    """A workflow's graph: each step (marked by its state in the instance) and where it leads."""
    title = f"{data['workflow']} v{data['workflow_version']}"
    if data["instance"] is not None:
        title += f", instance {data['instance']}"
    out.print(Text(title, style="bold"))
    targets: dict[str, dict[tuple[str, str], list[str]]] = {}
    for edge in data["edges"]:
        arrow = "~>" if edge["routed"] else "->"
        by_event = targets.setdefault(edge["source"], {})
        by_event.setdefault((edge["event"], arrow), []).append(edge["target"])
    leads = {
        source: [f"{event} {arrow} {', '.join(steps)}" for (event, arrow), steps in by.items()]
        for source, by in targets.items()
    }
    marked = data["instance"] is not None
    table = _table("", "STEP", *(["STATE"] if marked else []), "LEADS TO", show_header=True)
    table.columns[-1].no_wrap = False
    table.columns[-1].overflow = "fold"
    for node in data["steps"]:
        name = node["step"] + (" (map)" if node["mapped"] else "")
        if node["step"] == data["start"]:
            name += " (start)"
        cells: list[str | Text] = []
        if marked:
            mark, style = MARKS[node["state"]]
            state = node["state"].replace("_", " ")
            if node["map"] is not None:
                state += f" {node['map']['done']}/{node['map']['total']}"
            cells = [Text(mark, style=style), name, Text(state, style=style)]
        else:
            cells = ["", name]
        ending = "(ends the workflow)" if node["ends_workflow"] else ""
        cells.append("; ".join(leads.get(node["step"], [])) or ending)
        table.add_row(*cells)
    out.print(table)


def print_workflows(out: Console, rows: Sequence[Mapping[str, Any]]) -> None:
    """``workflows list``: each workflow and version, its steps, its instances by status."""
    if not rows:
        out.print("no workflow found: import yours with --app MODULE")
        return
    table = _table("WORKFLOW", "VERSION", "STEPS", "INSTANCES")
    cells = [
        (
            row["workflow"],
            str(row["workflow_version"]),
            "" if row["steps"] is None else str(len(row["steps"])),
            ", ".join(f"{n} {status}" for status, n in row["instances"].items()) or "none",
        )
        for row in rows
    ]
    _fit(table, out.width, cells, caps=(40, 0, 0, 0), floors=(12, 0, 0, 12), cut=(3, 0))
    for cell in cells:
        table.add_row(*cell)
    out.print(table)
