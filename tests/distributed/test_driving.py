"""One driver per instance: many instances over two workers, fencing, races, the old design.

A drive job runs a whole instance in the worker that took it, each change one
fenced write. These tests run workers in this process (``conftest.worker``),
so the steps below count their runs in ``RUNS`` and meet the test on
``GATES``.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from hephaestus import (
    Context,
    Done,
    Instance,
    LocalRunner,
    Ok,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus.core import engine
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.migrations import migrations

from .conftest import GUARD, Database, eventually, until, worker

psycopg = pytest.importorskip("psycopg")
procrastinate = pytest.importorskip("procrastinate")

import psycopg_pool  # noqa: E402  # after the skips

from hephaestus.distributed import DistributedRunner, migrate  # noqa: E402
from hephaestus.distributed._backend import queue_name  # noqa: E402

RUNS: Counter[tuple[str, str]] = Counter()
"""How many times each (instance id, step key) ran."""

GATES: dict[str, tuple[anyio.Event, anyio.Event]] = {}
"""(started, release) of the instances whose ``Gated`` step waits for the test."""


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    RUNS.clear()
    GATES.clear()
    yield
    GATES.clear()


class _Counted(Step):
    events = ("next",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        key = type(self).step_key
        RUNS[(instance.id, key)] += 1
        before = [v["count"] for v in context.steps.values() if "count" in v]
        return Ok("next", {"count": max(before, default=0) + 1})


STEPS = [type(f"Count{n}", (_Counted,), {"__module__": __name__}) for n in range(10)]
for _n, _step in enumerate(STEPS):
    _step.__qualname__ = f"Count{_n}"
    globals()[f"Count{_n}"] = _step


class Counting(Workflow):
    """Ten steps in a row; each stores one more than the count it finds."""

    start = STEPS[0]
    transitions = {s: {"next": STEPS[i + 1] if i < 9 else Done} for i, s in enumerate(STEPS)}


class Gated(Step):
    events = ("next",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        RUNS[(instance.id, "gated")] += 1
        gate = GATES.get(instance.id)
        if gate is not None:
            gate[0].set()
            await gate[1].wait()
        return Ok("next", {"gated": True})


class After(Step):
    events = ("next",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        RUNS[(instance.id, "after")] += 1
        return Ok("next")


class GatedFlow(Workflow):
    start = Gated
    transitions = {Gated: {"next": After}, After: {"next": Done}}


class Approval(Workflow):
    start = WaitForEvent
    transitions = {WaitForEvent: {"received": After}, After: {"next": Done}}


async def defer_drive(db: Database, instance_id: str) -> None:
    """Defer a drive job for the instance, as a start, a letter or a due timer does."""
    queue = (await db.rows("SELECT DISTINCT queue_name FROM procrastinate_jobs"))[0][0]
    await db.rows(
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(%s, 'heph.drive', 0, %s, NULL,"
        " jsonb_build_object('instance_id', %s::text), NULL)::procrastinate_job_to_defer_v1])",
        queue,
        f"heph:{instance_id}",
        instance_id,
    )


class TestManyInstances:
    async def test_two_workers_apply_each_result_once(self, postgres_dsn: str, schema: str) -> None:
        """500 instances over two workers: each step runs once, and each result lands once."""
        count = 500
        async with (
            worker(postgres_dsn, schema, concurrency=200),
            worker(postgres_dsn, schema, concurrency=200),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            ids = [await runner.start(Counting, {}, id=f"many-{n}") for n in range(count)]
            with anyio.fail_after(60):
                final = [await runner.wait(iid) for iid in ids]
            completed = Counter()
            for iid in ids[:50]:
                for record in await runner.history(iid):
                    if record.kind == "step_completed":
                        completed[(iid, record.step)] += 1
        assert {Status.COMPLETED} == {instance.status for instance in final}
        assert [10] * count == [i.context.steps["count9"]["count"] for i in final]
        assert {1} == set(RUNS.values())
        assert count * 10 == len(RUNS)
        assert {1} == set(completed.values())
        assert 50 * 11 == len(completed)  # Done included


class TestFencing:
    async def test_a_driver_fenced_off_writes_nothing_and_another_goes_on(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Once another claim raised the epoch, the first driver's result is refused, not applied.

        The step runs again under the new driver (at least once), and its
        result lands once.
        """
        started, release = GATES["fenced"] = (anyio.Event(), anyio.Event())
        async with (
            worker(postgres_dsn, schema),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            await runner.start(GatedFlow, {}, id="fenced")
            await until(started)
            await db.rows("UPDATE heph_instances SET epoch = epoch + 1 WHERE id = 'fenced'")
            del GATES["fenced"]  # the next run goes through
            release.set()

            async def released() -> bool:
                jobs = await db.rows(
                    "SELECT status FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                )
                return not jobs

            await eventually(released, "the fenced-off drive job to end")
            assert Status.RUNNING == (await runner.get("fenced")).status
            await defer_drive(db, "fenced")
            instance = await runner.wait("fenced", timeout=GUARD)
            history = await runner.history("fenced")
        assert Status.COMPLETED == instance.status
        assert 2 == RUNS[("fenced", "gated")]
        assert 1 == RUNS[("fenced", "after")]
        assert ["gated", "after", "done"] == [r.step for r in history if r.kind == "step_completed"]

    async def test_a_drive_job_and_a_resume_together_drive_once(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A resume racing an extra drive job: the step it leads to runs once, for every try."""
        tries = 20
        async with (
            worker(postgres_dsn, schema, concurrency=50),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            ids = [await runner.start(Approval, {}, id=f"race-{n}") for n in range(tries)]
            for iid in ids:

                async def parked(iid: str = iid) -> bool:
                    return WaitForEvent in (await runner.get(iid)).waiting_steps

                await eventually(parked, f"{iid} to wait")
            async with anyio.create_task_group() as tg:
                for iid in ids:
                    tg.start_soon(defer_drive, db, iid)
                    tg.start_soon(runner.resume, iid, "received")
                    tg.start_soon(defer_drive, db, iid)
            final = [await runner.wait(iid, timeout=GUARD) for iid in ids]
            histories = [await runner.history(iid) for iid in ids]
        assert {Status.COMPLETED} == {instance.status for instance in final}
        assert [1] * tries == [RUNS[(iid, "after")] for iid in ids]
        assert [1] * tries == [sum(r.kind == "resumed" for r in h) for h in histories]


class TestInbox:
    async def test_a_letter_committed_after_a_later_one_is_still_applied(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Letters are read in id order, but a lower id may commit later: it is applied then.

        Two senders: the first takes its id, then the second commits a letter
        (refused: no step declares its event) and the driver reads it; only then
        does the first commit. Its message reaches Hold, which parks after both.
        """
        from . import flows

        probe = flows.probe("late")
        async with (
            worker(postgres_dsn, schema),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            iid = await runner.start(flows.Parks, {}, id="late")
            await until(probe.started)  # Hold runs: this drive holds the instance
            channel = f"{queue_name(schema)}_inbox"
            insert = (
                "INSERT INTO heph_inbox (instance_id, kind, event, sent_at)"
                " VALUES (%s, 'send', %s, 0) RETURNING id"
            )
            async with await db.connect() as first, await db.connect() as second:
                async with first.transaction():
                    cursor = await first.execute(insert, (iid, "ok"))
                    early = (await cursor.fetchone())[0]  # type: ignore[index]
                    cursor = await second.execute(insert, (iid, "nobody-declares-this"))
                    late = (await cursor.fetchone())[0]  # type: ignore[index]
                    await second.execute("SELECT pg_notify(%s, %s)", (channel, iid))

                    async def refused() -> bool:
                        rows = await db.rows("SELECT id FROM heph_inbox WHERE id = %s", late)
                        return not rows

                    await eventually(refused, "the later letter to be read and refused")
                    assert early < late
                await first.execute("SELECT pg_notify(%s, %s)", (channel, iid))
            await eventually(
                lambda: _has_mail(runner, iid), "the earlier letter to be kept as a message"
            )
            probe.release.set()
            instance = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == instance.status
        assert [] == await db.inbox(iid)


async def _has_mail(runner: DistributedRunner, iid: str) -> bool:
    return bool((await runner.get(iid)).messages)


class TestMigration:
    async def test_instances_in_flight_in_the_per_step_design_finish(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A schema of the per-step design, with an instance mid-way and a resume not applied
        yet: `migrate` retires the old jobs, and a worker finishes both instances."""
        # The per-step design's schema: the storage's first three migrations and
        # procrastinate's tables, as its runners left them.
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            for _, text in migrations("postgres")[:3]:
                await conn.execute(text.encode())
            await conn.execute("CREATE TABLE heph_schema_version (version integer NOT NULL)")
            await conn.execute("INSERT INTO heph_schema_version VALUES (3)")
        pool = psycopg_pool.AsyncConnectionPool(
            postgres_dsn, open=False, kwargs={"options": f"-c search_path={schema}"}
        )
        async with pool:
            app = procrastinate.App(connector=procrastinate.PsycopgConnector())
            async with pool.connection() as conn:
                await conn.execute(app.schema_manager.get_schema().encode())
        # Mid-way: Count0 and Count1 stored, Count2 active (its step job queued).
        now = time.time_ns()
        running = engine.advance(
            Instance("old-running", Counting, 1, Status.PENDING, Context({}), started_at=now)
        )
        for n, step in enumerate(STEPS[:2]):
            result = Ok("next", {"count": n + 1})
            running = engine.apply_result(running, step, result, now=now).instance
            running = engine.advance(running)
        # Waiting for an event; its resume recorded and not applied yet.
        async with LocalRunner() as local:
            await local.start(Approval, {}, id="old-waiting")

            async def parked() -> Instance | None:
                instance = await local.get("old-waiting")
                return instance if instance.status is Status.WAITING else None

            waiting = await eventually(parked, "the instance to wait")
        assert Status.WAITING == waiting.status
        for instance in (running, waiting):
            state = codec.encode(instance)
            await db.rows(
                "INSERT INTO heph_instances (id, workflow, workflow_version, status, state)"
                " VALUES (%s, %s, 1, %s, %s)",
                instance.id,
                state["workflow"],
                instance.status.value,
                psycopg.types.json.Jsonb(state),
            )
        await db.rows(
            "INSERT INTO heph_step_results (instance_id, step, kind, event, source)"
            " VALUES ('old-waiting', %s, 'resumed', 'received', 'external')",
            codec.import_path(WaitForEvent),
        )
        await db.rows(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('heph_x', 'heph.execute_step', 0,"
            " NULL, NULL, jsonb_build_object('instance_id', 'old-running'), NULL)"
            "::procrastinate_job_to_defer_v1])"
        )

        migrate_pool = psycopg_pool.AsyncConnectionPool(
            postgres_dsn, open=False, kwargs={"options": f"-c search_path={schema}"}
        )
        async with migrate_pool:
            await migrate(migrate_pool, schema)

        assert [("cancelled",)] == await db.rows(
            "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'heph.execute_step'"
        )
        async with (
            worker(postgres_dsn, schema),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            done = await runner.wait("old-running", timeout=GUARD)
            resumed = await runner.wait("old-waiting", timeout=GUARD)
        assert Status.COMPLETED == done.status
        assert 10 == done.context.steps["count9"]["count"]
        assert {(f"count{n}", 1) for n in range(2, 10)} == {
            (key, runs) for (iid, key), runs in RUNS.items() if iid == "old-running"
        }
        assert Status.COMPLETED == resumed.status
        assert "received" == resumed.execution_history[0].event
