"""The one check of every duration a user gives: waits, timeouts, retry delays, resume delays.

A duration is a finite number of seconds from 0 to :data:`MAX_SECONDS` (100
years). The bound keeps every due time a runner computes (now plus the
duration, in nanoseconds since the epoch) inside a signed 64-bit integer,
which is what the storages keep; NaN, infinities and booleans are refused.
"""

from __future__ import annotations

import math
from typing import Final

from hephaestus._show import shown

__all__ = ["MAX_SECONDS", "seconds"]

MAX_SECONDS: Final = 3_155_760_000.0
"""100 years of 365.25 days, in seconds: the longest duration anything accepts."""


def seconds(value: object, what: str, *, positive: bool = False) -> float:
    """``value`` as a float number of seconds; ``ValueError`` naming ``what`` otherwise.

    ``positive`` refuses 0 too (a step timeout of 0 could never be met).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value < 0
        or (positive and value == 0)
        or value > MAX_SECONDS
    ):
        low = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{what} must be a finite number of seconds {low} and at most 100 years "
            f"({MAX_SECONDS:.0f}), got: {shown(value)}"
        )
    return float(value)
