"""What happened to an instance: the records of its history.

A runner writes each change of an instance together with the records that
describe it, in one storage write, so the history is exactly as durable as
the state (``docs/waiting.md``, "The history"). Records are plain named
tuples: the hot path builds one per step attempt for the price of a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from hephaestus._show import shown, storable, text_of

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "KINDS",
    "MAP_STARTED",
    "MESSAGE_KEPT",
    "RECOVERED",
    "RESUMED",
    "STARTED",
    "STEP_COMPLETED",
    "STEP_FAILED",
    "STEP_PARKED",
    "TIMER_ARMED",
    "UNDONE",
    "Record",
    "reason_text",
]

STARTED: Final = "started"
RECOVERED: Final = "recovered"
STEP_COMPLETED: Final = "step_completed"
STEP_PARKED: Final = "step_parked"
STEP_FAILED: Final = "step_failed"
MAP_STARTED: Final = "map_started"
TIMER_ARMED: Final = "timer_armed"
MESSAGE_KEPT: Final = "message_kept"
RESUMED: Final = "resumed"
UNDONE: Final = "undone"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

KINDS: Final = (
    STARTED,
    RECOVERED,
    STEP_COMPLETED,
    STEP_PARKED,
    STEP_FAILED,
    MAP_STARTED,
    TIMER_ARMED,
    MESSAGE_KEPT,
    RESUMED,
    UNDONE,
    COMPLETED,
    FAILED,
    CANCELLED,
)
"""Every kind of record, in the order they may first appear."""


class Record(NamedTuple):
    """One thing that happened to an instance.

    ``kind`` is one of :data:`KINDS`; ``at`` is when it happened (wall-clock
    ns; a step attempt's record is written when the attempt ends, and
    ``at - duration`` is when it started). ``step`` is the step's key,
    ``item`` the index of a mapped step's item, ``attempt`` the attempt's
    number from 1, ``event`` the event it ended with or was given, and
    ``duration`` how long it ran (ns). ``details`` holds what only some kinds
    have: ``docs/waiting.md`` lists them. Fields a kind does not use are None.
    """

    kind: str
    at: int
    step: str | None = None
    item: int | None = None
    attempt: int | None = None
    event: str | None = None
    duration: int | None = None
    details: Mapping[str, Any] | None = None

    @property
    def when(self) -> datetime:
        """``at`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.at / 1e9, tz=UTC)


def reason_text(reason: object) -> str:
    """A failure's reason as text: an exception's type and message, or the value shown.

    Cut to 2,000 characters; NUL and lone surrogates (which PostgreSQL and
    UTF-8 refuse) are replaced.
    """
    if isinstance(reason, BaseException):
        text = text_of(reason)
    elif isinstance(reason, str):
        text = reason
    else:
        text = shown(reason, 2000)
    return storable(text if len(text) <= 2000 else f"{text[:1997]}...")
