"""Helpers for testing code that runs Hephaestus workflows.

``capture_events`` records telemetry events while a ``with`` block runs::

    from hephaestus.testing import capture_events

    with capture_events(("hephaestus", "step", "stop")) as events:
        await runner.run(OrderFlow, {"item_count": 3})

    assert [meta["step"] for _, _, meta in events] == [ValidateOrder, Ship, Done]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from hephaestus.telemetry import EventName, attach_many, detach, events

__all__ = ["CapturedEvent", "capture_events"]

CapturedEvent: TypeAlias = tuple[EventName, dict[str, Any], dict[str, Any]]
"""One recorded event: ``(event_name, measurements, metadata)``."""

_ids = itertools.count(1)


@contextmanager
def capture_events(*event_names: EventName) -> Iterator[list[CapturedEvent]]:
    """Record ``event_names`` (default: all 11 Hephaestus events) in order while active.

    Yields the list that receives ``(event_name, measurements, metadata)``
    tuples; the recording handler is detached when the block exits, and the
    list keeps what it recorded. Captures nest: each has its own handler.
    """
    recorded: list[CapturedEvent] = []

    def record(
        event_name: EventName,
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        config: object,
    ) -> None:
        recorded.append((event_name, measurements, metadata))

    handler_id = f"hephaestus.testing.capture_events-{next(_ids)}"
    attach_many(handler_id, event_names or events(), record)
    try:
        yield recorded
    finally:
        detach(handler_id)
