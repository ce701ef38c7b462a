"""What the command's tests share: databases with an instance in every status, the command.

Each database is built by a real ``LocalRunner`` (``flows.populate``), on
SQLite (a file in a temporary folder) or on PostgreSQL (a schema of its own,
``heph_cli_<uuid8>``, dropped afterwards; skipped when PostgreSQL is
unreachable, failed under ``CI=true``: see ``postgres_dsn``). ``shared``
is built once per backend and only read; ``fresh`` is built for each test
that acts on it; ``sqlite_shared`` and ``fresh_sqlite`` are SQLite's alone,
for what does not depend on the backend.

:func:`hephaestus` runs the command as users run it, in a process of its own,
with ``tests/`` on its ``PYTHONPATH`` (so that ``cli.flows`` imports there
under the name the databases keep), 80 columns and no
``$HEPHAESTUS_DATABASE``. The helpers are plain functions; the test modules
import them from here (``from .conftest import ...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from hephaestus import Instance, SQLiteStorage
from hephaestus.runtime.storage.codec import import_path

from . import flows

if TYPE_CHECKING:
    from hephaestus.runtime.storage.postgres import PostgresStorage

GUARD = 30.0
"""Seconds a command (or any wait of a test) may take before the test fails."""

BACKENDS = ("sqlite", "postgres")

ROOT = Path(__file__).parents[2]
FLOWS = import_path(flows.Approval).partition(":")[0]
"""The name the databases keep the workflows under (``cli.flows``)."""

IMPORTABLE = Path(flows.__file__).parents[FLOWS.count(".")]
"""The folder ``FLOWS`` imports from (``tests/``): one level up from the module's per dot."""


@attrs.frozen
class Db:
    """A test database: a SQLite file's path or a PostgreSQL DSN, and its schema."""

    backend: str
    target: str
    schema: str | None = None

    @property
    def options(self) -> list[str]:
        """The command line options that name it."""
        schema = [] if self.schema is None else ["--schema", self.schema]
        return ["--database", self.target, *schema]

    def storage(self) -> SQLiteStorage | PostgresStorage:
        """A storage on it, for the test itself."""
        if self.schema is None:
            return SQLiteStorage(self.target)
        from hephaestus.runtime.storage.postgres import PostgresStorage

        return PostgresStorage(self.target, schema=self.schema)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: ``FLOWS`` importable, 80 columns, no default database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HEPHAESTUS_DATABASE", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(IMPORTABLE), env.get("PYTHONPATH")) if part
    )
    env["COLUMNS"] = "80"
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


def command(*args: str, db: Db | None = None) -> list[str]:
    """``python -m hephaestus ARGS``, then the options naming ``db``."""
    return [sys.executable, "-m", "hephaestus", *args, *(db.options if db else [])]


def hephaestus(
    *args: str,
    db: Db | None = None,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``hephaestus ARGS --database DB`` in a process of its own; ``input`` is its stdin."""
    return subprocess.run(
        command(*args, db=db),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=child_env(env),
        cwd=ROOT,
        timeout=GUARD,
        check=False,
    )


def succeeds(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that exited 0 (its standard error in the failure otherwise)."""
    assert 0 == result.returncode, result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line of error of a command that exited ``code``, without a traceback."""
    assert code == result.returncode, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert 1 == len(lines), result.stderr
    return lines[0]


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command that exited 0 printed."""
    return json.loads(succeeds(result))


def lines_of(result: subprocess.CompletedProcess[str]) -> list[Any]:
    """The JSON objects, one a line, a command that exited 0 printed (``-o jsonl``)."""
    return [json.loads(line) for line in succeeds(result).splitlines()]


def statuses(db: Db) -> dict[str, str]:
    """The status of each instance ``db`` holds, read by the test itself."""

    async def read() -> list[Instance]:
        async with db.storage() as storage:
            return await storage.query()

    return {instance.id: instance.status.value for instance in anyio.run(read)}


LONG_PATH = "billing.reconciliation.monthly.invoices:ReconcileEveryRegionAndEveryCurrency"
"""A workflow's import path longer than most terminals leave for it (never imported)."""


def store_under_long_path(db: Db, instance_id: str) -> None:
    """Store the instance as one of ``LONG_PATH`` (in SQL: no such module exists).

    The commands that read the workflow column alone (``count``, ``workflows
    list``) show it; it cannot be loaded.
    """
    assert db.schema is None, "a SQLite database"
    with contextlib.closing(sqlite3.connect(db.target)) as conn, conn:
        conn.execute(
            "UPDATE heph_instances SET workflow = ? WHERE id = ?", (LONG_PATH, instance_id)
        )


def widest(text: str) -> int:
    """The length of the longest line of ``text``."""
    return max(len(line) for line in text.splitlines())


# ---------------------------------------------------------------------- databases


def sqlite_database(path: Path) -> Db:
    """A SQLite file at ``path``, populated."""

    async def build() -> None:
        async with SQLiteStorage(path) as storage:
            await flows.populate(storage)

    anyio.run(build)
    return Db("sqlite", str(path))


def fresh_schema() -> str:
    """A PostgreSQL schema name no other test uses."""
    return f"heph_cli_{uuid.uuid4().hex[:8]}"


def postgres_database(dsn: str, schema: str) -> Db:
    """The PostgreSQL schema ``schema`` (one no one uses), populated."""
    from hephaestus.runtime.storage.postgres import PostgresStorage

    async def build() -> None:
        async with PostgresStorage(dsn, schema=schema) as storage:
            await flows.populate(storage)

    anyio.run(build)
    return Db("postgres", dsn, schema)


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def sqlite_shared(tmp_path_factory: pytest.TempPathFactory) -> Db:
    """The SQLite database the reading tests share."""
    return sqlite_database(tmp_path_factory.mktemp("shared") / "hephaestus.db")


@pytest.fixture(scope="session")
def postgres_shared(postgres_dsn: str) -> Iterator[Db]:
    """The PostgreSQL schema the reading tests share, dropped at the end."""
    schema = fresh_schema()
    try:
        yield postgres_database(postgres_dsn, schema)
    finally:
        drop_schema(postgres_dsn, schema)


@pytest.fixture(scope="session", params=BACKENDS)
def shared(request: pytest.FixtureRequest) -> Db:
    """Each backend's database that no test changes: for the commands that read."""
    db: Db = request.getfixturevalue(f"{request.param}_shared")
    return db


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Db:
    """A SQLite database built for this test alone: for what does not depend on the backend."""
    return sqlite_database(tmp_path / "hephaestus.db")


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """Each backend's database, built for this test alone: for the commands that act."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path / "hephaestus.db")
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = fresh_schema()
    try:
        yield postgres_database(dsn, schema)
    finally:
        drop_schema(dsn, schema)
