"""The storages under test: one fixture, ``storage``, over every backend.

``memory`` is a fresh ``MemoryStorage``; ``sqlite`` a ``SQLiteStorage`` on a
new file in ``tmp_path``; ``postgres`` a ``PostgresStorage`` on a schema of
its own (``heph_t_<uuid8>``), created by the storage on first use and dropped
with everything in it after the test. A test that needs PostgreSQL is skipped
when it is unreachable (and fails under ``CI=true``: see ``postgres_dsn``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from hephaestus import Instance, MemoryStorage, SQLiteStorage, Storage

GUARD = 10.0
"""Seconds a single storage operation (or a batch of them) may take before the test fails."""


def fresh_schema() -> str:
    """A schema name no other test uses."""
    return f"heph_t_{uuid.uuid4().hex[:8]}"


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (if it exists)."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
async def pg_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name, dropped (if anything created it) after the test."""
    schema = fresh_schema()
    yield schema
    await drop_schema(postgres_dsn, schema)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """Each storage in turn, empty, closed after the test."""
    if request.param == "memory":
        yield MemoryStorage()
        return
    if request.param == "sqlite":
        sqlite = SQLiteStorage(tmp_path / "hephaestus.db")
        try:
            yield sqlite
        finally:
            await sqlite.aclose()
        return
    from hephaestus.runtime.storage.postgres import PostgresStorage

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = fresh_schema()
    postgres = PostgresStorage(dsn, schema=schema)
    try:
        yield postgres
    finally:
        await postgres.aclose()
        await drop_schema(dsn, schema)


def as_stored(storage: Storage) -> Callable[[Instance], Instance]:
    """What ``storage`` gives back for an instance it was given.

    Memory keeps the very object. A durable storage keeps what the codec
    keeps: no monotonic start, and a failure's exception as text.
    """
    if isinstance(storage, MemoryStorage):
        return lambda instance: instance

    def durable(instance: Instance) -> Instance:
        error = instance.error
        if error is not None and isinstance(error.reason, BaseException):
            reason = error.reason
            error = attrs.evolve(error, reason=f"{type(reason).__qualname__}: {reason}")
        return attrs.evolve(instance, started_monotonic=None, error=error)

    return durable
