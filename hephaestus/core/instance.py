"""The state of one workflow run: ``Instance`` and the values it holds.

Instances are frozen: the engine returns new ones. The mappings they hold are
never mutated by Hephaestus either (it copies before it changes), and must not
be mutated by users.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from hephaestus._show import seconds, shown, text_of

if TYPE_CHECKING:
    from .step import Step
    from .workflow import Workflow

__all__ = [
    "Context",
    "ExecutionEntry",
    "Failure",
    "Instance",
    "MapState",
    "Message",
    "Status",
    "Timer",
]


class Status(enum.StrEnum):
    """Where an instance is in its life; the last three are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for completed, failed and cancelled: nothing happens after these."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


@attrs.frozen
class Context:
    """What steps read: the caller's ``initial`` context and each step's updates by step key."""

    initial: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class ExecutionEntry:
    """One completed step: its class, the event it returned, when (wall-clock ns), its updates.

    ``item`` is the index of the item for one item of a mapped step, else None.
    """

    step: type[Step]
    event: str
    timestamp: int
    updates: Mapping[str, Any] | None = None
    item: int | None = None

    @property
    def at(self) -> datetime:
        """``timestamp`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1e9, tz=UTC)


@attrs.frozen
class Timer:
    """A parked step resumes itself with ``event`` at ``due`` (wall-clock ns)."""

    due: int
    event: str = "timeout"


@attrs.frozen
class Message:
    """An event sent to an instance, kept until a step that waits for it takes it.

    ``data`` becomes the receiving step's output in the context; ``sent_at``
    is wall-clock ns.
    """

    event: str
    data: Mapping[str, Any] | None = None
    sent_at: int = 0


@attrs.frozen
class Failure:
    """Why an instance failed: the step, the kind (error, exception, timeout) and the reason.

    ``item`` is the index of the failing item when the step is mapped, else None.
    ``str(failure)`` says it in words::

        step ExtractImages failed: timed out after 5 s (timeout)
        step ResizeImage (item 3) failed: ValueError: not an image (exception)
        step Charge failed: card declined (error)
    """

    step: type[Step]
    kind: str
    reason: Any
    item: int | None = None

    @property
    def explanation(self) -> str:
        """What went wrong, without the step: ``"timed out after 5 s"``, ``"ValueError: ..."``.

        A timeout says the step's ``timeout``; an exception is ``"Type: message"``
        (as it is stored); an ``Error``'s reason is shown as itself when it is
        text, else by ``repr``. Never raises, whatever the reason's ``str``.
        """
        if self.kind == "timeout":
            limit = getattr(self.step, "timeout", None)
            if isinstance(limit, int | float) and not isinstance(limit, bool):
                return f"timed out after {seconds(limit)} s"
        reason = self.reason
        if isinstance(reason, BaseException):
            return text_of(reason)
        if isinstance(reason, str):
            return reason
        return shown(reason, 1000)

    def __str__(self) -> str:
        name = getattr(self.step, "__qualname__", None)
        step = name if isinstance(name, str) else shown(self.step)
        if self.item is not None:
            step = f"{step} (item {self.item})"
        return f"step {step} failed: {self.explanation} ({self.kind})"


@attrs.frozen
class MapState:
    """The progress of an active mapped step: its items, and which of them are done.

    ``done`` is a bit set: bit ``i`` is 1 once item ``i`` has completed (its
    result is in the history, where the map's results are gathered from
    when the last item completes). An int, so that marking one item done
    copies a few machine words, whatever the number of items.
    """

    items: tuple[Any, ...]
    done: int = 0

    @property
    def done_count(self) -> int:
        """How many items have completed."""
        return self.done.bit_count()

    def is_done(self, index: int) -> bool:
        """Whether item ``index`` has completed."""
        return bool(self.done >> index & 1)


# Instance keeps its fields in a __dict__ rather than slots: the engine builds
# one per step by copying the previous one's dict and changing a few fields,
# a third of the cost of the generated __init__ (see engine._build).


@attrs.frozen(slots=False)
class Instance:
    """One run of a workflow.

    ``active_steps`` are activated and not yet finished (running or about to
    run); ``waiting_steps`` returned ``Async()`` and wait for a resume;
    ``completed_steps`` finished with an event. ``pending_joins`` holds, for
    each join step some but not all of whose predecessors have finished,
    ``(arrived, live)``: how many predecessors are done and whether any of
    them took an edge to it. ``timers`` are the parked steps' self-resumes.
    ``maps`` holds the progress of each active mapped step; ``messages`` the
    messages sent to the instance that no step has taken yet, in arrival
    order.
    ``started_at`` is wall-clock ns; ``started_monotonic`` is
    ``time.monotonic_ns()`` in the process that started the run, or None
    after a restart (durations then come from the wall clock).
    """

    id: str
    workflow: type[Workflow]
    workflow_version: int
    status: Status
    context: Context
    current_step: type[Step] | None = None
    step_configs: Mapping[type[Step], Mapping[str, Any] | None] = attrs.field(factory=dict)
    active_steps: frozenset[type[Step]] = frozenset()
    completed_steps: frozenset[type[Step]] = frozenset()
    waiting_steps: frozenset[type[Step]] = frozenset()
    runtime_metadata: Mapping[str, Any] = attrs.field(factory=dict)
    execution_history: tuple[ExecutionEntry, ...] = ()
    telemetry_metadata: Mapping[str, Any] = attrs.field(factory=dict)
    started_at: int = 0
    started_monotonic: int | None = None
    timers: Mapping[type[Step], Timer] = attrs.field(factory=dict)
    pending_joins: Mapping[type[Step], tuple[int, bool]] = attrs.field(factory=dict)
    error: Failure | None = None
    maps: Mapping[type[Step], MapState] = attrs.field(factory=dict)
    messages: tuple[Message, ...] = ()

    @property
    def terminal(self) -> bool:
        """True once the instance is completed, failed or cancelled."""
        return self.status in _TERMINAL
