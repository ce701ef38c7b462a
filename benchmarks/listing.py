"""Listing and counting a million instances: ``python -m benchmarks.listing``.

Builds a SQLite file and a PostgreSQL schema of ``--count`` instances
(1,000,000 by default) straight in SQL (one ``INSERT ... SELECT``: 60% completed,
20% failed, 10% waiting, 10% running, over four workflows, started a second
apart), migrated by the storages themselves, then times, on each:

- ``page(limit=20)``: the 20 newest instances, loaded (``instances list --limit 20``);
- ``page(limit=20, status_in=["waiting"])`` and the next page through its cursor;
- ``count()``: instances by status and workflow (``instances count``);
- the commands themselves, ``hephaestus instances list --limit 20`` and
  ``hephaestus instances count``, each a process of its own, end to end,
  beside the floor of any such command: a process that imports the command
  line and exits (the commands' own work is the difference).

Each figure is the median of ``--repeats`` calls (after one untimed call),
in milliseconds. ``--postgres DSN`` (default ``$HEPHAESTUS_TEST_DSN``, else the
local ``test`` database; ``none`` skips it); ``--keep`` keeps the database
and the schema. The target: each under 100 ms on a million instances.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hephaestus import Context, Instance, PostgresStorage, SQLiteStorage, Status
from hephaestus.runtime.storage import codec

TARGET_MS = 100.0
WORKFLOWS = ("Checkout", "Refund", "Onboarding", "Report")
"""The workflow column's values: import paths of the benchmark's own (never imported)."""

# The state of every row: one template instance; its id is replaced per row.
_TEMPLATE_ID = "TEMPLATEID"


def _template() -> str:
    from benchmarks.systems.heph import Linear10

    instance = Instance(
        _TEMPLATE_ID,
        Linear10,
        1,
        Status.COMPLETED,
        Context({"order": 1, "items": ["book", "pen"]}),
        started_at=time.time_ns(),
    )
    return codec.dumps(instance)


def _status(n: str, mod: str = "%") -> str:
    """SQL: a status from a row number, 60/20/10/10 (``mod``: the modulo operator as written)."""
    return (
        f"CASE WHEN {n} {mod} 10 < 6 THEN 'completed' WHEN {n} {mod} 10 < 8 THEN 'failed'"
        f" WHEN {n} {mod} 10 = 8 THEN 'waiting' ELSE 'running' END"
    )


def _workflow(n: str) -> str:
    """PostgreSQL: a workflow from a row number, in turn."""
    names = ", ".join(f"'benchmarks.listing:{name}'" for name in WORKFLOWS)
    return f"(ARRAY[{names}])[({n} %% 4) + 1]"


async def build_sqlite(path: Path, count: int) -> None:
    async with SQLiteStorage(path, synchronous="normal") as storage:
        await storage.count()  # creates and migrates the file
    template = _template()
    start = time.time() - count
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TEMP TABLE names (k INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany(
            "INSERT INTO names VALUES (?, ?)",
            [(k, f"benchmarks.listing:{name}") for k, name in enumerate(WORKFLOWS)],
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
            " INSERT INTO heph_instances"
            " (id, workflow, workflow_version, status, state, created_at, updated_at)"
            " SELECT printf('inst-%07d', i), (SELECT name FROM names WHERE k = i % 4), 1,"
            f" {_status('i')}, replace(?, '\"{_TEMPLATE_ID}\"', printf('\"inst-%07d\"', i)),"
            " ? + i, ? + i FROM n",
            (count, template, start, start),
        )
        conn.execute("ANALYZE")


def build_postgres(dsn: str, schema: str, count: int) -> None:
    import psycopg

    async def migrate() -> None:
        async with PostgresStorage(dsn, schema=schema) as storage:
            await storage.count()

    asyncio.run(migrate())
    template = _template()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".heph_instances'
            " (id, workflow, workflow_version, status, state, created_at, updated_at)"
            " SELECT 'inst-' || lpad(i::text, 7, '0'), "
            + _workflow("i")
            + ", 1, "
            + _status("i", "%%")
            + ", replace(%s, '\""
            + _TEMPLATE_ID
            + "\"',"
            " '\"inst-' || lpad(i::text, 7, '0') || '\"')::jsonb,"
            " now() - make_interval(secs => %s - i), now() - make_interval(secs => %s - i)"
            " FROM generate_series(0, %s - 1) AS i",
            (template, count, count, count),
        )
        conn.execute(f'VACUUM ANALYZE "{schema}".heph_instances')


async def measure(call: Callable[[], Awaitable[Any]], repeats: int) -> float:
    """The median milliseconds of ``call`` over ``repeats`` calls, after one untimed call."""
    await call()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        await call()
        times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


async def figures(storage: Any, repeats: int) -> dict[str, float]:
    first = await storage.page(limit=20, status_in=["waiting"])
    assert len(first.instances) == 20
    assert first.next is not None
    return {
        "page(limit=20)": await measure(lambda: storage.page(limit=20), repeats),
        "page(limit=20, status_in=[waiting])": await measure(
            lambda: storage.page(limit=20, status_in=["waiting"]), repeats
        ),
        "next page (cursor)": await measure(
            lambda: storage.page(limit=20, status_in=["waiting"], after=first.next), repeats
        ),
        "count()": await measure(storage.count, repeats),
    }


def commands(database: str, schema: str, repeats: int) -> dict[str, float]:
    """Median ms of the commands as processes, and of the process floor (import, exit)."""

    def run(*args: str) -> float:
        times = []
        for _ in range(repeats + 1):
            begin = time.perf_counter()
            subprocess.run([sys.executable, *args], check=True, capture_output=True)
            times.append((time.perf_counter() - begin) * 1000)
        return statistics.median(times[1:])

    cli = ("-m", "hephaestus", "instances")
    where = ("--database", database, "--schema", schema, "-o", "json")
    return {
        "floor: python -c 'import hephaestus.cli'": run("-c", "import hephaestus.cli"),
        "hephaestus instances list --limit 20": run(*cli, "list", "--limit", "20", *where),
        "hephaestus instances count": run(*cli, "count", *where),
    }


def report(name: str, count: int, found: dict[str, float]) -> None:
    print(f"{name}, {count:,} instances (median ms; target < {TARGET_MS:.0f} ms):")
    for label, ms in found.items():
        if label.startswith(("floor", "hephaestus ")):  # a process: no target of its own
            print(f"         {label:<40} {ms:8.2f} ms")
            continue
        mark = "ok    " if ms < TARGET_MS else "MISSED"
        print(f"  {mark} {label:<40} {ms:8.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HEPHAESTUS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "million.db"
        begin = time.perf_counter()
        asyncio.run(build_sqlite(path, args.count))
        print(f"(SQLite file built in {time.perf_counter() - begin:.1f} s)")

        async def on_sqlite() -> dict[str, float]:
            async with SQLiteStorage(path) as storage:
                return await figures(storage, args.repeats)

        found = asyncio.run(on_sqlite())
        found.update(commands(str(path), "hephaestus", args.repeats))
        report("SQLite", args.count, found)
        if args.keep:
            kept = Path.cwd() / "million.db"
            kept.write_bytes(path.read_bytes())
            print(f"kept {kept}")

    if args.postgres == "none":
        return
    import psycopg

    schema = f"heph_listing_{uuid.uuid4().hex[:8]}"
    try:
        begin = time.perf_counter()
        build_postgres(args.postgres, schema, args.count)
        print(f"(PostgreSQL schema {schema} built in {time.perf_counter() - begin:.1f} s)")

        async def on_postgres() -> dict[str, float]:
            async with PostgresStorage(args.postgres, schema=schema) as storage:
                return await figures(storage, args.repeats)

        found = asyncio.run(on_postgres())
        found.update(commands(args.postgres, schema, args.repeats))
        report("PostgreSQL", args.count, found)
    finally:
        if not args.keep:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
