"""``MemoryStorage``: instances in a dict, for tests and for runs that need not survive."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from hephaestus.core.history import Record
from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.base import (
    ENDINGS,
    Page,
    check_by,
    check_ended,
    check_page,
    select,
)

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """The reference ``Storage``: a dict of id to instance; nothing survives the process.

    Each instance's history keeps its newest ``history_limit`` records (None:
    all of them), so that a long-running instance holds a bounded amount of
    memory; the oldest records are dropped first.
    """

    def __init__(self, *, history_limit: int | None = 10_000) -> None:
        if history_limit is not None and (
            not isinstance(history_limit, int)
            or isinstance(history_limit, bool)
            or history_limit < 1
        ):
            raise ValueError(
                f"history_limit must be a positive int or None, got: {history_limit!r}"
            )
        self.history_limit = history_limit
        self._instances: dict[str, Instance] = {}
        self._history: dict[str, list[Record]] = {}
        # When an instance was last put without history records (seconds since the epoch).
        self._updated: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._instances)} instances)"

    async def get(self, instance_id: str) -> Instance | None:
        return self._instances.get(instance_id)

    async def put(self, instance: Instance, history: Sequence[Record] = ()) -> None:
        self._instances[instance.id] = instance
        if not history:  # a runner's put brings records, whose time says when it was written
            self._updated[instance.id] = time.time()
        if history:
            try:
                log = self._history[instance.id]
            except KeyError:
                self._history[instance.id] = list(history)
                return
            log += history
            limit = self.history_limit
            # Trimmed by a quarter of the limit at a time: a put at the limit moves no records.
            if limit is not None and len(log) > limit + (limit >> 2):
                del log[: len(log) - limit]

    async def delete(self, instance_id: str) -> bool:
        self._history.pop(instance_id, None)
        self._updated.pop(instance_id, None)
        return self._instances.pop(instance_id, None) is not None

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> list[Record]:
        check_page(offset, limit)
        log = self._history.get(instance_id, [])
        kept = self.history_limit
        first = 0 if kept is None else max(len(log) - kept, 0)  # (some may await a trim)
        start = first + offset
        return log[start : None if limit is None else start + limit]

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

    async def page(self, **selection: Any) -> Page:
        """A page of the matching instances (see ``Storage.page``); "started" is ``started_at``."""
        chosen = select(**selection)
        statuses = None if chosen.statuses is None else set(chosen.statuses)
        prefix = chosen.id_prefix
        rows = []
        for instance in self._instances.values():
            started = instance.started_at / 1e9
            updated = self._updated_at(instance)
            if (
                (statuses is None or instance.status.value in statuses)
                and (
                    chosen.workflow is None
                    or codec.import_path(instance.workflow) == chosen.workflow
                )
                and (chosen.workflow_version in (None, instance.workflow_version))
                and (prefix is None or instance.id.startswith(prefix))
                and (chosen.started_after is None or started >= chosen.started_after)
                and (chosen.started_before is None or started < chosen.started_before)
                and (chosen.updated_after is None or updated >= chosen.updated_after)
                and (chosen.updated_before is None or updated < chosen.updated_before)
            ):
                rows.append((started, instance.id, instance))
        if chosen.cursor is not None:
            mark = (float(chosen.cursor[0]), chosen.cursor[1])
            if chosen.newest_first:
                rows = [row for row in rows if row[:2] < mark]
            else:
                rows = [row for row in rows if row[:2] > mark]
        rows.sort(key=lambda row: row[:2], reverse=chosen.newest_first)
        taken = rows[: chosen.limit]
        last = taken[-1] if len(rows) > chosen.limit else None
        cursor = None if last is None else f"{last[0]!r}|{last[1]}"
        return Page([row[2] for row in taken], cursor)

    def _updated_at(self, instance: Instance) -> float:
        """When ``instance`` was last put: its newest record's time, or a put without records."""
        log = self._history.get(instance.id)
        recorded = log[-1].at / 1e9 if log else instance.started_at / 1e9
        return max(recorded, self._updated.get(instance.id, 0.0))

    async def count(
        self, *, by: Sequence[str] = ("status", "workflow")
    ) -> dict[tuple[Any, ...], int]:
        fields = check_by(by)
        counts = Counter(tuple(_field(i, f) for f in fields) for i in self._instances.values())
        return dict(counts)

    async def ended(self, *, since: datetime, every: int = 60) -> dict[tuple[int, str], int]:
        """Instances ended per slot and status (see ``Storage.ended``); "ended" is the last put."""
        stamp = check_ended(since, every)
        counts: Counter[tuple[int, str]] = Counter()
        for instance in self._instances.values():
            if instance.status.value in ENDINGS:
                updated = self._updated_at(instance)
                if updated >= stamp:
                    counts[int(updated // every) * every, instance.status.value] += 1
        return dict(counts)


def _field(instance: Instance, field: str) -> Any:
    """What ``Storage.count`` groups ``instance`` by for ``field``, as SQL storages store it."""
    if field == "status":
        return instance.status.value
    if field == "workflow":
        return codec.import_path(instance.workflow)
    return instance.workflow_version
