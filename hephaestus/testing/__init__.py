"""Helpers for testing code that runs Hephaestus workflows (``docs/testing.md``).

- :class:`VirtualClock`: time that moves only when the test says so, or skips
  ahead while the test waits for instances idle on their timers.
- :func:`until_parked`, :func:`assert_path`, :func:`run_step`: wait until an
  instance parks on a step, assert the path it took, execute a step alone.
- :func:`capture_events` and :func:`assert_events`: record the telemetry
  events emitted while a block runs, and assert which came in what order.
- The pytest plugin (:mod:`hephaestus.testing.plugin`, registered by the
  package): the fixtures ``heph_clock``, ``heph_events``, ``heph_runner``,
  ``heph_sqlite_runner``.
"""

from __future__ import annotations

from hephaestus.testing.clock import VirtualClock
from hephaestus.testing.events import (
    CapturedEvent,
    CapturedEvents,
    assert_events,
    capture_events,
)
from hephaestus.testing.helpers import assert_path, run_step, until_parked

__all__ = [
    "CapturedEvent",
    "CapturedEvents",
    "VirtualClock",
    "assert_events",
    "assert_path",
    "capture_events",
    "run_step",
    "until_parked",
]
