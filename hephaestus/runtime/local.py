"""``LocalRunner``: runs workflows in this process, on asyncio.

One driver task per instance runs the advance loop: advance, execute the
active steps (a batch of one inline in the driver; several concurrently, one
task each), fold their results in sorted order, store, repeat; stop when
terminal. A parked instance has no driver: when it waits, its driver ends,
and a resume or a timer starts a new one.

Every change of an instance is stored before it is applied in memory
(``docs/architecture.md``, "State changes"): a change is computed from the
instance in memory, which is always the stored one, written, and only then
made the instance in memory and announced by telemetry. Changes of one
instance never overlap: the driver (between executions), resumes, timers
and cancels take turns at its gate. A write that fails is retried when the
storage says it may pass later; a write the storage refuses fails the
instance from its last stored state, blaming the step whose result it was.

The runner's own background work (the timer task) lives in an anyio task
group. Drivers and the steps of a batch are plain asyncio tasks that the
runner owns, cancels and awaits: creating one costs about a sixth of an anyio
``start_soon`` plus a cancel scope, and they are created per instance and per
branch.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
import random
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import structlog

from hephaestus import telemetry as emit
from hephaestus.core import engine
from hephaestus.core.instance import Context, Instance, Status, Timer
from hephaestus.core.step import Error, Ok, Result, Step
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import (
    AlreadyRunning,
    HephaestusError,
    InstanceNotFound,
    NotSerializable,
    NotWaiting,
    RouteError,
    RunnerStopped,
    StorageError,
)
from hephaestus.runtime.endings import announce_end
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.inputs import check_start
from hephaestus.runtime.storage.base import Storage
from hephaestus.runtime.storage.memory import MemoryStorage
from hephaestus.runtime.timers import Handle, TimerQueue
from hephaestus.runtime.waiting import check_delay, check_event, check_step, waiting_step
from hephaestus.telemetry import _registry, names

__all__ = ["LocalRunner"]

_logger = structlog.get_logger("hephaestus.runner")

_RUNNING: Final = Status.RUNNING
_PENDING: Final = Status.PENDING
_WAITING: Final = Status.WAITING
_ACTIVE_STATUSES: Final = (Status.PENDING, Status.RUNNING, Status.WAITING)

# Who listens, read through the registry's slots: slot[0] is () when nobody does,
# so the hot path tests one list item before it builds any metadata.
_advance_slot = _registry._slot(names.ENGINE_ADVANCE)
_start_slot = _registry._slot(names.STEP_START)
_stop_slot = _registry._slot(names.STEP_STOP)
_transition_slot = _registry._slot(names.WORKFLOW_TRANSITION)
_workflow_start_slot = _registry._slot(names.WORKFLOW_START)


class _Failed:
    """A step attempt that failed: why, and whether it may be retried."""

    __slots__ = ("attempt", "kind", "reason", "stacktrace")

    def __init__(
        self, kind: str, reason: object, stacktrace: list[Any] | None, attempt: int = 1
    ) -> None:
        self.kind = kind
        self.reason = reason
        self.stacktrace = stacktrace
        self.attempt = attempt


class _Run:
    """What the runner keeps in memory for one active instance.

    ``instance`` is the stored instance (see the module's docstring);
    ``locked`` says whether a change holds the instance's gate, and ``gate``
    is the future its waiters await (made only when one waits).
    """

    __slots__ = (
        "advances",
        "completed_since",
        "done",
        "gate",
        "instance",
        "locked",
        "parked_at",
        "persisted",
        "sibling_failed",
        "stacktrace",
        "task",
        "timers",
    )

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.persisted: Instance | None = None
        self.advances = 0
        self.completed_since = 0
        # A future of the running loop (cheaper than an event), set once by _finish.
        self.done: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.stacktrace: list[Any] | None = None  # of the failure, for workflow:exception
        self.sibling_failed = False  # a step of the current batch failed: the others stop
        self.parked_at: dict[type[Step], int] | None = None  # monotonic ns, made when one parks
        self.locked = False
        self.gate: asyncio.Future[None] | None = None
        self.timers: dict[type[Step], Handle] | None = None  # armed timers, by step


# What a fold announces once its instance is stored: (kind, step, instance, details).
_Note = tuple[str, type[Step], Instance, Any]


def _frames(exc: BaseException) -> list[Any]:
    return list(traceback.extract_tb(exc.__traceback__))


class LocalRunner:
    """Runs workflow instances in this process.

    ``storage`` defaults to a fresh :class:`MemoryStorage`; ``name`` names the
    runner in telemetry; ``max_concurrency`` caps how many steps execute at
    once across all instances (None: no cap). Use it as an async context
    manager: entering recovers the storage's unfinished instances, leaving
    stops every driver (in-flight steps are cancelled; the state stored after
    the last completed step stays, and a later runner on the same storage runs
    those steps again).
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be an int >= 1 or None, got: {max_concurrency!r}"
            )
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.name = name if name is not None else f"local-{os.getpid()}-{id(self):x}"
        self._max_concurrency = max_concurrency
        self._limiter: anyio.CapacityLimiter | None = None
        self._runs: dict[str, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = False
        self._timers = TimerQueue(self._fire_timer)
        self._background: set[asyncio.Task[None]] = set()
        # Steps whose execute can simply be awaited (async, no timeout, no
        # limiter); filled on first use.
        self._plain: dict[type[Step], bool] = {}

    def __repr__(self) -> str:
        return f"LocalRunner(name={self.name!r}, storage={self.storage!r})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalRunner:
        if self._tg is not None:
            raise RuntimeError(f"{self!r} is already running")
        # Read before anything starts: a storage that cannot be read fails the
        # entry with its own exception, and nothing is left to stop.
        unfinished = await self.storage.query(status_in=_ACTIVE_STATUSES)
        if self._max_concurrency is not None:
            self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._stopping = False
        emit.runner_init(
            {
                "name": self.name,
                "runner": type(self),
                "storage": type(self.storage),
                "pid": os.getpid(),
            }
        )
        tg.start_soon(self._timers.run)
        self._recover(unfinished)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            await self._stop_drivers()
            tg.cancel_scope.cancel()
            # The group holds only the timer task, cancelled here. The body's own
            # exception is not handed to it, so it reaches the caller as itself,
            # never wrapped in an ExceptionGroup.
            await tg.__aexit__(None, None, None)
            return None
        finally:
            self._tg = None
            self._runs.clear()
            self._timers = TimerQueue(self._fire_timer)

    async def _stop_drivers(self) -> None:
        """Cancel every driver and background change; wait until they have all stopped."""
        self._stopping = True
        runs = list(self._runs.values())
        tasks = [run.task for run in runs if run.task is not None]
        tasks.extend(self._background)
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)
        for run in runs:  # release the waiters: wait() raises RunnerStopped
            _set(run.done)

    def _recover(self, unfinished: builtins.list[Instance]) -> None:
        """Drive every unfinished instance of the storage; re-arm the timers of waiting ones."""
        for instance in unfinished:
            if instance.id in self._runs:
                continue
            run = _Run(instance)
            run.persisted = instance
            self._runs[instance.id] = run
            self._retime(run)
            self._spawn(run)

    def _spawn(self, run: _Run) -> None:
        run.task = asyncio.get_running_loop().create_task(self._drive(run))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the runner cancels and awaits when it stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _check_running(self) -> None:
        if self._tg is None or self._stopping:
            raise RunnerStopped(
                f"{self!r} is not running: use it inside `async with LocalRunner() as runner`"
            )

    # ------------------------------------------------------------------ public API

    async def start(
        self,
        workflow: type[Workflow],
        context: Mapping[str, Any],
        *,
        id: str | None = None,
        version: int | None = None,
        telemetry_metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Create an instance of ``workflow`` and start driving it; return its id.

        Refused with nothing stored when an argument is wrong or the storage
        cannot keep the context. A start cancelled by its caller leaves
        nothing behind: a write already on its way is deleted again.
        """
        self._check_running()
        concrete, iid, initial, metadata = check_start(
            workflow, context, id, version, telemetry_metadata
        )
        if iid in self._runs:
            raise AlreadyRunning(iid)
        instance = Instance(
            iid,
            concrete,
            concrete.version,
            _PENDING,
            Context(initial),
            telemetry_metadata=metadata,
            started_at=time.time_ns(),
            started_monotonic=time.monotonic_ns(),
        )
        run = _Run(instance)
        self._runs[iid] = run  # claimed before any await: a concurrent start sees it
        try:
            await self.storage.put(instance)
        except asyncio.CancelledError:
            self._in_background(self._undo_start(run))  # the claim is kept until it is done
            raise
        except BaseException:
            del self._runs[iid]
            raise
        run.persisted = instance
        self._started(run)
        return iid

    def _started(self, run: _Run) -> None:
        instance = run.instance
        if _workflow_start_slot[0]:
            emit.workflow_start(
                instance,
                {
                    "initial_step": instance.workflow.definition.start,
                    "context_keys": list(instance.context.initial),
                    "runner": type(self),
                },
            )
        self._spawn(run)

    async def _undo_start(self, run: _Run) -> None:
        """A start's caller was cancelled: delete what its write may have stored."""
        iid = run.instance.id
        try:
            await self._store(run, None)  # a delete, ordered after the cancelled put
        except asyncio.CancelledError:
            raise
        except Exception:  # it cannot be deleted: it may exist, so it runs
            _logger.exception("a cancelled start could not be undone: it runs", instance_id=iid)
            run.persisted = run.instance
            self._started(run)
            return
        if self._runs.get(iid) is run:
            del self._runs[iid]

    async def run(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> Instance:
        """Start an instance and wait until it is completed, failed or cancelled."""
        timeout = options.pop("timeout", None)
        return await self.wait(await self.start(workflow, context, **options), timeout=timeout)

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the documented API
        """The instance once it has ended; ``TimeoutError`` after ``timeout`` seconds.

        The instance returned is stored as it is: ended in the storage too.
        """
        self._check_running()
        run = self._runs.get(check_id(instance_id))
        if run is None:
            return await self.get(instance_id)
        if run.done is None:
            run.done = asyncio.get_running_loop().create_future()
        done = run.done
        # Shielded: a waiter that times out must not cancel what other waiters await.
        if timeout is None:
            await asyncio.shield(done)
        else:
            with anyio.fail_after(timeout):
                await asyncio.shield(done)
        if not run.instance.terminal:
            raise RunnerStopped(
                f"{self!r} stopped before instance {instance_id!r} ended "
                f"(it is {run.instance.status}; a runner on the same storage will finish it)"
            )
        return run.instance

    async def get(self, instance_id: str) -> Instance:
        """The instance as it is now (read from the storage once the runner has stopped)."""
        run = self._runs.get(check_id(instance_id))
        if run is not None:
            return run.instance
        instance = await self.storage.get(instance_id)
        if instance is None:
            raise InstanceNotFound(instance_id)
        return instance

    async def list(self, **filters: Any) -> builtins.list[Instance]:
        """The stored instances matching the filters (``status``, ``workflow``, ...)."""
        return await self.storage.query(**filters)

    async def resume(
        self, instance_id: str, event: str, *, step: type[Step] | str | None = None
    ) -> None:
        """Give a waiting step its event; refused with no change when it cannot apply.

        The resume is stored before it takes effect: a failed write raises
        ``StorageError`` and changes nothing (try again). A resume cancelled
        by its caller has no effect either.
        """
        self._check_running()
        check_event(event)
        check_step(step)
        run = await self._active(instance_id)

        def resumed(instance: Instance) -> tuple[Instance, Callable[[], None]]:
            target = waiting_step(instance, instance.waiting_steps, step)
            applied = engine.resume_step(instance, target, event, now=time.time_ns())
            return applied.instance, lambda: self._resumed(
                run, instance, target, event, applied, "external"
            )

        await self._change(run, resumed)

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """The waiting ``step`` resumes itself with ``"timeout"`` after ``delay`` seconds."""
        self._check_running()
        delay = check_delay(delay)
        check_step(step)
        run = await self._active(instance_id)

        def scheduled(instance: Instance) -> tuple[Instance, Callable[[], None]]:
            target = waiting_step(instance, instance.waiting_steps, step)
            due = time.time_ns() + int(delay * 1_000_000_000)
            return engine.schedule_timer(instance, target, due), lambda: self._retime(run)

        await self._change(run, scheduled)

    async def cancel(self, instance_id: str) -> Instance:
        """Cancel the instance: in-flight steps and timers stop; it ends ``cancelled``.

        Cancelling an instance that already ended returns it unchanged. The
        cancel is stored before it takes effect (``StorageError`` otherwise,
        and the instance goes on).
        """
        self._check_running()
        run = self._runs.get(check_id(instance_id))
        if run is None:
            return await self.get(instance_id)

        def cancelled(instance: Instance) -> tuple[Instance, Callable[[], Instance]]:
            if instance.terminal:
                return instance, lambda: instance
            new = engine.cancel(instance)

            def after() -> Instance:
                if run.task is not None and run.task is not asyncio.current_task():
                    run.task.cancel()
                self._finish(run)
                return new

            return new, after

        return await self._change(run, cancelled)

    # ------------------------------------------------------------------ changes

    async def _active(self, instance_id: str) -> _Run:
        run = self._runs.get(check_id(instance_id))
        if run is not None:
            return run
        stored = await self.storage.get(instance_id)
        if stored is None:
            raise InstanceNotFound(instance_id)
        raise NotWaiting(f"instance {instance_id!r} is {stored.status}, not waiting")

    async def _lock(self, run: _Run) -> None:
        """Take the instance's gate (waiting for the change that holds it)."""
        while run.locked:
            if run.gate is None:
                run.gate = asyncio.get_running_loop().create_future()
            await asyncio.shield(run.gate)  # a cancelled waiter leaves the gate to the others
        run.locked = True

    def _unlock(self, run: _Run) -> None:
        run.locked = False
        gate = run.gate
        if gate is not None:
            run.gate = None
            if not gate.done():
                gate.set_result(None)

    async def _change(
        self,
        run: _Run,
        compute: Callable[[Instance], tuple[Instance, Callable[[], _T]]],
        *,
        internal: bool = False,
    ) -> _T:
        """Store ``compute(instance)``'s instance, make it the instance, then run its sequel.

        ``compute`` raises to refuse the change (nothing changes). A write that
        fails raises and changes nothing. A caller cancelled during the write
        changes nothing either: the previous state is written back (in order,
        after the write) before the gate opens again. An ``internal`` change
        (a timer) retries transient storage failures instead of raising them.
        """
        await self._lock(run)
        handed_over = False
        try:
            before = run.instance
            new, sequel = compute(before)
            if new is not before:
                try:
                    await (self._store(run, new) if internal else self.storage.put(new))
                except asyncio.CancelledError:
                    if not internal:  # (an internal change is cancelled only by a stop)
                        handed_over = True
                        self._in_background(self._undo(run, before))
                    raise
                run.instance = run.persisted = new
            return sequel()
        finally:
            if not handed_over:
                self._unlock(run)

    async def _undo(self, run: _Run, before: Instance) -> None:
        """Write ``before`` back after a change whose caller was cancelled; then open the gate."""
        try:
            await self._store(run, before)
        except Exception:
            _logger.exception("a cancelled change could not be undone", instance_id=before.id)
        finally:
            self._unlock(run)

    async def _store(self, run: _Run, instance: Instance | None, *, forever: bool = False) -> None:
        """Write ``instance`` (None: delete the run's instance), retrying while the storage fails.

        A ``StorageError`` marked transient (a lock, a full or read-only
        disk, a lost connection) is retried with a backoff capped at 5 s, for
        as long as the runner runs; so is any ``StorageError`` when
        ``forever``. Anything else is raised: the storage refused the data.
        """
        attempt = 0
        while True:
            try:
                if instance is None:
                    await self.storage.delete(run.instance.id)
                else:
                    await self.storage.put(instance)
                return
            except StorageError as exc:
                if not (exc.transient or forever):
                    raise
                attempt += 1
                if attempt == 1 or attempt % 10 == 0:
                    _logger.warning(
                        "a write failed; retrying",
                        instance_id=run.instance.id,
                        attempt=attempt,
                        reason=str(exc),
                    )
                await anyio.sleep(min(0.005 * 2**attempt, 5.0))

    async def _rewrite(self, run: _Run, instance: Instance, error: Exception) -> None:
        """After a put of ``instance`` failed with ``error``: retry if transient, else raise."""
        if isinstance(error, StorageError) and error.transient:
            _logger.warning(
                "a write failed; retrying", instance_id=instance.id, attempt=1, reason=str(error)
            )
            await anyio.sleep(0.005)
            await self._store(run, instance)
            return
        raise error

    def _finish(self, run: _Run) -> None:
        """The instance ended: drop its timers, release waiters and forget the run."""
        if self._runs.get(run.instance.id) is run:
            del self._runs[run.instance.id]
        if run.timers:
            self._retime(run)
        _set(run.done)

    def _retime(self, run: _Run) -> None:
        """Arm the instance's new timers and cancel the ones it no longer has."""
        timers = run.instance.timers
        handles = run.timers
        if handles:
            for step, handle in builtins.list(handles.items()):
                payload = handle[2]
                if payload is None or timers.get(step) is not payload[2] or run.instance.terminal:
                    self._timers.cancel(handle)
                    del handles[step]
        if timers and not run.instance.terminal:
            if handles is None:
                handles = run.timers = {}
            for step, timer in timers.items():
                if step not in handles:
                    handles[step] = self._timers.arm(timer.due, run, step, timer)

    def _fire_timer(self, run: _Run, step: type[Step], timer: Timer) -> None:
        """A timer fell due: resume its step unless a resume (or cancel) came first."""
        if self._runs.get(run.instance.id) is not run or run.instance.timers.get(step) is not timer:
            return
        if run.timers is not None:
            run.timers.pop(step, None)
        self._in_background(self._timer_resume(run, step, timer))

    async def _timer_resume(self, run: _Run, step: type[Step], timer: Timer) -> None:
        def resumed(instance: Instance) -> tuple[Instance, Callable[[], None]]:
            if instance.timers.get(step) is not timer or instance.terminal:
                return instance, _nothing  # a resume or a cancel came first
            applied = engine.resume_step(instance, step, timer.event, now=time.time_ns())
            return applied.instance, lambda: self._resumed(
                run, instance, step, timer.event, applied, "timeout"
            )

        try:
            await self._change(run, resumed, internal=True)
        except Exception as exc:  # the storage refused it: the instance fails, not hangs
            await self._refused(run, step, _refusal(exc), exc)

    def _resumed(
        self,
        run: _Run,
        before: Instance,
        step: type[Step],
        event: str,
        applied: engine.Applied,
        source: str,
    ) -> None:
        """A stored resume: telemetry, then a driver for the instance."""
        run.completed_since += 1
        self._retime(run)
        parked = None if run.parked_at is None else run.parked_at.pop(step, None)
        if parked is not None:
            wait_duration = time.monotonic_ns() - parked
        else:  # parked by another process: since the step before it completed
            history = before.execution_history
            since = history[-1].timestamp if history else before.started_at
            wait_duration = max(time.time_ns() - since, 0)
        emit.step_resume(
            before,
            step,
            {
                "step_key": step.step_key,
                "resume_event": event,
                "source": source,
                "wait_duration": wait_duration,
            },
        )
        emit.workflow_transition(applied.instance, step, event, list(applied.activated), {})
        if run.task is None:  # parked: its driver had ended
            self._spawn(run)

    # ------------------------------------------------------------------ the driver

    async def _drive(self, run: _Run) -> None:
        try:
            await self._loop(run)
        except Exception as exc:  # a bug in the runner: this instance fails alone
            _logger.exception("driver failed", instance_id=run.instance.id)
            await self._refused(run, None, "runner", exc)

    async def _refused(
        self, run: _Run, step: type[Step] | None, kind: str, exc: BaseException
    ) -> None:
        """The instance cannot go on: store its last stored state, marked failed, and end it.

        The failure is written until the storage takes it, for as long as the
        runner runs: the instance is never left ``running`` with nothing
        driving it.
        """
        await self._lock(run)
        try:
            before = run.instance
            if before.terminal:
                return
            if step is not None:
                emit.step_exception(
                    before, step, 0, kind, exc, None, {"step_key": step.step_key, "attempt": 1}
                )
            culprit = step or before.current_step or before.workflow.definition.start
            failed = engine.fail_step(before, culprit, kind, exc)
            run.stacktrace = _frames(exc)
            await self._store(run, failed, forever=True)
            run.instance = run.persisted = failed
        finally:
            self._unlock(run)
        self._ended(run)

    async def _loop(self, run: _Run) -> None:
        await self._lock(run)
        locked = True
        try:
            while True:
                instance = run.instance
                status = instance.status
                if status is _RUNNING or status is _PENDING:
                    run.advances += 1
                    t0 = time.monotonic_ns()
                    instance = engine.advance(instance)
                    if _advance_slot[0]:
                        emit.engine_advance(
                            instance,
                            time.monotonic_ns() - t0,
                            {
                                "iteration": run.advances,
                                "status_before": status,
                                "status_after": instance.status,
                                "active_steps_count": len(instance.active_steps),
                                "completed_in_advance": run.completed_since,
                            },
                        )
                    run.completed_since = 0
                    if instance is not run.persisted:
                        try:
                            await self.storage.put(instance)
                        except Exception as exc:
                            try:
                                await self._rewrite(run, instance, exc)
                            except Exception as refused:  # the start step's config is refused
                                self._unlock(run)
                                locked = False
                                await self._refused(run, None, _refusal(refused), refused)
                                return
                        run.instance = run.persisted = instance
                    active = instance.active_steps
                    if not active:
                        continue
                    self._unlock(run)  # the gate is open while steps execute
                    locked = False
                    if len(active) == 1:
                        for step in active:
                            outcome = await self._execute(run, step, False, 1)
                            if run.locked:
                                await self._lock(run)
                            else:
                                run.locked = True
                            locked = True
                            if not await self._settle(run, step, outcome):
                                locked = False
                                return
                    else:
                        outcomes = await self._batch(run, sorted(active, key=_qualname))
                        if run.locked:
                            await self._lock(run)
                        else:
                            run.locked = True
                        locked = True
                        if not await self._settle_batch(run, outcomes):
                            locked = False
                            return
                elif status is _WAITING:
                    # Parked: the driver ends, and a resume or a timer starts a new one.
                    # A parked instance then holds no task, coroutine or future.
                    run.task = None
                    return
                else:
                    self._unlock(run)
                    locked = False
                    self._ended(run)
                    return
        finally:
            if locked:
                self._unlock(run)

    async def _settle(
        self, run: _Run, step: type[Step], outcome: tuple[Result | _Failed, int]
    ) -> bool:
        """Fold one step's outcome, store it, then announce it; False if the instance failed."""
        before = run.instance
        new, note = self._fold(run, before, step, outcome)
        if new is not before:
            try:
                await self.storage.put(new)  # the common case: no retry loop on the hot path
            except Exception as exc:
                try:
                    await self._rewrite(run, new, exc)
                except Exception as refused:  # the storage refused the step's result
                    self._unlock(run)
                    await self._refused(run, step, _refusal(refused), refused)
                    return False
            run.instance = run.persisted = new
        if note is not None:
            self._announce(run, note)
        return True

    async def _settle_batch(
        self, run: _Run, outcomes: builtins.list[tuple[type[Step], tuple[Result | _Failed, int]]]
    ) -> bool:
        """Fold a batch's outcomes in order and store them once; False if the instance failed.

        If the storage refuses the batch, its outcomes are stored one by one,
        so that the step whose result it refuses is the one blamed.
        """
        before = instance = run.instance
        notes: builtins.list[_Note] = []
        for step, outcome in outcomes:
            instance, note = self._fold(run, instance, step, outcome)
            if note is not None:
                notes.append(note)
        if instance is not before:
            try:
                await self._store(run, instance)
            except Exception:
                for step, outcome in outcomes:
                    if not await self._settle(run, step, outcome):
                        return False
                return True
            run.instance = run.persisted = instance
        for note in notes:
            self._announce(run, note)
        return True

    async def _batch(
        self, run: _Run, steps: builtins.list[type[Step]]
    ) -> builtins.list[tuple[type[Step], tuple[Result | _Failed, int]]]:
        """Run several active steps concurrently; their outcomes, successes first, sorted."""
        count = len(steps)
        loop = asyncio.get_running_loop()
        tasks: dict[type[Step], asyncio.Task[tuple[Result | _Failed, int]]] = {}

        async def one(step: type[Step]) -> tuple[Result | _Failed, int]:
            outcome = await self._execute(run, step, True, count)
            if type(outcome[0]) in _FAILURES:  # the instance fails: stop its other steps
                run.sibling_failed = True
                for other in tasks.values():
                    if other is not asyncio.current_task():
                        other.cancel()
            return outcome

        # Plain asyncio tasks, like the drivers: an anyio task group costs several
        # times more per task, and a fan-out creates one task per branch.
        for step in steps:
            tasks[step] = loop.create_task(one(step))
        try:
            await asyncio.wait(tasks.values())
        except asyncio.CancelledError:  # the driver is cancelled: so are its steps
            for task in tasks.values():
                task.cancel()
            await asyncio.wait(tasks.values())
            raise
        outcomes: dict[type[Step], tuple[Result | _Failed, int]] = {}
        for step, task in tasks.items():
            if not task.cancelled():
                outcomes[step] = task.result()  # an exception other than a step's own: raise
        ended = [s for s in steps if s in outcomes]
        # Successes first (sorted), then the failure: every result that was
        # reported is folded before the instance fails.
        ended.sort(key=lambda s: type(outcomes[s][0]) in _FAILURES)
        result = [(step, outcomes[step]) for step in ended]
        if run.sibling_failed:  # the steps it cancelled end after the failure that did
            run.sibling_failed = False
            result.extend((step, (_SIBLING_FAILED, 0)) for step in steps if step not in outcomes)
        return result

    async def _execute(
        self, run: _Run, step: type[Step], concurrent: bool, count: int
    ) -> tuple[Result | _Failed, int]:
        """Run ``step`` (with its retries and timeout); return its result and duration."""
        limiter = self._limiter
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:  # wait for a slot before the step starts
                await limiter.acquire()
            instance = run.instance
            if _start_slot[0]:
                emit.step_start(
                    instance,
                    step,
                    {
                        "step_key": step.step_key,
                        "concurrent": concurrent,
                        "active_steps_count": count,
                        "attempt": attempt,
                    },
                )
            t0 = time.monotonic_ns()
            try:
                if self._plain.get(step, False):  # async, no timeout: just await
                    result = await step().execute(  # type: ignore[misc]
                        instance, instance.step_configs.get(step), instance.context
                    )
                else:
                    result = await self._call(step, instance)
            except _StepTimeout as exc:
                failure = _Failed("timeout", exc, None, attempt)
            except Exception as exc:
                failure = _Failed("exception", exc, _frames(exc), attempt)
            except asyncio.CancelledError as exc:
                if run.sibling_failed:
                    raise  # reported by _batch, after the failure
                if not (run.instance.terminal or self._stopping):
                    # Nobody cancelled the step (cancel() ends the instance first, and
                    # the runner stops first): it raised CancelledError itself, say
                    # because it awaited a future someone else cancelled. A failure.
                    task = asyncio.current_task()
                    while task is not None and task.cancelling():
                        task.uncancel()
                    failure = _Failed("exception", exc, _frames(exc), attempt)
                else:  # cancel(), the runner stopping
                    emit.step_exception(
                        instance,
                        step,
                        time.monotonic_ns() - t0,
                        "cancelled",
                        "the step was cancelled",
                        None,
                        {"step_key": step.step_key, "attempt": attempt},
                    )
                    raise
            else:
                return result, time.monotonic_ns() - t0
            finally:
                if limiter is not None:
                    limiter.release()
            duration = time.monotonic_ns() - t0
            retry = step.retry
            if retry is None or attempt >= retry.max_attempts:
                return failure, duration
            delay = retry.delay(attempt, random.random())
            emit.step_exception(
                instance,
                step,
                duration,
                failure.kind,
                failure.reason,
                failure.stacktrace,
                {"step_key": step.step_key, "attempt": attempt, "retry_in": delay},
            )
            await anyio.sleep(delay)

    async def _call(self, step: type[Step], instance: Instance) -> Result:
        """Call ``execute``: awaited, inline, or in a worker thread; under the step's timeout."""
        is_async = inspect.iscoroutinefunction(step.execute)
        timeout = step.timeout
        if step not in self._plain:
            self._plain[step] = is_async and timeout is None
        config = instance.step_configs.get(step)
        obj = step()
        if timeout is None and not step.blocking:
            result = obj.execute(instance, config, instance.context)
            if inspect.isawaitable(result):  # async, or a plain def returning a coroutine
                result = await result
            return result
        with anyio.move_on_after(timeout) as scope:  # None: no deadline
            if step.blocking and not is_async:
                result = await anyio.to_thread.run_sync(
                    obj.execute, instance, config, instance.context, abandon_on_cancel=True
                )
            else:
                result = obj.execute(instance, config, instance.context)
                if inspect.isawaitable(result):
                    result = await result
        if scope.cancelled_caught:
            raise _StepTimeout(f"step {step.__qualname__} timed out after {timeout}s")
        return result  # type: ignore[return-value]  # awaited above when awaitable

    def _fold(
        self, run: _Run, before: Instance, step: type[Step], outcome: tuple[Result | _Failed, int]
    ) -> tuple[Instance, _Note | None]:
        """``before`` with one step's outcome folded in, and what to announce once it is stored."""
        result, duration = outcome
        if result is _SIBLING_FAILED:
            return before, (_CANCELLED, step, before, None)
        if before.terminal:
            return before, None  # cancelled while the step ran
        kind = type(result)
        if kind is _Failed:
            return self._failed(before, step, result)  # type: ignore[arg-type]
        if kind is Error:
            return self._failed(before, step, _Failed("error", result.reason, None), duration)  # type: ignore[union-attr]
        try:
            applied = engine.apply_result(before, step, result, now=time.time_ns())  # type: ignore[arg-type]
        except HephaestusError as exc:  # not a result, an undeclared event, a bad route choice
            kind_ = "exception" if isinstance(exc, RouteError) else "invalid_result"
            return self._failed(before, step, _Failed(kind_, exc, None), duration)
        except Exception as exc:  # a route's chooser raised
            return self._failed(before, step, _Failed("exception", exc, _frames(exc)), duration)
        instance = applied.instance
        if kind is Ok:
            run.completed_since += 1
            return instance, (_STOP, step, instance, (result, duration, applied.activated))
        return instance, (_ASYNC, step, instance, duration)

    @staticmethod
    def _failed(
        before: Instance, step: type[Step], failure: _Failed, duration: int = 0
    ) -> tuple[Instance, _Note]:
        failed = engine.fail_step(before, step, failure.kind, failure.reason)
        return failed, (_EXCEPTION, step, before, (failure, duration))

    def _announce(self, run: _Run, note: _Note) -> None:
        """Emit a stored fold's events; arm a parked step's timer."""
        kind, step, instance, details = note
        if kind is _STOP:
            result, duration, activated = details
            if _stop_slot[0]:
                emit.step_stop(
                    instance,
                    step,
                    duration,
                    {
                        "step_key": step.step_key,
                        "event": result.event,
                        "has_context_updates": result.updates is not None,
                        "has_metadata_updates": bool(result.metadata),
                        "transitions_to": list(activated),
                    },
                )
            if _transition_slot[0]:
                emit.workflow_transition(instance, step, result.event, list(activated), {})
        elif kind is _ASYNC:
            if run.parked_at is None:
                run.parked_at = {}
            run.parked_at[step] = time.monotonic_ns()
            emit.step_async(
                instance,
                step,
                details,
                {"step_key": step.step_key, "instance_status": instance.status},
            )
            self._retime(run)
        elif kind is _EXCEPTION:
            failure, duration = details
            run.stacktrace = failure.stacktrace
            emit.step_exception(
                instance,
                step,
                duration,
                failure.kind,
                failure.reason,
                failure.stacktrace,
                {"step_key": step.step_key, "attempt": failure.attempt},
            )
        else:  # cancelled by a failing sibling: it ends after the failure that did
            emit.step_exception(
                run.instance, step, 0, "cancelled", "another step failed", None,
                {"step_key": step.step_key},
            )  # fmt: skip

    def _ended(self, run: _Run) -> None:
        """Emit the workflow's last event and release its waiters."""
        instance = run.instance
        if self._runs.get(instance.id) is not run:
            return  # already finished (cancelled)
        announce_end(instance, run.advances, run.stacktrace, type(self))
        self._finish(run)


class _StepTimeout(Exception):
    """A step ran past its ``timeout``."""


_FAILURES = (_Failed, Error)
_SIBLING_FAILED = _Failed("cancelled", "another step failed", None)
"""The outcome of a step of a batch that a failing sibling cancelled."""

# The kinds of a note (compared by identity).
_STOP: Final = "stop"
_ASYNC: Final = "async"
_EXCEPTION: Final = "exception"
_CANCELLED: Final = "cancelled"

_T = TypeVar("_T")


def _refusal(exc: BaseException) -> str:
    """The failure kind of a change the storage refused."""
    if isinstance(exc, NotSerializable):
        return "invalid_result"
    return "storage" if isinstance(exc, StorageError) else "runner"


def _nothing() -> None:
    return None


def _set(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _qualname(step: type[Step]) -> str:
    return step.__qualname__
