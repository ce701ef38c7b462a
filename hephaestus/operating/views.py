"""Instances, history records and graphs as plain data: the CLI's stable JSON.

Every function returns dicts, lists, strings, numbers, booleans and None
only; times are ISO 8601 strings in UTC, durations seconds. The shapes are
documented in ``docs/cli.md`` ("JSON output"); a change to them is a change
to the public API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from hephaestus.core import history as h
from hephaestus.core.history import Record
from hephaestus.core.instance import Instance
from hephaestus.core.step import Step
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.storage.codec import import_path

__all__ = [
    "STATES",
    "detail",
    "graph",
    "iso",
    "mermaid",
    "record",
    "short",
    "states",
    "summary",
]

STATES: Final = ("done", "running", "waiting", "failed", "not_reached")
"""What a step of an instance's graph may be marked with."""

_ENDINGS: Final = frozenset((h.COMPLETED, h.FAILED, h.CANCELLED))


def iso(ns: int | None) -> str | None:
    """Wall-clock ns as an ISO 8601 UTC time, to the millisecond."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")


def short(value: str | None) -> str:
    """An ``iso`` time as people read it: ``2026-11-25 22:03:25`` (empty for None)."""
    return "" if value is None else value[:19].replace("T", " ")


def summary(instance: Instance) -> dict[str, Any]:
    """An instance in a listing: who it is, where it is."""
    return {
        "id": instance.id,
        "workflow": import_path(instance.workflow),
        "workflow_version": instance.workflow_version,
        "status": instance.status.value,
        "started_at": iso(instance.started_at),
        "active_steps": _keys(instance.active_steps, instance),
        "waiting_steps": _keys(instance.waiting_steps, instance),
    }


def detail(
    instance: Instance, records: Sequence[Record], *, context: bool = False, now: int
) -> dict[str, Any]:
    """Everything ``instances show`` tells about an instance.

    ``records`` is its whole history (the update and end times, the failure's
    stacktrace come from it); ``context`` adds the context's values to its
    keys; ``now`` (wall-clock ns) ends the duration of an unfinished instance.
    """
    last = records[-1].at if records else instance.started_at
    ended = last if instance.terminal and records and records[-1].kind in _ENDINGS else None
    maps = instance.maps
    configs = instance.step_configs
    data = summary(instance)
    data.update(
        updated_at=iso(last),
        ended_at=iso(ended),
        duration=round(((ended or now) - instance.started_at) / 1e9, 3),
        current_step=None if instance.current_step is None else instance.current_step.step_key,
        active_steps=[
            {
                "step": step.step_key,
                "map": None
                if step not in maps
                else {"done": maps[step].done_count, "total": len(maps[step].items)},
            }
            for step in _ordered(instance.active_steps, instance)
        ],
        waiting_steps=[
            {
                "step": step.step_key,
                "events": list(step.declared_events(configs.get(step))),
                "timer": None
                if step not in instance.timers
                else {
                    "due": iso(instance.timers[step].due),
                    "event": instance.timers[step].event,
                },
            }
            for step in _ordered(instance.waiting_steps, instance)
        ],
        messages=[
            {"event": m.event, "sent_at": iso(m.sent_at), "data_keys": sorted(m.data or ())}
            for m in instance.messages
        ],
        error=_error(instance, records),
        context=_context(instance, values=context),
    )
    return data


def _error(instance: Instance, records: Sequence[Record]) -> dict[str, Any] | None:
    error = instance.error
    if error is None:
        return None
    key = error.step.step_key
    stacktrace = None
    for rec in reversed(records):  # the failed attempt that ended it: the last of its step
        if rec.kind == h.STEP_FAILED and rec.step == key and rec.item == error.item:
            stacktrace = (rec.details or {}).get("stacktrace")
            break
    return {
        "step": key,
        "item": error.item,
        "kind": error.kind,
        "reason": h.reason_text(error.reason),
        "stacktrace": stacktrace,
    }


def _context(instance: Instance, *, values: bool) -> dict[str, Any]:
    context = instance.context
    if values:
        return {"initial": dict(context.initial), "steps": dict(context.steps)}
    return {"initial": list(context.initial), "steps": list(context.steps)}


def record(rec: Record) -> dict[str, Any]:
    """One history record."""
    return {
        "kind": rec.kind,
        "at": iso(rec.at),
        "step": rec.step,
        "item": rec.item,
        "attempt": rec.attempt,
        "event": rec.event,
        "duration": None if rec.duration is None else round(rec.duration / 1e9, 6),
        "details": None if rec.details is None else dict(rec.details),
    }


def states(instance: Instance) -> dict[type[Step], str]:
    """Each step of the instance's workflow, marked by what it is in this instance."""
    failed = instance.error.step if instance.error is not None else None
    marks = {}
    for step in instance.workflow.definition.steps:
        if step is failed:
            marks[step] = "failed"
        elif step in instance.waiting_steps:
            marks[step] = "waiting"
        elif step in instance.active_steps:
            marks[step] = "running"
        elif step in instance.completed_steps:
            marks[step] = "done"
        else:
            marks[step] = "not_reached"
    return marks


def graph(workflow: type[Workflow], instance: Instance | None = None) -> dict[str, Any]:
    """A workflow's graph; with ``instance``, each step marked by its state in it."""
    definition = workflow.definition
    marks = states(instance) if instance is not None else None
    maps = instance.maps if instance is not None else {}
    steps = []
    for step in definition.steps:
        node: dict[str, Any] = {
            "step": step.step_key,
            "name": step.__qualname__,
            "events": list(definition.events.get(step, ())),
            "mapped": step in definition.maps,
            "ends_workflow": bool(step.ends_workflow),
        }
        if marks is not None:
            node["state"] = marks[step]
            state = maps.get(step)
            node["map"] = (
                None if state is None else {"done": state.done_count, "total": len(state.items)}
            )
        steps.append(node)
    return {
        "workflow": import_path(workflow),
        "workflow_version": workflow.version,
        "instance": None if instance is None else instance.id,
        "start": definition.start.step_key,
        "steps": steps,
        "edges": [
            {
                "source": edge.source.step_key,
                "event": edge.event,
                "target": edge.target.step_key,
                "routed": edge.routed,
            }
            for edge in workflow.graph().edges
        ],
    }


_STYLES: Final = {
    "done": "fill:#d3f9d8,stroke:#2b8a3e",
    "running": "fill:#d0ebff,stroke:#1971c2",
    "waiting": "fill:#fff3bf,stroke:#e67700",
    "failed": "fill:#ffe3e3,stroke:#c92a2a",
    "not_reached": "fill:#f1f3f5,stroke:#adb5bd,color:#868e96",
}


def mermaid(workflow: type[Workflow], instance: Instance | None = None) -> str:
    """The workflow's Mermaid flowchart; with ``instance``, steps classed by their state."""
    text = workflow.mermaid()
    if instance is None:
        return text
    marks = states(instance)
    lines = [text.rstrip("\n")]
    for state in STATES:
        keys = [step.step_key for step, mark in marks.items() if mark == state]
        if keys:
            lines.append(f"    classDef {state} {_STYLES[state]}")
            lines.append(f"    class {','.join(keys)} {state}")
    return "\n".join(lines) + "\n"


def _ordered(steps: Iterable[type[Step]], instance: Instance) -> list[type[Step]]:
    order: Mapping[type[Step], int] = instance.workflow.definition.order
    return sorted(steps, key=lambda step: order.get(step, len(order)))


def _keys(steps: Iterable[type[Step]], instance: Instance) -> list[str]:
    return [step.step_key for step in _ordered(steps, instance)]
