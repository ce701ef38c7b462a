"""Workflows of the crash tests, importable by the killed process and by the one that recovers.

Every step appends ``instance step start|end pid`` to the file named by
``HEPHAESTUS_CRASH_LOG`` (one ``os.write`` per line, O_APPEND: lines never
interleave), so the test can count how often each step of each instance ran.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from hephaestus import Context, Done, Instance, Ok, Step, Wait, Workflow

_fd: int | None = None


def _log(instance: Instance, step: str, what: str) -> None:
    global _fd  # noqa: PLW0603  # one descriptor per process, opened on first use
    if _fd is None:
        _fd = os.open(os.environ["HEPHAESTUS_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"{instance.id} {step} {what} {os.getpid()}\n".encode())


def mark_started() -> None:
    """Log that every instance has been started (and stored)."""
    global _fd  # noqa: PLW0603
    if _fd is None:
        _fd = os.open(os.environ["HEPHAESTUS_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"- - started {os.getpid()}\n".encode())


def expected(instance_id: str, step_key: str) -> dict[str, Any]:
    """What step ``step_key`` of ``instance_id`` stores in the context."""
    return {"by": step_key, "value": f"{instance_id}/{step_key}"}


class _Logged(Step):
    delay = 0.0

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        key = type(self).step_key
        _log(instance, key, "start")
        slow = context.initial.get("slow", False)
        await anyio.sleep(self.delay * (20 if slow else 1))
        _log(instance, key, "end")
        return Ok(self.events[0], expected(instance.id, key))


class Prepare(_Logged):
    events = ("ready",)


class Left(_Logged):
    events = ("done",)
    delay = 0.01


class Middle(_Logged):
    events = ("done",)
    delay = 0.02


class Right(_Logged):
    events = ("done",)
    delay = 0.005


class Join(_Logged):
    events = ("joined",)


class Finish(_Logged):
    events = ("finished",)


class CrashFlow(Workflow):
    """A fan-out of three, a join, a short timer, one more step."""

    start = Prepare
    transitions = {  # a workflow's definition
        Prepare: {"ready": [Left, Middle, Right]},
        Left: {"done": Join},
        Middle: {"done": Join},
        Right: {"done": Join},
        Join: {"joined": (Wait, {"seconds": 0.3})},
        Wait: {"timeout": Finish},
        Finish: {"finished": Done},
    }


LOGGED_STEPS = ("prepare", "left", "middle", "right", "join", "finish")
