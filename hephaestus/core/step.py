"""Steps, their results, and the retry policy they may declare.

A step is a class with ``events`` (every event it may return) and an
``execute(self, instance, config, context)`` method, ``async def`` or plain
``def``. Fully annotated, it reads (every name imports from ``hephaestus``)::

    async def execute(self, instance: Instance, config: Config, context: Context) -> Result:

where the return type may be narrowed to what the step returns (``Ok``,
``Ok | Error``, ...). It returns one of three results:

- ``Ok(event, updates=None, metadata=None)``: done; ``updates`` land in
  ``context.steps[step_key]`` and ``metadata`` merges into the instance's
  ``runtime_metadata``;
- ``Async()``: the step parks until a resume (or its timer) gives the event;
- ``Error(reason)``: a deliberate failure, never retried.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import attrs

from .durations import MAX_SECONDS, seconds

if TYPE_CHECKING:
    from .instance import Context, Instance

__all__ = [
    "Async",
    "Config",
    "Error",
    "Ok",
    "Result",
    "Retry",
    "Step",
    "snake_case",
]

Config: TypeAlias = Mapping[str, Any] | None
"""A step's configuration, given by the transition that targets it: ``(Step, {...})``.

None when the transition names the step alone. It is read-only (a ``Mapping``): annotate
``execute``'s ``config`` with ``Config`` (or anything wider), not ``dict[str, Any]``.
"""

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``ValidateOrder`` -> ``validate_order``; ``HTTPFetchURL`` -> ``http_fetch_url``.

    Digits stay with what precedes them: ``Step2Go`` -> ``step2_go``.
    """
    return _BOUNDARY.sub("_", name).lower()


class Ok:
    """A step finished with ``event``; ``updates`` go to ``context.steps[step_key]``."""

    __slots__ = ("event", "metadata", "updates")
    __match_args__ = ("event", "updates", "metadata")

    event: str
    updates: Mapping[str, Any] | None
    metadata: Mapping[str, Any] | None

    # A plain slotted class rather than attrs: every step builds one, so its
    # construction sits on the hot path (attrs' frozen __init__ costs 3x more).
    def __init__(
        self,
        event: str,
        updates: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.event = event
        self.updates = updates
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"Ok({self.event!r}, updates={self.updates!r}, metadata={self.metadata!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Ok:
            return NotImplemented
        return (self.event, self.updates, self.metadata) == (
            other.event,
            other.updates,
            other.metadata,
        )

    __hash__ = None  # type: ignore[assignment]  # holds mappings: unhashable, like a dict


class Async:
    """The step parks: the instance waits until a resume (or the step's timer) gives its event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Async()"

    def __eq__(self, other: object) -> bool:
        return type(other) is Async

    def __hash__(self) -> int:
        return hash(Async)


@attrs.frozen
class Error:
    """A deliberate failure with a ``reason``; the instance fails, and it is never retried."""

    reason: Any


Result: TypeAlias = Ok | Async | Error
"""What ``execute`` returns."""


@attrs.frozen
class Retry:
    """How a runner retries a step that raises or times out.

    ``max_attempts`` counts every run, the first included (``max_attempts=1``
    never retries). Before attempt ``n + 1`` the runner waits
    ``delay(n, jitter_draw)``: ``base`` times ``2 ** (n - 1)`` for
    ``"exponential"``, ``base * n`` for ``"linear"``, ``base`` for
    ``"constant"``; capped at ``max_backoff``, then stretched by up to
    ``jitter`` (0.1 = up to 10% longer) so that retries spread out.
    """

    max_attempts: int = 3
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    base: float = 0.1
    max_backoff: float = 30.0
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f"Retry.max_attempts must be an int >= 1, got: {self.max_attempts!r}")
        if self.backoff not in ("exponential", "linear", "constant"):
            raise ValueError(
                "Retry.backoff must be 'exponential', 'linear' or 'constant', "
                f"got: {self.backoff!r}"
            )
        seconds(self.base, "Retry.base")
        seconds(self.max_backoff, "Retry.max_backoff")
        jitter = self.jitter
        if (
            isinstance(jitter, bool)
            or not isinstance(jitter, int | float)
            or not 0 <= jitter <= 10  # NaN fails both comparisons
        ):
            raise ValueError(f"Retry.jitter must be a number from 0 to 10, got: {jitter!r}")

    def delay(self, attempt: int, draw: float = 0.0) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``draw`` in [0, 1)."""
        if self.backoff == "exponential":
            # 2 ** 64 already exceeds any cap: a larger exponent would overflow the float.
            raw = self.base * 2.0 ** min(attempt - 1, 64)
        elif self.backoff == "linear":
            raw = self.base * attempt
        else:
            raw = self.base
        return min(float(min(raw, self.max_backoff) * (1.0 + self.jitter * draw)), MAX_SECONDS)


class Step:
    """Base class of every step.

    Subclasses set ``events`` (a non-empty tuple of strings) and define
    ``execute``. ``step_key`` defaults to the snake_case of the class name.
    ``retry``, ``timeout`` (seconds), ``blocking`` (run a plain ``def``
    in a worker thread) and ``spread`` (the distributed runner may run it on
    any worker) are data that runners read.

    Runners pass ``execute``'s arguments and the classmethods' ``config`` by
    position, so the base declares them positional-only: an override may name
    them as it likes (``_config`` for one it does not read).
    """

    events: ClassVar[tuple[str, ...]]
    step_key: ClassVar[str]
    retry: ClassVar[Retry | None] = None
    timeout: ClassVar[float | None] = None
    blocking: ClassVar[bool] = False
    spread: ClassVar[bool] = False
    """On the distributed runner: each run (a map's item, a fan-out's branch) is a job any
    worker may take, not run in the worker driving the instance. Other runners ignore it."""
    ends_workflow: ClassVar[bool] = False
    """True for ``Done``: the step ends the workflow and must be a leaf."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An explicit step_key on this very class wins; otherwise each class
        # gets its own, even when a parent class set one.
        if "step_key" not in cls.__dict__:
            cls.step_key = snake_case(cls.__name__)

    def execute(
        self, instance: Instance, config: Config, context: Context, /
    ) -> Result | Awaitable[Result]:
        """Do the step's work and return ``Ok``, ``Async`` or ``Error``."""
        raise NotImplementedError(f"{type(self).__qualname__}.execute is not defined")

    @classmethod
    def declared_events(cls, config: Config, /) -> tuple[str, ...]:
        """The events this step may return under ``config`` (``events`` by default)."""
        return cls.events

    @classmethod
    def check_config(cls, config: Config, /) -> None:
        """Raise ValueError for a config this step cannot run with; called at definition time."""

    @classmethod
    def timer(cls, config: Config, /) -> float | None:
        """Seconds after which a parked step resumes itself with ``"timeout"``; None: never."""
        return None
