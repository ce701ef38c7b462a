"""Recording telemetry events in tests, and asserting which were emitted.

``capture_events`` records telemetry events while a ``with`` block runs::

    from hephaestus.testing import capture_events

    with capture_events("step:stop") as events:
        await runner.run(OrderFlow, {"item_count": 3})

    assert [e.metadata["step"] for e in events] == [ValidateOrder, Ship, Done]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from hephaestus._show import shown
from hephaestus.core.step import Step
from hephaestus.telemetry import EventName, attach_many, detach, events

__all__ = ["CapturedEvent", "CapturedEvents", "assert_events", "capture_events"]

_ids = itertools.count(1)


class CapturedEvent(NamedTuple):
    """One recorded event: ``(name, measurements, metadata)``, unpacked like a tuple."""

    name: EventName
    measurements: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def short(self) -> str:
        """The event's short name: ``"step:stop"`` for ``("hephaestus", "step", "stop")``."""
        return ":".join(self.name[1:])


class CapturedEvents(list[CapturedEvent]):
    """The events a capture recorded, in order."""

    def named(self, name: str | EventName) -> list[CapturedEvent]:
        """The recorded events called ``name`` (``"step:resume"`` or the tuple), in order."""
        wanted = event_name(name)
        return [event for event in self if event.name == wanted]


def event_name(name: str | EventName) -> EventName:
    """``name`` as an event name tuple: ``"step:stop"`` is ``("hephaestus", "step", "stop")``."""
    if isinstance(name, str):
        parts = tuple(name.split(":"))
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"an event's short name is like 'step:stop', got: {name!r}")
        return ("hephaestus", *parts)
    if isinstance(name, tuple) and name and all(isinstance(part, str) for part in name):
        return name
    raise TypeError(f"an event name is 'step:stop' or a tuple of strings, got: {shown(name)}")


@contextmanager
def capture_events(*event_names: str | EventName) -> Iterator[CapturedEvents]:
    """Record ``event_names`` (default: all 11 Hephaestus events) in order while active.

    Names are short (``"step:stop"``) or tuples (``("hephaestus", "step",
    "stop")``). Yields the list that receives a :class:`CapturedEvent` per
    event; the recording handler is detached when the block exits, and the
    list keeps what it recorded. Captures nest: each has its own handler.
    """
    names = [event_name(name) for name in event_names] or events()
    recorded = CapturedEvents()

    def record(
        name: EventName,
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        config: object,
    ) -> None:
        recorded.append(CapturedEvent(name, measurements, metadata))

    handler_id = f"hephaestus.testing.capture_events-{next(_ids)}"
    attach_many(handler_id, names, record)
    try:
        yield recorded
    finally:
        detach(handler_id)


Expected = str | tuple[str, type[Step] | str]
"""What :func:`assert_events` expects of one event: its short name, or (name, step)."""


def assert_events(captured: Sequence[CapturedEvent], expected: Sequence[Expected]) -> None:
    """Assert that the events of the kinds ``expected`` names came in that order.

    Each expected event is a short name (``"workflow:start"``) or a pair of
    a short name and the step it is about (``("step:stop", Ship)``, or the
    step's key). Only the kinds named in ``expected`` are compared: the
    captured events of other kinds are left out. Raises ``AssertionError``
    showing both sequences when they differ.
    """
    wanted: list[tuple[EventName, type[Step] | str | None]] = []
    for want in expected:
        if isinstance(want, str):
            wanted.append((event_name(want), None))
        elif isinstance(want, tuple) and len(want) == 2:
            wanted.append((event_name(want[0]), want[1]))
        else:
            raise TypeError(
                f"an expected event is 'step:stop' or ('step:stop', Step), got: {want!r}"
            )
    kinds = {name for name, _ in wanted}
    actual = [event for event in captured if event.name in kinds]
    same = len(actual) == len(wanted) and all(
        event.name == name and (step is None or is_step(event.metadata.get("step"), step))
        for event, (name, step) in zip(actual, wanted, strict=True)
    )
    if not same:
        shown_wanted = [_text(name, step) for name, step in wanted]
        shown_actual = [_text(event.name, event.metadata.get("step")) for event in actual]
        raise AssertionError(
            "the events differ:\n  expected: "
            + ", ".join(shown_wanted)
            + "\n  emitted:  "
            + ", ".join(shown_actual)
        )


def is_step(step: object, wanted: type[Step] | str) -> bool:
    """Whether ``step`` is ``wanted``: the class itself, or a class with that step key."""
    if isinstance(wanted, str):
        return getattr(step, "step_key", None) == wanted
    return step is wanted


def _text(name: EventName, step: object) -> str:
    short = ":".join(name[1:])
    if step is None:
        return short
    return f"{short} {step if isinstance(step, str) else getattr(step, '__qualname__', step)}"
