"""What the crash tests and their child processes share.

The test side: the child's environment, its log, a poll of its progress, and
the stored states read straight from SQLite or PostgreSQL. The child side:
the storage named on its command line, and the recovery phase.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from hephaestus import LocalRunner, SQLiteStorage, Status
from hephaestus.runtime.storage.base import Storage

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# ---------------------------------------------------------------- the test side


def child_env(log: Path, **variables: str) -> dict[str, str]:
    """The environment of a child: its log file, ``variables``, and these modules importable."""
    env = {**os.environ, "HEPHAESTUS_CRASH_LOG": str(log), **variables}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def log_lines(log: Path) -> list[list[str]]:
    """The log's lines, split on spaces."""
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines()]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll another process's progress (a file) until ``condition`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def sqlite_states(database: Path) -> Callable[[], list[dict[str, Any]]]:
    """A reader of the instances stored in a SQLite file, as JSON data."""

    def states() -> list[dict[str, Any]]:
        with sqlite3.connect(database) as conn:
            rows = conn.execute("SELECT state FROM heph_instances").fetchall()
        return [json.loads(state) for (state,) in rows]

    return states


def postgres_states(dsn: str, schema: str) -> Callable[[], list[dict[str, Any]]]:
    """A reader of the instances stored in a PostgreSQL schema, as JSON data."""
    import psycopg

    def states() -> list[dict[str, Any]]:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(f'SELECT state FROM "{schema}".heph_instances').fetchall()
        return [state for (state,) in rows]

    return states


# ---------------------------------------------------------------- the child side


def storage_of(kind: str, target: str) -> Storage:
    """``sqlite <path>`` or ``postgres <dsn>#<schema>``."""
    if kind == "sqlite":
        return SQLiteStorage(target)
    from hephaestus.runtime.storage.postgres import PostgresStorage

    dsn, _, schema = target.partition("#")
    return PostgresStorage(dsn, schema=schema)


async def recover(storage: Storage) -> None:
    """Enter a runner on ``storage`` and return once every unfinished instance has ended."""
    active = (Status.PENDING, Status.RUNNING, Status.WAITING)
    async with LocalRunner(storage) as runner:
        ids = [instance.id for instance in await storage.query(status_in=active)]
        print(f"recovering {len(ids)}", flush=True)
        with anyio.fail_after(60):
            for instance_id in ids:
                await runner.wait(instance_id)
