"""The exceptions Hephaestus raises.

Every exception derives from one root, :class:`HephaestusError`, and also from
the builtin it means, so ``except LookupError`` catches an unknown instance::

    HephaestusError
    ├── WorkflowDefinitionError (TypeError)   a workflow or step class is malformed
    ├── InstanceNotFound (LookupError)        no instance has that id
    ├── AlreadyRunning (ValueError)           an active instance already has that id
    ├── NotWaiting (ValueError)               resume of an instance or step that is not waiting
    ├── UndeclaredEvent (ValueError)          an event the step does not declare
    ├── AmbiguousResume (ValueError)          several steps wait: say which with step=
    ├── InvalidStepResult (TypeError)         execute returned something that is not a result
    ├── RouteError (ValueError)               a Route chose a step it does not name
    ├── MapError (ValueError)                 a Map's items could not be computed
    ├── StepFailed (RuntimeError)             a step failed for good (raised, Error, timeout)
    ├── StepTimeout (TimeoutError)            a step attempt ran past its timeout
    ├── RemoteStepError (RuntimeError)        a spread step raised in another worker
    ├── RunnerStopped (RuntimeError)          the runner stopped before the instance ended
    ├── NotSerializable (TypeError)           a value a durable storage cannot store as JSON
    ├── StorageHeld (RuntimeError)            another live LocalRunner holds the storage
    └── StorageError (RuntimeError)           a storage backend failed
        ├── InstanceLoadError                 a stored instance cannot be loaded again
        └── InstanceLost                      another process took the instance (distributed)

The messages name the culprit: the workflow, the step, the event or the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AlreadyRunning",
    "AmbiguousResume",
    "HephaestusError",
    "InstanceLoadError",
    "InstanceLost",
    "InstanceNotFound",
    "InvalidStepResult",
    "MapError",
    "NotSerializable",
    "NotWaiting",
    "RemoteStepError",
    "RouteError",
    "RunnerStopped",
    "StepFailed",
    "StepTimeout",
    "StorageError",
    "StorageHeld",
    "UndeclaredEvent",
    "WorkflowDefinitionError",
]


class HephaestusError(Exception):
    """The root of every exception Hephaestus raises."""


class WorkflowDefinitionError(HephaestusError, TypeError):
    """A workflow (or a step class it uses) is malformed.

    ``problems`` lists every problem found, not only the first; the message
    shows them all, one per line.
    """

    def __init__(self, workflow: str, problems: Sequence[str]) -> None:
        self.workflow = workflow
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{workflow} is not a valid workflow ({count} {noun}):\n{lines}")


class InstanceNotFound(HephaestusError, LookupError):
    """No instance has the given id."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"no workflow instance has id {instance_id!r}")

    def __str__(self) -> str:  # LookupError would quote the message again
        return str(self.args[0])


class AlreadyRunning(HephaestusError, ValueError):
    """An active instance already has the id a new instance would take."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"an active workflow instance already has id {instance_id!r}")


class NotWaiting(HephaestusError, ValueError):
    """A resume named an instance, or a step, that is not waiting."""


class UndeclaredEvent(HephaestusError, ValueError):
    """An event the step does not declare (in a result or a resume)."""

    def __init__(
        self, step: str, event: object, declared: Sequence[str], *, workflow: bool = False
    ) -> None:
        self.step = step
        self.event = event
        self.declared = tuple(declared)
        shown = ", ".join(repr(e) for e in self.declared) or "nothing"
        if workflow:  # a message: ``step`` names the workflow, none of whose steps declares it
            message = f"no step of workflow {step} declares event {event!r}; they declare {shown}"
        else:
            message = f"step {step} does not declare event {event!r}; it declares {shown}"
        super().__init__(message)


class AmbiguousResume(HephaestusError, ValueError):
    """Several steps of the instance wait; ``resume(..., step=)`` must name one."""


class InvalidStepResult(HephaestusError, TypeError):
    """A step's ``execute`` returned something that is not ``Ok``, ``Async`` or ``Error``."""


class RouteError(HephaestusError, ValueError):
    """A ``Route``'s chooser returned a step the route does not name."""


class MapError(HephaestusError, ValueError):
    """A ``Map``'s ``items`` raised, or returned something that is not a list of items."""


class StepFailed(HephaestusError, RuntimeError):
    """A step failed for good: it raised, returned ``Error``, or timed out, retries spent."""

    def __init__(self, step: str, kind: str, reason: object) -> None:
        self.step = step
        self.kind = kind
        self.reason = reason
        super().__init__(f"step {step} failed ({kind}): {reason}")


class StepTimeout(HephaestusError, TimeoutError):
    """A step attempt ran past its ``timeout``: the reason of a ``timeout`` failure."""


class RemoteStepError(HephaestusError, RuntimeError):
    """A spread step (``Step.spread``) raised in the worker that ran it.

    Its text is the original exception's, ``"Type: message"``, and failure
    reasons show it as such; ``frames`` is the traceback where it was raised
    (``traceback.FrameSummary`` objects).
    """

    shown_as_raised = True  # text_of() shows its text alone, as the original's

    def __init__(self, text: str, frames: Sequence[Any]) -> None:
        super().__init__(text)
        self.frames = list(frames)


class NotSerializable(HephaestusError, TypeError):
    """A value a durable storage cannot store: the message names its key (``context['when']``)."""


class StorageError(HephaestusError, RuntimeError):
    """A storage backend failed; the backend's own exception is the ``__cause__``.

    ``transient`` is True when the same call may succeed later unchanged (a
    lock held too long, a full or read-only disk, a lost connection, a server
    shutting down), False when the database refused the data itself.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InstanceLoadError(StorageError):
    """A stored instance cannot be loaded, e.g. its workflow can no longer be imported."""


class InstanceLost(StorageError):
    """A write of an instance found it taken by another process: this one stops driving it.

    The distributed runner's workers fence their writes with the instance's
    epoch; a cancel, or another worker that took the instance over, raises it.
    """

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            f"instance {instance_id!r} was taken over (cancelled, or driven elsewhere)"
        )
        self.instance_id = instance_id


class StorageHeld(HephaestusError, RuntimeError):
    """Another live ``LocalRunner`` holds the storage a ``LocalRunner`` was entering.

    One ``LocalRunner`` at a time drives a durable storage (a SQLite file, a
    PostgreSQL schema); the refused runner recovered nothing. ``storage``
    names the storage, ``holder`` says who holds it (its runner, pid, host and
    since when, as far as they are known), ``pid`` is its process id or None.
    """

    def __init__(self, storage: str, holder: str, *, pid: int | None = None) -> None:
        self.storage = storage
        self.holder = holder
        self.pid = pid
        super().__init__(
            f"{storage} is held by another LocalRunner ({holder}). A storage is driven by "
            f"one LocalRunner at a time: leave that runner's `async with` before entering "
            f"this one, or use that runner instead (it runs any number of instances); for "
            f"several processes on one PostgreSQL database, use the distributed runner "
            f"(hephaestus.distributed)"
        )


class RunnerStopped(HephaestusError, RuntimeError):
    """The runner stopped (left its ``async with``) before the awaited instance ended."""
