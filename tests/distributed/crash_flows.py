"""Workflows of the distributed crash test, imported by the test and by every worker process.

Every logged step appends ``instance step start|end|fail pid`` to the file
named by ``HEPHAESTUS_CRASH_LOG`` (one ``os.write`` per line, O_APPEND: lines
of different processes never interleave), so the test can tell which process
ran which step, and how often. The context steers the instance:
``{"slow": "b"}`` makes its step ``b`` last ``SLOW`` seconds, ``{"fail": "c"}``
makes its step ``c`` raise on every attempt.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from hephaestus import Context, Done, Instance, Ok, Retry, Step, Wait, WaitForEvent, Workflow

SLOW = 3.0
"""Seconds a slow step lasts: long enough to be killed in the middle."""

_fd: int | None = None


def _log(instance: Instance, step: str, what: str) -> None:
    global _fd  # noqa: PLW0603  # one descriptor per process, opened on first use
    if _fd is None:
        _fd = os.open(os.environ["HEPHAESTUS_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"{instance.id} {step} {what} {os.getpid()}\n".encode())


def expected(instance_id: str, step_key: str) -> dict[str, Any]:
    """What step ``step_key`` of ``instance_id`` stores in the context."""
    return {"value": f"{instance_id}/{step_key}"}


class _Logged(Step):
    retry = Retry(max_attempts=2, base=0.01)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        key = type(self).step_key
        _log(instance, key, "start")
        if context.initial.get("slow") == key:
            await anyio.sleep(SLOW)
        if context.initial.get("fail") == key:
            _log(instance, key, "fail")
            raise RuntimeError(f"{key} always fails for {instance.id}")
        _log(instance, key, "end")
        return Ok(self.events[0], expected(instance.id, key))


class Prepare(_Logged):
    events = ("ready",)


class A(_Logged):
    events = ("done",)


class B(_Logged):
    events = ("done",)


class C(_Logged):
    events = ("done",)


class Join(_Logged):
    events = ("joined",)


class CrashFlow(Workflow):
    """A fan-out of three, a join, a short timer."""

    start = Prepare
    transitions = {
        Prepare: {"ready": [A, B, C]},
        A: {"done": Join},
        B: {"done": Join},
        C: {"done": Join},
        Join: {"joined": (Wait, {"seconds": 0.5})},
        Wait: {"timeout": Done},
    }


class EventFlow(Workflow):
    """The same, waiting for an external event instead of a timer."""

    start = Prepare
    transitions = {
        Prepare: {"ready": [A, B, C]},
        A: {"done": Join},
        B: {"done": Join},
        C: {"done": Join},
        Join: {"joined": WaitForEvent},
        WaitForEvent: {"received": Done},
    }


class LinearFlow(Workflow):
    """The same steps one after the other."""

    start = Prepare
    transitions = {
        Prepare: {"ready": A},
        A: {"done": B},
        B: {"done": C},
        C: {"done": Join},
        Join: {"joined": Done},
    }


LOGGED_STEPS = ("prepare", "a", "b", "c", "join")
