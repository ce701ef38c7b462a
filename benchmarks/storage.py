"""Scenario ``storage``: ``linear10`` on each Hephaestus storage, and on DBOS over SQLite.

The same latency and throughput as the ``linear10`` scenario (fewer runs:
a durable storage commits after every step), on a fresh store per trial:
``MemoryStorage``; ``SQLiteStorage`` with ``synchronous="normal"`` and
``"full"`` (a new file in the run's temporary folder); ``PostgresStorage``
on a schema of its own, dropped after the trial (skipped with a note when
the server does not answer). With a durable storage every step is stored,
and committed, before the next one starts.

The peer is DBOS on SQLite: a workflow of 10 async ``@DBOS.step()`` steps,
one at a time for the latency, and as many in flight as the throughput
figure of the others (DBOS has no limit of its own on concurrent async
workflows; its steps' database work runs in the default thread pool).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from benchmarks.harness import (
    Config,
    Group,
    Metric,
    Plan,
    Sample,
    Scenario,
    Trial,
    latency,
    throughput,
)
from benchmarks.systems import LINEAR10, NOT_INSTALLED, Session, System, heph

MEMORY = "Hephaestus memory"
SQLITE_NORMAL = "Hephaestus SQLite normal"
SQLITE_FULL = "Hephaestus SQLite full"
POSTGRES = "Hephaestus PostgreSQL"
DBOS = "DBOS SQLite"

METRICS = {
    "linear10 latency median": Metric("linear10 latency median", "µs", "lower"),
    "linear10 latency p99": Metric("linear10 latency p99", "µs", "lower"),
    "linear10 throughput": Metric("linear10 throughput", "wf/s", "higher"),
}

Backend = Callable[[], AbstractAsyncContextManager[Session]]


def latency_runs(config: Config) -> int:
    """Workflows timed one at a time per trial."""
    return 10 if config.quick else 200


def in_flight(config: Config) -> int:
    """Workflows started together per throughput trial."""
    return 50 if config.quick else 1_000


def _unlink_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _memory() -> AbstractAsyncContextManager[Session]:
    return heph.session()


def _sqlite(workdir: Path, synchronous: str) -> Backend:
    @asynccontextmanager
    async def backend() -> AsyncIterator[Session]:
        from hephaestus import SQLiteStorage

        path = workdir / f"heph-{uuid.uuid4().hex[:8]}.db"
        try:
            async with heph.session(storage=SQLiteStorage(path, synchronous=synchronous)) as s:
                yield s
        finally:
            _unlink_sqlite(path)

    return backend


def _postgres(dsn: str) -> Backend:
    @asynccontextmanager
    async def backend() -> AsyncIterator[Session]:
        import psycopg
        from psycopg import sql

        from hephaestus import PostgresStorage

        schema = f"heph_bench_{uuid.uuid4().hex[:8]}"
        try:
            async with heph.session(storage=PostgresStorage(dsn, schema=schema)) as s:
                yield s
        finally:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

    return backend


def _dbos(workdir: Path) -> Backend:
    @asynccontextmanager
    async def backend() -> AsyncIterator[Session]:
        from benchmarks.systems import dbos_peer

        path = workdir / f"dbos-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            async with dbos_peer.session(path) as s:
                yield s
        finally:
            _unlink_sqlite(path)

    return backend


def postgres_problem(dsn: str | None) -> str | None:
    """Why PostgreSQL cannot be used at ``dsn``, or None (then it answered)."""
    if not dsn:
        return "no DSN given (--postgres none)"
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        return f"unreachable at {dsn!r}: {lines[0] if lines else type(exc).__name__}"
    return None


def backends(config: Config) -> tuple[list[tuple[str, Backend]], list[str]]:
    """The storages (and DBOS) this run can measure, and a note for each skipped."""
    found: list[tuple[str, Backend]] = [
        (MEMORY, _memory),
        (SQLITE_NORMAL, _sqlite(config.workdir, "normal")),
        (SQLITE_FULL, _sqlite(config.workdir, "full")),
    ]
    notes: list[str] = []
    problem = postgres_problem(config.postgres_dsn)
    if problem is None:
        assert config.postgres_dsn is not None
        found.append((POSTGRES, _postgres(config.postgres_dsn)))
    else:
        notes.append(f"{POSTGRES} skipped: {problem}")
    missing = System(DBOS, "dbos_peer", requires=("dbos",)).missing()
    if missing is None:
        found.append((DBOS, _dbos(config.workdir)))
    else:
        notes.append(f"{DBOS} skipped: {NOT_INSTALLED.format(missing)}")
    return found, notes


def latency_trial(name: str, backend: Backend, runs: int) -> Trial:
    """Median and p99 latency of ``linear10`` on one backend."""

    async def run() -> list[Sample]:
        async with backend() as session:
            median, p99 = await latency(session.linear10, LINEAR10, runs, warmup=max(3, runs // 20))
        return [
            Sample("linear10 latency median", name, median),
            Sample("linear10 latency p99", name, p99),
        ]

    return Trial(name, run)


def throughput_trial(name: str, backend: Backend, count: int) -> Trial:
    """Workflows per second of ``linear10`` on one backend, ``count`` in flight."""

    async def run() -> list[Sample]:
        async with backend() as session:
            rate = await throughput(session.linear10, LINEAR10, count, warmup=3)
        return [Sample("linear10 throughput", name, rate)]

    return Trial(name, run)


def plan(config: Config) -> Plan:
    """Latency and throughput on every reachable backend."""
    found, notes = backends(config)
    runs, count = latency_runs(config), in_flight(config)
    return Plan(
        [
            Group(
                "storage",
                "storage latency",
                [latency_trial(name, backend, runs) for name, backend in found],
            ),
            Group(
                "storage",
                "storage throughput",
                [throughput_trial(name, backend, count) for name, backend in found],
            ),
        ],
        notes,
    )


SCENARIO = Scenario(
    name="storage",
    summary="linear10 on each storage (ratios to memory) and on DBOS over SQLite",
    metrics=METRICS,
    floors=(MEMORY,),
    peers=(DBOS,),
    plan=plan,
)
