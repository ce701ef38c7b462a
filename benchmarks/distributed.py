"""The distributed runner's benchmark: ``python -m benchmarks.distributed [--quick] [--json PATH]``.

Every figure comes from one run against the machine's PostgreSQL
(``HEPHAESTUS_TEST_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``),
each measurement on a fresh schema (``heph_bench_<uuid8>``) dropped afterwards:

1. **trivial steps/s**: ``Linear10`` (ten no-op steps) with 1, 2 and 4 worker
   processes (``python -m hephaestus worker --concurrency 1000``), and once
   more with one worker on a schema fresh from its migration (see below);
2. **I/O-bound steps/s**: ``IoFlow`` (five steps, each awaiting 20 ms) with 1,
   2 and 4 worker processes, and the ratio to one worker;
3. **LocalRunner on PostgresStorage**: ``Linear10`` in this process, the same
   database, a group-committed put per step;
4. **DBOS on the same PostgreSQL**: the peer's workflow of ten async
   ``@DBOS.step()`` steps (``benchmarks.systems.dbos_peer``), its system
   tables in a schema of their own (``dbos_system_schema``), dropped afterwards;
5. **statements and commits per step**: ``Linear10`` on a worker running in
   this process, whose pool counts every ``execute`` (procrastinate's
   included), in a database of its own (``heph_bench_<uuid8>``, dropped
   afterwards) so that its ``xact_commit`` counts this run's connections only.

Each throughput measurement starts ``instances`` instances together (1,000;
50 with ``--quick``) and runs the clock from the first start to the moment a
``SELECT count(*) ... WHERE status = 'completed'``, polled every 20 ms on a
connection of its own, sees them all (the LocalRunner: until ``wait`` returned
for each; DBOS: until every workflow call returned). Steps per second count
the workflow's own steps (10 for ``Linear10``, 5 for ``IoFlow``); ``Done`` is
not a step.

Workers run with ``--concurrency 1000``: a drive job holds its slot for its
instance's whole run (the steps run inside it), so a worker's concurrency is
the number of instances it drives at once, and 1,000 lets one worker hold
every instance of a measurement in flight (with 16, the 1-worker figure would
measure 16 instances at a time).

Every measurement first runs a warm-up of 100 instances, then analyzes its
schema's tables, as autovacuum does on a live database (it is off on some
test servers, and does not reach a schema seconds old). Without that, the
plan of procrastinate's ``fetch_job`` is made for a table of a row or two
(no statistics; or the generic plan a PL/pgSQL function caches after five
calls, made while the table was that small) and nests a scan of every
waiting job inside another: milliseconds per fetch with 1,000 waiting, and a
worker fetches its jobs one at a time. The "1 fresh" row measures that case:
one warm-up instance per worker and no ``ANALYZE``.

The CPU seconds beside each figure are those of the worker processes, of this
process (the runner, the poller; the worker too where it runs here), and of
the PostgreSQL backends of the measurement's connections (found by their
``application_name``; other sessions on the server are not counted), read
from ``/proc``.

``--quick`` is a smoke run: 50 instances, 1 and 2 workers, no DBOS.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from benchmarks.distributed_flows import (
    BURN_ITEMS,
    BURN_SECONDS,
    IO_SECONDS,
    IO_STEPS,
    LINEAR_STEPS,
    MAP_ITEMS,
    BurnMap,
    BurnSpreadMap,
    IoFlow,
    Linear10,
    TinyMap,
    TinySpreadMap,
)
from hephaestus import LocalRunner
from hephaestus.core.workflow import Workflow
from hephaestus.distributed import DistributedRunner, Worker, make_pool
from hephaestus.runtime.storage.postgres import PostgresStorage

DSN = os.environ.get("HEPHAESTUS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 1000
"""``--concurrency`` of each worker: instances it drives at once (a job per instance)."""
POLL = 0.02
"""Seconds between two counts of the completed instances."""
POOL_SIZE = 10
"""Connections of the in-process worker's pool (``Worker``'s default ``max_pool_size``)."""
WARM_UP = 100
"""Instances run before each measurement, after which the tables are analyzed."""

TARGETS = {
    "trivial_1_worker": 2_000.0,  # steps/s, at least
    "statements_per_step": 2.0,  # at most
    "commits_per_step": 1.0,  # at most
    "vs_dbos": 10.0,  # distributed (1 worker) / DBOS, at least
    "local_postgres": 3_000.0,  # steps/s, at least
}

Conn = psycopg.AsyncConnection[Any]


# ---------------------------------------------------------------------- names, schemas, databases


def _name(prefix: str = "heph_bench") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _tagged(dsn: str, tag: str) -> str:
    """``dsn`` whose connections carry ``application_name=tag`` (to find their backends)."""
    return make_conninfo(dsn, application_name=tag)


async def _connect(dsn: str = DSN) -> Conn:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


@asynccontextmanager
async def _fresh_schema(prefix: str = "heph_bench") -> AsyncIterator[str]:
    """A new schema name (also the tag of the measurement's connections); dropped on leaving."""
    schema = _name(prefix)
    try:
        yield schema
    finally:
        with anyio.CancelScope(shield=True):
            async with await _connect() as conn:
                await conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@asynccontextmanager
async def _fresh_database() -> AsyncIterator[tuple[str, str]]:
    """A new database on the server: its name and DSN; dropped (its sessions ended) on leaving."""
    name = _name()
    async with await _connect() as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name, make_conninfo(DSN, dbname=name)
    finally:
        with anyio.CancelScope(shield=True):
            async with await _connect() as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


async def _analyze(conn: Conn, schema: str) -> None:
    """``ANALYZE`` every table of ``schema``: the statistics autovacuum keeps on a live database."""
    cursor = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    tables = [sql.Identifier(schema, name) for (name,) in await cursor.fetchall()]
    if tables:
        await conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(tables)))


# ---------------------------------------------------------------------- waiting, starting


class _Completed:
    """Counts the schema's completed instances: one statement on a connection of its own."""

    def __init__(self, conn: Conn, schema: str) -> None:
        self.conn = conn
        self.polls = 0
        self._query = sql.SQL(
            "SELECT count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FILTER (WHERE status IN ('failed', 'cancelled'))"
            " FROM {}.heph_instances"
        ).format(sql.Identifier(schema))

    async def count(self) -> int:
        self.polls += 1
        cursor = await self.conn.execute(self._query)
        row = await cursor.fetchone()
        assert row is not None
        completed, failed = row
        if failed:
            raise RuntimeError(f"{failed} instance(s) failed or were cancelled")
        return int(completed)

    async def until(self, target: int, limit: float) -> None:
        """Return once ``target`` instances have completed (counted every ``POLL`` seconds)."""
        seen = 0
        try:
            with anyio.fail_after(limit):
                while (seen := await self.count()) < target:  # noqa: ASYNC110  # polling is the point
                    await anyio.sleep(POLL)
        except TimeoutError:
            raise TimeoutError(f"{seen} of {target} instances completed after {limit} s") from None


async def _start_all(start: Callable[[], Awaitable[Any]], instances: int) -> list[Any]:
    """Call ``start`` ``instances`` times together (a task each); what the calls returned."""
    ids: list[Any] = []

    async def one() -> None:
        ids.append(await start())

    async with anyio.create_task_group() as tg:
        for _ in range(instances):
            tg.start_soon(one)
    return ids


# ---------------------------------------------------------------------- CPU time


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """User plus system CPU seconds of a process so far (0 where ``/proc`` cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class _CpuMeter:
    """CPU seconds between ``start`` and ``stop``: this process, the workers, the backends.

    The backends are those whose ``application_name`` is ``tag`` (read from
    ``pg_stat_activity`` on ``conn``); one that connects meanwhile counts
    from zero.
    """

    def __init__(self, conn: Conn, tag: str, pids: Iterable[int] = ()) -> None:
        self.conn = conn
        self.tag = tag
        self.pids = list(pids)
        self._before: tuple[float, float, dict[int, float]] = (0.0, 0.0, {})

    async def _backends(self) -> dict[int, float]:
        cursor = await self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.tag,)
        )
        return {pid: _cpu_of(pid) for (pid,) in await cursor.fetchall()}

    def _workers(self) -> float:
        return sum(_cpu_of(pid) for pid in self.pids)

    async def start(self) -> None:
        backends = await self._backends()
        self._before = (time.process_time(), self._workers(), backends)

    async def stop(self) -> dict[str, float]:
        benchmark, workers, backends = self._before
        after = await self._backends()
        return {
            "workers": self._workers() - workers,
            "benchmark": time.process_time() - benchmark,
            "postgres": sum(cpu - backends.get(pid, 0.0) for pid, cpu in after.items()),
        }


# ---------------------------------------------------------------------- worker processes


class _Workers:
    """``count`` worker processes (``python -m hephaestus worker``), stderr kept in a file."""

    def __init__(self, count: int, dsn: str, schema: str) -> None:
        self.count = count
        self.dsn = dsn
        self.schema = schema
        self.children: list[subprocess.Popen[bytes]] = []
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()

    def spawn(self) -> None:
        command = [
            sys.executable, "-m", "hephaestus", "worker", "--dsn", self.dsn,
            "--schema", self.schema, "--concurrency", str(CONCURRENCY),
            "--import", "benchmarks.distributed_flows",
        ]  # fmt: skip
        for _ in range(self.count):
            self.children.append(
                subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log)
            )

    def check(self) -> None:
        """Raise, with the workers' stderr, if one has exited."""
        for child in self.children:
            if child.poll() is not None:
                self._log.seek(0)
                stderr = self._log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"a worker exited with {child.returncode}; stderr:\n{stderr}")

    def stop(self) -> None:
        """Terminate every worker (a graceful stop); kill those still running after 30 s."""
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._log.close()


async def _registered(conn: Conn, schema: str, workers: int, check: Callable[[], None]) -> None:
    """Wait until ``workers`` worker processes have registered in the schema.

    Each registers two procrastinate workers: one for drive jobs, one for step jobs.
    """
    workers *= 2
    query = sql.SQL("SELECT count(*) FROM {}.procrastinate_workers").format(sql.Identifier(schema))
    with anyio.fail_after(60):
        while True:
            check()
            cursor = await conn.execute(query)
            row = await cursor.fetchone()
            if row is not None and row[0] >= workers:
                return
            await anyio.sleep(0.05)


@asynccontextmanager
async def _cluster(
    workers: int,
) -> AsyncIterator[tuple[str, DistributedRunner, _Workers, Conn]]:
    """A fresh schema, a runner, ``workers`` worker processes (registered), a connection."""
    async with _fresh_schema() as schema:
        dsn = _tagged(DSN, schema)
        async with DistributedRunner(dsn, schema=schema) as runner:
            children = _Workers(workers, dsn, schema)
            try:
                children.spawn()
                async with await _connect() as conn:
                    await _registered(conn, schema, workers, children.check)
                    yield schema, runner, children, conn
                    children.check()
            finally:
                children.stop()


async def _warm_up(runner: DistributedRunner, done: _Completed, count: int) -> int:
    """``count`` instances of ``Linear10``, to completion: imports, caches, the tables' rows."""
    await _start_all(lambda: runner.start(Linear10, {}), count)
    await done.until(count, 60)
    return count


# ---------------------------------------------------------------------- the measurements


async def distributed(
    workflow: type[Workflow],
    steps: int,
    workers: int,
    instances: int,
    limit: float,
    *,
    analyze: bool = True,
) -> dict[str, Any]:
    """``instances`` instances of ``workflow`` started together on ``workers`` processes.

    After a warm-up of ``WARM_UP`` instances the schema's tables are
    analyzed; ``analyze=False``: one instance per worker and no statistics,
    a schema just made on a server without autovacuum.
    """
    async with _cluster(workers) as (schema, runner, children, conn):
        done = _Completed(conn, schema)
        warm = await _warm_up(runner, done, WARM_UP if analyze else workers)
        if analyze:
            await _analyze(conn, schema)
        meter = _CpuMeter(conn, schema, (child.pid for child in children.children))
        await meter.start()
        t0 = time.perf_counter()
        await _start_all(lambda: runner.start(workflow, {}), instances)
        started = time.perf_counter() - t0
        await done.until(warm + instances, limit)
        elapsed = time.perf_counter() - t0
        cpu = await meter.stop()
    return {
        "workers": workers,
        "instances": instances,
        "analyzed": analyze,
        "elapsed_s": elapsed,
        "starting_s": started,
        "steps_per_second": instances * steps / elapsed,
        "cpu_s": cpu,
    }


async def spread_map(workflow: type[Workflow], workers: int, items: int, runs: int) -> float:
    """Seconds for one instance of ``workflow`` mapping over ``items`` items (median of ``runs``,
    one at a time, after one untimed) on ``workers`` processes."""
    async with _cluster(workers) as (_, runner, _children, _conn):
        times = []
        for n in range(runs + 1):
            t0 = time.perf_counter()
            await runner.run(workflow, {"items": items}, timeout=300)
            if n:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def spread(quick: bool) -> dict[str, Any]:
    """Maps of trivial and of CPU-bound items, run by their driver or spread, on 1 and 2 workers."""
    runs = 1 if quick else 3
    kinds = {
        "trivial": (TinyMap, TinySpreadMap, 50 if quick else MAP_ITEMS),
        "cpu": (BurnMap, BurnSpreadMap, 20 if quick else BURN_ITEMS),
    }
    result: dict[str, Any] = {"runs": runs, "cpu_item_seconds": BURN_SECONDS}
    for kind, (here, spread_, items) in kinds.items():
        for workers in (1, 2):
            driver = await spread_map(here, workers, items, runs)
            spread_s = await spread_map(spread_, workers, items, runs)
            result[f"{kind}_{workers}"] = {
                "items": items,
                "driver_s": driver,
                "spread_s": spread_s,
            }
    return result


async def local_postgres(instances: int, limit: float) -> dict[str, Any]:
    """``Linear10`` on a ``LocalRunner`` over ``PostgresStorage``: all started, then waited for."""
    async with (
        _fresh_schema() as schema,
        PostgresStorage(_tagged(DSN, schema), schema=schema) as storage,
        LocalRunner(storage) as runner,
        await _connect() as conn,
    ):
        await _start_all(lambda: runner.run(Linear10, {}), WARM_UP)
        await _analyze(conn, schema)
        meter = _CpuMeter(conn, schema)
        await meter.start()
        t0 = time.perf_counter()
        ids = await _start_all(lambda: runner.start(Linear10, {}), instances)
        started = time.perf_counter() - t0
        with anyio.fail_after(limit):
            ended = [await runner.wait(iid) for iid in ids]
        elapsed = time.perf_counter() - t0
        cpu = await meter.stop()
    failed = [i.status.value for i in ended if i.status.value != "completed"]
    if failed:
        raise RuntimeError(f"LocalRunner: {len(failed)} instance(s) did not complete: {failed[:3]}")
    return {
        "instances": instances,
        "elapsed_s": elapsed,
        "starting_s": started,
        "steps_per_second": instances * LINEAR_STEPS / elapsed,
        "cpu_s": cpu,
    }


async def dbos_postgres(instances: int, limit: float) -> dict[str, Any]:
    """DBOS's ten-step workflow, ``instances`` at once, its system tables in a fresh schema.

    DBOS keeps its defaults (a pool of 20 connections, its steps' database
    work in its thread pool); ``{"skipped": why}`` when DBOS is not installed
    or cannot run on this PostgreSQL.
    """
    try:
        from dbos import DBOS, DBOSConfig

        from benchmarks.systems import dbos_peer
    except ImportError as exc:
        return {"skipped": f"DBOS is not installed ({exc}): pip install -e '.[bench]'"}
    async with _fresh_schema("dbos_bench") as schema, await _connect() as conn:
        config: DBOSConfig = {
            "name": "hephaestus-bench",
            "system_database_url": DSN,
            "dbos_system_schema": schema,
            "log_level": "WARNING",
            # DBOS's own application_name, replaced by the tag that finds its backends.
            "db_engine_kwargs": {"connect_args": {"application_name": schema}},
        }
        loop = asyncio.get_running_loop()
        previous = getattr(loop, "_default_executor", None)  # DBOS replaces it (see dbos_peer)
        try:
            try:
                DBOS(config=config)
                DBOS.launch()
                await asyncio.gather(*(dbos_peer.linear10() for _ in range(WARM_UP)))
                await _analyze(conn, schema)
                meter = _CpuMeter(conn, schema)
                await meter.start()
                t0 = time.perf_counter()
                with anyio.fail_after(limit):
                    results = await asyncio.gather(
                        *(dbos_peer.linear10() for _ in range(instances))
                    )
                elapsed = time.perf_counter() - t0
                cpu = await meter.stop()
            finally:
                DBOS.destroy()
                loop.set_default_executor(previous or ThreadPoolExecutor())
        except Exception as exc:  # the reason is the figure
            return {"skipped": f"DBOS could not run on PostgreSQL: {type(exc).__name__}: {exc}"}
    if any(result != LINEAR_STEPS for result in results):
        return {"skipped": f"DBOS's workflows returned {sorted(set(results))}, not 10"}
    return {
        "instances": instances,
        "elapsed_s": elapsed,
        "steps_per_second": instances * LINEAR_STEPS / elapsed,
        "cpu_s": cpu,
        "system_database": f"the same database, schema {schema} (dropped)",
    }


# ---------------------------------------------------------------------- statements and commits


class _Counter:
    def __init__(self) -> None:
        self.statements = 0


def _counting_cursor(counter: _Counter) -> type[psycopg.AsyncCursor[Any]]:
    class CountingCursor(psycopg.AsyncCursor[Any]):
        """Counts every ``execute`` (``conn.execute`` goes through one too)."""

        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            counter.statements += 1
            return await super().execute(*args, **kwargs)

    return CountingCursor


def _counting_pool(conninfo: str, schema: str, counter: _Counter) -> AsyncConnectionPool[Conn]:
    """``hephaestus.distributed.make_pool``'s pool, whose cursors count their statements."""
    cursor = _counting_cursor(counter)

    async def counting(conn: Conn) -> None:
        conn.cursor_factory = cursor

    return make_pool(conninfo, schema, POOL_SIZE, configure=counting)


async def _xact_commit(conn: Conn, database: str) -> int:
    cursor = await conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _report_stats(pool: AsyncConnectionPool[Conn]) -> None:
    """Make every connection of ``pool`` report its pending statistics to the server.

    A backend reports its counts (``xact_commit``) as it goes idle, at most
    once a second: after a second's pause, one statement on each connection
    reports what it did before (the warm-up), so the baseline holds it.
    """
    async with AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(pool.connection()) for _ in range(POOL_SIZE)]
        for conn in conns:
            await conn.execute("SELECT 1")


async def _sessions_ended(conn: Conn, database: str) -> None:
    """Wait until no session is left on ``database``: each has reported its statistics."""
    with anyio.move_on_after(10):
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] == 0:
                return
            await anyio.sleep(0.05)


async def per_step(instances: int, limit: float) -> dict[str, Any]:
    """Statements and commits per ``Linear10`` step, with the worker in this process.

    Statements: every ``execute`` of the worker's pool (procrastinate's
    fetches and finishes, the claims, the puts, the periodic polling) from the
    first start to the last completion. Commits: the ``xact_commit`` delta of
    a database made for the run, from just before the first start to after
    every session has ended (so each has reported its counts). It counts
    every connection and read-only transactions too: the runner's starts,
    this poller's counts, the worker's shutdown, and the transaction in which
    each listening connection (procrastinate's, the worker's inbox) reads the
    NOTIFYs it is signalled for.
    """
    worker_count, runner_count = _Counter(), _Counter()
    async with _fresh_database() as (database, dsn):
        schema = _name()
        worker_pool = _counting_pool(dsn, schema, worker_count)
        runner_pool = _counting_pool(dsn, schema, runner_count)
        await worker_pool.open()
        await runner_pool.open()
        try:
            async with (
                DistributedRunner(pool=runner_pool, schema=schema) as runner,
                await _connect(dsn) as conn,
            ):
                done = _Completed(conn, schema)
                # The warm-up runs on a worker of its own: a listening connection
                # reports the transactions in which it reads NOTIFYs only as it
                # closes, so the counted worker's must not have read the warm-up's.
                async with Worker(dsn, schema=schema, concurrency=CONCURRENCY):
                    warm = await _warm_up(runner, done, WARM_UP)
                await _analyze(conn, schema)
                async with Worker(pool=worker_pool, schema=schema, concurrency=CONCURRENCY):
                    await _registered(conn, schema, 1, lambda: None)
                    await anyio.sleep(1.1)
                    for pool in (worker_pool, runner_pool):
                        await _report_stats(pool)
                    await conn.execute("SELECT 1")  # the poller reports its own
                    worker_count.statements = runner_count.statements = 0
                    before = await _xact_commit(conn, database)
                    polls = done.polls
                    t0 = time.perf_counter()
                    await _start_all(lambda: runner.start(Linear10, {}), instances)
                    await done.until(warm + instances, limit)
                    elapsed = time.perf_counter() - t0
                    statements = worker_count.statements
                    runner_statements = runner_count.statements
                    polls = done.polls - polls + 1  # and the baseline's read, committed after it
        finally:
            await runner_pool.close()
            await worker_pool.close()
        async with await _connect() as conn:
            await _sessions_ended(conn, database)
            commits = await _xact_commit(conn, database) - before
    steps = instances * LINEAR_STEPS
    return {
        "instances": instances,
        "steps": steps,
        "elapsed_s": elapsed,
        "steps_per_second": steps / elapsed,
        "worker_statements": statements,
        "statements_per_step": statements / steps,
        "runner_statements": runner_statements,
        "poller_statements": polls,
        "commits": commits,
        "commits_per_step": commits / steps,
        "other_commits": commits - statements - runner_statements - polls,
    }


# ---------------------------------------------------------------------- the run


async def _server() -> str:
    async with await _connect() as conn:
        cursor = await conn.execute("SHOW server_version")
        row = await cursor.fetchone()
        cursor = await conn.execute("SHOW autovacuum")
        autovacuum = await cursor.fetchone()
    info = conninfo_to_dict(DSN)
    where = f"{info.get('host', 'local')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    version = row[0] if row else "?"
    return f"PostgreSQL {version} at {where}, autovacuum {autovacuum[0] if autovacuum else '?'}"


def _target(label: str, value: float | None, goal: float, at_least: bool) -> dict[str, Any]:
    if value is None:
        return {"target": label, "value": None, "goal": goal, "ratio": None, "pass": None}
    ratio = value / goal
    passed = ratio >= 1 if at_least else ratio <= 1
    return {"target": label, "value": value, "goal": goal, "ratio": ratio, "pass": passed}


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    per = result["per_step"]
    io = [result["io"][n]["steps_per_second"] for n in sorted(result["io"], key=int)]
    last = max(result["io"], key=int)
    return [
        _target(">= 2,000 trivial steps/s with one worker",
                result["trivial"]["1"]["steps_per_second"], TARGETS["trivial_1_worker"], True),
        _target("<= 2 round trips (statements) per linear step", per["statements_per_step"],
                TARGETS["statements_per_step"], False),
        _target("<= 1 commit per linear step", per["commits_per_step"],
                TARGETS["commits_per_step"], False),
        _target(">= 10x DBOS on PostgreSQL (distributed, 1 worker)", result["vs_dbos"],
                TARGETS["vs_dbos"], True),
        _target(">= 3,000 steps/s, LocalRunner on PostgresStorage, all in flight",
                result["local_postgres"]["steps_per_second"], TARGETS["local_postgres"], True),
        {
            "target": f"I/O-bound throughput grows with workers (1 to {last})",
            "value": result["io_ratio"][last],
            "goal": None,
            "ratio": result["io_ratio"][last],
            "pass": all(b > a for a, b in itertools.pairwise(io)),
        },
    ]  # fmt: skip


async def run(quick: bool, only: str | None = None) -> dict[str, Any]:
    """Every figure, as a dict (seconds, steps per second, ratios); ``only="spread"``: the maps."""
    if only == "spread":
        return {"quick": quick, "server": await _server(), "spread": await spread(quick)}
    instances = 50 if quick else 1_000
    counted = 50 if quick else 200
    counts = (1, 2) if quick else (1, 2, 4)
    limit = 120.0 if quick else 600.0
    result: dict[str, Any] = {
        "quick": quick,
        "server": await _server(),
        "cpu_count": os.cpu_count(),
        "instances": instances,
        "worker_concurrency": CONCURRENCY,
        "io_step_seconds": IO_SECONDS,
        "steps": "the workflow's own steps (Linear10: 10, IoFlow: 5); Done is not counted",
    }
    result["trivial"] = {
        str(n): await distributed(Linear10, LINEAR_STEPS, n, instances, limit) for n in counts
    }
    result["trivial_unanalyzed"] = await distributed(
        Linear10, LINEAR_STEPS, 1, instances, limit, analyze=False
    )
    result["io"] = {
        str(n): await distributed(IoFlow, IO_STEPS, n, instances, limit) for n in counts
    }
    for kind in ("trivial", "io"):
        one = result[kind]["1"]["steps_per_second"]
        result[f"{kind}_ratio"] = {
            n: figure["steps_per_second"] / one for n, figure in result[kind].items()
        }
    result["local_postgres"] = await local_postgres(instances, limit)
    if quick:
        result["dbos_postgres"] = {"skipped": "not run with --quick"}
    else:
        result["dbos_postgres"] = await dbos_postgres(instances, limit)
    dbos = result["dbos_postgres"].get("steps_per_second")
    result["vs_dbos"] = None if dbos is None else result["trivial"]["1"]["steps_per_second"] / dbos
    result["per_step"] = await per_step(counted, limit)
    result["targets"] = _targets(result)
    result["spread"] = await spread(quick)
    return result


def _row(label: str, figure: dict[str, Any], ratio: str = "", note: str = "") -> str:
    cpu = figure["cpu_s"]
    workers = f"{cpu['workers']:.1f}" if cpu["workers"] else "-"
    starting = f"{figure['starting_s']:.2f}" if "starting_s" in figure else ""
    return (
        f"{label:>8} {figure['elapsed_s']:>9.2f} {starting:>9} "
        f"{figure['steps_per_second']:>8.0f} {ratio:>6}  "
        f"{workers:>5} {cpu['benchmark']:>5.1f} {cpu['postgres']:>5.1f}  {note}"
    ).rstrip()


def _print_spread(figures: dict[str, Any]) -> None:
    print(
        f"\nOne map, one instance at a time (median of {figures['runs']}), its items run by "
        "the driving worker or spread (Step.spread) over the workers"
    )
    print(f"{'items':>28} {'workers':>7} {'driver ms':>10} {'spread ms':>10} {'spread/driver':>14}")
    names = {"trivial": "trivial", "cpu": f"CPU-bound, {figures['cpu_item_seconds'] * 1000:.0f} ms"}
    for kind, name in names.items():
        for workers in (1, 2):
            row = figures[f"{kind}_{workers}"]
            driver, spread_s = row["driver_s"], row["spread_s"]
            label = f"{row['items']} {name}"
            print(
                f"{label:>28} {workers:>7} {driver * 1000:>10.0f} {spread_s * 1000:>10.0f} "
                f"{spread_s / driver:>13.2f}x"
            )


def _print(result: dict[str, Any]) -> None:
    if "trivial" not in result:  # --only spread
        print(f"Distributed runner: {result['server']}")
        _print_spread(result["spread"])
        return
    quick = " (--quick: a smoke run)" if result["quick"] else ""
    print(f"Distributed runner{quick}: {result['server']}, {result['cpu_count']} cores")
    print(
        f"{result['instances']} instances started together per measurement; workers run "
        f"--concurrency {result['worker_concurrency']} (a drive job holds its slot for its "
        f"instance's whole run, so one worker can drive them all at once)"
    )
    print(f"steps/s = instances x steps / (first start to last completion); {result['steps']}")
    print(
        f"tables analyzed after a warm-up of {WARM_UP} instances, as autovacuum would on a "
        "live database; CPU s: "
        "the worker processes (wkrs), this process (runner, poller), PostgreSQL's backends (pg)"
    )
    header = (
        f"{'':>8} {'elapsed s':>9} {'start s':>9} {'steps/s':>8} {'vs 1':>6}  "
        f"{'CPU s':>5} {'':>5} {'':>5}\n"
        f"{'':>8} {'':>9} {'':>9} {'':>8} {'':>6}  {'wkrs':>5} {'this':>5} {'pg':>5}"
    )
    titles = {
        "trivial": "Trivial steps (Linear10: 10 no-op steps), by worker processes",
        "io": f"I/O-bound steps (IoFlow: {IO_STEPS} steps, each awaits "
        f"{result['io_step_seconds'] * 1000:.0f} ms), by worker processes",
    }
    for kind, title in titles.items():
        print(f"\n{title}")
        print(header)
        for n, figure in result[kind].items():
            print(_row(n, figure, f"{result[f'{kind}_ratio'][n]:.2f}x"))
        if kind == "trivial":
            fresh = result["trivial_unanalyzed"]
            ratio = fresh["steps_per_second"] / result["trivial"]["1"]["steps_per_second"]
            note = "<- a fresh schema: 1 warm-up instance, no ANALYZE"
            print(_row("1 fresh", fresh, f"{ratio:.2f}x", note))
    local, dbos = result["local_postgres"], result["dbos_postgres"]
    print("\nLinear10 from one process on the same database")
    print(header)
    print(_row("Local", local, note="<- LocalRunner + PostgresStorage"))
    if "skipped" in dbos:
        print(f"{'DBOS':>8} skipped: {dbos['skipped']}")
    else:
        vs = f"<- DBOS {dbos['instances']} in flight; distributed 1 worker / DBOS = "
        print(_row("DBOS", dbos, note=f"{vs}{result['vs_dbos']:.1f}x"))
    per = result["per_step"]
    print(
        f"\nPer Linear10 step, worker in this process ({per['instances']} instances, "
        f"{per['steps_per_second']:.0f} steps/s, a database of its own):"
    )
    print(
        f"  statements of the worker's pool: {per['statements_per_step']:.2f} "
        f"({per['worker_statements']} / {per['steps']} steps)"
    )
    print(
        f"  commits (xact_commit delta, every connection, read-only ones too): "
        f"{per['commits_per_step']:.2f} ({per['commits']} = worker's pool "
        f"{per['worker_statements']} + runner {per['runner_statements']} + poller "
        f"{per['poller_statements']} + other {per['other_commits']}: the listening "
        f"connections read each NOTIFY in a transaction; shutdown)"
    )
    _print_spread(result["spread"])
    print("\nTargets:")
    for target in result["targets"]:
        if target["pass"] is None:
            print(f"  [n/a ] {target['target']}: not measured")
            continue
        mark = "pass" if target["pass"] else "miss"
        if target["goal"] is None:
            print(f"  [{mark}] {target['target']}: {target['ratio']:.2f}x one worker")
        else:
            print(
                f"  [{mark}] {target['target']}: {target['value']:,.2f} "
                f"({target['ratio']:.3g}x the target)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 instances")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only", choices=["spread"], help="only the maps, spread or not")
    args = parser.parse_args(argv)
    result = anyio.run(run, args.quick, args.only)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
