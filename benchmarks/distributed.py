"""The distributed runner's benchmark: ``python -m benchmarks.distributed [--quick] [--json PATH]``.

Every figure comes from one run against the machine's PostgreSQL
(``HEPHAESTUS_TEST_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``),
each measurement on a fresh schema (``heph_bench_<uuid8>``) dropped afterwards:

1. **trivial steps/s**: ``Linear10`` (ten no-op steps) with 1, 2 and 4 worker
   processes (``python -m hephaestus worker --concurrency 1000``);
2. **I/O-bound steps/s**: ``IoFlow`` (five steps, each awaiting 20 ms) with 1,
   2 and 4 worker processes, and the ratio to one worker;
3. **LocalRunner on PostgresStorage**: ``Linear10`` in this process, the same
   database, a group-committed put per step;
4. **DBOS on the same PostgreSQL**: the peer's workflow of ten async
   ``@DBOS.step()`` steps (``benchmarks.systems.dbos_peer``), its system
   tables in a schema of their own, dropped afterwards;
5. **statements and commits per step**: ``Linear10`` on a worker running in
   this process, whose pool counts every ``execute`` (procrastinate's
   included), and the ``xact_commit`` delta of the database over the run.

Each throughput measurement starts ``instances`` instances together (1,000;
50 with ``--quick``) and runs the clock from the first start to the moment a
``SELECT count(*) ... WHERE status = 'completed'``, polled every 20 ms on a
connection of its own, sees them all (the LocalRunner: until ``wait`` returned
for each). Steps per second count the workflow's own steps (10 for
``Linear10``, 5 for ``IoFlow``); ``Done`` is not a step.

Workers run with ``--concurrency 1000``: a drive job holds its slot for its
instance's whole run (the steps run inside it), so a worker's concurrency is
the number of instances it drives at once, and 1,000 lets one worker hold
every instance of a measurement in flight (with 16 the 1-worker figure would
measure 16 instances at a time). ``--quick`` is a smoke run: 50 instances,
1 and 2 workers, no DBOS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from benchmarks.distributed_flows import IO_SECONDS, IO_STEPS, LINEAR_STEPS, IoFlow, Linear10
from hephaestus import LocalRunner
from hephaestus.core.workflow import Workflow
from hephaestus.distributed import DistributedRunner, Worker
from hephaestus.runtime.storage.postgres import PostgresStorage

DSN = os.environ.get("HEPHAESTUS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 1000
"""``--concurrency`` of each worker: instances it drives at once (a job per instance)."""
POLL = 0.02
"""Seconds between two counts of the completed instances."""
POOL_SIZE = 10
"""Connections of the in-process worker's pool (``Worker``'s default ``max_pool_size``)."""

TARGETS = {
    "trivial_1_worker": 2_000.0,  # steps/s, at least
    "statements_per_step": 2.0,  # at most
    "commits_per_step": 1.0,  # at most
    "vs_dbos": 10.0,  # distributed (1 worker) / DBOS, at least
    "local_postgres": 3_000.0,  # steps/s, at least
}

Conn = psycopg.AsyncConnection[Any]


# ---------------------------------------------------------------------- helpers


def _schema_name(prefix: str = "heph_bench") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _drop(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@asynccontextmanager
async def _fresh_schema() -> AsyncIterator[str]:
    """A new schema name; the schema (if anything made it) is dropped on leaving."""
    schema = _schema_name()
    try:
        yield schema
    finally:
        with anyio.CancelScope(shield=True):
            await _drop(schema)


class _Completed:
    """Counts the schema's ended instances: one statement on a connection of its own."""

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

    async def until(self, target: int, timeout: float) -> None:
        """Return once ``target`` instances have completed (polled every ``POLL`` seconds)."""
        seen = 0
        try:
            with anyio.fail_after(timeout):
                while (seen := await self.count()) < target:
                    await anyio.sleep(POLL)
        except TimeoutError:
            raise TimeoutError(f"{seen} of {target} instances completed after {timeout} s") from None


async def _start_all(start: Callable[[], Awaitable[str]], instances: int) -> list[str]:
    """Start ``instances`` instances together (each start a task); their ids."""
    ids: list[str] = []

    async def one() -> None:
        ids.append(await start())

    async with anyio.create_task_group() as tg:
        for _ in range(instances):
            tg.start_soon(one)
    return ids


# ---------------------------------------------------------------------- worker processes


class _Workers:
    """``count`` worker processes (``python -m hephaestus worker``), stderr kept in a file."""

    def __init__(self, count: int, schema: str) -> None:
        self.count = count
        self.schema = schema
        self.children: list[subprocess.Popen[bytes]] = []
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()

    def spawn(self) -> None:
        command = [
            sys.executable, "-m", "hephaestus", "worker", "--dsn", DSN, "--schema", self.schema,
            "--concurrency", str(CONCURRENCY), "--import", "benchmarks.distributed_flows",
        ]  # fmt: skip
        for _ in range(self.count):
            self.children.append(
                subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log
                )
            )

    def stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def check(self) -> None:
        for child in self.children:
            if child.poll() is not None:
                raise RuntimeError(
                    f"a worker exited with {child.returncode}; its stderr:\n{self.stderr()}"
                )

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
    """Wait until ``workers`` procrastinate workers have registered in the schema."""
    query = sql.SQL("SELECT count(*) FROM {}.procrastinate_workers").format(sql.Identifier(schema))
    with anyio.fail_after(60):
        while True:
            check()
            cursor = await conn.execute(query)
            row = await cursor.fetchone()
            if row is not None and row[0] >= workers:
                return
            await anyio.sleep(0.05)


async def _warm_up(runner: DistributedRunner, done: _Completed, workers: int) -> int:
    """One ``Linear10`` per worker, to completion: imports, plans and caches are warm."""
    await _start_all(lambda: runner.start(Linear10, {}), workers)
    await done.until(workers, 60)
    return workers


# ---------------------------------------------------------------------- the measurements


async def distributed(
    workflow: type[Workflow], steps: int, workers: int, instances: int, timeout: float
) -> dict[str, Any]:
    """``instances`` instances of ``workflow`` started together on ``workers`` processes."""
    async with _fresh_schema() as schema:
        async with DistributedRunner(DSN, schema=schema) as runner:
            children = _Workers(workers, schema)
            try:
                children.spawn()
                async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
                    done = _Completed(conn, schema)
                    await _registered(conn, schema, workers, children.check)
                    warm = await _warm_up(runner, done, workers)
                    t0 = time.perf_counter()
                    await _start_all(lambda: runner.start(workflow, {}), instances)
                    started = time.perf_counter() - t0
                    await done.until(warm + instances, timeout)
                    elapsed = time.perf_counter() - t0
                    children.check()
            finally:
                children.stop()
    return {
        "workers": workers,
        "instances": instances,
        "elapsed_s": elapsed,
        "starting_s": started,
        "steps_per_second": instances * steps / elapsed,
    }


async def local_postgres(instances: int, timeout: float) -> dict[str, Any]:
    """``Linear10`` on a ``LocalRunner`` over ``PostgresStorage``: all started, then waited for."""
    async with (
        _fresh_schema() as schema,
        PostgresStorage(DSN, schema=schema) as storage,
        LocalRunner(storage) as runner,
    ):
        await runner.run(Linear10, {})  # warm-up
        t0 = time.perf_counter()
        ids = await _start_all(lambda: runner.start(Linear10, {}), instances)
        started = time.perf_counter() - t0
        with anyio.fail_after(timeout):
            ended = [await runner.wait(iid) for iid in ids]
        elapsed = time.perf_counter() - t0
    failed = [i.status.value for i in ended if i.status.value != "completed"]
    if failed:
        raise RuntimeError(f"LocalRunner: {len(failed)} instance(s) did not complete: {failed[:3]}")
    return {
        "instances": instances,
        "elapsed_s": elapsed,
        "starting_s": started,
        "steps_per_second": instances * LINEAR_STEPS / elapsed,
    }


async def dbos_postgres(instances: int, timeout: float) -> dict[str, Any]:
    """DBOS's ten-step workflow, ``instances`` at once, its system tables in a fresh schema.

    ``{"skipped": why}`` when DBOS is not installed or cannot run here.
    """
    try:
        from dbos import DBOS, DBOSConfig  # noqa: PLC0415  # an optional peer

        from benchmarks.systems import dbos_peer  # noqa: PLC0415
    except ImportError as exc:
        return {"skipped": f"DBOS is not installed ({exc}): pip install -e '.[bench]'"}
    schema = _schema_name("dbos_bench")
    config: DBOSConfig = {
        "name": "hephaestus-bench",
        "system_database_url": DSN,
        "dbos_system_schema": schema,
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()
    previous = getattr(loop, "_default_executor", None)  # DBOS replaces it (dbos_peer's note)
    try:
        try:
            DBOS(config=config)
            DBOS.launch()
            await dbos_peer.linear10()  # warm-up
            t0 = time.perf_counter()
            with anyio.fail_after(timeout):
                results = await asyncio.gather(
                    *(dbos_peer.linear10() for _ in range(instances))
                )
            elapsed = time.perf_counter() - t0
        finally:
            DBOS.destroy()
            loop.set_default_executor(previous or ThreadPoolExecutor())
    except Exception as exc:  # noqa: BLE001  # the reason is the figure
        return {"skipped": f"DBOS could not run on PostgreSQL: {type(exc).__name__}: {exc}"}
    finally:
        with anyio.CancelScope(shield=True):
            await _drop(schema)
    if any(result != LINEAR_STEPS for result in results):
        return {"skipped": f"DBOS's workflows returned {sorted(set(results))}, not 10"}
    return {
        "instances": instances,
        "elapsed_s": elapsed,
        "steps_per_second": instances * LINEAR_STEPS / elapsed,
        "system_database": f"{DSN} (schema {schema}, dropped)",
        "sys_db_pool_size": 20,  # DBOS's default, kept
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

    async def configure(conn: Conn) -> None:
        await conn.set_autocommit(True)
        conn.cursor_factory = cursor

    return AsyncConnectionPool(
        conninfo,
        open=False,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs={"options": f"-c search_path={schema}"},
        configure=configure,
        name=f"hephaestus-bench:{schema}",
    )


async def _counters(conn: Conn) -> tuple[int, int]:
    """The database's ``xact_commit`` and the next transaction id of the cluster.

    ``xact_commit`` counts every transaction that committed, read-only ones
    too; the next xid grows by one for each transaction that wrote.
    """
    cursor = await conn.execute(
        "SELECT xact_commit, pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _flush_stats(pool: AsyncConnectionPool[Conn]) -> None:
    """Make every connection of ``pool`` report its pending statistics.

    A backend reports its counts (``xact_commit``) when it goes idle, at most
    once a second: after a second's pause, one statement on each connection
    reports what they did before (the warm-up), so the baseline holds it.
    """
    async with AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(pool.connection()) for _ in range(POOL_SIZE)]
        for conn in conns:
            await conn.execute("SELECT 1")


async def _gone(conn: Conn, application: str) -> None:
    """Wait until no backend of ``application`` is left: all reported their statistics."""
    with anyio.move_on_after(10):
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application,),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] == 0:
                return
            await anyio.sleep(0.05)


async def per_step(instances: int, timeout: float) -> dict[str, Any]:
    """Statements and commits per ``Linear10`` step, with the worker in this process.

    Statements: every ``execute`` of the worker's pool (procrastinate's
    fetches and finishes, the claims, the puts, the periodic polling) from the
    first start to the last completion. Commits: the database's
    ``xact_commit`` delta from just before the first start to after every
    connection of the run has closed (so each has reported its counts),
    which counts every connection and read-only transactions too: the
    runner's starts, this poller's counts, the worker's shutdown, and the
    transaction in which each listening connection (procrastinate's, the
    worker's inbox) reads the NOTIFYs it is signalled for. Write
    transactions: the transaction ids assigned meanwhile (cluster-wide).
    """
    application = _schema_name("heph_bench_counted")
    conninfo = psycopg.conninfo.make_conninfo(DSN, application_name=application)
    worker_count, runner_count = _Counter(), _Counter()
    async with _fresh_schema() as schema:
        worker_pool = _counting_pool(conninfo, schema, worker_count)
        runner_pool = _counting_pool(conninfo, schema, runner_count)
        await worker_pool.open()
        await runner_pool.open()
        try:
            async with (
                DistributedRunner(pool=runner_pool, schema=schema) as runner,
                Worker(pool=worker_pool, schema=schema, concurrency=CONCURRENCY),
                await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn,
            ):
                done = _Completed(conn, schema)
                await _registered(conn, schema, 1, lambda: None)
                warm = await _warm_up(runner, done, 1)
                await anyio.sleep(1.1)
                await _flush_stats(worker_pool)
                await _flush_stats(runner_pool)
                worker_count.statements = runner_count.statements = 0
                before = await _counters(conn)
                polls = done.polls
                t0 = time.perf_counter()
                await _start_all(lambda: runner.start(Linear10, {}), instances)
                await done.until(warm + instances, timeout)
                elapsed = time.perf_counter() - t0
                statements = worker_count.statements
                runner_statements = runner_count.statements
                polls = done.polls - polls + 1  # the baseline's own read commits after it
        finally:
            await runner_pool.close()
            await worker_pool.close()
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            await _gone(conn, application)
            after = await _counters(conn)
    commits, writes = after[0] - before[0], after[1] - before[1]
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
        "write_transactions": writes,
        "write_transactions_per_step": writes / steps,
    }


# ---------------------------------------------------------------------- the run


async def _server() -> str:
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        cursor = await conn.execute("SHOW server_version")
        row = await cursor.fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _target(label: str, value: float | None, goal: float, at_least: bool) -> dict[str, Any]:
    if value is None:
        return {"target": label, "value": None, "goal": goal, "ratio": None, "pass": None}
    ratio = value / goal
    return {
        "target": label,
        "value": value,
        "goal": goal,
        "ratio": ratio,
        "pass": ratio >= 1 if at_least else ratio <= 1,
    }


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    trivial = result["trivial"]["1"]["steps_per_second"]
    per = result["per_step"]
    io = [result["io"][n]["steps_per_second"] for n in sorted(result["io"], key=int)]
    growing = all(b > a for a, b in zip(io, io[1:], strict=False))
    last = max(result["io"], key=int)
    targets = [
        _target(">= 2,000 trivial steps/s with one worker", trivial, TARGETS["trivial_1_worker"], True),
        _target("<= 2 statements (round trips) per linear step", per["statements_per_step"],
                TARGETS["statements_per_step"], False),
        _target("<= 1 commit per linear step", per["commits_per_step"],
                TARGETS["commits_per_step"], False),
        _target(">= 10x DBOS on PostgreSQL (distributed, 1 worker)", result["vs_dbos"],
                TARGETS["vs_dbos"], True),
        _target(">= 3,000 steps/s, LocalRunner on PostgresStorage, 1,000 in flight",
                result["local_postgres"]["steps_per_second"], TARGETS["local_postgres"], True),
    ]  # fmt: skip
    targets.append(
        {
            "target": f"I/O-bound throughput grows with workers (1 to {last})",
            "value": result["io_ratio"][last],
            "goal": None,
            "ratio": result["io_ratio"][last],
            "pass": growing,
        }
    )
    return targets


async def run(quick: bool) -> dict[str, Any]:
    """Every figure, as a dict (seconds, steps per second, ratios)."""
    instances = 50 if quick else 1_000
    counted = 50 if quick else 200
    counts = (1, 2) if quick else (1, 2, 4)
    timeout = 120.0 if quick else 600.0
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
        str(n): await distributed(Linear10, LINEAR_STEPS, n, instances, timeout) for n in counts
    }
    result["io"] = {
        str(n): await distributed(IoFlow, IO_STEPS, n, instances, timeout) for n in counts
    }
    for kind in ("trivial", "io"):
        one = result[kind]["1"]["steps_per_second"]
        result[f"{kind}_ratio"] = {
            n: figure["steps_per_second"] / one for n, figure in result[kind].items()
        }
    result["local_postgres"] = await local_postgres(instances, timeout)
    if quick:
        result["dbos_postgres"] = {"skipped": "not run with --quick"}
    else:
        result["dbos_postgres"] = await dbos_postgres(instances, timeout)
    dbos = result["dbos_postgres"].get("steps_per_second")
    result["vs_dbos"] = None if dbos is None else result["trivial"]["1"]["steps_per_second"] / dbos
    result["per_step"] = await per_step(counted, timeout)
    result["targets"] = _targets(result)
    return result


def _print(result: dict[str, Any]) -> None:
    quick = " (--quick: a smoke run)" if result["quick"] else ""
    print(f"Distributed runner{quick}: {result['server']}, {result['cpu_count']} cores")
    print(
        f"{result['instances']} instances started together per measurement; workers run "
        f"--concurrency {result['worker_concurrency']} (a drive job holds its slot for its "
        f"instance's whole run: one worker can drive them all at once)"
    )
    print(f"steps/s = instances x steps / (first start to last completion); {result['steps']}")
    titles = {
        "trivial": "Trivial steps (Linear10: 10 no-op steps)",
        "io": f"I/O-bound steps (IoFlow: {IO_STEPS} steps, each awaits "
        f"{result['io_step_seconds'] * 1000:.0f} ms)",
    }
    for kind, title in titles.items():
        print(f"\n{title}")
        print(f"{'workers':>8} {'elapsed s':>10} {'starting s':>11} {'steps/s':>9} {'vs 1':>7}")
        for n, figure in result[kind].items():
            print(
                f"{n:>8} {figure['elapsed_s']:>10.2f} {figure['starting_s']:>11.2f} "
                f"{figure['steps_per_second']:>9.0f} {result[f'{kind}_ratio'][n]:>6.2f}x"
            )
    local, dbos = result["local_postgres"], result["dbos_postgres"]
    print("\nSame database, one process, Linear10")
    print(f"  LocalRunner + PostgresStorage: {local['steps_per_second']:>7.0f} steps/s "
          f"({local['elapsed_s']:.2f} s)")  # fmt: skip
    if "skipped" in dbos:
        print(f"  DBOS on PostgreSQL: skipped: {dbos['skipped']}")
    else:
        print(f"  DBOS on PostgreSQL:            {dbos['steps_per_second']:>7.0f} steps/s "
              f"({dbos['elapsed_s']:.2f} s); distributed 1 worker / DBOS = "
              f"{result['vs_dbos']:.1f}x")  # fmt: skip
    per = result["per_step"]
    print(
        f"\nPer Linear10 step, worker in this process ({per['instances']} instances, "
        f"{per['steps_per_second']:.0f} steps/s):"
    )
    print(
        f"  statements of the worker's pool: {per['statements_per_step']:.2f} "
        f"({per['worker_statements']} / {per['steps']} steps)"
    )
    print(
        f"  commits (xact_commit delta, every connection, read-only ones too): "
        f"{per['commits_per_step']:.2f} ({per['commits']} = worker's pool "
        f"{per['worker_statements']} + runner {per['runner_statements']} + poller "
        f"{per['poller_statements']} + other {per['other_commits']}: mostly the listening "
        f"connections, which read each NOTIFY in a transaction)"
    )
    print(
        f"  write transactions (transaction ids assigned): "
        f"{per['write_transactions_per_step']:.2f} ({per['write_transactions']})"
    )
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
                f"({target['ratio']:.2f}x the target)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 instances")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = anyio.run(run, args.quick)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
