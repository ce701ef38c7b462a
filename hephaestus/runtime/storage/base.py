"""The ``Storage`` protocol: where runners keep instances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hephaestus.core.history import Record
    from hephaestus.core.instance import Instance, Status
    from hephaestus.core.workflow import Workflow

__all__ = ["COUNT_FIELDS", "Storage", "check_by", "check_page"]

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


def check_page(offset: int, limit: int | None) -> None:
    """Refuse an ``offset`` or ``limit`` of ``Storage.history`` that is not a count."""
    for name, value in (("offset", offset), ("limit", 0 if limit is None else limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got: {value!r}")
