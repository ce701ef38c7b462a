"""A database named on the command line: its storage, to read, and its runner, to act.

``--database`` is a SQLite file's path or a PostgreSQL DSN (a
``postgresql://`` URL or a ``key=value`` connection string); ``--schema``
names the PostgreSQL schema. Reading opens the storage alone: it is safe
while a runner drives the instances. Acting goes through a runner's API:

- on a PostgreSQL schema of the distributed runner (it holds procrastinate's
  tables), a :class:`~hephaestus.distributed.DistributedRunner`, from any
  process, as the application itself would;
- otherwise a :class:`~hephaestus.runtime.steering.SteeringRunner`, which
  takes the storage's hold: refused (``StorageHeld``, naming the holder)
  while a ``LocalRunner`` drives the storage, since only that runner may
  change its instances.

Opening never creates anything: a file that does not exist, a file or a
schema without Hephaestus's tables is refused (``NoDatabase``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from hephaestus.exceptions import HephaestusError
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.steering import SteeringRunner
from hephaestus.runtime.storage.base import Storage
from hephaestus.runtime.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from hephaestus.runtime.runner import Runner

__all__ = ["ENV", "Database", "NoDatabase", "acting", "delivery", "follows", "reading"]

ENV: Final = "HEPHAESTUS_DATABASE"
"""The environment variable read when ``--database`` is not given."""

CONNECT_TIMEOUT: Final = 5
"""Seconds a PostgreSQL server has to answer before the command gives up."""


class NoDatabase(HephaestusError, LookupError):
    """The database named is not there: no such file, no server answering, no tables."""


@attrs.frozen
class Database:
    """A database as named: ``target`` is a SQLite path or a PostgreSQL DSN."""

    target: str
    schema: str = "hephaestus"

    @property
    def is_postgres(self) -> bool:
        """Whether ``target`` is a PostgreSQL DSN rather than a SQLite path."""
        text = self.target.strip()
        return text.startswith(("postgresql://", "postgres://")) or (
            "=" in text and not os.path.exists(text)
        )

    def __str__(self) -> str:
        if not self.is_postgres:
            return self.target
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415  # the postgres extra

        try:
            info = conninfo_to_dict(self.target)
        except Exception:
            return "a PostgreSQL database"
        shown = " ".join(f"{k}={info[k]}" for k in ("host", "port", "dbname") if k in info)
        return f"PostgreSQL {shown or 'libpq defaults'} schema={self.schema}"


@contextlib.asynccontextmanager
async def reading(database: Database) -> AsyncIterator[Storage]:
    """The database's storage, open; ``NoDatabase`` when there is nothing to read."""
    if database.is_postgres:
        await _probe(database)
    async with _opened(database) as storage:
        yield storage


@contextlib.asynccontextmanager
async def _opened(database: Database) -> AsyncIterator[Storage]:
    """The storage of a database checked to be there (a PostgreSQL one: probed already)."""
    if not database.is_postgres:
        if not os.path.isfile(database.target):  # noqa: ASYNC240  # one stat, before any I/O
            raise NoDatabase(f"no SQLite database at {database.target!r}")
        await anyio.to_thread.run_sync(_check_sqlite, database.target)
        async with SQLiteStorage(database.target) as storage:
            yield storage
        return
    from hephaestus.runtime.storage.postgres import PostgresStorage  # noqa: PLC0415

    async with PostgresStorage(
        database.target, schema=database.schema, min_size=1, max_size=2
    ) as storage:
        yield storage


@contextlib.asynccontextmanager
async def acting(database: Database, name: str) -> AsyncIterator[Runner]:
    """The runner that changes the database's instances (see the module's docstring)."""
    distributed = database.is_postgres and await _probe(database)
    if distributed:
        try:
            from hephaestus.distributed import DistributedRunner  # noqa: PLC0415
        except ImportError:
            raise NoDatabase(
                f"{database} belongs to the distributed runner: acting on it needs "
                "pip install 'hephaestus[distributed]'"
            ) from None
        async with DistributedRunner(
            database.target, schema=database.schema, name=name, max_pool_size=2
        ) as runner:
            yield runner
        return
    from hephaestus.runtime.steering import SteeringRunner  # noqa: PLC0415

    async with _opened(database) as storage, SteeringRunner(storage, name=name) as steering:
        yield steering


def follows(runner: object, status: object) -> str:
    """What follows a change ``runner`` accepted, the instance being ``status`` after it."""
    if not isinstance(runner, LocalRunner):
        return "a worker of the distributed runner applies it"
    if isinstance(runner, SteeringRunner):
        return f"now {status}: the next runner to open the database goes on with it"
    return f"now {status}"


def delivery(runner: object, kept_before: int, kept_after: int) -> str:
    """What became of a message ``runner`` accepted: ``taken`` by a waiting step, ``kept``
    for one to come, or ``sent`` to the distributed runner's worker, which decides."""
    if not isinstance(runner, LocalRunner):
        return "sent"
    return "kept" if kept_after > kept_before else "taken"


async def _probe(database: Database) -> bool:
    """Check that the schema holds Hephaestus's tables; whether it is the distributed runner's."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        raise NoDatabase("a PostgreSQL database needs pip install 'hephaestus[postgres]'") from None
    try:
        async with await psycopg.AsyncConnection.connect(
            database.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        ) as conn:
            cursor = await conn.execute(
                "SELECT to_regclass(%s::text) IS NOT NULL, to_regclass(%s::text) IS NOT NULL",
                _tables(database.schema),
            )
            row: Any = await cursor.fetchone()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise NoDatabase(f"cannot connect to {database}: {reason}") from None
    if not row[0]:
        raise NoDatabase(f"no Hephaestus tables in {database}")
    return bool(row[1])


def _check_sqlite(path: str) -> None:
    """Refuse a file without Hephaestus's tables: ``SQLiteStorage`` would create them in it."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=rw"  # never creates the file
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'heph_instances'"
            ).fetchone()
    except sqlite3.Error as exc:
        raise NoDatabase(f"cannot read {path!r} as a SQLite database: {exc}") from None
    if found is None:
        raise NoDatabase(f"no Hephaestus tables in {path!r}")


def _tables(schema: str) -> tuple[str, str]:
    quoted = '"' + schema.replace('"', '""') + '"'
    return f"{quoted}.heph_instances", f"{quoted}.procrastinate_jobs"
