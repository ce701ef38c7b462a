"""``SteeringRunner``: the runner API's changes to stored instances, without driving any.

The operator's commands (``hephaestus instances cancel/resume/send``) act on
a storage that no ``LocalRunner`` is driving at the moment: the application
is stopped, or it runs elsewhere on PostgreSQL with the distributed runner
(which has its own runner for that, usable from any process). A
``SteeringRunner`` is a ``LocalRunner`` that takes the storage's hold like
any other (so it is refused, with ``StorageHeld`` naming the holder, while
a ``LocalRunner`` runs on it, and a ``LocalRunner`` is refused while it
acts), loads an instance only when asked to change it, and applies
``cancel``, ``resume``, ``send`` and ``schedule_resume`` exactly as a
``LocalRunner`` does (the same checks, the same records, one storage write
each). It executes no step and fires no timer: what a change activates is
stored as the instance's active steps, and the next ``LocalRunner`` that
opens the storage recovers the instance and runs them.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, NoReturn

from hephaestus.core.instance import Instance
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.local import LocalRunner, _Run, _Unit

__all__ = ["SteeringRunner"]


class SteeringRunner(LocalRunner):
    """A ``LocalRunner`` that changes stored instances and runs none of their steps.

    Use it as an async context manager, like a ``LocalRunner``: entering
    holds the storage (``StorageHeld`` if a runner holds it) and recovers
    nothing. ``cancel``, ``resume``, ``send``, ``schedule_resume``, ``get``,
    ``history`` and ``list`` work as on a ``LocalRunner``; ``start``, ``run``
    and ``wait`` raise ``TypeError``, since nothing here would run the
    instance.
    """

    def __repr__(self) -> str:
        return f"SteeringRunner(name={self.name!r}, storage={self.storage!r})"

    async def _unfinished(self) -> builtins.list[Instance]:
        return []  # instances are loaded one by one, when a change asks for them

    async def _run_of(self, instance_id: str) -> _Run | None:
        run = self._runs.get(check_id(instance_id))
        if run is not None:
            return run
        stored = await self.storage.get(instance_id)
        if stored is None or stored.terminal:
            return None
        run = self._runs.get(instance_id)  # loaded by a concurrent change meanwhile
        if run is None:
            run = self._runs[instance_id] = _Run(stored)
            run.persisted = stored
        return run

    def _spawn(self, run: _Run, unit: _Unit | None = None) -> None:
        """Run nothing: the steps a change activated are stored, for the next runner."""

    def _retime(self, run: _Run) -> None:
        """Arm nothing: the next runner to open the storage arms the instance's timers."""

    async def start(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> str:
        """Refused: raises ``TypeError`` (a steering runner runs no instance)."""
        self._drives_nothing("start")

    async def run(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> Instance:
        """Refused: raises ``TypeError`` (a steering runner runs no instance)."""
        self._drives_nothing("run")

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the runner API's signature
        """Refused: raises ``TypeError`` (a steering runner runs no instance)."""
        self._drives_nothing("wait")

    def _drives_nothing(self, method: str) -> NoReturn:
        raise TypeError(
            f"{self!r} runs no instance, so it cannot {method}: use a LocalRunner "
            "(or the DistributedRunner) for that"
        )
