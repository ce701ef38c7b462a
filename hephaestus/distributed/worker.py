"""``Worker``: drives instances for the distributed runner, in its own process or in an app.

```python
async with Worker(dsn, schema="hephaestus", concurrency=100):
    ...   # the worker drives instances in the background until the block ends
```

or ``hephaestus worker --dsn ... --concurrency 100``, which runs until SIGINT
or SIGTERM. A worker runs procrastinate's worker for the ``heph.drive`` jobs
(see ``driving``), another for the ``heph.step`` jobs of spread steps (see
``spreading``; their own queue and slots, so that drivers awaiting them never
take the slots they need), and three loops beside it: it listens for the
notifications of letters and cancels; every ``poll_interval`` seconds it
defers a drive job for each instance whose timer is due by the worker's
clock; every ``reconcile_every`` seconds it retries the drive jobs of
workers whose heartbeat stopped ``stalled_after`` seconds ago (a killed
process), and defers one for any unfinished instance that nothing drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from types import TracebackType
from typing import Any

import anyio
import procrastinate
import psycopg
import structlog
from procrastinate.job_context import AbortReason
from psycopg_pool import AsyncConnectionPool

from hephaestus.distributed import spreading
from hephaestus.distributed._backend import DRIVE, Backend, Conn, check_schema, make_pool, migrate
from hephaestus.distributed.driving import Driver
from hephaestus.runtime.clock import Clock, check_clock
from hephaestus.runtime.storage.postgres import utc

__all__ = ["Worker"]

_logger = structlog.get_logger("hephaestus.distributed")


class _DriveRetry(procrastinate.BaseRetryStrategy):
    """A drive job cut short is driven again: at once when its worker stopped, else backed off.

    A worker stopping past its shutdown timeout aborts its drive jobs
    (``CancelledError``): another worker goes on from the last stored state.
    Anything else (the database away during a claim) is retried with a capped
    backoff, 20 times. ``retry_at`` is procrastinate's, in real time whatever
    the worker's clock: a retry waits for the world (a worker, the database).
    """

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, asyncio.CancelledError):
            return procrastinate.RetryDecision(retry_at=utc(time.time_ns()))
        if job.attempts >= 20:
            return None
        return procrastinate.RetryDecision(
            retry_at=utc(time.time_ns() + int(min(0.05 * 2**job.attempts, 10.0) * 1e9))
        )


def _conninfo(pool: AsyncConnectionPool[Conn]) -> str:
    """The pool's connection string with its options (its ``search_path``), to listen apart."""
    conninfo, kwargs = pool.conninfo, pool.kwargs
    if not isinstance(conninfo, str) or not isinstance(kwargs, dict):
        raise TypeError("the worker's pool needs a plain connection string and kwargs to listen")
    return psycopg.conninfo.make_conninfo(conninfo, options=kwargs.get("options"))


class Worker:
    """Drives instances: as many at once as ``concurrency`` (their steps run concurrently).

    ``spread_concurrency`` is how many spread steps (``Step.spread``) of any
    worker's instances it runs at once (0: none, it only drives).

    ``dsn`` or ``pool`` as for :class:`DistributedRunner` (an own pool has up
    to ``max_pool_size`` connections, plus one that listens). ``heartbeat``
    is how often the worker tells the database it is alive; ``stalled_after``
    how long a silent worker's instances wait before another worker drives
    them; ``shutdown_timeout`` how long leaving waits for running instances
    to reach a stop before cutting them short (they go on elsewhere, from
    their last stored step). New work wakes the worker at once
    (LISTEN/NOTIFY); ``poll_interval`` is how often it looks for timers that
    fell due, so they fire up to that late.

    ``clock`` is what the worker's driver reads, as a ``LocalRunner(clock=...)``
    does (default: the system's): the times of the records it writes, the
    due times of timers and which of them are due, telemetry's times. Give the
    runners that start its instances the same clock. Its own intervals
    (polling, heartbeat, reconciling, shutdown) are in real time.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: AsyncConnectionPool[Conn] | None = None,
        schema: str = "hephaestus",
        concurrency: int = 100,
        spread_concurrency: int = 10,
        name: str | None = None,
        heartbeat: float = 10.0,
        stalled_after: float = 30.0,
        reconcile_every: float = 5.0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 0.5,
        max_pool_size: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = check_clock(clock)
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn= and pool=")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got: {concurrency!r}")
        if spread_concurrency < 0:
            raise ValueError(f"spread_concurrency must be >= 0, got: {spread_concurrency!r}")
        self.schema = check_schema(schema)
        self.name = name if name is not None else f"worker-{os.getpid()}-{id(self):x}"
        self.concurrency = concurrency
        self.spread_concurrency = spread_concurrency
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.reconcile_every = reconcile_every
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self._dsn = dsn
        self._given = pool
        self._max_pool_size = max_pool_size
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, schema={self.schema!r})"

    async def __aenter__(self) -> Worker:
        self._task = asyncio.get_running_loop().create_task(self.run(install_signals=False))
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():  # it failed to start: say why
            ready.cancel()
            await self._task
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, *, install_signals: bool = True) -> None:
        """Drive instances until cancelled (or, with ``install_signals``, until SIGINT/SIGTERM)."""
        pool = self._given or make_pool(self._dsn or "", self.schema, self._max_pool_size)
        if self._given is None:
            await pool.open()
        try:
            await migrate(pool, self.schema)
            app = procrastinate.App(connector=procrastinate.PsycopgConnector())
            async with app.open_async(pool=pool):
                backend = Backend(pool, self.schema, app, self.clock)
                driver = Driver(backend, name=self.name, hold=self.poll_interval, clock=self.clock)

                async def drive(context: procrastinate.JobContext, instance_id: str) -> None:
                    assert context.job is not None
                    await driver.drive(instance_id, context.job.attempts)

                async def step(
                    context: procrastinate.JobContext,
                    instance_id: str,
                    step: str,
                    item: int | None,
                    token: str,
                    carried: dict[str, str] | None = None,
                ) -> None:
                    try:
                        await spreading.run_here(
                            driver, backend, instance_id, step, item, token, carried
                        )
                    except asyncio.CancelledError:
                        if context.abort_reason() is AbortReason.USER_REQUEST:  # its driver
                            raise procrastinate.exceptions.JobAborted() from None  # not retried
                        raise  # the worker stops: retried at once, elsewhere

                app.task(name=DRIVE, queue=backend.queue, pass_context=True, retry=_DriveRetry())(
                    drive
                )
                app.task(
                    name=spreading.STEP,
                    queue=backend.steps_queue,
                    pass_context=True,
                    retry=_DriveRetry(),
                )(step)
                options: dict[str, Any] = {
                    "update_heartbeat_interval": self.heartbeat,
                    "stalled_worker_timeout": self.stalled_after,
                    "shutdown_graceful_timeout": self.shutdown_timeout,
                    "listen_notify": True,
                    "fetch_job_polling_interval": self.poll_interval,
                    "abort_job_polling_interval": 1.0,
                }
                async with driver, anyio.create_task_group() as tg:
                    await tg.start(self._listen, backend, driver)
                    tg.start_soon(self._every, self.reconcile_every, self._reconcile, backend)
                    tg.start_soon(self._every, self.poll_interval, self._wake, backend)
                    if self.spread_concurrency:  # stopped after the drivers that await them
                        steps = functools.partial(
                            app.run_worker_async,
                            queues=[backend.steps_queue],
                            name=f"{self.name}/steps",
                            concurrency=self.spread_concurrency,
                            install_signal_handlers=False,
                            **options,
                        )
                        tg.start_soon(steps)
                    self._ready.set()
                    await app.run_worker_async(
                        queues=[backend.queue],
                        name=self.name,
                        concurrency=self.concurrency,
                        install_signal_handlers=install_signals,
                        **options,
                    )
                    tg.cancel_scope.cancel()
        finally:
            if self._given is None:
                with anyio.CancelScope(shield=True):
                    await pool.close()

    async def _listen(
        self, backend: Backend, driver: Driver, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Hand the driver each instance a letter or a cancel was committed for."""
        started = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    _conninfo(backend.pool), autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{backend.channel}"')
                    if not started:
                        started = True
                        task_status.started()
                    else:  # what was notified while nobody listened
                        driver.recheck()
                    async for notice in conn.notifies():
                        driver.notified(notice.payload)
            except psycopg.Error:  # the database went away: listen again (puts fence meanwhile)
                _logger.warning("notifications lost; listening again", worker=self.name)
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(1.0)  # real time, whatever the clock: the database's return

    async def _every(self, seconds: float, work: Any, backend: Backend) -> None:
        # Polling and reconciling in real time, whatever the clock: they look at the
        # database for what changed or was lost (``_wake`` asks the clock what is due).
        while True:
            await anyio.sleep(seconds)
            try:
                await work(backend)
            except Exception:  # the database is away for a moment: try again later
                _logger.exception("periodic work failed", worker=self.name, work=work.__name__)

    async def _wake(self, backend: Backend) -> None:
        await backend.wake(max(self.stalled_after, 1.0))

    async def _reconcile(self, backend: Backend) -> None:
        await backend.retry_stalled(self.stalled_after)
        await backend.orphans(self.stalled_after)
