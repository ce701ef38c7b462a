"""The ``Runner`` protocol: what every runner offers, local or distributed."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hephaestus.core.instance import Instance
    from hephaestus.core.step import Step
    from hephaestus.core.workflow import Workflow

__all__ = ["Runner"]


@runtime_checkable
class Runner(Protocol):
    """Starts, resumes, waits for, inspects and cancels workflow instances."""

    async def start(
        self,
        workflow: type[Workflow],
        context: Mapping[str, Any],
        *,
        id: str | None = None,
        version: int | None = None,
        telemetry_metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Create an instance and start running it; return its id.

        Raises ``AlreadyRunning`` when an active instance has the id.
        """
        ...

    async def resume(
        self,
        instance_id: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        step: type[Step] | str | None = None,
    ) -> None:
        """Give a waiting step its event; ``data`` becomes its output in the context.

        ``step`` is needed only when several steps wait. Raises
        ``InstanceNotFound``, ``NotWaiting``, ``UndeclaredEvent``,
        ``AmbiguousResume`` or ``NotSerializable``, and then changes nothing.
        """
        ...

    async def send(
        self, instance_id: str, event: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Send a message: taken by a step waiting for ``event`` now, or by the next that parks.

        Raises ``InstanceNotFound``, ``NotWaiting`` (the instance has ended)
        or ``UndeclaredEvent`` (no step of its workflow declares ``event``),
        and then changes nothing.
        """
        ...

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """Resume the waiting ``step`` with ``"timeout"`` after ``delay`` seconds."""
        ...

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the documented API
        """Return the instance once it is completed, failed or cancelled.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        ...

    async def get(self, instance_id: str) -> Instance:
        """The instance as it is now; raises ``InstanceNotFound``."""
        ...

    async def list(self, **filters: Any) -> builtins.list[Instance]:
        """The instances matching the storage's query filters."""
        ...

    async def cancel(self, instance_id: str) -> Instance:
        """Stop the instance: in-flight steps and timers are cancelled; it ends cancelled."""
        ...

    async def run(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> Instance:
        """Start an instance and wait for it to end."""
        ...
