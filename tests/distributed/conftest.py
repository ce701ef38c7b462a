"""What the distributed runner's tests share: a schema per test, a worker with a runner, SQL.

Every test works in a fresh PostgreSQL schema (``heph_d_<uuid8>``), dropped
with everything in it once the worker and the runner are closed. The
``runner`` fixture runs an in-process :class:`Worker` (short heartbeat and
polling intervals) beside the :class:`DistributedRunner` the test drives.

Tests never sleep to order things: they wait on a step's :class:`Probe`
(``flows.probe``), on ``runner.wait``, or poll the database for a condition
until a deadline (:func:`eventually`). A test that needs to keep the worker
off an instance holds one of its steps on a probe (the drive job writes
nothing while its steps run) or runs no worker at all (letters and drive jobs
wait in the tables until one starts).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest

from hephaestus import Instance, Step

from . import flows

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("procrastinate")

from hephaestus.distributed import DistributedRunner, Worker  # noqa: E402  # after the skips

GUARD = 10.0
"""Seconds any single wait of a test may take before the test fails."""

T = TypeVar("T")


def fresh_schema() -> str:
    """A schema name no other test uses."""
    return f"heph_d_{uuid.uuid4().hex[:8]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def worker(dsn: str, schema: str, **options: Any) -> Worker:
    """A worker with the tests' short intervals (``options`` override them)."""
    settings: dict[str, Any] = {
        "concurrency": 4,
        "poll_interval": 0.05,
        "reconcile_every": 0.5,
        "heartbeat": 0.5,
        "stalled_after": 2,
        "shutdown_timeout": 5,
    }
    return Worker(dsn, schema=schema, **{**settings, **options})


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test (after every fixture using it closed)."""
    name = fresh_schema()
    yield name
    drop_schema(postgres_dsn, name)


@pytest.fixture(autouse=True)
def _no_probe_left_behind() -> Iterator[None]:
    flows.reset()
    yield
    flows.reset()


@pytest.fixture
async def runner(postgres_dsn: str, schema: str) -> AsyncIterator[DistributedRunner]:
    """A runner, with a worker in this process running its jobs."""
    async with (
        worker(postgres_dsn, schema),
        DistributedRunner(postgres_dsn, schema=schema) as runner,
    ):
        yield runner


class Database:
    """The test's own view of the schema: rows of Hephaestus's and procrastinate's tables."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    async def connect(self) -> Any:
        return await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, options=f"-c search_path={self.schema}"
        )

    async def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await self.connect() as conn:
            cursor = await conn.execute(query, params or None)
            return await cursor.fetchall() if cursor.description else []

    async def jobs(self, instance_id: str) -> list[tuple[str, str, int]]:
        """``(task_name, status, attempts)`` of the instance's jobs, oldest first."""
        rows = await self.rows(
            "SELECT task_name, status::text, attempts FROM procrastinate_jobs"
            " WHERE args->>'instance_id' = %s ORDER BY id",
            instance_id,
        )
        return [(name, status, attempts) for name, status, attempts in rows]

    async def statuses(self, instance_id: str) -> list[str]:
        """The statuses of the instance's jobs, oldest first (all of them are drive jobs)."""
        return [status for _, status, _ in await self.jobs(instance_id)]

    async def settled(self, instance_id: str) -> list[str]:
        """The statuses of the instance's jobs once none is ``todo`` or ``doing`` (polled)."""

        async def check() -> list[str] | None:
            statuses = await self.statuses(instance_id)
            return None if {"todo", "doing"} & set(statuses) else statuses

        return await eventually(check, f"the jobs of {instance_id} to settle")

    async def inbox(self, instance_id: str) -> list[tuple[str, str | None, str, Any, Any]]:
        """``(kind, step, event, data, delay)`` of the instance's letters, oldest first.

        ``step`` is the step's class name.
        """
        rows = await self.rows(
            "SELECT kind, step, event, data, delay FROM heph_inbox"
            " WHERE instance_id = %s ORDER BY id",
            instance_id,
        )
        return [
            (kind, None if step is None else step.rsplit(":", 1)[-1], *rest)
            for kind, step, *rest in rows
        ]

    async def instance(self, instance_id: str) -> tuple[str, int, Any]:
        """``(status, epoch, wake_at)`` of the instance's row."""
        [row] = await self.rows(
            "SELECT status, epoch, wake_at FROM heph_instances WHERE id = %s", instance_id
        )
        return row

    async def snapshot(self, instance_id: str) -> tuple[Any, ...]:
        """Everything stored about the instance: its row, history, inbox and jobs."""
        row = await self.rows(
            "SELECT status, state, epoch, updated_at FROM heph_instances WHERE id = %s",
            instance_id,
        )
        history = await self.rows(
            "SELECT seq, kind, at, step, item, attempt, event, duration, details"
            " FROM heph_history WHERE instance_id = %s ORDER BY seq",
            instance_id,
        )
        inbox = await self.rows(
            "SELECT * FROM heph_inbox WHERE instance_id = %s ORDER BY id", instance_id
        )
        jobs = await self.rows(
            "SELECT id, task_name, status::text, attempts, scheduled_at FROM procrastinate_jobs"
            " WHERE args->>'instance_id' = %s ORDER BY id",
            instance_id,
        )
        return row, history, inbox, jobs


@pytest.fixture
def db(postgres_dsn: str, schema: str) -> Database:
    return Database(postgres_dsn, schema)


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, seconds: float = GUARD
) -> T:
    """Poll ``check`` until it returns something true, and return that; fail after ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            while True:
                value = await check()
                if value:
                    return value
                await anyio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds} s waiting for {what}")


async def parked(runner: DistributedRunner, instance_id: str, step: type[Step]) -> Instance:
    """The instance once ``step`` waits (its park applied), polled with a deadline."""

    async def check() -> Instance | None:
        instance = await runner.get(instance_id)
        return instance if step in instance.waiting_steps else None

    return await eventually(check, f"{step.__qualname__} of {instance_id} to park")


async def until(event: anyio.Event) -> None:
    """Wait for ``event``; the test fails after ``GUARD`` seconds."""
    with anyio.fail_after(GUARD):
        await event.wait()


def path(instance: Instance) -> list[tuple[str, str]]:
    """``(step name, event)`` of each completed step, in order."""
    return [(entry.step.__qualname__, entry.event) for entry in instance.execution_history]
