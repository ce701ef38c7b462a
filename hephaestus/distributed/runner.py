"""``DistributedRunner``: the runner API over PostgreSQL, usable from any process.

It never executes a step: it writes instances and resumes, in transactions
that also defer the jobs the workers (:class:`~hephaestus.distributed.Worker`)
run. Web handlers, scripts and workers can all use one.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import procrastinate
from psycopg_pool import AsyncConnectionPool

from hephaestus import telemetry as emit
from hephaestus.core import engine
from hephaestus.core.instance import Context, Instance, Status
from hephaestus.core.step import Step
from hephaestus.core.workflow import Workflow
from hephaestus.distributed._backend import Backend, Conn, check_schema, make_pool, migrate
from hephaestus.distributed._jobs import Jobs
from hephaestus.exceptions import (
    AlreadyRunning,
    InstanceNotFound,
    NotWaiting,
    RunnerStopped,
    UndeclaredEvent,
)
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.inputs import check_start
from hephaestus.runtime.storage import codec
from hephaestus.runtime.waiting import (
    check_data,
    check_delay,
    check_event,
    check_step,
    waiting_step,
)

__all__ = ["DistributedRunner"]


class DistributedRunner:
    """Starts, resumes, waits for and cancels instances that workers run.

    Give ``dsn`` (the runner makes and closes its own pool of up to
    ``max_pool_size`` connections) or ``pool`` (yours; its connections must
    use ``search_path`` set to ``schema``, see ``make_pool``). ``schema`` is
    the PostgreSQL schema of the tables, created and migrated on entering.
    ``wait`` polls the instance every ``poll_interval`` seconds.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: AsyncConnectionPool[Conn] | None = None,
        schema: str = "hephaestus",
        name: str | None = None,
        poll_interval: float = 0.05,
        max_pool_size: int = 10,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn= and pool=")
        self.schema = check_schema(schema)
        self.name = name if name is not None else f"distributed-{os.getpid()}-{id(self):x}"
        self.poll_interval = poll_interval
        self._dsn = dsn
        self._given = pool
        self._max_pool_size = max_pool_size
        self._jobs: Jobs | None = None
        self._pool: AsyncConnectionPool[Conn] | None = None

    def __repr__(self) -> str:
        return f"DistributedRunner(name={self.name!r}, schema={self.schema!r})"

    async def __aenter__(self) -> DistributedRunner:
        pool = self._given or make_pool(self._dsn or "", self.schema, self._max_pool_size)
        if self._given is None:
            await pool.open()
        try:
            await migrate(pool, self.schema)
            app = procrastinate.App(connector=procrastinate.PsycopgConnector())
            await app.open_async(pool=pool)
        except BaseException:
            if self._given is None:
                await pool.close()
            raise
        self._pool = pool
        self._jobs = Jobs(Backend(pool, self.schema, app), self)
        emit.runner_init(
            {"name": self.name, "runner": type(self), "storage": "postgres", "pid": os.getpid()}
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        jobs, pool = self._jobs, self._pool
        self._jobs = self._pool = None
        if jobs is not None:
            await jobs.backend.app.close_async()
        if pool is not None and self._given is None:
            await pool.close()

    @property
    def _ready(self) -> Jobs:
        if self._jobs is None:
            raise RunnerStopped(f"{self!r} is not open: use `async with DistributedRunner(...)`")
        return self._jobs

    # ------------------------------------------------------------------ the API

    async def start(
        self,
        workflow: type[Workflow],
        context: Mapping[str, Any],
        *,
        id: str | None = None,  # the documented keyword
        version: int | None = None,
        telemetry_metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Store a new instance and defer its first advance, in one transaction."""
        jobs = self._ready
        concrete, iid, initial, metadata = check_start(
            workflow, context, id, version, telemetry_metadata
        )
        if concrete.definition.maps:
            mapped = ", ".join(sorted(s.__qualname__ for s in concrete.definition.maps))
            raise NotImplementedError(
                f"{concrete.__qualname__} maps {mapped}: the DistributedRunner does not run "
                f"maps yet (the LocalRunner does)"
            )
        instance = Instance(
            iid,
            concrete,
            concrete.version,
            Status.PENDING,
            Context(initial),
            telemetry_metadata=metadata,
            started_at=time.time_ns(),
        )
        state = codec.encode(instance)  # refuses what it cannot store, before any SQL
        async with jobs.backend.pool.connection() as conn, conn.transaction():
            if not await jobs.backend.insert(conn, instance, state):
                raise AlreadyRunning(iid)
            await jobs.defer_advance(conn, iid)
        emit.workflow_start(
            instance,
            {
                "initial_step": concrete.definition.start,
                "context_keys": list(instance.context.initial),
                "runner": type(self),
            },
        )
        return iid

    async def run(
        self, workflow: type[Workflow], context: Mapping[str, Any], **options: Any
    ) -> Instance:
        """Start an instance and wait until it has ended."""
        timeout = options.pop("timeout", None)
        return await self.wait(await self.start(workflow, context, **options), timeout=timeout)

    async def get(self, instance_id: str) -> Instance:
        """The instance as it is stored now."""
        instance = await self._ready.backend.storage.get(check_id(instance_id))
        if instance is None:
            raise InstanceNotFound(instance_id)
        return instance

    async def list(self, **filters: Any) -> builtins.list[Instance]:
        """The stored instances matching the filters (``status``, ``workflow``, ...)."""
        return await self._ready.backend.storage.query(**filters)

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the documented API
        """The instance once it has ended; ``TimeoutError`` after ``timeout`` seconds."""
        storage = self._ready.backend.storage
        check_id(instance_id)
        delay = min(0.005, self.poll_interval)
        instance = None
        with anyio.move_on_after(timeout):
            while True:
                instance = await storage.get(instance_id)
                if instance is None:
                    raise InstanceNotFound(instance_id)
                if instance.terminal:
                    return instance
                await anyio.sleep(delay)
                delay = min(delay * 2, self.poll_interval)
        status = "not read yet" if instance is None else f"still {instance.status}"
        raise TimeoutError(
            f"instance {instance_id!r} is {status} after {timeout} s (wait's timeout)"
        )

    async def resume(
        self,
        instance_id: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        step: type[Step] | str | None = None,
    ) -> None:
        """Record a resume for a waiting step and defer the advance that applies it.

        ``data`` becomes the step's output in the context; data JSON cannot
        hold is refused (``NotSerializable``) before anything is written.
        """
        jobs = self._ready
        check_id(instance_id)
        check_event(event)
        check_step(step)
        sent = check_data(data)
        if sent is not None:
            codec.encode_value(sent, "the data of the resume")
        backend = jobs.backend
        async with backend.pool.connection() as conn, conn.transaction():
            instance, target, parked = await self._waiting(conn, instance_id, step)
            declared = target.declared_events(instance.step_configs.get(target))
            if event not in declared:
                raise UndeclaredEvent(target.__qualname__, event, declared)
            if not await backend.record(
                conn, instance_id, codec.import_path(target), "resumed", event=event,
                updates=sent, source="external",
            ):  # fmt: skip
                raise NotWaiting(
                    f"instance {instance_id!r}: step {target.__qualname__} was resumed already"
                )
            await jobs.defer_advance(conn, instance_id)
        emit.step_resume(
            instance,
            target,
            {
                "step_key": target.step_key,
                "resume_event": event,
                "source": "external",
                "wait_duration": max(int((time.time() - parked) * 1e9), 0),
                "runner": type(self),
            },
        )

    async def send(
        self, instance_id: str, event: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Messages are not delivered by the distributed runner yet: refused, nothing written."""
        raise NotImplementedError(
            "the DistributedRunner does not take messages yet (the LocalRunner does); "
            "use resume() once the step waits"
        )

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """The waiting ``step`` resumes itself with ``"timeout"`` after ``delay`` seconds."""
        delay = check_delay(delay)
        jobs = self._ready
        check_id(instance_id)
        check_step(step)
        async with jobs.backend.pool.connection() as conn, conn.transaction():
            instance, target, _ = await self._waiting(conn, instance_id, step)
            if "timeout" not in target.declared_events(instance.step_configs.get(target)):
                raise UndeclaredEvent(
                    target.__qualname__,
                    "timeout",
                    target.declared_events(instance.step_configs.get(target)),
                )
            await jobs.defer_timer(
                conn, instance_id, target, time.time_ns() + int(delay * 1_000_000_000)
            )

    async def cancel(self, instance_id: str) -> Instance:
        """Cancel the instance: its pending jobs are cancelled, running ones asked to abort."""
        backend = self._ready.backend
        check_id(instance_id)
        async with backend.pool.connection() as conn, conn.transaction():
            loaded = await backend.load(conn, instance_id, lock=True)
            if loaded is None:
                raise InstanceNotFound(instance_id)
            instance, advances = loaded
            if instance.terminal:
                return instance
            instance = engine.cancel(instance)
            await backend.update(conn, instance, advances)
            await backend.cancel_todo(conn, instance_id)
        await backend.abort_doing(instance_id)
        return instance

    async def _waiting(
        self, conn: Conn, instance_id: str, step: type[Step] | str | None
    ) -> tuple[Instance, type[Step], float]:
        """The instance, the step a resume is for, and when it parked (epoch seconds)."""
        backend = self._ready.backend
        loaded = await backend.load(conn, instance_id, lock=False)
        if loaded is None:
            raise InstanceNotFound(instance_id)
        instance = loaded[0]
        if instance.terminal:
            raise NotWaiting(f"instance {instance_id!r} is {instance.status}, not waiting")
        parks = await backend.unprocessed_parks(conn, instance_id)
        parked_at = {codec.resolve(path): at.timestamp() for path, at in parks.items()}
        waiting = set(instance.waiting_steps) | set(parked_at)
        target = waiting_step(instance, waiting, step)
        if target not in parked_at:
            at = await backend.parked_at(conn, instance_id, codec.import_path(target))
            parked_at[target] = time.time() if at is None else at.timestamp()
        return instance, target, parked_at[target]
