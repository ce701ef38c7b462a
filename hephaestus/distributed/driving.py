"""The worker's driver: the ``LocalRunner``'s driver, driving the instances its jobs claim.

A drive job (``heph.drive``, procrastinate lock ``heph:<id>``: one at a time
per instance, in order) claims its instance: one statement raises the
instance's epoch and reads its state and inbox. The instance then runs here
exactly as on a ``LocalRunner`` (the same class, the same loop): its steps
execute in this process, concurrently where the graph allows, and each
change is one fenced put of ``PostgresStorage`` (group-committed with the
other instances this worker drives) that only lands while the epoch is
still the claimed one. The inbox's letters (resumes, messages, timers sent
from any process) are applied through the runner's own methods; the put that
stores a letter's effect deletes the letter. Once nothing runs (the instance
ended, or waits for an event or a timer not due soon), the job releases the
instance and ends; a later letter or a due timer defers the next drive job.

A cancel (from any process) raises the epoch and notifies the worker, which
stops the instance's running steps; another worker that took the instance
over (after this one's heartbeat stopped) does the same to its writes.

A step whose class sets ``spread`` runs as a job that any worker may take
(``spreading``); its driver awaits the ``result`` letter it answers with.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
from collections.abc import Sequence
from typing import Any

import anyio
import structlog

from hephaestus.core import history as h
from hephaestus.core.history import Record
from hephaestus.core.instance import Instance, Status
from hephaestus.core.step import Config, Result, Step
from hephaestus.distributed import spreading
from hephaestus.distributed._backend import Backend, Letter
from hephaestus.exceptions import HephaestusError, InstanceLost, StorageError
from hephaestus.runtime.clock import Clock
from hephaestus.runtime.local import LocalRunner, _Run, _scope_slot
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.postgres import applying
from hephaestus.telemetry import _registry

__all__ = ["Driver"]

_logger = structlog.get_logger("hephaestus.distributed")


class Driver(LocalRunner):
    """A ``LocalRunner`` that drives only the instances its worker's drive jobs claim.

    ``hold`` is how far ahead a timer keeps its instance in this worker (the
    worker's polling interval: a later timer is woken by the polling).
    ``clock`` (default: the backend's) is the worker's, read as a ``LocalRunner``
    reads its clock.
    """

    # Every worker's driver shares the schema (their writes are fenced by the
    # instances' epochs): none holds it as a LocalRunner does.
    _holds_storage = False

    def __init__(
        self, backend: Backend, *, name: str, hold: float, clock: Clock | None = None
    ) -> None:
        super().__init__(
            backend.storage, name=name, clock=backend.clock if clock is None else clock
        )
        self._backend = backend
        self._hold = hold
        self._epochs: dict[str, int] = {}
        self._taken: dict[str, set[int]] = {}  # letters applied (or being), by instance
        self._mail: dict[str, asyncio.Lock] = {}
        self._answers: dict[str, asyncio.Future[Any]] = {}  # by token: spread runs awaited

    def __repr__(self) -> str:
        return f"Driver(name={self.name!r}, schema={self._backend.schema!r})"

    async def _unfinished(self) -> builtins.list[Instance]:
        return []  # instances come one by one, with their drive jobs

    async def drive(self, instance_id: str, attempt: int) -> None:
        """Drive the instance until nothing runs; ``attempt`` > 0: its last driver died."""
        claimed = await self._backend.claim(instance_id)
        if claimed is None:
            return  # deleted
        instance, epoch, wake_at, inbox = claimed
        if instance.terminal:
            if inbox:
                await self._backend.discard([letter.id for letter in inbox])
            return
        old = self._runs.get(instance_id)
        if old is not None:  # a drive of it here lost it: this job goes on from the store
            self._abandon(old)
        run = _Run(instance)
        run.persisted = instance
        if attempt:
            details = {"runner": self.name, "status": instance.status.value}
            run.pending = [Record(h.RECOVERED, self._now(), details=details)]
        self._runs[instance_id] = run
        self._epochs[instance_id] = epoch
        self._taken[instance_id] = set()
        self.storage.fence(instance_id, epoch)  # type: ignore[attr-defined]
        try:
            self._retime(run)
            if instance.status is not Status.WAITING:
                self._spawn(run)
            if inbox:
                await self._deliver(run, inbox)
            await self._until_idle(run)
        except BaseException:
            self._abandon(run)  # cut short (the worker stops): another drive goes on
            raise
        finally:
            self._release(run, epoch, wake_at)

    async def _until_idle(self, run: _Run) -> None:
        """Return once the run has ended, or nothing of it runs and no timer falls due soon."""
        iid = run.instance.id
        loop = asyncio.get_running_loop()
        while self._runs.get(iid) is run:
            if run.tasks or run.locked:
                run.settled = loop.create_future()
                await run.settled
                continue
            timers = run.instance.timers
            if timers and not run.instance.terminal:
                due = min(timer.due for timer in timers.values())
                wait = (due - self._now()) / 1e9
                if wait <= self._hold:  # it fires here (or has fired: its change is on its way)
                    run.settled = loop.create_future()
                    with self.clock.move_on_after(max(wait, 0) + 0.05):
                        await run.settled
                    continue
            return

    def _release(self, run: _Run, epoch: int, wake_at: Any) -> None:
        """The drive job ends: forget the run; fix the stored wake time if it is stale."""
        iid = run.instance.id
        if self._runs.get(iid) is run:
            del self._runs[iid]
            if run.timers:
                for handle in run.timers.values():
                    self._timers.cancel(handle)
                run.timers = None
        if self._epochs.get(iid) == epoch:
            del self._epochs[iid]
            self._taken.pop(iid, None)
            self.storage.fence(iid, None)  # type: ignore[attr-defined]
        instance = run.instance
        if run.lost or instance.terminal or run.persisted is not instance:
            return
        timers = instance.timers
        due = min(timer.due for timer in timers.values()) if timers else None
        stored = None if wake_at is None else int(wake_at.timestamp() * 1e9)
        if stored != due and (stored is None or due is None or abs(stored - due) > 1_000_000):
            self._in_background(self._backend.set_wake(iid, epoch, due))

    # ------------------------------------------------------------------ spread steps

    async def _call(self, step: type[Step], instance: Instance, config: Config) -> Result:
        if step.spread:
            return await self._elsewhere(step, instance, config)
        return await super()._call(step, instance, config)

    async def call_here(
        self, step: type[Step], instance: Instance, config: Config, item: int | None
    ) -> Result:
        """Run a spread step's ``execute`` in this worker, for a ``heph.step`` job.

        Inside the step-scope hooks (with no attempt number: the driver counts them).
        """
        scopes = _scope_slot[0]
        if not scopes:
            return await super()._call(step, instance, config)
        return await self._scoped(scopes, step, instance, config, item, None, super()._call)

    async def _elsewhere(self, step: type[Step], instance: Instance, config: Config) -> Result:
        """Run one attempt as a ``heph.step`` job (any worker's) and await its answer."""
        item = config["index"] if config is not None and step in instance.maps else None
        token = secrets.token_hex(8)
        answer = self._answers[token] = asyncio.get_running_loop().create_future()
        job = None
        try:
            path = codec.import_path(step)
            carried = _registry.carried.get()
            job = await self._backend.spread(instance.id, path, item, token, carried)
            letter, outcome = await answer
            applying((letter,))  # the fold of this outcome (this task's next put) deletes it
            return spreading.answer_of(outcome)
        finally:
            del self._answers[token]
            if job is not None and (answer.cancelled() or not answer.done()):  # stop it there
                self._in_background(self._backend.abort(job))

    def recheck(self) -> None:
        """Read the inbox of every instance driven here (notifications may have been lost)."""
        for instance_id in builtins.list(self._runs):
            self.notified(instance_id)

    # ------------------------------------------------------------------ the inbox

    def notified(self, instance_id: str) -> None:
        """A letter or a cancel for the instance was committed: look at it if we drive it."""
        run = self._runs.get(instance_id)
        if run is None or run.lost:
            return
        task = asyncio.get_running_loop().create_task(self._read_mail(run))
        if run.tasks is None:
            run.tasks = {task}
        else:
            run.tasks.add(task)
        task.add_done_callback(lambda t: _done(run, t))

    async def _read_mail(self, run: _Run) -> None:
        iid = run.instance.id
        peeked = await self._backend.peek(iid)
        if self._runs.get(iid) is not run:
            return
        if peeked is None or peeked[0] != self._epochs.get(iid):
            self._abandon(run)  # cancelled, or driven elsewhere now
            return
        await self._deliver(run, peeked[1])

    async def _deliver(self, run: _Run, letters: Sequence[Letter]) -> None:
        """Apply the letters not applied yet, in order, one at a time per instance."""
        iid = run.instance.id
        lock = self._mail.get(iid)
        if lock is None:
            lock = self._mail[iid] = asyncio.Lock()
        try:
            async with lock:
                refused = []
                taken = self._taken.get(iid)
                for letter in letters:
                    # A letter committed after one with a greater id comes in a later read.
                    if taken is None or letter.id in taken or self._runs.get(iid) is not run:
                        continue
                    taken.add(letter.id)
                    if letter.kind != "result":  # an answer goes with its step's fold
                        applying((letter.id,))  # the change it makes deletes it
                    if not await self._apply(run, letter):
                        refused.append(letter.id)
                if refused:
                    await self._backend.discard(refused)
        finally:
            if not lock.locked() and self._mail.get(iid) is lock:
                del self._mail[iid]

    async def _apply(self, run: _Run, letter: Letter) -> bool:
        """Apply one letter through the runner's own methods; False if it was refused."""
        iid = run.instance.id
        attempt = 0
        while True:
            try:
                if letter.kind == "result":  # a spread run's answer, if its driver still waits
                    answer = self._answers.get(letter.event)
                    if answer is None or answer.done():
                        return False
                    answer.set_result((letter.id, letter.data))  # deleted by the step's fold
                    return True
                if letter.kind == "resume":
                    step = None if letter.step is None else codec.resolve(letter.step)
                    await self.resume(iid, letter.event, letter.data, step=step)
                elif letter.kind == "send":
                    await self.send(iid, letter.event, letter.data)
                else:
                    assert letter.step is not None
                    assert letter.delay is not None
                    left = letter.delay - (self._now() - letter.sent_at) / 1e9
                    await self.schedule_resume(iid, codec.resolve(letter.step), max(left, 0.0))
                return True
            except InstanceLost:
                self._abandon(run)
                return True
            except StorageError as exc:
                if not exc.transient:
                    raise
                attempt += 1
                # In real time whatever the clock: it waits for the database to come back.
                await anyio.sleep(min(0.005 * 2**attempt, 5.0))
            except HephaestusError as exc:  # it no longer applies (a timer came first, ...)
                _logger.info(
                    "a letter was refused",
                    instance_id=iid,
                    kind=letter.kind,
                    letter_event=letter.event,
                    reason=str(exc),
                )
                return False


def _done(run: _Run, task: asyncio.Task[None]) -> None:
    tasks = run.tasks
    if tasks is not None:
        tasks.discard(task)
        if not tasks and run.settled is not None and not run.settled.done():
            run.settled.set_result(None)
    if not task.cancelled() and task.exception() is not None:
        _logger.error("reading an instance's inbox failed", exc_info=task.exception())
