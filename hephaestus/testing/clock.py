"""``VirtualClock``: time that moves when a test says so, or while it waits for idle runners."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from hephaestus.runtime.clock import Clock

__all__ = ["VirtualClock"]

_TICK = 0.05
"""How often, in real seconds, a waiting clock looks again at runners it heard nothing from."""


class VirtualClock(Clock):
    """A clock whose time moves only by :meth:`advance`, or by skipping ahead on its own.

    Give it to a runner (``LocalRunner(clock=clock)``) and everything that
    runner stamps, measures or waits for reads it: history records, timers'
    due times, telemetry's ``system_time`` and durations, retries' delays.
    It starts at ``start`` (an aware datetime; default: the real time now).

    ``await clock.advance(seconds)`` moves the time forward, firing what
    falls due on the way (timers, retries' delays, :meth:`sleep`) in due
    order; after each, it waits until the runners on this clock are idle
    again, so that what a timer started has happened when ``advance``
    returns.

    With ``auto_skip`` (the default) the clock also skips ahead on its own,
    as Temporal's time-skipping test server does, but only while a test
    awaits an outcome (``runner.wait``, ``runner.run``,
    ``hephaestus.testing.until_parked``): whenever every runner on the clock
    is idle, waiting for nothing but a due time, the clock jumps to the
    earliest due time and fires it. It never skips while a step executes,
    a change is being stored, or a timer that fell due has not fired yet;
    and it stops skipping as soon as the awaited outcome is there. Outside
    such a wait, the time stands still, so a test can act on a parked
    instance before its timer (a resume before the timeout wins, as with
    real time).

    A step's ``timeout`` and ``wait(timeout=...)`` are counted in real time
    (``hephaestus.runtime.clock``).
    """

    virtual: ClassVar[bool] = True

    def __init__(self, start: datetime.datetime | None = None, *, auto_skip: bool = True) -> None:
        if start is None:
            wall = time.time_ns()
        elif not isinstance(start, datetime.datetime) or start.tzinfo is None:
            raise TypeError(f"start must be an aware datetime (with a tzinfo), got: {start!r}")
        else:
            wall = int(start.timestamp() * 1_000_000) * 1000
        self.auto_skip = auto_skip
        self._wall0 = wall
        self._mono0 = time.monotonic_ns()
        self._elapsed = 0
        # Due times: [due (wall ns), sequence, a future to set or a scope to cancel (None:
        # dropped), woken]; the earliest first, then in order of arrival.
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._woken = 0  # fired, and their tasks have not gone on yet
        self._idle: list[Callable[[], bool]] = []
        self._expected: list[Callable[[], bool]] = []
        self._poked: asyncio.Event | None = None
        self._skipper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"VirtualClock({self.now().isoformat()})"

    # ------------------------------------------------------------------ reading

    def time_ns(self) -> int:
        return self._wall0 + self._elapsed

    def monotonic_ns(self) -> int:
        return self._mono0 + self._elapsed

    @property
    def elapsed(self) -> float:
        """Seconds the clock has moved since it was made."""
        return self._elapsed / 1e9

    # ------------------------------------------------------------------ waiting

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has moved ``seconds`` forward (at once for 0 or less)."""
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = self._arm(seconds, future)
        try:
            await future
        finally:
            self._drop(entry)

    @contextlib.contextmanager
    def move_on_after(self, seconds: float | None) -> Iterator[anyio.CancelScope]:
        """A cancel scope cancelled once the clock has moved ``seconds`` forward (None: never)."""
        scope = anyio.CancelScope()
        entry = None
        if seconds is not None:
            if seconds <= 0:
                scope.cancel()  # due already, as anyio's
            else:
                entry = self._arm(seconds, scope)
        try:
            with scope:
                yield scope
        finally:
            if entry is not None:
                self._drop(entry)

    def _arm(self, seconds: float, target: object) -> list[Any]:
        entry = [self.time_ns() + int(seconds * 1e9), next(self._seq), target, False]
        heapq.heappush(self._heap, entry)
        self._poke()
        return entry

    def _drop(self, entry: list[Any]) -> None:
        """The waiter of ``entry`` has gone on: nothing is to fire, and it is no longer woken."""
        entry[2] = None
        if entry[3]:
            self._woken -= 1

    def _due(self) -> int | None:
        """The earliest due time still armed; None when nothing is."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _move_to(self, due: int) -> None:
        """Set the time to ``due`` (never backwards) and fire what is due by then, in order."""
        self._elapsed = max(self._elapsed, due - self._wall0)
        now = self.time_ns()
        heap = self._heap
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            entry = heapq.heappop(heap)
            target = entry[2]
            if target is None:
                continue
            entry[3] = True
            self._woken += 1
            if isinstance(target, anyio.CancelScope):
                target.cancel()
            elif not target.done():
                target.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Move the time ``seconds`` forward, firing what falls due on the way, in due order.

        Before each due time and at the end, it waits until the runners on
        this clock are idle (their steps have executed, their changes are
        stored), so that when it returns, what the timers started has happened.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"advance takes a number of seconds >= 0, got: {seconds!r}")
        target = self.time_ns() + int(seconds * 1e9)
        while True:
            await self._settled()
            due = self._due()
            if due is None or due > target:
                break
            self._move_to(due)
        self._move_to(target)
        await self._settled()

    # ------------------------------------------------------------------ runners

    def _watch(self, idle: Callable[[], bool]) -> None:
        self._idle.append(idle)

    def _unwatch(self, idle: Callable[[], bool]) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(idle)
        self._poke()

    def _poke(self) -> None:
        poked = self._poked
        if poked is not None:
            poked.set()

    def _quiet(self) -> bool:
        """Nothing fired is still going on, and every runner waits for nothing but time."""
        return not self._woken and all(idle() for idle in self._idle)

    async def _settled(self) -> None:
        """Return once :meth:`_quiet` (looked at after each poke, and every few real ms)."""
        while True:
            for _ in range(3):  # let what was just woken or scheduled run first
                await asyncio.sleep(0)
            if self._quiet():
                return
            await self._next_poke()

    async def _next_poke(self) -> None:
        if self._poked is None:
            self._poked = asyncio.Event()
        poked = self._poked
        with anyio.move_on_after(_TICK):
            await poked.wait()
        poked.clear()

    @contextlib.contextmanager
    def _expecting(self, met: Callable[[], bool]) -> Iterator[None]:
        if not self.auto_skip:
            yield
            return
        self._expected.append(met)
        if self._skipper is None or self._skipper.done():
            self._skipper = asyncio.get_running_loop().create_task(self._skip())
        try:
            yield
        finally:
            self._expected.remove(met)
            if not self._expected and self._skipper is not None:
                self._skipper.cancel()  # it holds nothing: its jumps do not await
                self._skipper = None

    async def _skip(self) -> None:
        """While an awaited outcome is not there: jump to each due time the runners idle on."""
        while self._expected:
            await self._settled()
            # From here to the jump nothing awaits: what was looked at is what is.
            if not any(not met() for met in self._expected):
                if self._expected:
                    await self._next_poke()  # met: its waiter leaves (it pokes)
                continue
            due = self._due()
            if due is None:  # nothing to skip to: an event from outside must come
                await self._next_poke()
                continue
            self._move_to(due)
