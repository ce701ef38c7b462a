"""One task that fires every timer of a runner, earliest first (a heap, not a task per timer)."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import anyio

from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock

__all__ = ["TimerQueue"]

Handle = list[Any]
"""A timer in the heap: ``[due, sequence, payload]``; a cancelled one's payload is None."""

_COMPACT_AT = 64
"""Cancelled entries the heap may hold before it is rebuilt without them (when they outnumber
the live ones)."""


class TimerQueue:
    """Calls ``fire(*payload)`` when each timer falls due (wall-clock ns, by ``clock``).

    A timer that fell due while nothing ran fires at once. ``cancel`` drops
    a timer's payload at once, so that a resumed or cancelled instance is not
    kept alive until its timer's due time; the heap is rebuilt without the
    cancelled entries once they outnumber the live ones.
    """

    def __init__(self, fire: Callable[..., None], clock: Clock = SYSTEM_CLOCK) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[Handle] = []
        self._seq = itertools.count()
        self._changed = anyio.Event()
        self._cancelled = 0

    def __len__(self) -> int:
        """How many timers are armed and not cancelled."""
        return len(self._heap) - self._cancelled

    def due(self, now: int) -> bool:
        """Whether a timer (perhaps cancelled) fell due by ``now`` and is still in the heap."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= now

    def arm(self, due: int, *payload: Any) -> Handle:
        """Fire ``payload`` at ``due`` (wall-clock ns since the epoch); return its handle."""
        earliest = self._heap[0][0] if self._heap else math.inf
        handle: Handle = [due, next(self._seq), payload]
        heapq.heappush(self._heap, handle)
        if due < earliest:
            self._changed.set()
        return handle

    def cancel(self, handle: Handle) -> None:
        """The timer will not fire; what it would have fired is released now."""
        if handle[2] is None:
            return
        handle[2] = None
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Fire timers as they fall due, until cancelled."""
        heap = self._heap
        clock = self._clock
        while True:
            if not heap:
                await self._changed.wait()
                self._changed = anyio.Event()
                continue
            due = heap[0][0]
            delay = (due - clock.time_ns()) / 1e9
            if delay > 0:
                with clock.move_on_after(delay):
                    await self._changed.wait()
                if self._changed.is_set():
                    self._changed = anyio.Event()
                continue
            _, _, payload = heapq.heappop(heap)
            if payload is None:
                self._cancelled -= 1
                continue
            self._fire(*payload)
