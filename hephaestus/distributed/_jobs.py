"""The distributed runner's procrastinate tasks: advance, execute_step, resume_timeout, reconcile.

- ``heph.advance(instance_id)`` (lock ``heph:<id>``: one at a time per
  instance, in order) takes the instance's row lock, applies the unprocessed
  step results with the pure engine, stores the instance and, in the same
  transaction, defers a step job for each newly activated step and a timer
  job for each new timer.
- ``heph.execute_step(instance_id, step)`` (no lock: steps run in parallel)
  runs the step's ``execute`` outside any transaction, then records its
  outcome and defers an advance in one transaction. Retries follow the step's
  ``retry``; the last attempt records the failure itself.
- ``heph.resume_timeout(instance_id, step, event)`` (scheduled, no lock)
  records a resume unless one came first.
- ``heph.reconcile()`` (periodic) retries the jobs of dead workers and defers
  an advance for any instance with results nobody will apply.

Telemetry is emitted after each commit, in the process where the work ran.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import time
import traceback
from collections.abc import Mapping
from typing import Any

import anyio
import attrs
import procrastinate
import psycopg
import structlog

from hephaestus import telemetry as emit
from hephaestus.core import engine
from hephaestus.core.instance import Instance, Status
from hephaestus.core.step import Async, Error, Ok, Step
from hephaestus.distributed._backend import Backend, Conn
from hephaestus.exceptions import HephaestusError
from hephaestus.runtime.endings import announce_end
from hephaestus.runtime.storage import codec

__all__ = ["Jobs", "StepRetry"]
_logger = structlog.get_logger("hephaestus.distributed")


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)


@attrs.frozen
class _Advanced:
    """What one advance did, for the telemetry emitted after its commit."""

    before: Instance
    instance: Instance
    notes: list[tuple[Any, ...]]
    advances: int
    duration: int
    status_before: Status
    failure: list[Any] | None


class _GaveUp(Exception):
    """The last attempt of a step failed; its failure is recorded: do not retry."""


class StepRetry(procrastinate.BaseRetryStrategy):
    """Retries from the step's own ``Retry``: total attempts as the reference counts them.

    ``job.attempts`` is the number of previous runs (0 on the first), so the
    run that just failed was attempt ``job.attempts + 1``.
    """

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, _GaveUp):
            return None
        if isinstance(exception, asyncio.CancelledError):
            # A worker stopping past its shutdown timeout aborted the step: run it
            # again elsewhere. (An abort that cancel() asked for is never retried.)
            return procrastinate.RetryDecision(retry_at=_utc(time.time_ns()))
        try:
            step: type[Step] = codec.resolve(str(job.task_kwargs["step"]))
        except Exception:  # the step moved: nothing to retry with
            return None
        retry = step.retry
        attempt = job.attempts + 1
        if retry is None or attempt >= retry.max_attempts:
            return None
        delay = retry.delay(attempt, random.random())
        return procrastinate.RetryDecision(retry_at=_utc(time.time_ns() + int(delay * 1e9)))


class _AdvanceRetry(procrastinate.BaseRetryStrategy):
    """An advance that failed (a lost connection, a deadlock) is retried, capped."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if job.attempts >= 20:
            return None
        delay = min(0.05 * 2**job.attempts, 10.0)
        return procrastinate.RetryDecision(retry_at=_utc(time.time_ns() + int(delay * 1e9)))


class Jobs:
    """The task bodies, bound to one process's backend."""

    def __init__(self, backend: Backend, runner: object) -> None:
        self.backend = backend
        self.runner = runner
        app = backend.app
        self.advance_task = app.task(
            name="heph.advance", queue=backend.queue, pass_context=True, retry=_AdvanceRetry()
        )(self._advance_job)
        self.step_task = app.task(
            name="heph.execute_step", queue=backend.queue, pass_context=True, retry=StepRetry()
        )(self._step_job)
        self.timer_task = app.task(
            name="heph.resume_timeout", queue=backend.queue, pass_context=True
        )(self._timer_job)

    # ------------------------------------------------------------------ deferring

    async def defer_advance(self, conn: Any, instance_id: str) -> None:
        await self.advance_task.configure(
            connection=conn, lock=f"heph:{instance_id}", priority=10
        ).defer_async(instance_id=instance_id)

    async def defer_timer(self, conn: Any, instance_id: str, step: type[Step], due: int) -> None:
        await self.timer_task.configure(connection=conn, schedule_at=_utc(due)).defer_async(
            instance_id=instance_id, step=codec.import_path(step), event="timeout"
        )

    # ------------------------------------------------------------------ advance

    async def _advance_job(self, context: procrastinate.JobContext, instance_id: str) -> None:
        async with self.backend.pool.connection() as conn, conn.transaction():
            advanced = await self._advance(conn, instance_id, job_id=context.job.id)
        if advanced is not None:
            await self._announce(advanced, context.job.id)

    async def _advance(
        self, conn: Conn, instance_id: str, *, job_id: int | None, nowait: bool = False
    ) -> _Advanced | None:
        """One engine advance, inside the caller's transaction; None when there was nothing to do.

        Takes the instance's row lock (``nowait``: raise ``LockNotAvailable``
        rather than wait for another advance), applies the unprocessed results
        in order, stores the instance, and defers the step jobs of the newly
        activated steps and the timer jobs of new timers.
        """
        backend = self.backend
        loaded = await backend.load(conn, instance_id, lock=True, nowait=nowait)
        if loaded is None:
            return None
        instance, advances = loaded
        rows = await backend.pending(conn, instance_id)
        if _PAUSE_IN_ADVANCE and rows:
            await _pause_in_advance(instance_id)
        before = instance
        if instance.terminal:
            await backend.processed(conn, [row["id"] for row in rows])
            return None
        if not rows and instance.status is not Status.PENDING:
            return None  # an earlier advance applied everything
        notes: list[tuple[Any, ...]] = []
        failure: list[Any] | None = None
        for row in rows:
            instance, failure = self._apply(instance, row, notes, failure)
            if instance.terminal:
                break
        t0 = time.monotonic_ns()
        status_before = instance.status
        instance = engine.advance(instance)
        duration = time.monotonic_ns() - t0
        advances += 1
        await backend.update(conn, instance, advances, [row["id"] for row in rows])
        for step in sorted(instance.active_steps - before.active_steps, key=_qualname):
            await self.step_task.configure(connection=conn).defer_async(
                instance_id=instance_id, step=codec.import_path(step)
            )
        for step, timer in instance.timers.items():
            if before.timers.get(step) != timer:
                await self.defer_timer(conn, instance_id, step, timer.due)
        if instance.terminal:
            await backend.cancel_todo(conn, instance_id, keep=job_id)
        return _Advanced(before, instance, notes, advances, duration, status_before, failure)

    async def _announce(self, advanced: _Advanced, job_id: int | None) -> None:
        """After the commit: the advance's telemetry, and the end of the workflow."""
        instance = advanced.instance
        for at, step, event, activated in advanced.notes:
            emit.workflow_transition(at, step, event, list(activated), {})
        emit.engine_advance(
            instance,
            advanced.duration,
            {
                "iteration": advanced.advances,
                "status_before": advanced.status_before,
                "status_after": instance.status,
                "active_steps_count": len(instance.active_steps),
                "completed_in_advance": len(advanced.notes),
                "runner": type(self.runner),
            },
        )
        if instance.terminal and not advanced.before.terminal:
            await self.backend.abort_doing(instance.id, keep=job_id)
            announce_end(instance, advanced.advances, advanced.failure, type(self.runner))

    def _apply(
        self,
        instance: Instance,
        row: Mapping[str, Any],
        notes: list[tuple[Any, ...]],
        failure: list[Any] | None,
    ) -> tuple[Instance, list[Any] | None]:
        """Apply one result row if it still matches the instance; a stale one changes nothing."""
        step: type[Step] = codec.resolve(row["step"])
        kind = row["kind"]
        now = time.time_ns()
        try:
            if kind == "completed" and step in instance.active_steps:
                ok = Ok(row["event"], row["updates"], row["metadata"])
                applied = engine.apply_result(instance, step, ok, now=now)
                notes.append((applied.instance, step, ok.event, applied.activated))
                return applied.instance, failure
            if kind == "async" and step in instance.active_steps:
                return engine.apply_result(instance, step, Async(), now=now).instance, failure
            if kind == "resumed" and step in instance.waiting_steps:
                applied = engine.resume_step(
                    instance, step, row["event"], now=now, data=row["updates"]
                )
                notes.append((applied.instance, step, row["event"], applied.activated))
                return applied.instance, failure
            if kind == "failed" and step in instance.active_steps:
                error = row["error"] or {}
                failed = engine.fail_step(
                    instance, step, error.get("kind", "exception"), error.get("reason")
                )
                return failed, error.get("stacktrace")
        except HephaestusError as exc:  # a route that chose badly: the step fails
            return engine.fail_step(instance, step, "exception", exc), None
        except Exception as exc:  # a route's chooser raised
            frames = [str(f) for f in traceback.extract_tb(exc.__traceback__)]
            return engine.fail_step(instance, step, "exception", exc), frames
        return instance, failure  # stale: the step is no longer there to receive it

    # ------------------------------------------------------------------ execute_step

    async def _step_job(
        self, context: procrastinate.JobContext, instance_id: str, step: str
    ) -> None:
        backend = self.backend
        step_cls: type[Step] = codec.resolve(step)
        async with backend.pool.connection() as conn:
            loaded = await backend.load_for_step(conn, instance_id, step)
        if loaded is None:
            return
        instance, recorded = loaded
        if instance.terminal or step_cls not in instance.active_steps:
            return  # stale: cancelled, failed, or applied already
        if recorded:
            return  # an earlier run recorded it together with its advance
        job = context.job
        attempt = job.attempts + 1
        emit.step_start(
            instance,
            step_cls,
            {
                "step_key": step_cls.step_key,
                "concurrent": len(instance.active_steps) > 1,
                "active_steps_count": len(instance.active_steps),
                "attempt": attempt,
                "runner": type(self.runner),
            },
        )
        t0 = time.monotonic_ns()
        extra = {"step_key": step_cls.step_key, "attempt": attempt}
        try:
            result = await _call(step_cls, instance)
        except Exception as exc:
            duration = time.monotonic_ns() - t0
            timeout = isinstance(exc, TimeoutError) and step_cls.timeout is not None
            kind = "timeout" if timeout else "exception"
            frames = None if timeout else [str(f) for f in traceback.extract_tb(exc.__traceback__)]
            retry = step_cls.retry
            last = retry is None or attempt >= retry.max_attempts
            emit.step_exception(instance, step_cls, duration, kind, exc, frames, extra)
            if not last:
                raise  # procrastinate retries it, after StepRetry's backoff
            await self._record_failure(instance_id, step, kind, exc, frames, duration, job.id)
            raise _GaveUp(f"step {step_cls.__qualname__} failed for good: {exc!r}") from exc
        except anyio.get_cancelled_exc_class():  # aborted: cancel(), a failure, a shutdown
            # Like LocalRunner: the step:start gets its step:exception.
            emit.step_exception(
                instance, step_cls, time.monotonic_ns() - t0, "cancelled",
                "the step was cancelled", None, extra,
            )  # fmt: skip
            raise
        duration = time.monotonic_ns() - t0
        try:
            engine.check_result(instance, step_cls, result)
        except HephaestusError as exc:
            emit.step_exception(instance, step_cls, duration, "invalid_result", exc, None, extra)
            await self._record_failure(
                instance_id, step, "invalid_result", exc, None, duration, job.id
            )
            return
        if type(result) is Error:
            emit.step_exception(instance, step_cls, duration, "error", result.reason, None, extra)
            await self._record_failure(
                instance_id, step, "error", result.reason, None, duration, job.id
            )
            return
        try:
            advanced = await self._record_and_advance(
                instance_id, step, duration, job.id, result, step_cls
            )
        except HephaestusError as exc:  # updates a durable store cannot keep
            emit.step_exception(instance, step_cls, duration, "invalid_result", exc, None, extra)
            await self._record_failure(
                instance_id, step, "invalid_result", exc, None, duration, job.id
            )
            return
        if type(result) is Ok:
            edge = instance.workflow.definition.edges.get(step_cls, {}).get(result.event)
            emit.step_stop(
                instance,
                step_cls,
                duration,
                {
                    **extra,
                    "event": result.event,
                    "has_context_updates": result.updates is not None,
                    "has_metadata_updates": bool(result.metadata),
                    "transitions_to": [] if edge is None or edge.route else list(edge.targets),
                },
            )
        else:
            emit.step_async(
                instance, step_cls, duration, {**extra, "instance_status": Status.WAITING}
            )
        if advanced is not None:
            await self._announce(advanced, job.id)

    async def _record_and_advance(
        self,
        instance_id: str,
        step: str,
        duration: int,
        job_id: int | None,
        result: Ok | Async,
        step_cls: type[Step],
    ) -> _Advanced | None:
        """Record the step's result; apply it at once when no other advance holds the instance.

        The row lock, not the job that takes it, is what makes an advance the
        instance's only writer: when it is free, this transaction applies the
        result itself (saving a job and a round of notifications per step);
        when another advance holds it, an advance job is deferred instead.
        """
        backend = self.backend
        async with backend.pool.connection() as conn, conn.transaction():
            if type(result) is Ok:
                updates = result.updates
                metadata = result.metadata
                where = step_cls.__qualname__
                inserted = await backend.record(
                    conn,
                    instance_id,
                    step,
                    "completed",
                    event=result.event,
                    updates=None
                    if updates is None
                    else codec.encode_value(updates, f"the updates of {where}"),
                    metadata=codec.encode_value(metadata, f"the metadata of {where}")
                    if metadata
                    else None,
                    duration=duration,
                    job_id=job_id,
                )
            else:
                inserted = await backend.record(
                    conn, instance_id, step, "async", duration=duration, job_id=job_id
                )
            if not inserted:
                return None  # an earlier run's result stands
            try:
                async with conn.transaction():  # a savepoint: a failed attempt leaves the row
                    advanced = await self._advance(conn, instance_id, job_id=job_id, nowait=True)
            except psycopg.errors.LockNotAvailable:
                advanced = None
                await self.defer_advance(conn, instance_id)
            except Exception:  # the advance job will meet it again, and be retried
                _logger.exception("inline advance failed", instance_id=instance_id)
                advanced = None
                await self.defer_advance(conn, instance_id)
        return advanced

    async def _record_failure(
        self,
        instance_id: str,
        step: str,
        kind: str,
        reason: object,
        stacktrace: list[str] | None,
        duration: int,
        job_id: int | None,
    ) -> None:
        error = {"kind": kind, "reason": codec.reason_text(reason), "stacktrace": stacktrace}
        async with self.backend.pool.connection() as conn, conn.transaction():
            if await self.backend.record(
                conn, instance_id, step, "failed", error=error, duration=duration, job_id=job_id
            ):
                await self.defer_advance(conn, instance_id)

    # ------------------------------------------------------------------ timers

    async def _timer_job(
        self, context: procrastinate.JobContext, instance_id: str, step: str, event: str
    ) -> None:
        backend = self.backend
        step_cls: type[Step] = codec.resolve(step)
        async with backend.pool.connection() as conn, conn.transaction():
            loaded = await backend.load(conn, instance_id, lock=False)
            if loaded is None or loaded[0].terminal:
                return
            instance = loaded[0]
            parks = await backend.unprocessed_parks(conn, instance_id)
            if step_cls not in instance.waiting_steps and step not in parks:
                return  # resumed already, or never parked
            if not await backend.record(
                conn, instance_id, step, "resumed", event=event, source="timeout",
                job_id=context.job.id,
            ):  # fmt: skip
                return  # an external resume came first
            parked = await backend.parked_at(conn, instance_id, step)
            await self.defer_advance(conn, instance_id)
        emit.step_resume(
            instance,
            step_cls,
            {
                "step_key": step_cls.step_key,
                "resume_event": event,
                "source": "timeout",
                "wait_duration": _since(parked),
                "runner": type(self.runner),
            },
        )

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, seconds_since_heartbeat: float) -> int:
        """Retry the jobs of dead workers; defer advances nobody will run. Returns jobs retried."""
        manager = self.backend.app.job_manager
        retried = 0
        for job in await manager.get_stalled_jobs(
            queue=self.backend.queue, seconds_since_heartbeat=seconds_since_heartbeat
        ):
            try:
                await manager.retry_job(job)
                retried += 1
            except Exception as exc:  # another reconciler won, or the job moved on
                _logger.info("stalled job not retried", job_id=job.id, reason=str(exc))
        async with self.backend.pool.connection() as conn:
            cursor = await conn.execute(
                """
                SELECT DISTINCT r.instance_id FROM heph_step_results r
                WHERE r.processed_at IS NULL AND NOT EXISTS (
                    SELECT 1 FROM procrastinate_jobs j
                    WHERE j.task_name = 'heph.advance' AND j.status IN ('todo', 'doing')
                      AND j.args->>'instance_id' = r.instance_id)
                """
            )
            orphans = [instance_id for (instance_id,) in await cursor.fetchall()]
            for instance_id in orphans:
                async with conn.transaction():
                    await self.defer_advance(conn, instance_id)
            # Active steps whose job is gone (aborted, lost) with nothing recorded.
            cursor = await conn.execute(
                """
                SELECT i.id, s.step FROM heph_instances i
                CROSS JOIN LATERAL jsonb_array_elements_text(i.state->'active_steps') AS s(step)
                WHERE i.status = 'running'
                  AND NOT EXISTS (
                    SELECT 1 FROM heph_step_results r WHERE r.instance_id = i.id
                      AND r.step = s.step AND r.slot IN ('outcome', 'async'))
                  AND NOT EXISTS (
                    SELECT 1 FROM procrastinate_jobs j
                    WHERE j.task_name = 'heph.execute_step' AND j.status IN ('todo', 'doing')
                      AND j.args->>'instance_id' = i.id AND j.args->>'step' = s.step)
                """
            )
            lost = await cursor.fetchall()
            for instance_id, step in lost:
                _logger.warning("step job lost: deferred again", instance_id=instance_id, step=step)
                await self.step_task.configure(connection=conn).defer_async(
                    instance_id=instance_id, step=step
                )
        return retried


async def _call(step: type[Step], instance: Instance) -> Any:
    """Run ``execute`` (awaited, inline, or in a thread) under the step's timeout."""
    obj = step()
    config = instance.step_configs.get(step)
    with anyio.fail_after(step.timeout):
        if step.blocking:
            return await anyio.to_thread.run_sync(
                obj.execute, instance, config, instance.context, abandon_on_cancel=True
            )
        result = obj.execute(instance, config, instance.context)
        if hasattr(result, "__await__"):
            result = await result
        return result


# A hook for the crash tests only: with HEPHAESTUS_TEST_PAUSE_IN_ADVANCE=<seconds>,
# an advance that has taken its row lock and read its results logs a line to
# HEPHAESTUS_TEST_ADVANCE_LOG and sleeps, so that a test can kill the worker there.
_PAUSE_IN_ADVANCE = float(os.environ.get("HEPHAESTUS_TEST_PAUSE_IN_ADVANCE", "0") or 0)


async def _pause_in_advance(instance_id: str) -> None:
    log = os.environ.get("HEPHAESTUS_TEST_ADVANCE_LOG")
    if log:
        with open(log, "a") as file:  # noqa: ASYNC230  # a test hook: one short line
            file.write(f"{instance_id} advance {os.getpid()}\n")
    await anyio.sleep(_PAUSE_IN_ADVANCE)


def _since(at: datetime.datetime | None) -> int:
    if at is None:
        return 0
    return max(int((time.time() - at.timestamp()) * 1e9), 0)


def _qualname(step: type[Step]) -> str:
    return step.__qualname__
