"""``LocalRunner``: runs workflows in this process, on asyncio.

One driver task per instance runs the advance loop: advance, execute the
active steps (a batch of one inline in the driver; several concurrently, one
task each), fold their results in sorted order, persist, repeat; stop when
terminal. A parked instance has no driver: when it waits, its driver ends,
and a resume or a timer starts a new one. Resumes and timers change the
instance directly (the event loop is single-threaded, so a change never
interleaves with another).

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
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import structlog

from hephaestus import telemetry as emit
from hephaestus.core import engine
from hephaestus.core.instance import Context, Instance, Status
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
)
from hephaestus.runtime.endings import announce_end
from hephaestus.runtime.ids import instance_id as make_instance_id
from hephaestus.runtime.storage.base import Storage
from hephaestus.runtime.storage.memory import MemoryStorage
from hephaestus.runtime.timers import TimerQueue
from hephaestus.runtime.waiting import check_delay, waiting_step
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
    """What the runner keeps in memory for one active instance."""

    __slots__ = (
        "advances",
        "completed_since",
        "done",
        "instance",
        "parked_at",
        "persisted",
        "sibling_failed",
        "stacktrace",
        "task",
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


def _frames(exc: BaseException) -> list[Any]:
    return list(traceback.extract_tb(exc.__traceback__))


class LocalRunner:
    """Runs workflow instances in this process.

    ``storage`` defaults to a fresh :class:`MemoryStorage`; ``name`` names the
    runner in telemetry; ``max_concurrency`` caps how many steps execute at
    once across all instances (None: no cap). Use it as an async context
    manager: entering recovers the storage's unfinished instances, leaving
    stops every driver (in-flight steps are cancelled; the state persisted
    after the last completed step stays, and a later runner on the same
    storage runs those steps again).
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got: {max_concurrency!r}")
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.name = name if name is not None else f"local-{os.getpid()}-{id(self):x}"
        self._max_concurrency = max_concurrency
        self._limiter: anyio.CapacityLimiter | None = None
        self._runs: dict[str, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._timers = TimerQueue(self._fire_timer)
        # Steps whose execute can simply be awaited (async, no timeout, no
        # limiter); filled on first use.
        self._plain: dict[type[Step], bool] = {}

    def __repr__(self) -> str:
        return f"LocalRunner(name={self.name!r}, storage={self.storage!r})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalRunner:
        if self._tg is not None:
            raise RuntimeError(f"{self!r} is already running")
        if self._max_concurrency is not None:
            self._limiter = anyio.CapacityLimiter(self._max_concurrency)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            emit.runner_init(
                {
                    "name": self.name,
                    "runner": type(self),
                    "storage": type(self.storage),
                    "pid": os.getpid(),
                }
            )
            tg.start_soon(self._timers.run)
            await self._recover()
        except BaseException as exc:
            tg.cancel_scope.cancel()
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            self._tg = None
            raise
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
            return await tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._runs.clear()
            self._timers = TimerQueue(self._fire_timer)

    async def _stop_drivers(self) -> None:
        """Cancel every driver and wait until they have all stopped."""
        runs = list(self._runs.values())
        tasks = [run.task for run in runs if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)
        for run in runs:  # release the waiters: wait() raises RunnerStopped
            _set(run.done)

    async def _recover(self) -> None:
        """Drive every unfinished instance of the storage; re-arm the timers of waiting ones."""
        for instance in await self.storage.query(status_in=_ACTIVE_STATUSES):
            if instance.id in self._runs:
                continue
            run = _Run(instance)
            run.persisted = instance
            self._runs[instance.id] = run
            self._arm(instance)
            self._spawn(run)

    def _spawn(self, run: _Run) -> None:
        if self._tg is None:
            raise RuntimeError(
                "the runner is not running: use `async with LocalRunner() as runner`"
            )
        run.task = asyncio.get_running_loop().create_task(self._drive(run))

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
        """Create an instance of ``workflow`` and start driving it; return its id."""
        if self._tg is None:
            raise RuntimeError(
                "the runner is not running: use `async with LocalRunner() as runner`"
            )
        concrete = workflow.resolve(version)
        if not isinstance(context, Mapping):
            raise TypeError(f"the context must be a dict, got: {context!r}")
        iid = make_instance_id(concrete, id)
        if iid in self._runs:
            raise AlreadyRunning(iid)
        instance = Instance(
            iid,
            concrete,
            concrete.version,
            _PENDING,
            Context(dict(context)),
            telemetry_metadata=dict(telemetry_metadata or {}),
            started_at=time.time_ns(),
            started_monotonic=time.monotonic_ns(),
        )
        run = _Run(instance)
        self._runs[iid] = run  # claimed before any await: a concurrent start sees it
        try:
            await self.storage.put(instance)
        except BaseException:
            del self._runs[iid]
            raise
        run.persisted = instance
        if _workflow_start_slot[0]:
            emit.workflow_start(
                instance,
                {
                    "initial_step": concrete.definition.start,
                    "context_keys": list(instance.context.initial),
                    "runner": type(self),
                },
            )
        self._spawn(run)
        return iid

    async def run(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> Instance:
        """Start an instance and wait until it is completed, failed or cancelled."""
        timeout = options.pop("timeout", None)
        return await self.wait(await self.start(workflow, context, **options), timeout=timeout)

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the documented API
        """The instance once it has ended; ``TimeoutError`` after ``timeout`` seconds."""
        run = self._runs.get(instance_id)
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
        """The instance as it is now."""
        run = self._runs.get(instance_id)
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
        """Give a waiting step its event; refused with no change when it cannot apply."""
        run = await self._active(instance_id)
        instance = run.instance
        target = waiting_step(instance, instance.waiting_steps, step)
        applied = engine.resume_step(instance, target, event, now=time.time_ns())
        self._resumed(run, target, event, applied, "external")
        await self._persist(run)

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """The waiting ``step`` resumes itself with ``"timeout"`` after ``delay`` seconds."""
        delay = check_delay(delay)
        run = await self._active(instance_id)
        target = waiting_step(run.instance, run.instance.waiting_steps, step)
        due = time.time_ns() + int(delay * 1_000_000_000)
        run.instance = engine.schedule_timer(run.instance, target, due)
        self._timers.arm(due, run, target, run.instance.timers[target])
        await self._persist(run)

    async def cancel(self, instance_id: str) -> Instance:
        """Cancel the instance: in-flight steps and timers stop; it ends ``cancelled``.

        Cancelling an instance that already ended returns it unchanged.
        """
        run = self._runs.get(instance_id)
        if run is None:
            return await self.get(instance_id)
        run.instance = engine.cancel(run.instance)
        if run.task is not None and run.task is not asyncio.current_task():
            run.task.cancel()
        await self._persist(run)
        self._finish(run)
        return run.instance

    # ------------------------------------------------------------------ helpers

    async def _active(self, instance_id: str) -> _Run:
        run = self._runs.get(instance_id)
        if run is not None:
            return run
        stored = await self.storage.get(instance_id)
        if stored is None:
            raise InstanceNotFound(instance_id)
        raise NotWaiting(f"instance {instance_id!r} is {stored.status}, not waiting")

    async def _persist(self, run: _Run) -> None:
        instance = run.instance
        if instance is not run.persisted:
            run.persisted = instance
            await self.storage.put(instance)

    def _finish(self, run: _Run) -> None:
        """The instance ended: release waiters and forget the run."""
        if self._runs.get(run.instance.id) is run:
            del self._runs[run.instance.id]
        _set(run.done)

    def _arm(self, instance: Instance) -> None:
        run = self._runs[instance.id]
        for step, timer in instance.timers.items():
            self._timers.arm(timer.due, run, step, timer)

    def _fire_timer(self, run: _Run, step: type[Step], timer: object) -> None:
        """A timer fell due: resume its step unless a resume (or cancel) came first."""
        instance = run.instance
        if instance.timers.get(step) is not timer or self._runs.get(instance.id) is not run:
            return
        event = instance.timers[step].event
        applied = engine.resume_step(instance, step, event, now=time.time_ns())
        self._resumed(run, step, event, applied, "timeout")

    def _resumed(
        self, run: _Run, step: type[Step], event: str, applied: engine.Applied, source: str
    ) -> None:
        """Record a resume: telemetry, then a driver for the instance (which persists it)."""
        before = run.instance
        run.instance = applied.instance
        run.completed_since += 1
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
        except NotSerializable as exc:  # a step's updates: fail from the last stored state
            bad = run.instance
            history = bad.execution_history
            culprit = history[-1].step if history else bad.current_step
            base = run.persisted or bad
            run.instance = engine.fail_step(
                base, culprit or base.workflow.definition.start, "invalid_result", exc
            )
            await self._store_end(run)
        except Exception as exc:  # a bug or a storage failure: this instance fails alone
            _logger.exception("driver failed", instance_id=run.instance.id)
            self._fail(run, None, "runner", exc, _frames(exc))
            await self._store_end(run)

    async def _store_end(self, run: _Run) -> None:
        """Store an instance the driver failed, if the storage lets it; then end it."""
        try:
            await self._persist(run)
        except Exception:  # the storage itself is failing: say so, end it in memory
            _logger.exception(
                "the failed instance could not be stored", instance_id=run.instance.id
            )
        finally:
            self._ended(run)

    async def _loop(self, run: _Run) -> None:
        storage = self.storage
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
                run.instance = instance
                active = instance.active_steps
                if len(active) == 1:
                    if instance is not run.persisted:
                        run.persisted = instance
                        await storage.put(instance)
                    for step in active:
                        self._fold(run, step, await self._execute(run, step, False, 1))
                elif active:
                    await self._batch(run, sorted(active, key=_qualname))
            elif status is _WAITING:
                # Parked: the driver ends, and a resume or a timer starts a new one.
                # A parked instance then holds no task, coroutine or future.
                if run.instance is not run.persisted:
                    run.persisted = run.instance
                    await storage.put(run.instance)
                if run.instance.status is _WAITING:  # no resume came during the put
                    run.task = None
                    return
                continue
            else:
                if run.instance is not run.persisted:
                    run.persisted = run.instance
                    await storage.put(run.instance)
                self._ended(run)
                return
            if run.instance is not run.persisted:
                run.persisted = run.instance
                await storage.put(run.instance)

    async def _batch(self, run: _Run, steps: builtins.list[type[Step]]) -> None:
        """Run several active steps concurrently; fold their results in sorted order."""
        await self._persist(run)
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
        for step in ended:
            self._fold(run, step, outcomes[step])
        await self._persist(run)  # once for the batch: a crash before it reruns the batch
        if run.sibling_failed:  # the steps it cancelled end after the failure that did
            run.sibling_failed = False
            for step in steps:
                if step not in outcomes:
                    emit.step_exception(
                        run.instance, step, 0, "cancelled", "another step failed", None,
                        {"step_key": step.step_key},
                    )  # fmt: skip

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
            except asyncio.CancelledError:  # cancel(), a failing sibling, the runner stopping
                if run.sibling_failed:
                    raise  # reported by _batch, after the failure
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

    def _fold(self, run: _Run, step: type[Step], outcome: tuple[Result | _Failed, int]) -> None:
        """Fold one step's outcome into ``run.instance`` and emit its events (not persisted)."""
        result, duration = outcome
        before = run.instance
        if before.terminal:
            return  # cancelled while the step ran
        if type(result) is _Failed:
            self._fail(
                run, step, result.kind, result.reason, result.stacktrace, duration, result.attempt
            )
            return
        if type(result) is Error:
            self._fail(run, step, "error", result.reason, None, duration)
            return
        try:
            applied = engine.apply_result(before, step, result, now=time.time_ns())  # type: ignore[arg-type]
        except HephaestusError as exc:  # not a result, an undeclared event, a bad route choice
            kind = "exception" if isinstance(exc, RouteError) else "invalid_result"
            self._fail(run, step, kind, exc, None, duration)
            return
        except Exception as exc:  # a route's chooser raised
            self._fail(run, step, "exception", exc, _frames(exc), duration)
            return
        instance = run.instance = applied.instance
        if type(result) is Ok:
            run.completed_since += 1
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
                        "transitions_to": list(applied.activated),
                    },
                )
            if _transition_slot[0]:
                emit.workflow_transition(instance, step, result.event, list(applied.activated), {})
        else:  # Async: the step parks
            if run.parked_at is None:
                run.parked_at = {}
            run.parked_at[step] = time.monotonic_ns()
            emit.step_async(
                instance,
                step,
                duration,
                {"step_key": step.step_key, "instance_status": instance.status},
            )
            for parked, timer in instance.timers.items():
                if before.timers.get(parked) is not timer:
                    self._timers.arm(timer.due, run, parked, timer)

    def _fail(
        self,
        run: _Run,
        step: type[Step] | None,
        kind: str,
        reason: object,
        stacktrace: builtins.list[Any] | None,
        duration: int = 0,
        attempt: int = 1,
    ) -> None:
        """The instance fails because of ``step`` (None: the runner itself failed)."""
        before = run.instance
        if before.terminal:
            return
        if step is not None:
            emit.step_exception(
                before,
                step,
                duration,
                kind,
                reason,
                stacktrace,
                {"step_key": step.step_key, "attempt": attempt},
            )
        culprit = step or before.current_step or before.workflow.definition.start
        run.stacktrace = stacktrace
        run.instance = engine.fail_step(before, culprit, kind, reason)

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


def _set(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _qualname(step: type[Step]) -> str:
    return step.__qualname__
