"""The clock a runner reads: every time it stamps, measures or waits for.

A runner reads the time through one :class:`Clock` object, given as
``LocalRunner(clock=...)`` (the distributed runner and worker take one too):
the wall-clock time of history records, timers' due times and telemetry's
``system_time``; the monotonic time of durations; the sleeps before a timer
falls due or a step's next attempt. The default, :data:`SYSTEM_CLOCK`, is the
system's: its methods are ``time.time_ns``, ``time.monotonic_ns``,
``anyio.sleep`` and ``anyio.move_on_after`` themselves, so reading it costs
what reading the time costs. ``hephaestus.testing.VirtualClock`` is a clock
whose time moves only when a test says so, or skips ahead while the test
waits for instances idle on their timers (``docs/testing.md``).

Some waits stay in real time whatever the clock, because they wait for the
world rather than for the workflow: a step's ``timeout`` (the step's code
runs in real time), ``wait(timeout=...)`` (the caller's own deadline), the
retries of a failing storage, and the polling of the distributed worker.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator
from typing import ClassVar, Final

import anyio

__all__ = ["SYSTEM_CLOCK", "Clock", "check_clock"]


class Clock:
    """The system's clock; the base of every clock a runner can be given.

    A clock answers the wall-clock time (``time_ns``, nanoseconds since the
    epoch), the monotonic time (``monotonic_ns``), sleeps (``sleep``) and
    cancels a block that outlives a deadline (``move_on_after``, as anyio's).
    A subclass that keeps its own time (``virtual`` True) also hears from the
    runners that use it when they may have become idle (see
    ``hephaestus.testing.VirtualClock``); this one ignores them.
    """

    virtual: ClassVar[bool] = False
    """Whether the clock keeps its own time (and wants to hear when runners go idle)."""

    time_ns: Callable[[], int] = staticmethod(time.time_ns)
    """The wall-clock time, in nanoseconds since the epoch."""

    monotonic_ns: Callable[[], int] = staticmethod(time.monotonic_ns)
    """The monotonic time, in nanoseconds: durations are differences of it."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds``."""
        await anyio.sleep(seconds)

    def move_on_after(
        self, seconds: float | None
    ) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """A cancel scope cancelled ``seconds`` from now (None: never): ``anyio.move_on_after``."""
        return anyio.move_on_after(seconds)

    def now(self) -> datetime.datetime:
        """The wall-clock time as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.time_ns() / 1e9, tz=datetime.UTC)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK" if self is SYSTEM_CLOCK else f"{type(self).__name__}()"

    # What a runner tells a virtual clock (no-ops here; VirtualClock overrides them).

    def _watch(self, idle: Callable[[], bool]) -> None:
        """A runner starts on this clock: ``idle()`` says whether it waits for nothing but time."""

    def _unwatch(self, idle: Callable[[], bool]) -> None:
        """The runner whose ``idle`` was watched has stopped."""

    def _poke(self) -> None:
        """A runner may have become idle."""

    @contextlib.contextmanager
    def _expecting(self, met: Callable[[], bool]) -> Iterator[None]:
        """A caller waits until ``met()`` (an instance ended, parked): time may skip meanwhile."""
        yield


SYSTEM_CLOCK: Final = Clock()
"""The system's clock: what a runner reads unless it is given another."""


def check_clock(clock: object) -> Clock:
    """The clock a runner or worker reads (None: the system's); TypeError for anything else."""
    if clock is None:
        return SYSTEM_CLOCK
    if not isinstance(clock, Clock):
        raise TypeError(
            f"clock must be a hephaestus.runtime.clock.Clock (or a VirtualClock), got: {clock!r}"
        )
    return clock
