"""One task that fires every timer of a runner, earliest first (a heap, not a task per timer)."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["TimerQueue"]


class TimerQueue:
    """Calls ``fire(*payload)`` when each timer falls due (wall-clock ns).

    A timer that fell due while nothing ran fires at once. Timers are never
    removed: ``fire`` checks that the timer is still wanted, so a timer that
    lost its race to a resume does nothing.
    """

    def __init__(self, fire: Callable[..., None]) -> None:
        self._fire = fire
        self._heap: list[tuple[int, int, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, due: int, *payload: Any) -> None:
        """Fire ``payload`` at ``due`` (wall-clock ns since the epoch)."""
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (due, next(self._seq), payload))
        if due < earliest:
            self._changed.set()

    async def run(self) -> None:
        """Fire timers as they fall due, until cancelled."""
        heap = self._heap
        while True:
            if not heap:
                await self._changed.wait()
                self._changed = anyio.Event()
                continue
            due = heap[0][0]
            delay = (due - time.time_ns()) / 1e9
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._changed.wait()
                if self._changed.is_set():
                    self._changed = anyio.Event()
                continue
            _, _, payload = heapq.heappop(heap)
            self._fire(*payload)
