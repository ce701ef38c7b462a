"""Helpers for testing code that runs Hephaestus workflows (``docs/testing.md``).

- :class:`VirtualClock`: time that moves only when the test says so, or skips
  ahead while the test waits for instances idle on their timers.
- :func:`capture_events` records telemetry events while a block runs.
"""

from __future__ import annotations

from hephaestus.testing.clock import VirtualClock
from hephaestus.testing.events import CapturedEvent, capture_events

__all__ = ["CapturedEvent", "VirtualClock", "capture_events"]
