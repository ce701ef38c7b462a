"""The ``Storage`` protocol: where runners keep instances."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, runtime_checkable

import attrs
import structlog

from hephaestus.core.instance import Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import InstanceLoadError
from hephaestus.runtime.storage import codec

if TYPE_CHECKING:
    from hephaestus.core.history import Record
    from hephaestus.core.instance import Instance

__all__ = [
    "COUNT_FIELDS",
    "ENDINGS",
    "MAX_PAGE",
    "Page",
    "Selection",
    "Storage",
    "check_by",
    "check_ended",
    "check_page",
    "paged",
    "select",
    "where_of",
]

COUNT_FIELDS: Final = ("status", "workflow", "workflow_version")
"""The fields ``Storage.count`` groups by."""


@runtime_checkable
class Storage(Protocol):
    """Keeps instances by id. Every method is a coroutine.

    A runner writes an instance after each change, and several tasks may write
    the same instance; a storage applies the writes of one instance in the
    order they were called, so the last call's instance is the one kept.

    Each write also appends the records that describe the change to the
    instance's history, atomically with the instance: both are stored, or
    neither is.
    """

    async def get(self, instance_id: str) -> Instance | None:
        """The stored instance with this id, or None."""
        ...

    async def put(self, instance: Instance, history: Sequence[Record] = ()) -> None:
        """Store ``instance``, replacing any with the same id, and append ``history`` to its log."""
        ...

    async def delete(self, instance_id: str) -> bool:
        """Remove the instance with this id and its history; True if there was one."""
        ...

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> list[Record]:
        """The instance's records, oldest first, from the ``offset``-th; at most ``limit``.

        Empty for an instance that is not stored.
        """
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

    async def page(self, **selection: Any) -> Page:
        """One page of the instances matching ``selection``, and the cursor of the next.

        ``selection`` holds :func:`select`'s arguments (filters, order,
        ``limit``, ``after``); ``TypeError`` or ``ValueError`` names one that
        is wrong. ``docs/storage.md``, "Listing and counting instances".
        """
        ...

    async def count(
        self, *, by: Sequence[str] = ("status", "workflow")
    ) -> dict[tuple[Any, ...], int]:
        """How many instances there are per value of the ``by`` fields, without loading them.

        ``by`` names some of ``status`` (its value, ``"waiting"``), ``workflow``
        (its import path, ``"shop.flows:Checkout"``) and ``workflow_version``;
        a key holds their values in that order. Groups with no instance are
        absent. ``ValueError`` for another field or none.
        """
        ...

    async def ended(self, *, since: datetime, every: int = 60) -> dict[tuple[int, str], int]:
        """How many instances ended since ``since``, per status and per ``every`` seconds.

        A key is ``(slot, status)``: ``slot`` the start of an ``every``-second
        slot in seconds since the epoch (a multiple of ``every``), ``status``
        one of ``completed``, ``failed`` and ``cancelled``; an instance counts
        in the slot of its last write. Slots with no instance are absent.
        ``ValueError`` for an ``every`` that is not an int >= 1, ``TypeError``
        for a ``since`` that is not an aware datetime.
        """
        ...


def check_by(by: object) -> tuple[str, ...]:
    """``Storage.count``'s ``by`` as a tuple; ``ValueError`` naming a field it cannot group by."""
    fields = (by,) if isinstance(by, str) else tuple(by)  # type: ignore[arg-type]
    if not fields:
        raise ValueError(
            f"count needs at least one field to group by, of: {', '.join(COUNT_FIELDS)}"
        )
    for field in fields:
        if field not in COUNT_FIELDS:
            raise ValueError(
                f"count cannot group by {field!r}: choose from {', '.join(COUNT_FIELDS)}"
            )
    if len(set(fields)) != len(fields):
        raise ValueError(f"count groups by each field once, got: {fields!r}")
    return fields


ENDINGS: Final = ("completed", "failed", "cancelled")
"""The statuses ``Storage.ended`` counts."""


def check_ended(since: datetime, every: int) -> float:
    """``Storage.ended``'s arguments checked; ``since`` in seconds since the epoch."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1 (seconds), got: {every!r}")
    stamp = _epoch("since", since)
    if stamp is None:
        raise TypeError("since must be a datetime, got: None")
    return stamp


def check_page(offset: int, limit: int | None) -> None:
    """Refuse an ``offset`` or ``limit`` of ``Storage.history`` that is not a count."""
    for name, value in (("offset", offset), ("limit", 0 if limit is None else limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got: {value!r}")


class Page(NamedTuple):
    """One page of ``Storage.page``: its instances, and the cursor of the next (None: the last)."""

    instances: list[Instance]
    next: str | None


@attrs.frozen
class Selection:
    """``Storage.page``'s arguments, checked: what a storage turns into its query.

    Times are seconds since the epoch (UTC); ``cursor`` is the ``(started,
    id)`` of the last row of the previous page, as the storage wrote it.
    """

    statuses: tuple[str, ...] | None
    workflow: str | None
    workflow_version: int | None
    id_prefix: str | None
    started_after: float | None
    started_before: float | None
    updated_after: float | None
    updated_before: float | None
    newest_first: bool
    limit: int
    cursor: tuple[str, str] | None


_logger = structlog.get_logger("hephaestus.storage")

MAX_PAGE: Final = 10_000
"""The largest ``limit`` of ``Storage.page``."""


def select(
    *,
    status_in: Iterable[Status | str] | None = None,
    workflow: type[Workflow] | str | None = None,
    workflow_version: int | None = None,
    id_prefix: str | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    newest_first: bool = True,
    limit: int = 100,
    after: str | None = None,
) -> Selection:
    """``Storage.page``'s arguments checked; ``TypeError`` or ``ValueError`` naming the culprit."""
    statuses = None
    if status_in is not None:
        if isinstance(status_in, str):
            status_in = (status_in,)
        statuses = tuple(Status(status).value for status in status_in)
    path = None
    if isinstance(workflow, type) and issubclass(workflow, Workflow):
        path = codec.import_path(workflow)
    elif isinstance(workflow, str):
        path = workflow
    elif workflow is not None:
        raise TypeError(f"workflow must be a Workflow class or an import path, got: {workflow!r}")
    if workflow_version is not None and (
        isinstance(workflow_version, bool) or not isinstance(workflow_version, int)
    ):
        raise TypeError(f"workflow_version must be an int, got: {workflow_version!r}")
    if id_prefix is not None and not isinstance(id_prefix, str):
        raise TypeError(f"id_prefix must be a string, got: {id_prefix!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}, got: {limit!r}")
    cursor = None
    if after is not None:
        started, bar, last_id = str(after).partition("|")
        if not bar or not started:
            raise ValueError(f"after must be a cursor that a page returned, got: {after!r}")
        cursor = (started, last_id)
    return Selection(
        statuses,
        path,
        workflow_version,
        id_prefix or None,
        _epoch("started_after", started_after),
        _epoch("started_before", started_before),
        _epoch("updated_after", updated_after),
        _epoch("updated_before", updated_before),
        bool(newest_first),
        limit,
        cursor,
    )


def _epoch(name: str, value: datetime | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got: {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (with a tzinfo), got: {value!r}")
    return value.timestamp()


def where_of(
    chosen: Selection, mark: str, stamp: str, prefix: Callable[[str], tuple[str, list[Any]]]
) -> tuple[list[str], list[Any]]:
    """The SQL conditions of ``chosen``'s filters and their values.

    ``mark`` is the parameter mark; ``stamp`` the expression of a time
    parameter (seconds since the epoch) compared with ``created_at`` and
    ``updated_at``; ``prefix`` gives the id prefix's own condition.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if chosen.statuses is not None:
        if not chosen.statuses:
            clauses.append("1 = 0")
        else:
            clauses.append(f"status IN ({', '.join([mark] * len(chosen.statuses))})")
            params.extend(chosen.statuses)
    for clause, value in (
        (f"workflow = {mark}", chosen.workflow),
        (f"workflow_version = {mark}", chosen.workflow_version),
        (f"created_at >= {stamp}", chosen.started_after),
        (f"created_at < {stamp}", chosen.started_before),
        (f"updated_at >= {stamp}", chosen.updated_after),
        (f"updated_at < {stamp}", chosen.updated_before),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if chosen.id_prefix is not None:
        clause, values = prefix(chosen.id_prefix)
        clauses.append(clause)
        params.extend(values)
    return clauses, params


def paged(rows: Sequence[Sequence[Any]], limit: int, mark: Callable[[Any], str]) -> Page:
    """A page from ``(id, state, started)`` rows, one more than ``limit`` when there is a next.

    A row that cannot be loaded is skipped (and logged); the cursor is the
    last row's ``mark(started)|id``.
    """
    found = []
    for row_id, state, _ in rows[:limit]:
        try:
            found.append(codec.loads(state))
        except InstanceLoadError as exc:  # one broken instance must not hide the others
            _logger.warning("instance skipped", instance_id=_text(row_id), reason=str(exc))
    cursor = None
    if len(rows) > limit:
        row_id, _, started = rows[limit - 1]
        cursor = f"{mark(started)}|{_text(row_id)}"
    return Page(found, cursor)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
