"""``LocalRunner``: runs workflows in this process, on asyncio.

Every active step runs in a branch: a task that executes the step, folds its
result into the instance, stores it, announces it, and goes on with the
first step that result activated (the others get tasks of their own). So a
linear workflow runs in one task, and each branch of a fan-out advances on
its own, whatever its siblings do. A mapped step runs one unit per item, at
most ``Map.max_concurrency`` at once. A parked instance has no task: a
resume or a timer starts the branches of the steps it activates.

Every change of an instance is stored before it is applied in memory
(``docs/architecture.md``, "State changes"): a change is computed from the
instance in memory, which is always the stored one, written, and only then
made the instance in memory and announced by telemetry. Changes of one
instance never overlap: the driver (between executions), resumes, timers
and cancels take turns at its gate, so results are folded one at a time, in
the order they arrive. A write that fails is retried when the storage says
it may pass later; a write the storage refuses fails the instance from its
last stored state, blaming the step whose result it was.

The runner's own background work (the timer task) lives in an anyio task
group. Branches are plain asyncio tasks that the runner owns, cancels and
awaits: creating one costs about a sixth of an anyio ``start_soon`` plus a
cancel scope, and one is created per instance and per extra branch or item.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import itertools
import os
import random
import traceback
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, ClassVar, Final, TypeVar

import anyio
import anyio.abc
import structlog

from hephaestus import telemetry as emit
from hephaestus._show import storable
from hephaestus.core import engine
from hephaestus.core import history as h
from hephaestus.core.history import Record, reason_text
from hephaestus.core.instance import Context, Instance, Status, Timer
from hephaestus.core.step import Config, Error, Ok, Result, Step
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import (
    AlreadyRunning,
    HephaestusError,
    InstanceLost,
    InstanceNotFound,
    MapError,
    NotSerializable,
    NotWaiting,
    RemoteStepError,
    RouteError,
    RunnerStopped,
    StepTimeout,
    StorageError,
)
from hephaestus.runtime import holding
from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock, check_clock
from hephaestus.runtime.endings import announce_end
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.inputs import check_start
from hephaestus.runtime.storage.base import Storage
from hephaestus.runtime.storage.memory import MemoryStorage
from hephaestus.runtime.timers import Handle, TimerQueue
from hephaestus.runtime.waiting import (
    check_data,
    check_delay,
    check_event,
    check_step,
    waiting_step,
)
from hephaestus.telemetry import _registry, names

__all__ = ["LocalRunner"]

_logger = structlog.get_logger("hephaestus.runner")

_RUNNING: Final = Status.RUNNING
_PENDING: Final = Status.PENDING
_WAITING: Final = Status.WAITING
_FAILED: Final = Status.FAILED
_ACTIVE_STATUSES: Final = (Status.PENDING, Status.RUNNING, Status.WAITING)

# Who listens, read through the registry's slots: slot[0] is () when nobody does,
# so the hot path tests one list item before it builds any metadata.
_advance_slot = _registry._slot(names.ENGINE_ADVANCE)
_start_slot = _registry._slot(names.STEP_START)
_stop_slot = _registry._slot(names.STEP_STOP)
_transition_slot = _registry._slot(names.WORKFLOW_TRANSITION)
_workflow_start_slot = _registry._slot(names.WORKFLOW_START)
# Context manager factories entered around each attempt's execute (a tracer
# makes its step span current there: hephaestus.telemetry.otel).
_scope_slot = _registry._slot(names.STEP_SCOPE_HOOK)


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
    ``locked`` says whether a change holds the instance's gate, and
    ``waiters`` are the futures of those waiting for it, first come first
    served (made only when one waits). ``tasks`` are its branches; ``fans``
    the items of its active maps that no branch has started yet.
    """

    __slots__ = (
        "advances",
        "completed_since",
        "done",
        "fans",
        "instance",
        "locked",
        "lost",
        "parked_at",
        "pending",
        "persisted",
        "settled",
        "sibling_failed",
        "stacktrace",
        "tasks",
        "timers",
        "waiters",
    )

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.persisted: Instance | None = None
        self.advances = 0
        self.completed_since = 0
        # A future of the running loop (cheaper than an event), set once by _finish.
        self.done: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Task[None]] | None = None
        self.fans: dict[type[Step], Iterator[int]] | None = None
        self.stacktrace: list[Any] | None = None  # of the failure, for workflow:exception
        self.sibling_failed = False  # a step failed: the other branches stop
        self.parked_at: dict[type[Step], int] | None = None  # monotonic ns, made when one parks
        self.locked = False
        self.waiters: deque[asyncio.Future[None]] | None = None
        self.timers: dict[type[Step], Handle] | None = None  # armed timers, by step
        # History records to write with the next change (a retried attempt's failure).
        self.pending: list[Record] | None = None
        self.lost = False  # another process took the instance: its branches stop quietly
        # Set when the run may have gone idle (no branch left, or ended); made by
        # whoever waits for that (a distributed worker's drive job).
        self.settled: asyncio.Future[None] | None = None


_Unit = type[Step] | tuple[type[Step], int]
"""What a branch executes: a step, or one item (by index) of a mapped step."""

# What a fold announces once its instance is stored: (kind, step, item, instance, details).
_Note = tuple[str, type[Step], int | None, Instance, Any]


def _frames(exc: BaseException) -> list[Any]:
    if isinstance(exc, RemoteStepError):  # raised in another worker: its frames there
        return exc.frames
    return list(traceback.extract_tb(exc.__traceback__))


class LocalRunner:
    """Runs workflow instances in this process.

    ``storage`` defaults to a fresh :class:`MemoryStorage`; ``name`` names the
    runner in telemetry; ``max_concurrency`` caps how many steps execute at
    once across all instances (None: no cap); ``clock`` is the clock it
    reads every time from (default: the system's; ``hephaestus.runtime.clock``,
    and ``hephaestus.testing.VirtualClock`` for tests). Use it as an async context
    manager: entering recovers the storage's unfinished instances, leaving
    stops every driver (in-flight steps are cancelled; the state stored after
    the last completed step stays, and a later runner on the same storage runs
    those steps again). A durable storage is driven by one ``LocalRunner`` at a
    time: entering one that another live runner holds raises ``StorageHeld``
    (``hephaestus.runtime.holding``).
    """

    _holds_storage: ClassVar[bool] = True
    """Whether entering holds the storage; the distributed driver shares its schema."""

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        clock: Clock | None = None,
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
        self.clock: Clock = check_clock(clock)
        # Read on the hot path: the system clock's are time.time_ns and time.monotonic_ns.
        self._now = self.clock.time_ns
        self._mono = self.clock.monotonic_ns
        # What the emitters are given (None: they read the system clock themselves), and
        # whom to tell that this runner may have gone idle (a virtual clock only).
        self._event_clock: Clock | None = None if self.clock is SYSTEM_CLOCK else self.clock
        self._virtual = self.clock.virtual
        self._dozing = 0  # branches sleeping until a retry, on the clock
        self._limiter: anyio.CapacityLimiter | None = None
        self._runs: dict[str, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = False
        self._timers = TimerQueue(self._fire_timer, self.clock)
        self._background: set[asyncio.Task[None]] = set()
        self._storage_hold: holding.Hold | None = None
        # Steps whose execute can simply be awaited (async, no timeout, no
        # limiter); filled on first use.
        self._plain: dict[type[Step], bool] = {}

    def __repr__(self) -> str:
        return f"LocalRunner(name={self.name!r}, storage={self.storage!r})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalRunner:
        if self._tg is not None:
            raise RuntimeError(f"{self!r} is already running")
        # Held before anything is read: a runner refused (StorageHeld) recovers nothing.
        hold = await holding.take(self.storage, self.name) if self._holds_storage else None
        try:
            # Read before anything starts: a storage that cannot be read fails the
            # entry with its own exception, and nothing is left to stop.
            unfinished = await self._unfinished()
            if self._max_concurrency is not None:
                self._limiter = anyio.CapacityLimiter(self._max_concurrency)
            tg = anyio.create_task_group()
            await tg.__aenter__()
        except BaseException:
            if hold is not None:
                await hold.release()
            raise
        self._storage_hold = hold
        self._tg = tg
        self._stopping = False
        emit.runner_init(
            {
                "name": self.name,
                "runner": type(self),
                "storage": type(self.storage),
                "pid": os.getpid(),
            },
            clock=self._event_clock,
        )
        self.clock._watch(self._idle)
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
            self.clock._unwatch(self._idle)
            self._tg = None
            self._runs.clear()
            self._timers = TimerQueue(self._fire_timer, self.clock)
            hold, self._storage_hold = self._storage_hold, None
            if hold is not None:
                await hold.release()

    async def _unfinished(self) -> builtins.list[Instance]:
        """The instances entering recovers: the storage's unfinished ones."""
        return await self.storage.query(status_in=_ACTIVE_STATUSES)

    async def _stop_drivers(self) -> None:
        """Cancel every driver and background change; wait until they have all stopped."""
        self._stopping = True
        runs = list(self._runs.values())
        tasks = [task for run in runs for task in run.tasks or ()]
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
            details = {"runner": self.name, "status": instance.status.value}
            run.pending = [Record(h.RECOVERED, self._now(), details=details)]
            self._runs[instance.id] = run
            self._retime(run)
            if instance.status is not _WAITING:
                self._spawn(run)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the runner cancels and awaits when it stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if self._virtual:
            task.add_done_callback(self._poked)

    def _poked(self, task: object = None) -> None:
        """Tell a virtual clock that this runner may have gone idle."""
        self.clock._poke()

    def _idle(self) -> bool:
        """Whether nothing runs here but waits for the clock (asked by a virtual clock).

        Idle: no start or change is being computed or stored, every branch
        sleeps until a retry, and no timer that fell due is still to fire.
        """
        if self._background or self._timers.due(self._now()):
            return False
        branches = 0
        for run in self._runs.values():
            if run.locked or run.persisted is None:  # a change, or a start, on its way
                return False
            branches += len(run.tasks or ())
        return branches <= self._dozing

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
            started_at=self._now(),
            started_monotonic=self._mono(),
        )
        run = _Run(instance)
        self._runs[iid] = run  # claimed before any await: a concurrent start sees it
        started = _new_tuple(Record, (h.STARTED, instance.started_at, *_NONE5, None))
        try:
            await self.storage.put(instance, (started,))
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
                clock=self._event_clock,
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
        # The timeout is the caller's, in real time; a virtual clock may skip meanwhile.
        with self.clock._expecting(done.done) if self._virtual else _NO_EXPECTATION:
            if timeout is None:
                await asyncio.shield(done)
            else:
                with anyio.move_on_after(timeout):
                    await asyncio.shield(done)
        if not done.done():
            raise TimeoutError(
                f"instance {instance_id!r} is still {run.instance.status} "
                f"after {timeout} s (wait's timeout)"
            )
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

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[Record]:
        """What happened to the instance, oldest first: its stored history records.

        ``offset`` and ``limit`` page through a long history. A failed attempt
        that is retried is stored with the instance's next change, and shows
        from then on. Raises ``InstanceNotFound`` for an unknown instance.
        """
        records = await self.storage.history(check_id(instance_id), offset=offset, limit=limit)
        if (
            not records
            and instance_id not in self._runs
            and await self.storage.get(instance_id) is None
        ):
            raise InstanceNotFound(instance_id)
        return records

    async def list(self, **filters: Any) -> builtins.list[Instance]:
        """The stored instances matching the filters (``status``, ``workflow``, ...)."""
        return await self.storage.query(**filters)

    async def resume(
        self,
        instance_id: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        step: type[Step] | str | None = None,
    ) -> None:
        """Give a waiting step its event; refused with no change when it cannot apply.

        ``data`` becomes the step's output in the context, where its own
        ``Ok(event, data)`` would have put it. The resume is stored before it
        takes effect: a failed write raises ``StorageError``, and data the
        storage cannot keep raises ``NotSerializable``; nothing changes then.
        A resume cancelled by its caller has no effect either.
        """
        self._check_running()
        check_event(event)
        check_step(step)
        sent = check_data(data)
        run = await self._active(instance_id)

        def resumed(instance: Instance) -> _Computed[None]:
            target = waiting_step(instance, instance.waiting_steps, step)
            now = self._now()
            applied = engine.resume_step(instance, target, event, now=now, data=sent)
            return self._resumption(run, instance, target, event, sent, applied, "external", now)

        await self._change(run, resumed)

    async def send(
        self, instance_id: str, event: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Send the instance a message, whatever it is doing now.

        A step waiting for ``event`` takes it at once (as a resume would,
        ``data`` included); otherwise it is kept with the instance, durably,
        and the first step that parks waiting for ``event`` takes it, in the
        order messages arrived, each once. Refused, with nothing changed,
        when the instance has ended (``NotWaiting``) or no step of its
        workflow declares ``event`` (``UndeclaredEvent``).
        """
        self._check_running()
        check_event(event)
        sent = check_data(data)
        run = await self._run_of(instance_id)
        if run is None:
            stored = await self.storage.get(instance_id)
            if stored is None:
                raise InstanceNotFound(instance_id)
            engine.send(stored, event, sent, now=self._now())  # raises: it has ended
            raise NotWaiting(f"instance {instance_id!r} is not driven by {self!r}")

        def delivered(instance: Instance) -> _Computed[None]:
            now = self._now()
            applied, taker = engine.send(instance, event, sent, now=now)
            if taker is None:  # kept until a step parks for it
                kept = Record(h.MESSAGE_KEPT, now, event=event, details={"data_keys": _keys(sent)})
                return applied.instance, (kept,), _nothing
            return self._resumption(run, instance, taker, event, sent, applied, "message", now)

        await self._change(run, delivered)

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """The waiting ``step`` resumes itself with ``"timeout"`` after ``delay`` seconds."""
        self._check_running()
        delay = check_delay(delay)
        check_step(step)
        run = await self._active(instance_id)

        def scheduled(instance: Instance) -> _Computed[None]:
            target = waiting_step(instance, instance.waiting_steps, step)
            now = self._now()
            new = engine.schedule_timer(instance, target, now + int(delay * 1_000_000_000))
            return new, _changes(instance, new, now), lambda: self._retime(run)

        await self._change(run, scheduled)

    async def cancel(self, instance_id: str) -> Instance:
        """Cancel the instance: in-flight steps and timers stop; it ends ``cancelled``.

        Cancelling an instance that already ended returns it unchanged. The
        cancel is stored before it takes effect (``StorageError`` otherwise,
        and the instance goes on).
        """
        self._check_running()
        run = await self._run_of(instance_id)
        if run is None:
            return await self.get(instance_id)

        def cancelled(instance: Instance) -> _Computed[Instance]:
            if instance.terminal:
                return instance, (), lambda: instance
            new = engine.cancel(instance)

            def after() -> Instance:
                current = asyncio.current_task()
                for task in run.tasks or ():
                    if task is not current:
                        task.cancel()
                        # Awaited by the runner's stop, like its other background work.
                        self._background.add(task)
                        task.add_done_callback(self._background.discard)
                self._finish(run)
                return new

            return new, _changes(instance, new, self._now()), after

        return await self._change(run, cancelled)

    # ------------------------------------------------------------------ changes

    async def _run_of(self, instance_id: str) -> _Run | None:
        """The run of the instance this runner drives; None when it drives no such instance."""
        return self._runs.get(check_id(instance_id))

    async def _active(self, instance_id: str) -> _Run:
        run = await self._run_of(instance_id)
        if run is not None:
            return run
        stored = await self.storage.get(instance_id)
        if stored is None:
            raise InstanceNotFound(instance_id)
        raise NotWaiting(f"instance {instance_id!r} is {stored.status}, not waiting")

    async def _lock(self, run: _Run) -> None:
        """Take the instance's gate, after those already waiting for it (first come, first served).

        The holder hands the gate over to the next waiter directly (``locked``
        stays True), so a release wakes one waiter, not all of them: a map's
        items waiting to fold on a slow storage cost a wake-up each.
        """
        if not run.locked:
            run.locked = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if run.waiters is None:
            run.waiters = deque()
        run.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._unlock(run)  # handed the gate as it was cancelled: pass it on
            raise

    def _unlock(self, run: _Run) -> None:
        waiters = run.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # (a cancelled waiter is skipped)
                waiter.set_result(None)  # the gate goes to it: still locked
                return
        run.locked = False

    async def _change(
        self,
        run: _Run,
        compute: Callable[[Instance], _Computed[_T]],
        *,
        internal: bool = False,
    ) -> _T:
        """Store ``compute(instance)``'s instance and records, make it the instance, run its sequel.

        ``compute`` raises to refuse the change (nothing changes). A write that
        fails raises and changes nothing. A caller cancelled during the write
        changes nothing either: the previous state is written back (in order,
        after the write, with an ``undone`` record) before the gate opens
        again. An ``internal`` change (a timer) retries transient storage
        failures instead of raising them.
        """
        await self._lock(run)
        handed_over = False
        try:
            before = run.instance
            new, records, sequel = compute(before)
            if new is not before:
                mine = len(records)
                records = _taken(run, records)
                try:
                    if internal:
                        await self._store(run, new, records)
                    else:
                        await self.storage.put(new, records)
                except asyncio.CancelledError:
                    _give_back(run, records, mine)
                    if not internal:  # (an internal change is cancelled only by a stop)
                        handed_over = True
                        self._in_background(self._undo(run, before, mine))
                    raise
                except BaseException:
                    _give_back(run, records, mine)
                    raise
                run.instance = run.persisted = new
            return sequel()
        finally:
            if not handed_over:
                self._unlock(run)
            if self._virtual:
                self.clock._poke()

    async def _undo(self, run: _Run, before: Instance, count: int) -> None:
        """Write ``before`` back after a change whose caller was cancelled; then open the gate.

        Its ``count`` records may have been written: an ``undone`` record says
        they did not take effect.
        """
        undone = Record(h.UNDONE, self._now(), details={"records": count})
        try:
            await self._store(run, before, (undone,))
        except Exception:
            _logger.exception("a cancelled change could not be undone", instance_id=before.id)
        finally:
            self._unlock(run)

    async def _store(
        self,
        run: _Run,
        instance: Instance | None,
        records: Sequence[Record] = (),
        *,
        forever: bool = False,
    ) -> None:
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
                    await self.storage.put(instance, records)
                return
            except StorageError as exc:
                if not (exc.transient or forever) or isinstance(exc, InstanceLost):
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

    async def _rewrite(
        self, run: _Run, instance: Instance, records: Sequence[Record], error: Exception
    ) -> None:
        """After a put of ``instance`` failed with ``error``: retry if transient, else raise."""
        if isinstance(error, StorageError) and error.transient:
            _logger.warning(
                "a write failed; retrying", instance_id=instance.id, attempt=1, reason=str(error)
            )
            await anyio.sleep(0.005)
            await self._store(run, instance, records)
            return
        raise error

    def _abandon(self, run: _Run) -> None:
        """Another process took the instance: stop its branches and timers, write nothing more."""
        run.lost = True
        current = asyncio.current_task()
        for task in run.tasks or ():
            if task is not current:
                task.cancel()
                self._background.add(task)  # awaited by the runner's stop
                task.add_done_callback(self._background.discard)
        if run.timers:
            for handle in run.timers.values():
                self._timers.cancel(handle)
            run.timers = None
        if self._runs.get(run.instance.id) is run:
            del self._runs[run.instance.id]
        _set(run.done)
        _set(run.settled)

    def _finish(self, run: _Run) -> None:
        """The instance ended: drop its timers, release waiters and forget the run."""
        if self._runs.get(run.instance.id) is run:
            del self._runs[run.instance.id]
        if run.timers:
            self._retime(run)
        _set(run.done)
        _set(run.settled)

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
        def resumed(instance: Instance) -> _Computed[None]:
            if instance.timers.get(step) is not timer or instance.terminal:
                return instance, (), _nothing  # a resume or a cancel came first
            now = self._now()
            applied = engine.resume_step(instance, step, timer.event, now=now)
            return self._resumption(run, instance, step, timer.event, None, applied, "timeout", now)

        try:
            await self._change(run, resumed, internal=True)
        except Exception as exc:  # the storage refused it: the instance fails, not hangs
            await self._refused(run, step, _refusal(exc), exc)
        _set(run.settled)

    def _resumption(
        self,
        run: _Run,
        before: Instance,
        step: type[Step],
        event: str,
        data: Mapping[str, Any] | None,
        applied: engine.Applied,
        source: str,
        now: int,
    ) -> _Computed[None]:
        """A resume of ``step`` (by a caller, a message or a timer) as a change to store."""
        records = _resume_records(before, applied.instance, step, event, data, source, now)
        return (
            applied.instance,
            records,
            lambda: self._resumed(run, before, step, event, applied, source),
        )

    def _resumed(
        self,
        run: _Run,
        before: Instance,
        step: type[Step],
        event: str,
        applied: engine.Applied,
        source: str,
    ) -> None:
        """A stored resume: telemetry, then branches for the steps it activated."""
        run.completed_since += 1
        self._retime(run)
        parked = None if run.parked_at is None else run.parked_at.pop(step, None)
        if parked is not None:
            wait_duration = self._mono() - parked
        else:  # parked by another process: since the step before it completed
            history = before.execution_history
            since = history[-1].timestamp if history else before.started_at
            wait_duration = max(self._now() - since, 0)
        emit.step_resume(
            before,
            step,
            {
                "step_key": step.step_key,
                "resume_event": event,
                "source": source,
                "wait_duration": wait_duration,
            },
            clock=self._event_clock,
        )
        emit.workflow_transition(
            applied.instance, step, event, list(applied.activated), {}, clock=self._event_clock
        )
        instance = applied.instance
        if instance.terminal:  # the steps it led to were all ruled out
            self._ended(run)
        elif applied.activated:
            self._advance(run, instance)
            for unit in self._units(run, applied.activated):
                self._spawn(run, unit)

    # ------------------------------------------------------------------ the driver

    def _spawn(self, run: _Run, unit: _Unit | None = None) -> None:
        """A branch task for ``unit`` (None: open the instance, then run its active steps)."""
        task = asyncio.get_running_loop().create_task(self._drive(run, unit))
        tasks = run.tasks
        if tasks is None:
            run.tasks = {task}
        else:
            tasks.add(task)

    async def _drive(self, run: _Run, unit: _Unit | None) -> None:
        """One branch: execute a unit, fold, store and announce its outcome, go on with the next.

        The next unit is the first one the outcome activated (the others get
        branches of their own), or the map's next item. A driver given no
        unit opens the instance first: advances it (a pending one starts) and
        starts its active steps. This is the hot loop: one coroutine per
        branch, not one per step.
        """
        opening = unit is None
        step: type[Step] | None = None
        item: int | None = None
        try:
            while opening or unit is not None:
                if opening:
                    if run.locked:
                        await self._lock(run)
                    else:
                        run.locked = True
                else:
                    if type(unit) is tuple:
                        step, item = unit
                    else:
                        step, item = unit, None  # type: ignore[assignment]
                    outcome = await self._execute(run, step, item)  # type: ignore[arg-type]
                    if run.locked:
                        try:
                            await self._lock(run)
                        except asyncio.CancelledError:
                            if run.sibling_failed:  # its outcome is dropped: the instance failed
                                self._cancelled_by_sibling(run, step, item)  # type: ignore[arg-type]
                            raise
                    else:
                        run.locked = True
                unit = None
                locked = True
                try:
                    before = run.instance
                    if before.terminal:
                        break  # cancelled while the step ran
                    note: _Note | None
                    records: Sequence[Record]
                    if opening:
                        new = self._advance(run, before)
                        note = None
                        records = () if new is before else _changes(before, new, self._now())
                    elif type(outcome[0]) is Ok and item is None:  # the common case, inlined
                        now = self._now()
                        try:
                            applied = engine.apply_result(before, step, outcome[0], now=now)  # type: ignore[arg-type]
                        except Exception:  # refused: the engine changed nothing
                            new, note, records = self._fold(run, before, step, item, outcome)  # type: ignore[arg-type]
                        else:
                            run.completed_since += 1
                            new = applied.instance
                            result = outcome[0]
                            note = (_STOP, step, item, new, (result, outcome[1], applied.activated))  # type: ignore[assignment]
                            record: Record = _new_tuple(
                                Record,
                                (
                                    _STEP_COMPLETED,
                                    now,
                                    step.step_key,  # type: ignore[union-attr]
                                    None,
                                    outcome[2],
                                    result.event,
                                    outcome[1],
                                    None,
                                ),
                            )
                            if new.status is _RUNNING and new.maps is before.maps:
                                records = (record,)
                            else:  # it ended, or started a map
                                records = (record, *_changes(before, new, now))
                    else:
                        new, note, records = self._fold(run, before, step, item, outcome)  # type: ignore[arg-type]
                    if new is not before:
                        mine = records
                        if run.pending:
                            records = _taken(run, records)
                        try:
                            await self.storage.put(new, records)  # the common case: no retry loop
                        except Exception as exc:
                            try:
                                await self._rewrite(run, new, records, exc)
                            except Exception as refused:  # the storage refused the change
                                _give_back(run, records, len(mine))
                                self._unlock(run)
                                locked = False
                                await self._refused(run, step, _refusal(refused), refused, item)
                                break
                        run.instance = run.persisted = new
                    status = new.status
                    if status is _RUNNING:
                        if note is None:  # opened: start every active step
                            opening = False
                            order = new.workflow.definition.order.__getitem__
                            unit = self._launch(
                                run, self._units(run, sorted(new.active_steps, key=order))
                            )
                            continue
                        activated = self._announce(run, note)
                        if item is None and not new.maps:  # the fast path: no map anywhere
                            if activated:
                                if _advance_slot[0]:
                                    self._advance(run, new)
                                else:
                                    run.advances += 1
                                    run.completed_since = 0
                                unit = (
                                    activated[0]
                                    if len(activated) == 1
                                    else self._launch(run, activated)
                                )
                        else:
                            unit = self._launch(run, self._next(run, step, item, activated))  # type: ignore[arg-type]
                        continue
                    opening = False
                    if note is not None:
                        self._announce(run, note)
                    self._unlock(run)
                    locked = False
                    if status is _FAILED:
                        await self._stop_branches(run)
                    if status is not _WAITING:
                        self._ended(run)
                finally:
                    if locked:
                        self._unlock(run)
        except Exception as exc:  # a bug in the runner: this instance fails alone
            _logger.exception("driver failed", instance_id=run.instance.id)
            await self._refused(run, None, "runner", exc)
        finally:
            tasks = run.tasks
            if tasks is not None:
                tasks.discard(asyncio.current_task())
                if not tasks:
                    _set(run.settled)
            if self._virtual:
                self.clock._poke()

    def _advance(self, run: _Run, instance: Instance) -> Instance:
        """The engine's advance, announced by ``engine:advance``; the advanced instance."""
        run.advances += 1
        status = instance.status
        if not _advance_slot[0]:
            run.completed_since = 0
            return engine.advance(instance)
        t0 = self._mono()
        advanced = engine.advance(instance)
        emit.engine_advance(
            advanced,
            self._mono() - t0,
            {
                "iteration": run.advances,
                "status_before": status,
                "status_after": advanced.status,
                "active_steps_count": len(advanced.active_steps),
                "completed_in_advance": run.completed_since,
            },
            clock=self._event_clock,
        )
        run.completed_since = 0
        return advanced

    def _units(self, run: _Run, steps: Iterable[type[Step]]) -> builtins.list[_Unit]:
        """What to execute for newly active ``steps``: each step, or its map's first items."""
        maps = run.instance.maps
        units: builtins.list[_Unit] = []
        for step in steps:
            state = maps.get(step)
            if state is None:
                units.append(step)
                continue
            todo = (i for i in range(len(state.items)) if not state.done >> i & 1)
            if run.fans is None:
                run.fans = {}
            run.fans[step] = todo
            cap = run.instance.workflow.definition.maps[step].max_concurrency
            # The first items (all of them without a cap); each branch then goes on
            # with the next item not started, so at most ``cap`` ever run at once.
            units.extend((step, index) for index in itertools.islice(todo, cap))
        return units

    def _launch(self, run: _Run, units: Sequence[_Unit]) -> _Unit | None:
        """Start every unit but the first in its own task; the first goes on in this one."""
        if not units:
            return None
        for unit in units[1:]:
            self._spawn(run, unit)
        return units[0]

    def _next(
        self, run: _Run, step: type[Step], item: int | None, activated: Sequence[type[Step]]
    ) -> builtins.list[_Unit]:
        """After a fold: the map's next item (when an item ended), then what it activated."""
        units: builtins.list[_Unit] = []
        if item is not None and run.fans is not None:
            todo = run.fans.get(step)
            if todo is not None:
                if step not in run.instance.maps:  # its last item: the map is complete
                    del run.fans[step]
                else:
                    index = next(todo, None)
                    if index is not None:  # this branch goes on with the next item
                        units.append((step, index))
        if activated:
            self._advance(run, run.instance)
            units.extend(self._units(run, activated))
        return units

    async def _stop_branches(self, run: _Run) -> None:
        """The instance failed: cancel its other branches, and wait until they have ended.

        Each reports ``step:exception`` (``cancelled``) after the failure that
        stopped it, and before ``workflow:exception``.
        """
        current = asyncio.current_task()
        others = [t for t in run.tasks or () if t is not current and not t.done()]
        if not others:
            return
        run.sibling_failed = True
        for task in others:
            task.cancel()
        await asyncio.wait(others)

    def _cancelled_by_sibling(self, run: _Run, step: type[Step], item: int | None) -> None:
        extra = _about(step, item)
        emit.step_exception(
            run.instance,
            step,
            0,
            "cancelled",
            "another step failed",
            None,
            extra,
            clock=self._event_clock,
        )

    async def _refused(
        self,
        run: _Run,
        step: type[Step] | None,
        kind: str,
        exc: BaseException,
        item: int | None = None,
    ) -> None:
        """The instance cannot go on: store its last stored state, marked failed, and end it.

        The failure is written until the storage takes it, for as long as the
        runner runs: the instance is never left ``running`` with nothing
        driving it. Its other branches are stopped.
        """
        if isinstance(exc, InstanceLost):
            self._abandon(run)
            return
        await self._lock(run)
        try:
            before = run.instance
            if before.terminal:
                return
            if step is not None:
                emit.step_exception(
                    before,
                    step,
                    0,
                    kind,
                    exc,
                    None,
                    _about(step, item, attempt=1),
                    clock=self._event_clock,
                )
            culprit = step or before.current_step or before.workflow.definition.start
            failed = engine.fail_step(before, culprit, kind, exc, item=item)
            run.stacktrace = _frames(exc)
            now = self._now()
            records = _changes(before, failed, now)
            if step is not None:
                records.insert(0, _failure(step, item, 1, kind, exc, 0, now, run.stacktrace))
            try:
                await self._store(run, failed, _taken(run, records), forever=True)
            except InstanceLost:
                self._abandon(run)
                return
            run.instance = run.persisted = failed
        finally:
            self._unlock(run)
        await self._stop_branches(run)
        self._ended(run)

    async def _execute(
        self, run: _Run, step: type[Step], item: int | None
    ) -> tuple[Result | _Failed, int, int]:
        """Run ``step`` (with its retries and timeout); return its result, duration and attempt.

        A failed attempt that is retried leaves a ``step_failed`` record, to be
        written with the instance's next change.
        """
        limiter = self._limiter
        instance = run.instance
        if item is None:
            config = instance.step_configs.get(step)
        else:
            base = instance.step_configs.get(step)
            config = {**base} if base else {}
            config["item"] = instance.maps[step].items[item]
            config["index"] = item
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:  # wait for a slot before the step starts
                await limiter.acquire()
            instance = run.instance
            if _start_slot[0]:
                count = len(instance.active_steps)
                extra = _about(
                    step,
                    item,
                    concurrent=count > 1 or item is not None,
                    active_steps_count=count,
                    attempt=attempt,
                )
                emit.step_start(instance, step, extra, clock=self._event_clock)
            scopes = _scope_slot[0]
            t0 = self._mono()
            try:
                if scopes:
                    result = await self._scoped(scopes, step, instance, config, item, attempt)
                elif self._plain.get(step, False):  # async, no timeout: just await
                    result = await step().execute(instance, config, instance.context)  # type: ignore[misc]
                else:
                    result = await self._call(step, instance, config)
            except StepTimeout as exc:
                failure = _Failed("timeout", exc, None, attempt)
            except Exception as exc:
                failure = _Failed("exception", exc, _frames(exc), attempt)
            except asyncio.CancelledError as exc:
                if run.sibling_failed:  # another step failed: this one stops after it
                    self._cancelled_by_sibling(run, step, item)
                    raise
                if not (run.instance.terminal or self._stopping or run.lost):
                    # Nobody cancelled the step (cancel() ends the instance first, and
                    # the runner stops first): it raised CancelledError itself, say
                    # because it awaited a future someone else cancelled. A failure.
                    task = asyncio.current_task()
                    while task is not None and task.cancelling():
                        task.uncancel()
                    failure = _Failed("exception", exc, _frames(exc), attempt)
                else:  # cancel(), the runner stopping
                    extra = _about(step, item, attempt=attempt)
                    emit.step_exception(
                        instance,
                        step,
                        self._mono() - t0,
                        "cancelled",
                        "the step was cancelled",
                        None,
                        extra,
                        clock=self._event_clock,
                    )
                    raise
            else:
                return result, self._mono() - t0, attempt
            finally:
                if limiter is not None:
                    limiter.release()
            duration = self._mono() - t0
            retry = step.retry
            if retry is None or attempt >= retry.max_attempts:
                return failure, duration, attempt
            delay = retry.delay(attempt, random.random())
            failed = _failure(
                step,
                item,
                attempt,
                failure.kind,
                failure.reason,
                duration,
                self._now(),
                failure.stacktrace,
                delay,
            )
            if run.pending is None:
                run.pending = [failed]
            else:
                run.pending.append(failed)
            extra = _about(step, item, attempt=attempt, retry_in=delay)
            emit.step_exception(
                instance,
                step,
                duration,
                failure.kind,
                failure.reason,
                failure.stacktrace,
                extra,
                clock=self._event_clock,
            )
            await self._doze(delay)

    async def _doze(self, seconds: float) -> None:
        """Sleep until a retry, on the clock (a virtual clock counts the branch as idle)."""
        self._dozing += 1
        try:
            await self.clock.sleep(seconds)
        finally:
            self._dozing -= 1

    async def _scoped(
        self,
        scopes: _registry._Handlers,
        step: type[Step],
        instance: Instance,
        config: Config,
        item: int | None,
        attempt: int | None,
        call: Callable[[type[Step], Instance, Config], Awaitable[Result]] | None = None,
    ) -> Result:
        """``call`` (``_call``) inside the step-scope hooks' context managers, in attach order."""
        with contextlib.ExitStack() as stack:
            for factory, _, _ in scopes:
                hook: Any = factory  # a factory(instance, step, item, attempt), not a handler
                stack.enter_context(hook(instance, step, item, attempt))
            return await (call or self._call)(step, instance, config)

    async def _call(self, step: type[Step], instance: Instance, config: Config) -> Result:
        """Call ``execute``: awaited, inline, or in a worker thread; under the step's timeout."""
        is_async = inspect.iscoroutinefunction(step.execute)
        timeout = step.timeout
        if step not in self._plain:  # a spread step goes by _call on a distributed worker
            self._plain[step] = is_async and timeout is None and not step.spread
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
            raise StepTimeout(f"step {step.__qualname__} timed out after {timeout}s")
        return result  # type: ignore[return-value]  # awaited above when awaitable

    def _fold(
        self,
        run: _Run,
        before: Instance,
        step: type[Step],
        item: int | None,
        outcome: tuple[Result | _Failed, int, int],
    ) -> tuple[Instance, _Note, builtins.list[Record]]:
        """``before`` with one outcome folded in, what to announce once stored, and its records."""
        result, duration, attempt = outcome
        kind = type(result)
        if kind is _Failed:
            return self._failed(before, step, item, result, duration)  # type: ignore[arg-type]
        if kind is Error:
            failure = _Failed("error", result.reason, None, attempt)  # type: ignore[union-attr]
            return self._failed(before, step, item, failure, duration)
        now = self._now()
        try:
            if item is None:
                applied = engine.apply_result(before, step, result, now=now)  # type: ignore[arg-type]
            else:
                applied = engine.apply_item_result(before, step, item, result, now=now)  # type: ignore[arg-type]
        except HephaestusError as exc:  # not a result, an undeclared event, a bad route choice
            kind_ = "exception" if isinstance(exc, (RouteError, MapError)) else "invalid_result"
            stack = _frames(exc.__cause__) if isinstance(exc.__cause__, Exception) else None
            return self._failed(before, step, item, _Failed(kind_, exc, stack, attempt), duration)
        except Exception as exc:  # a route's chooser raised
            failure = _Failed("exception", exc, _frames(exc), attempt)
            return self._failed(before, step, item, failure, duration)
        instance = applied.instance
        key = step.step_key
        if kind is Ok:
            run.completed_since += 1
            records = [
                Record(h.STEP_COMPLETED, now, key, item, attempt, result.event, duration),  # type: ignore[union-attr]
                *_changes(before, instance, now),
            ]
            note = (_STOP, step, item, instance, (result, duration, applied.activated))
            return instance, note, records
        events = {"events": list(step.declared_events(before.step_configs.get(step)))}
        records = [Record(h.STEP_PARKED, now, key, item, attempt, None, duration, events)]
        if step in instance.waiting_steps or instance.terminal:
            records.extend(_changes(before, instance, now))
            return instance, (_ASYNC, step, item, instance, duration), records
        # It parked and took a message kept for it at once: it is resumed already.
        run.completed_since += 1
        taken = instance.execution_history[-1]  # the resume's entry
        data = instance.context.steps.get(key)
        records.extend(_resume_records(before, instance, step, taken.event, data, "message", now))
        return instance, (_TAKEN, step, item, instance, (duration, applied.activated)), records

    def _failed(
        self, before: Instance, step: type[Step], item: int | None, failure: _Failed, duration: int
    ) -> tuple[Instance, _Note, builtins.list[Record]]:
        failed = engine.fail_step(before, step, failure.kind, failure.reason, item=item)
        now = self._now()
        records = [
            _failure(
                step,
                item,
                failure.attempt,
                failure.kind,
                failure.reason,
                duration,
                now,
                failure.stacktrace,
            ),
            *_changes(before, failed, now),
        ]
        return failed, (_EXCEPTION, step, item, before, (failure, duration)), records

    def _announce(self, run: _Run, note: _Note) -> Sequence[type[Step]]:
        """Emit a stored fold's events; arm a parked step's timer. The steps it activated."""
        kind, step, item, instance, details = note
        if kind is _STOP:
            result, duration, activated = details
            if _stop_slot[0]:
                extra = _about(
                    step,
                    item,
                    event=result.event,
                    has_context_updates=result.updates is not None,
                    has_metadata_updates=bool(result.metadata),
                    transitions_to=list(activated),
                )
                emit.step_stop(instance, step, duration, extra, clock=self._event_clock)
            if _transition_slot[0]:
                emit.workflow_transition(
                    instance, step, result.event, list(activated), {}, clock=self._event_clock
                )
            return activated  # type: ignore[no-any-return]
        if kind is _TAKEN:
            duration, activated = details
            event = instance.execution_history[-1].event  # the resume's entry
            emit.step_async(
                instance,
                step,
                duration,
                {"step_key": step.step_key, "instance_status": Status.WAITING},
                clock=self._event_clock,
            )
            emit.step_resume(
                instance,
                step,
                {
                    "step_key": step.step_key,
                    "resume_event": event,
                    "source": "message",
                    "wait_duration": 0,
                },
                clock=self._event_clock,
            )
            emit.workflow_transition(
                instance, step, event, list(activated), {}, clock=self._event_clock
            )
            return activated  # type: ignore[no-any-return]
        if kind is _ASYNC:
            if run.parked_at is None:
                run.parked_at = {}
            run.parked_at[step] = self._mono()
            emit.step_async(
                instance,
                step,
                details,
                {"step_key": step.step_key, "instance_status": instance.status},
                clock=self._event_clock,
            )
            self._retime(run)
            return ()
        failure, duration = details
        run.stacktrace = failure.stacktrace
        extra = _about(step, item, attempt=failure.attempt)
        emit.step_exception(
            instance,
            step,
            duration,
            failure.kind,
            failure.reason,
            failure.stacktrace,
            extra,
            clock=self._event_clock,
        )
        return ()

    def _ended(self, run: _Run) -> None:
        """Emit the workflow's last event and release its waiters."""
        instance = run.instance
        if self._runs.get(instance.id) is not run:
            return  # already finished (cancelled)
        announce_end(instance, run.advances, run.stacktrace, type(self), self._event_clock)
        self._finish(run)


# The kinds of a note (compared by identity).
_STOP: Final = "stop"
_ASYNC: Final = "async"
_EXCEPTION: Final = "exception"
_TAKEN: Final = "taken"  # parked, and took a message at once

_T = TypeVar("_T")

_NO_EXPECTATION: Final = contextlib.nullcontext()
"""What ``wait`` enters on a clock that does not skip (a virtual one's ``_expecting``)."""


def _refusal(exc: BaseException) -> str:
    """The failure kind of a change the storage refused."""
    if isinstance(exc, NotSerializable):
        return "invalid_result"
    return "storage" if isinstance(exc, StorageError) else "runner"


def _nothing() -> None:
    return None


_Computed = tuple[Instance, Sequence[Record], Callable[[], _T]]
"""What a change computes: the new instance, the records that describe it, its sequel."""

_new_tuple: Any = tuple.__new__  # a Record from a tuple of its fields, without a Python call
_NONE5: Final = (None, None, None, None, None)
_STEP_COMPLETED: Final = h.STEP_COMPLETED


def _failure(
    step: type[Step],
    item: int | None,
    attempt: int,
    kind: str,
    reason: object,
    duration: int,
    now: int,
    frames: list[Any] | None,
    retry_in: float | None = None,
) -> Record:
    """The record of a failed attempt; ``retry_in`` is the delay before the next one, if any.

    ``frames`` (the traceback's) are kept as text: ``stacktrace``, the
    innermost :data:`STACK_LIMIT` characters of ``traceback.format_list``.
    """
    details = {
        "failure": kind,
        "reason": reason_text(reason),
        "retry_in": retry_in,
        "stacktrace": _stack_text(frames) if frames else None,
    }
    return Record(h.STEP_FAILED, now, step.step_key, item, attempt, None, duration, details)


STACK_LIMIT: Final = 8000
"""How many characters of a failed attempt's stacktrace its record keeps (the innermost)."""


def _stack_text(frames: list[Any]) -> str:
    text = "".join(traceback.format_list(frames))
    if len(text) > STACK_LIMIT:
        text = "...\n" + text[-(STACK_LIMIT - 4) :]
    return storable(text)


def _keys(data: Mapping[str, Any] | None) -> builtins.list[str]:
    return [] if data is None else [str(key) for key in data]


def _resume_records(
    before: Instance,
    new: Instance,
    step: type[Step],
    event: str,
    data: Mapping[str, Any] | None,
    source: str,
    now: int,
) -> builtins.list[Record]:
    """The records of a resume of ``step`` (by a caller, a message or a timer), then its effects."""
    details = {"source": source, "data_keys": _keys(data)}
    resumed = Record(h.RESUMED, now, step.step_key, None, None, event, None, details)
    return [resumed, *_changes(before, new, now)]


def _changes(before: Instance, new: Instance, now: int) -> builtins.list[Record]:
    """The records a change implies beyond its step's: maps started, timers armed, the end."""
    records = []
    if new.maps is not before.maps:
        for step, state in new.maps.items():
            if before.maps.get(step) is None:
                items = {"items": len(state.items)}
                records.append(Record(h.MAP_STARTED, now, step.step_key, details=items))
    if new.timers is not before.timers:
        for step, timer in new.timers.items():
            if before.timers.get(step) is not timer:
                due = {"due": timer.due}
                armed = Record(
                    h.TIMER_ARMED, now, step.step_key, None, None, timer.event, None, due
                )
                records.append(armed)
    status = new.status
    if status.terminal and not before.terminal:
        if status is Status.COMPLETED:
            records.append(_new_tuple(Record, (h.COMPLETED, now, *_NONE5, None)))
            return records
        error = new.error
        culprit = None if error is None else error.step
        # The steps (or items) running when it ended: they were stopped.
        stopped = [s.step_key for s in before.active_steps if s is not culprit]
        details: dict[str, Any] = {"stopped": stopped}
        if error is not None:
            details["failure"] = error.kind
            details["reason"] = reason_text(error.reason)
            records.append(Record(h.FAILED, now, error.step.step_key, error.item, details=details))
        else:
            records.append(Record(h.CANCELLED, now, details=details))
    return records


def _taken(run: _Run, records: Sequence[Record]) -> Sequence[Record]:
    """What a write of ``records`` writes: the run's pending records first (taken from it)."""
    pending = run.pending
    if not pending:
        return records
    run.pending = None
    pending.extend(records)
    return pending


def _give_back(run: _Run, written: Sequence[Record], mine: int) -> None:
    """A write failed: the pending records it took (all but its last ``mine``) are pending again."""
    back = written[: len(written) - mine]
    if back:
        run.pending = [*back, *(run.pending or ())]


def _about(step: type[Step], item: int | None, **fields: Any) -> dict[str, Any]:
    """The metadata of a step event: its key, ``fields``, and its item for a mapped step."""
    extra = {"step_key": step.step_key, **fields}
    if item is not None:
        extra["item"] = item
    return extra


def _set(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
