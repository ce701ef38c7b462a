"""What the LocalRunner tests share: a probe that steps and tests meet on, guarded waits.

Tests never sleep to order things. A step and its test meet on the
``anyio.Event``s of a :class:`Probe` that the test puts in the instance's
initial context (the memory storage keeps it as it is), or on telemetry
signals (:func:`signal`). Every wait is guarded by ``anyio.fail_after(GUARD)``.

The helpers are plain functions and classes; the test modules import them from
this package (``from .conftest import ...``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from hephaestus import Context, Instance, Ok, Step, telemetry
from hephaestus.runtime.local import LocalRunner
from hephaestus.telemetry import EventName

GUARD = 5.0
"""Seconds any single wait of a test may take before the test fails."""


class Probe:
    """What steps share with their test: events either side sets, and what the steps saw.

    A step calls ``arrive`` when it starts, ``interrupt`` when it is cancelled
    and ``leave`` when it is done either way; ``in_flight`` and
    ``max_in_flight`` follow how many steps run at once. The ``expected``-th
    arrival sets ``all_arrived``; the test sets ``release`` to let blocked
    steps finish.
    """

    def __init__(self, expected: int = 1) -> None:
        self.expected = expected
        self.release = anyio.Event()
        self.all_arrived = anyio.Event()
        self.cancelled = anyio.Event()
        self.arrivals: list[str] = []
        self.interrupted: list[str] = []
        self.threads: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def calls(self) -> int:
        """How many times steps started, retries and re-runs included."""
        return len(self.arrivals)

    def arrive(self, step: type[Step]) -> None:
        self.arrivals.append(step.step_key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if len(self.arrivals) == self.expected:
            self.all_arrived.set()

    def interrupt(self, step: type[Step]) -> None:
        self.interrupted.append(step.step_key)
        self.cancelled.set()

    def leave(self) -> None:
        self.in_flight -= 1


def probe_of(context: Context) -> Probe:
    """The probe the test put in the instance's initial context."""
    probe: Probe = context.initial["probe"]
    return probe


class Passes(Step):
    """Returns its first event at once. Subclasses set ``events``."""

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok(self.events[0])


class Blocks(Step):
    """Arrives on the probe and returns its first event once the test sets ``release``.

    It records being interrupted (cancelled) on the probe.
    """

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(type(self))
        try:
            await probe.release.wait()
        except anyio.get_cancelled_exc_class():
            probe.interrupt(type(self))
            raise
        finally:
            probe.leave()
        return Ok(self.events[0])


class Meets(Step):
    """Arrives on the probe and returns its first event once every expected step arrived.

    Steps that meet can only finish if they run at the same time.
    """

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        probe = probe_of(context)
        probe.arrive(type(self))
        await probe.all_arrived.wait()
        probe.leave()
        return Ok(self.events[0])


async def until(event: anyio.Event) -> None:
    """Wait for ``event``; the test fails after ``GUARD`` seconds."""
    with anyio.fail_after(GUARD):
        await event.wait()


async def ended(runner: LocalRunner, instance_id: str) -> Instance:
    """The instance once it is completed, failed or cancelled; guarded."""
    with anyio.fail_after(GUARD):
        return await runner.wait(instance_id)


async def settled() -> None:
    """Return once every other task is blocked: nothing more happens without outside help."""
    with anyio.fail_after(GUARD):
        await anyio.wait_all_tasks_blocked()


_signal_ids = itertools.count(1)


@contextmanager
def signal(event_name: EventName, count: int = 1, **match: Any) -> Iterator[anyio.Event]:
    """An ``anyio.Event`` set once ``event_name`` was emitted ``count`` times matching ``match``.

    ``match`` compares metadata fields: ``signal(step_async_event(), step=Hold)``.
    The handler is detached when the block exits.
    """
    fired = anyio.Event()
    seen = 0

    def handler(name: EventName, measurements: Any, metadata: dict[str, Any], config: Any) -> None:
        nonlocal seen
        if all(metadata.get(key) == value for key, value in match.items()):
            seen += 1
            if seen >= count:
                fired.set()

    handler_id = f"tests.runtime.signal-{next(_signal_ids)}"
    telemetry.attach(handler_id, event_name, handler)
    try:
        yield fired
    finally:
        telemetry.detach(handler_id)


Captured = tuple[EventName, dict[str, Any], dict[str, Any]]


def short(event: Captured) -> tuple[Any, ...]:
    """One captured event as ``(name, its key fields...)``, to compare whole sequences."""
    name, measurements, metadata = event
    kind = ":".join(name[1:])
    match kind:
        case "workflow:start":
            return (kind, metadata["initial_step"])
        case "engine:advance":
            return (
                kind,
                metadata["iteration"],
                measurements["completed_in_advance"],
                measurements["active_steps_count"],
            )
        case "step:start" | "step:async":
            return (kind, metadata["step"])
        case "step:stop":
            return (kind, metadata["step"], metadata["event"])
        case "step:resume":
            return (kind, metadata["step"], metadata["resume_event"], metadata["source"])
        case "step:exception":
            return (kind, metadata["step"], metadata["kind"])
        case "workflow:transition":
            return (kind, metadata["from_step"], tuple(metadata["targets"]))
        case "workflow:stop":
            return (kind, measurements["step_count"], measurements["advance_count"])
        case "workflow:exception":
            return (kind, metadata["failed_step"], metadata["kind"])
        case _:
            return (kind,)


def named(events: list[Captured], event_name: EventName) -> list[Captured]:
    """The captured events called ``event_name``, in order."""
    return [event for event in events if event[0] == event_name]


@pytest.fixture(autouse=True)
def _no_handler_left_behind() -> Iterator[None]:
    """Whatever a test attaches is detached after it, even when the test fails."""
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)
