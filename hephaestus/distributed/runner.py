"""``DistributedRunner``: the runner API over PostgreSQL, usable from any process.

It never executes a step. ``start`` stores an instance and defers its drive
job in one statement; ``resume``, ``send`` and ``schedule_resume`` check the
stored instance, then put a letter in its inbox, notify the worker driving
it and defer a drive job, in one statement; ``cancel`` ends the instance in
one transaction that fences off its driver. The workers
(:class:`~hephaestus.distributed.Worker`) do the rest. Web handlers, scripts
and workers can all use one.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import procrastinate
from psycopg_pool import AsyncConnectionPool

from hephaestus import telemetry as emit
from hephaestus.core import engine
from hephaestus.core.history import Record
from hephaestus.core.instance import Context, Instance, Status
from hephaestus.core.step import Step
from hephaestus.core.workflow import Workflow
from hephaestus.distributed._backend import Backend, Conn, check_schema, make_pool, migrate
from hephaestus.exceptions import (
    AlreadyRunning,
    InstanceNotFound,
    NotWaiting,
    RunnerStopped,
    UndeclaredEvent,
)
from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock, check_clock
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
    ``wait`` polls the instance, at most ``poll_interval`` seconds apart.
    ``clock`` stamps what the runner writes (the instances' ``started_at``,
    the letters' and records' times) and its telemetry, as ``LocalRunner``'s
    (default: the system's; give the workers the same clock).
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
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = check_clock(clock)
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn= and pool=")
        # What the emitters are given (None: they read the system clock themselves).
        self._event_clock: Clock | None = None if self.clock is SYSTEM_CLOCK else self.clock
        self.schema = check_schema(schema)
        self.name = name if name is not None else f"distributed-{os.getpid()}-{id(self):x}"
        self.poll_interval = poll_interval
        self._dsn = dsn
        self._given = pool
        self._max_pool_size = max_pool_size
        self._backend: Backend | None = None
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
        self._backend = Backend(pool, self.schema, app, self.clock)
        emit.runner_init(
            {"name": self.name, "runner": type(self), "storage": "postgres", "pid": os.getpid()},
            clock=self._event_clock,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        backend, pool = self._backend, self._pool
        self._backend = self._pool = None
        if backend is not None:
            await backend.app.close_async()
        if pool is not None and self._given is None:
            await pool.close()

    @property
    def _ready(self) -> Backend:
        if self._backend is None:
            raise RunnerStopped(f"{self!r} is not open: use `async with DistributedRunner(...)`")
        return self._backend

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
        """Store a new instance and defer its drive job, in one statement."""
        backend = self._ready
        concrete, iid, initial, metadata = check_start(
            workflow, context, id, version, telemetry_metadata
        )
        instance = Instance(
            iid,
            concrete,
            concrete.version,
            Status.PENDING,
            Context(initial),
            telemetry_metadata=metadata,
            started_at=self.clock.time_ns(),
        )
        state = codec.encode(instance)  # refuses what it cannot store, before any SQL
        if not await backend.start(instance, state):
            raise AlreadyRunning(iid)
        emit.workflow_start(
            instance,
            {
                "initial_step": concrete.definition.start,
                "context_keys": list(instance.context.initial),
                "runner": type(self),
            },
            clock=self._event_clock,
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
        instance = await self._ready.storage.get(check_id(instance_id))
        if instance is None:
            raise InstanceNotFound(instance_id)
        return instance

    async def list(self, **filters: Any) -> builtins.list[Instance]:
        """The stored instances matching the filters (``status``, ``workflow``, ...)."""
        return await self._ready.storage.query(**filters)

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[Record]:
        """What happened to the instance, oldest first (see ``LocalRunner.history``)."""
        storage = self._ready.storage
        records = await storage.history(check_id(instance_id), offset=offset, limit=limit)
        if not records and await storage.get(instance_id) is None:
            raise InstanceNotFound(instance_id)
        return records

    async def wait(self, instance_id: str, *, timeout: float | None = None) -> Instance:  # noqa: ASYNC109  # the documented API
        """The instance once it has ended; ``TimeoutError`` after ``timeout`` seconds."""
        storage = self._ready.storage
        check_id(instance_id)
        delay = min(0.005, self.poll_interval)
        instance = None
        # In real time whatever the clock: the timeout is the caller's, and the polling
        # looks at the database, which the workers change in real time.
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
        """Resume a waiting step: checked against the stored instance, applied by its worker.

        Refused, with nothing written, when the stored instance has no step
        waiting (``NotWaiting``), several and no ``step`` says which
        (``AmbiguousResume``), or the step does not declare ``event``
        (``UndeclaredEvent``); ``data`` JSON cannot hold raises
        ``NotSerializable``. A resume that a timer or another resume beats
        to the step while it travels changes nothing.
        """
        backend = self._ready
        check_id(instance_id)
        check_event(event)
        check_step(step)
        sent = check_data(data)
        if sent is not None:
            codec.encode_value(sent, "the data of the resume")
        target = await self._waiting(instance_id, step, event)
        await backend.post(
            instance_id,
            "resume",
            event,
            step=codec.import_path(target),
            data=sent,
            at=self.clock.time_ns(),
        )

    async def send(
        self, instance_id: str, event: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Send the instance a message, whatever it is doing now (see ``LocalRunner.send``).

        Kept in the instance's inbox until its worker applies it: delivered
        at once to a step waiting for ``event``, else kept with the instance
        for the first step that parks waiting for it. Refused, with nothing
        written, when the instance has ended (``NotWaiting``) or no step of its
        workflow declares ``event`` (``UndeclaredEvent``).
        """
        backend = self._ready
        check_id(instance_id)
        check_event(event)
        sent = check_data(data)
        if sent is not None:
            codec.encode_value(sent, "the data of the message")
        instance = await self._active(instance_id)
        now = self.clock.time_ns()
        engine.send(instance, event, sent, now=now)  # raises: undeclared
        await backend.post(instance_id, "send", event, data=sent, at=now)

    async def schedule_resume(self, instance_id: str, step: type[Step] | str, delay: float) -> None:
        """The waiting ``step`` resumes itself with ``"timeout"`` after ``delay`` seconds."""
        delay = check_delay(delay)
        backend = self._ready
        check_id(instance_id)
        check_step(step)
        target = await self._waiting(instance_id, step, "timeout")
        await backend.post(
            instance_id,
            "timer",
            "timeout",
            step=codec.import_path(target),
            delay=delay,
            at=self.clock.time_ns(),
        )

    async def cancel(self, instance_id: str) -> Instance:
        """Cancel the instance now, in one transaction; its worker stops its running steps.

        Works whether or not a worker runs. Cancelling an ended instance
        returns it unchanged.
        """
        backend = self._ready
        cancelled = await backend.cancel(check_id(instance_id), engine.cancel)
        if cancelled is None:
            raise InstanceNotFound(instance_id)
        return cancelled

    async def _waiting(
        self, instance_id: str, step: type[Step] | str | None, event: str
    ) -> type[Step]:
        """The stored instance's waiting step that ``step`` names, which must declare ``event``."""
        instance = await self._active(instance_id)
        target = waiting_step(instance, instance.waiting_steps, step)
        declared = target.declared_events(instance.step_configs.get(target))
        if event not in declared:
            raise UndeclaredEvent(target.__qualname__, event, declared)
        return target

    async def _active(self, instance_id: str) -> Instance:
        instance = await self._ready.storage.get(instance_id)
        if instance is None:
            raise InstanceNotFound(instance_id)
        if instance.terminal:
            raise NotWaiting(f"instance {instance_id!r} is {instance.status}, not waiting")
        return instance
