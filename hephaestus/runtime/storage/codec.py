"""One serialization of ``Instance`` to JSON, shared by every durable storage.

Workflows and steps are stored by import path (``module:QualName``); the
context, the step configs, the metadata and the step updates must be JSON
values (dicts with string keys, lists, strings, numbers, booleans, None;
tuples are stored as lists). The monotonic start time is not stored: it is
meaningless in another process, so a loaded instance measures its duration on
the wall clock. A failure's reason is stored as text when it is not JSON (an
exception becomes ``"ValueError: message"``).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping
from typing import Any

from hephaestus._show import shown, storable, text_of
from hephaestus.core.instance import (
    Context,
    ExecutionEntry,
    Failure,
    Instance,
    MapState,
    Message,
    Status,
    Timer,
)
from hephaestus.core.step import Step
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import InstanceLoadError, NotSerializable

__all__ = [
    "decode",
    "dumps",
    "encode",
    "encode_value",
    "import_path",
    "loads",
    "reason_text",
    "resolve",
]

FORMAT = 2
"""The version of the encoded form, stored with it as ``"format"``.

2 added maps (``"maps"``, an item index in history entries and failures)
and messages (``"messages"``); format 1 is read as having none.
"""

_cache: dict[str, Any] = {}


def import_path(cls: type) -> str:
    """``module:QualName`` of a class defined at module level (or nested in one)."""
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise NotSerializable(
            f"{qualname} is defined inside a function: a durable storage needs classes "
            f"it can import again (define it at module level)"
        )
    return f"{cls.__module__}:{qualname}"


def resolve(path: str) -> Any:
    """The object an import path names (cached)."""
    found = _cache.get(path)
    if found is None:
        module_name, _, qualname = path.partition(":")
        found = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
        _cache[path] = found
    return found


MAX_DEPTH = 100
"""How deeply a stored value may nest dicts and lists."""

MAX_INT_DIGITS = 4000
"""The most decimal digits a stored integer may have (Python converts at most 4,300)."""

_INT_LIMIT = 10**MAX_INT_DIGITS


class _Bad(Exception):
    """A value the codec refuses: what is wrong, and the keys leading to it (innermost first)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.path: list[str] = []


def _text(value: str) -> str:
    """``value`` if every storage can keep it: valid Unicode without NUL."""
    if "\x00" in value:
        raise _Bad("holds a NUL character, which PostgreSQL cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(
                f"holds a lone surrogate ({shown(value, 40)}), which is not valid Unicode"
            ) from None
    return value


def _json(value: Any, depth: int) -> Any:
    """``value`` as JSON data (tuples as lists); raises ``_Bad`` for anything else.

    The culprit's keys are collected only when something is refused, so a
    value that is fine costs one pass and no string formatting.
    """
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        raise _Bad(f"is an integer of more than {MAX_INT_DIGITS} digits")
    if kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Bad(f"is {value!r}, which JSON cannot represent")
        return value
    if kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise _Bad(f"nests dicts and lists more than {MAX_DEPTH} levels deep")
        depth += 1
        if kind is list or kind is tuple:
            items = []
            for i, item in enumerate(value):
                try:
                    items.append(_json(item, depth))
                except _Bad as bad:
                    bad.path.append(f"[{i}]")
                    raise
            return items
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"has a key that is not a string: {shown(key)}")
            try:
                _text(key)
                out[key] = _json(item, depth)
            except _Bad as bad:
                bad.path.append(f"[{shown(key, 40)}]")
                raise
        return out
    raise _Bad(
        f"is a {kind.__qualname__} ({shown(value)}), which a durable storage cannot store as JSON"
    )


def _check(value: Any, where: str) -> Any:
    """``value`` as JSON data; raise ``NotSerializable`` naming ``where`` and the key otherwise."""
    try:
        return _json(value, 0)
    except _Bad as bad:
        path = bad.path[::-1]
        if len(path) > 8:  # a value nested too deeply: its first and last keys
            path = [*path[:4], "...", *path[-3:]]
        culprit = where + "".join(path)
        raise NotSerializable(f"{culprit} {bad.what}") from None


def encode_value(value: Any, where: str) -> Any:
    """``value`` as JSON data; raises ``NotSerializable`` naming ``where`` and the key."""
    return _check(value, where)


def reason_text(reason: object) -> Any:
    """A failure's reason as JSON: itself when it is JSON, else text."""
    return _reason(reason)


def _reason(reason: object) -> Any:
    if isinstance(reason, BaseException):
        return storable(text_of(reason))
    try:
        return _json(reason, 0)
    except _Bad:
        return storable(shown(reason, 2000))


def encode(instance: Instance) -> dict[str, Any]:
    """The instance as JSON data; raises ``NotSerializable`` naming the offending key."""
    path = import_path
    context = instance.context
    return {
        "format": FORMAT,
        "id": instance.id,
        "workflow": path(instance.workflow),
        "workflow_version": instance.workflow_version,
        "status": instance.status.value,
        "context": {
            "initial": _check(context.initial, "context"),
            "steps": {
                key: _check(updates, f"context.steps[{key!r}]")
                for key, updates in context.steps.items()
            },
        },
        "current_step": None if instance.current_step is None else path(instance.current_step),
        "step_configs": {
            path(step): _check(config, f"the config of {step.__qualname__}")
            for step, config in instance.step_configs.items()
        },
        "active_steps": sorted(path(s) for s in instance.active_steps),
        "completed_steps": sorted(path(s) for s in instance.completed_steps),
        "waiting_steps": sorted(path(s) for s in instance.waiting_steps),
        "runtime_metadata": _check(instance.runtime_metadata, "runtime_metadata"),
        "execution_history": [
            [
                path(e.step),
                e.event,
                e.timestamp,
                _check(e.updates, f"the updates of {e.step.__qualname__}"),
            ]
            if e.item is None
            else [
                path(e.step),
                e.event,
                e.timestamp,
                _check(e.updates, f"the updates of item {e.item} of {e.step.__qualname__}"),
                e.item,
            ]
            for e in instance.execution_history
        ],
        "telemetry_metadata": _check(instance.telemetry_metadata, "telemetry_metadata"),
        "started_at": instance.started_at,
        "timers": {path(s): [t.due, t.event] for s, t in instance.timers.items()},
        "pending_joins": {path(s): [n, live] for s, (n, live) in instance.pending_joins.items()},
        "error": None
        if instance.error is None
        else {
            "step": path(instance.error.step),
            "kind": instance.error.kind,
            "reason": _reason(instance.error.reason),
            "item": instance.error.item,
        },
        "maps": {
            path(s): {
                "items": _check(list(m.items), f"the items of Map({s.__qualname__})"),
                "done": format(m.done, "x"),
            }
            for s, m in instance.maps.items()
        },
        "messages": [
            [m.event, _check(m.data, f"the data of the message {m.event!r}"), m.sent_at]
            for m in instance.messages
        ],
    }


def decode(data: Mapping[str, Any]) -> Instance:
    """The instance that ``encode`` gave ``data``.

    Raises ``InstanceLoadError`` naming the instance and the workflow or step
    that can no longer be imported.
    """
    workflow_path = data.get("workflow") if isinstance(data, Mapping) else None
    try:
        if data.get("format", 1) > FORMAT:
            raise ValueError(f"it is in format {data['format']!r}, newer than this version reads")
        workflow = resolve(workflow_path)  # type: ignore[arg-type]
        if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
            raise TypeError(f"{workflow_path} is not a Workflow")
        steps: dict[str, type[Step]] = {}

        def step(path: str) -> type[Step]:
            found = steps.get(path)
            if found is None:
                found = steps[path] = resolve(path)
            return found

        context = data["context"]
        error = data["error"]
        return Instance(
            id=data["id"],
            workflow=workflow,
            workflow_version=data["workflow_version"],
            status=Status(data["status"]),
            context=Context(context["initial"], context["steps"]),
            current_step=None if data["current_step"] is None else step(data["current_step"]),
            step_configs={step(p): c for p, c in data["step_configs"].items()},
            active_steps=frozenset(step(p) for p in data["active_steps"]),
            completed_steps=frozenset(step(p) for p in data["completed_steps"]),
            waiting_steps=frozenset(step(p) for p in data["waiting_steps"]),
            runtime_metadata=data["runtime_metadata"],
            execution_history=tuple(
                ExecutionEntry(step(p), event, ts, updates, *item)
                for p, event, ts, updates, *item in data["execution_history"]
            ),
            telemetry_metadata=data["telemetry_metadata"],
            started_at=data["started_at"],
            started_monotonic=None,
            timers={step(p): Timer(due, event) for p, (due, event) in data["timers"].items()},
            pending_joins={step(p): (n, live) for p, (n, live) in data["pending_joins"].items()},
            error=None
            if error is None
            else Failure(step(error["step"]), error["kind"], error["reason"], error.get("item")),
            maps={
                step(p): MapState(tuple(m["items"]), int(m["done"], 16))
                for p, m in data.get("maps", {}).items()
            },
            messages=tuple(
                Message(event, sent, at) for event, sent, at in data.get("messages", [])
            ),
        )
    except Exception as exc:  # whatever a damaged row holds, it fails this load alone
        instance_id = data.get("id") if isinstance(data, Mapping) else None
        raise InstanceLoadError(
            f"instance {shown(instance_id)} of workflow {_plain(workflow_path)} "
            f"cannot be loaded: {shown(exc, 300)}"
        ) from exc


def _plain(path: object) -> str:
    """An import path as it is (cut short), anything else as its repr."""
    return path[:200] if isinstance(path, str) else shown(path)


def dumps(instance: Instance) -> str:
    """``encode`` as a JSON string."""
    return json.dumps(encode(instance), separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Instance:
    """``decode`` of a JSON string."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, nested too deeply
        raise InstanceLoadError(f"a stored instance is not valid JSON: {shown(exc, 300)}") from exc
    return decode(data)
