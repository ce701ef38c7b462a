"""The ``Storage`` protocol: where runners keep instances."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hephaestus.core.instance import Instance, Status
    from hephaestus.core.workflow import Workflow

__all__ = ["Storage"]


@runtime_checkable
class Storage(Protocol):
    """Keeps instances by id. Every method is a coroutine.

    A runner writes an instance after each change, and several tasks may write
    the same instance; a storage applies the writes of one instance in the
    order they were called, so the last call's instance is the one kept.
    """

    async def get(self, instance_id: str) -> Instance | None:
        """The stored instance with this id, or None."""
        ...

    async def put(self, instance: Instance) -> None:
        """Store ``instance``, replacing any instance with the same id."""
        ...

    async def delete(self, instance_id: str) -> bool:
        """Remove the instance with this id; True if there was one."""
        ...

    async def query(
        self,
        *,
        id: str | None = None,
        status: Status | str | None = None,
        status_in: Iterable[Status | str] | None = None,
        workflow: type[Workflow] | None = None,
        workflow_version: int | None = None,
    ) -> list[Instance]:
        """The instances matching every filter given (all of them when none is)."""
        ...
