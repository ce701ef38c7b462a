"""``Worker``: runs the distributed runner's jobs, in its own process or inside an application.

```python
async with Worker(dsn, schema="hephaestus", concurrency=8):
    ...   # the worker runs jobs in the background until the block ends
```

or ``hephaestus worker --dsn ... --concurrency 8``, which runs until SIGINT
or SIGTERM. Each worker also reconciles every ``reconcile_every`` seconds:
it retries the jobs of workers whose heartbeat stopped ``stalled_after``
seconds ago (a killed process), and defers an advance for any instance whose
results nobody would apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from types import TracebackType

import anyio
import procrastinate
import structlog
from psycopg_pool import AsyncConnectionPool

from hephaestus import telemetry as emit
from hephaestus.distributed._backend import Backend, Conn, check_schema, make_pool, migrate
from hephaestus.distributed._jobs import Jobs

__all__ = ["Worker"]

_logger = structlog.get_logger("hephaestus.distributed")


class Worker:
    """Executes steps and advances instances: as many at once as ``concurrency``.

    ``dsn`` or ``pool`` as for :class:`DistributedRunner` (an own pool has
    ``concurrency + 4`` connections). ``heartbeat`` is how often the worker
    tells the database it is alive; ``stalled_after`` how long a silent
    worker's jobs wait before they are retried elsewhere; ``shutdown_timeout``
    how long leaving waits for running jobs before aborting them. New jobs wake
    the worker at once (LISTEN/NOTIFY); ``poll_interval`` is how often it looks
    for jobs that became due without a notification: timers and retries, so
    they fire up to that late.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: AsyncConnectionPool[Conn] | None = None,
        schema: str = "hephaestus",
        concurrency: int = 4,
        name: str | None = None,
        heartbeat: float = 10.0,
        stalled_after: float = 30.0,
        reconcile_every: float = 5.0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 0.5,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn= and pool=")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got: {concurrency!r}")
        self.schema = check_schema(schema)
        self.name = name if name is not None else f"worker-{os.getpid()}-{id(self):x}"
        self.concurrency = concurrency
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.reconcile_every = reconcile_every
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self._dsn = dsn
        self._given = pool
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
        """Run jobs until cancelled (or, with ``install_signals``, until SIGINT/SIGTERM)."""
        pool = self._given or make_pool(self._dsn or "", self.schema, self.concurrency + 4)
        if self._given is None:
            await pool.open()
        try:
            await migrate(pool, self.schema)
            app = procrastinate.App(connector=procrastinate.PsycopgConnector())
            async with app.open_async(pool=pool):
                backend = Backend(pool, self.schema, app)
                jobs = Jobs(backend, self)
                emit.runner_init(
                    {"name": self.name, "runner": type(self), "storage": "postgres",
                     "pid": os.getpid()}
                )  # fmt: skip
                self._ready.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._reconcile, jobs)
                    await app.run_worker_async(
                        queues=[backend.queue],
                        name=self.name,
                        concurrency=self.concurrency,
                        install_signal_handlers=install_signals,
                        update_heartbeat_interval=self.heartbeat,
                        stalled_worker_timeout=self.stalled_after,
                        shutdown_graceful_timeout=self.shutdown_timeout,
                        listen_notify=True,
                        fetch_job_polling_interval=self.poll_interval,
                        abort_job_polling_interval=1.0,
                    )
                    tg.cancel_scope.cancel()
        finally:
            if self._given is None:
                with anyio.CancelScope(shield=True):
                    await pool.close()

    async def _reconcile(self, jobs: Jobs) -> None:
        while True:
            await anyio.sleep(self.reconcile_every)
            try:
                await jobs.reconcile(self.stalled_after)
            except Exception:  # the database is away for a moment: try again later
                _logger.exception("reconcile failed", worker=self.name)
