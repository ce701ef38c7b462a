"""``MemoryStorage``: instances in a dict, for tests and for runs that need not survive."""

from __future__ import annotations

from collections.abc import Iterable

from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """The reference ``Storage``: a dict of id to instance; nothing survives the process."""

    def __init__(self) -> None:
        self._instances: dict[str, Instance] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._instances)} instances)"

    async def get(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    async def put(self, instance: Instance) -> None:
        self._instances[instance.id] = instance

    async def delete(self, instance_id: str) -> bool:
        return self._instances.pop(instance_id, None) is not None

    async def query(
        self,
        *,
        id: str | None = None,  # the protocol's filter names the field
        status: Status | str | None = None,
        status_in: Iterable[Status | str] | None = None,
        workflow: type[Workflow] | None = None,
        workflow_version: int | None = None,
    ) -> list[Instance]:
        if id is not None:
            found = self._instances.get(id)
            candidates: Iterable[Instance] = () if found is None else (found,)
        else:
            candidates = self._instances.values()
        statuses = None if status_in is None else {Status(s) for s in status_in}
        wanted = None if status is None else Status(status)
        return [
            instance
            for instance in candidates
            if (wanted is None or instance.status is wanted)
            and (statuses is None or instance.status in statuses)
            and (workflow is None or instance.workflow is workflow)
            and (workflow_version is None or instance.workflow_version == workflow_version)
        ]
