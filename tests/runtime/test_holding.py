"""One LocalRunner per storage: a runner entering a held SQLite file or schema is refused.

A holder is another live LocalRunner, in this process or another one; a
holder killed with SIGKILL blocks no one once the kill is observed (SQLite:
at once; PostgreSQL: once the server has ended its session, which a runner
of the same host waits for, at most ``DEAD_HOLDER_GRACE`` seconds).
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from hephaestus import (
    Async,
    Context,
    Done,
    HephaestusError,
    Instance,
    LocalRunner,
    MemoryStorage,
    SQLiteStorage,
    Step,
    StorageError,
    StorageHeld,
    Workflow,
)
from hephaestus.runtime import holding
from hephaestus.runtime.storage.base import Storage

from .conftest import GUARD

CHILD = Path(__file__).with_name("holding_child.py")
ROOT = Path(__file__).parent.parent.parent

CHILD_GUARD = 60.0
"""Seconds a child process may take to start and hold its storage."""


class Park(Step):
    """Waits for ``resumed``."""

    events = ("resumed",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class Parked(Workflow):
    start = Park
    transitions = {Park: {"resumed": Done}}


class Watched(SQLiteStorage):
    """A SQLite storage that records the queries made of it (recovery is one)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.queries = 0

    async def query(self, **filters: Any) -> list[Any]:
        self.queries += 1
        return await super().query(**filters)


class Unreadable(SQLiteStorage):
    """A SQLite storage whose queries fail: a runner cannot recover from it."""

    async def query(self, **filters: Any) -> list[Any]:
        raise StorageError(f"{self!r}: the disk is gone")


Made = Callable[..., SQLiteStorage]


@pytest.fixture
async def sqlite() -> AsyncIterator[Made]:
    """Makes SQLite storages (``sqlite(path, kind=SQLiteStorage)``), closed after the test."""
    made: list[SQLiteStorage] = []

    def make(path: Path | str, kind: type[SQLiteStorage] = SQLiteStorage) -> SQLiteStorage:
        made.append(kind(path))
        return made[-1]

    yield make
    for storage in made:
        await storage.aclose()


@asynccontextmanager
async def entered(storage: Storage, name: str | None = None) -> AsyncIterator[LocalRunner]:
    """A runner on ``storage``, entered; the whole block is guarded by ``GUARD``."""
    with anyio.fail_after(GUARD):
        async with LocalRunner(storage, name=name) as runner:
            yield runner


async def refusal(storage: Storage) -> StorageHeld:
    """The ``StorageHeld`` a runner entering ``storage`` raises."""
    with anyio.fail_after(GUARD), pytest.raises(StorageHeld) as refused:
        async with LocalRunner(storage):
            pass
    return refused.value


@asynccontextmanager
async def holder_process(kind: str, target: str) -> AsyncIterator[anyio.abc.Process]:
    """A child process whose LocalRunner holds ``target``; killed on the way out."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = await anyio.open_process(
        [sys.executable, str(CHILD), kind, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        said = b""
        with anyio.fail_after(CHILD_GUARD):
            async for chunk in process.stdout:
                said += chunk
                if b"held\n" in said:
                    break
        if b"held\n" not in said:
            assert process.stderr is not None
            errors = b"".join([chunk async for chunk in process.stderr]).decode()
            pytest.fail(f"the holder exited without holding {target}:\n{errors}")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True), anyio.fail_after(GUARD):
            await process.wait()
        await process.aclose()


async def killed(process: anyio.abc.Process) -> None:
    """SIGKILL ``process`` and wait, with a deadline, until its death is observed."""
    process.kill()
    with anyio.fail_after(GUARD):
        await process.wait()
    assert -signal.SIGKILL == process.returncode


def ended_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------------- SQLite


class TestSQLite:
    """A SQLite file is held by the LocalRunner that runs on it, until it leaves."""

    async def test_a_second_runner_in_the_process_is_refused(
        self, tmp_path: Path, sqlite: Made
    ) -> None:
        """While a runner runs on a file, another runner entering it raises StorageHeld."""
        database = tmp_path / "orders.db"
        async with entered(sqlite(database), name="first"):
            refused = await refusal(sqlite(database))
        assert os.getpid() == refused.pid
        assert repr(sqlite(database)) == refused.storage
        assert f"runner 'first', pid {os.getpid()}" in refused.holder

    async def test_a_shared_storage_object_is_held_too(self, tmp_path: Path, sqlite: Made) -> None:
        """Two runners on one SQLiteStorage object are refused like two on one file."""
        storage = sqlite(tmp_path / "orders.db")
        async with entered(storage):
            await refusal(storage)

    async def test_the_file_is_free_once_the_runner_left(
        self, tmp_path: Path, sqlite: Made
    ) -> None:
        """A runner that left lets the next one in."""
        database = tmp_path / "orders.db"
        async with entered(sqlite(database)):
            pass
        async with entered(sqlite(database)) as runner:
            assert [] == await runner.list()

    async def test_a_runner_whose_block_raised_lets_go(self, tmp_path: Path, sqlite: Made) -> None:
        """Leaving on an exception releases the hold as well."""
        database = tmp_path / "orders.db"
        with pytest.raises(LookupError):
            async with LocalRunner(sqlite(database)):
                raise LookupError("the body failed")
        async with entered(sqlite(database)):
            pass

    async def test_a_refused_runner_recovers_nothing(self, tmp_path: Path, sqlite: Made) -> None:
        """The refusal comes before recovery: the refused runner never reads the storage."""
        database = tmp_path / "orders.db"
        watched = sqlite(database, Watched)
        async with entered(sqlite(database)) as first:
            await first.start(Parked, {}, id="parked")
            await refusal(watched)
        assert 0 == watched.queries

    async def test_an_entry_that_fails_after_the_hold_lets_go(
        self, tmp_path: Path, sqlite: Made
    ) -> None:
        """A runner that cannot recover fails to enter, and does not keep the file."""
        database = tmp_path / "orders.db"
        with anyio.fail_after(GUARD), pytest.raises(StorageError, match="the disk is gone"):
            async with LocalRunner(sqlite(database, Unreadable)):
                pass
        async with entered(sqlite(database)):
            pass

    async def test_the_lock_file_names_its_holder(self, tmp_path: Path, sqlite: Made) -> None:
        """Beside the database, ``<database>.runner.lock`` says who holds it, until it leaves."""
        database = tmp_path / "orders.db"
        lock = anyio.Path(f"{database}{holding.LOCK_SUFFIX}")
        async with entered(sqlite(database), name="orders"):
            about = json.loads(await lock.read_text())
        assert {"runner": "orders", "pid": os.getpid(), "host": socket.gethostname()} == {
            key: about[key] for key in ("runner", "pid", "host")
        }
        assert "" == await lock.read_text()

    async def test_another_path_to_the_file_is_the_same_file(
        self, tmp_path: Path, sqlite: Made
    ) -> None:
        """A symbolic link to a held database leads to the same hold."""
        database = tmp_path / "orders.db"
        link = tmp_path / "link.db"
        link.symlink_to(database)
        async with entered(sqlite(database)):
            await refusal(sqlite(link))

    async def test_other_files_are_not_held(self, tmp_path: Path, sqlite: Made) -> None:
        """Runners on different files run side by side."""
        async with (
            entered(sqlite(tmp_path / "a.db")),
            entered(sqlite(tmp_path / "b.db")),
        ):
            pass

    async def test_a_holder_in_another_process_is_named(self, tmp_path: Path, sqlite: Made) -> None:
        """A runner in another process holds the file: the refusal names its pid and host."""
        database = tmp_path / "orders.db"
        async with holder_process("sqlite", str(database)) as child:
            refused = await refusal(sqlite(database))
        assert child.pid == refused.pid
        assert f"runner 'child', pid {child.pid} on host {socket.gethostname()!r}" in str(refused)
        assert str(database) in str(refused)

    async def test_a_killed_holder_blocks_no_one(self, tmp_path: Path, sqlite: Made) -> None:
        """Once a holder killed with SIGKILL is dead, the next runner enters at once."""
        database = tmp_path / "orders.db"
        async with holder_process("sqlite", str(database)) as child:
            await refusal(sqlite(database))
            await killed(child)
            async with entered(sqlite(database)):
                pass


class TestNothingToHold:
    """Storages that are their runner's own need no hold."""

    async def test_memory_storages(self) -> None:
        """Runners on memory storages run side by side."""
        async with entered(MemoryStorage()), entered(MemoryStorage()):
            pass

    async def test_sqlite_in_memory(self, sqlite: Made) -> None:
        """An in-memory SQLite database is each connection's own: nothing is held."""
        async with entered(sqlite(":memory:")), entered(sqlite(":memory:")):
            pass


class TestStorageHeld:
    """The refusal is a HephaestusError that names the storage, the holder and what to do."""

    def test_in_the_tree(self) -> None:
        """StorageHeld is a HephaestusError and a RuntimeError."""
        assert issubclass(StorageHeld, HephaestusError)
        assert issubclass(StorageHeld, RuntimeError)

    def test_message(self) -> None:
        """The message names the storage and the holder, and says what to do instead."""
        error = StorageHeld("SQLiteStorage('a.db')", "pid 42 on host 'box'", pid=42)
        assert (42, "SQLiteStorage('a.db')", "pid 42 on host 'box'") == (
            error.pid,
            error.storage,
            error.holder,
        )
        text = str(error)
        assert text.startswith(
            "SQLiteStorage('a.db') is held by another LocalRunner (pid 42 on host 'box')."
        )
        assert "leave that runner's `async with`" in text
        assert "distributed runner" in text


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name, dropped (with whatever was made in it) after the test."""
    name = f"heph_hold_{uuid.uuid4().hex[:8]}"
    yield name
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def postgres(dsn: str, schema: str) -> Storage:
    from hephaestus.runtime.storage.postgres import PostgresStorage

    return PostgresStorage(dsn, schema=schema)


@asynccontextmanager
async def storages(dsn: str, schema: str, count: int) -> AsyncIterator[list[Storage]]:
    """``count`` storages on one schema, closed on the way out."""
    made = [postgres(dsn, schema) for _ in range(count)]
    try:
        yield made
    finally:
        for storage in made:
            await storage.aclose()  # type: ignore[attr-defined]


@asynccontextmanager
async def fake_holder(dsn: str, schema: str, pid: int) -> AsyncIterator[Any]:
    """A session holding the schema's runner lock, claiming to be process ``pid`` of this host."""
    import psycopg

    name = f"hephaestus runner {pid}@{socket.gethostname()}"[:63]
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, application_name=name
    ) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (holding.lock_key(schema),))
        yield conn


async def waiting_sessions(dsn: str, schema: str) -> int:
    """How many sessions wait for the schema's runner lock."""
    import psycopg

    key = holding.lock_key(schema)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
            ((key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def wait_until_waiting(dsn: str, schema: str) -> None:
    """Poll, with a deadline, until a session waits for the schema's runner lock.

    Another session's state has no event to wait on: it is polled, as the
    crash tests poll their child's log.
    """
    with anyio.fail_after(GUARD):
        while True:
            if await waiting_sessions(dsn, schema):
                return
            await anyio.sleep(0.01)


class TestPostgres:
    """A PostgreSQL schema is held by the LocalRunner that runs on it, until it leaves."""

    async def test_a_second_runner_in_the_process_is_refused(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """While a runner runs on a schema, another runner entering it raises StorageHeld."""
        async with storages(postgres_dsn, schema, 2) as (first, second):
            async with entered(first):
                refused = await refusal(second)
            assert os.getpid() == refused.pid
            assert repr(second) == refused.storage
            assert f"pid {os.getpid()} on host {socket.gethostname()!r}" in refused.holder
            async with entered(second):
                pass

    async def test_the_lock_is_free_when_the_runner_has_left(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Leaving unlocks on the server before closing: no session of the runner holds it after."""
        import psycopg

        key = holding.lock_key(schema)
        held = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid"
        )
        halves = ((key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF)
        async with (
            storages(postgres_dsn, schema, 1) as (storage,),
            await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as watcher,
        ):
            with anyio.fail_after(GUARD):
                async with entered(storage):
                    cursor = await watcher.execute(held, halves)
                    assert (1,) == await cursor.fetchone()
                cursor = await watcher.execute(held, halves)
                assert (0,) == await cursor.fetchone()

    async def test_other_schemas_are_not_held(self, postgres_dsn: str, schema: str) -> None:
        """Runners on different schemas of one database run side by side."""
        other = f"{schema}_b"
        try:
            async with (
                storages(postgres_dsn, schema, 1) as (a,),
                storages(postgres_dsn, other, 1) as (b,),
                entered(a),
                entered(b),
            ):
                pass
        finally:
            import psycopg

            async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
                await c.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')

    async def test_a_storage_on_a_given_pool(self, postgres_dsn: str, schema: str) -> None:
        """A storage given a pool is held through a connection made with the pool's settings."""
        from psycopg_pool import AsyncConnectionPool

        from hephaestus.runtime.storage.postgres import PostgresStorage

        async with AsyncConnectionPool(
            postgres_dsn, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
        ) as pool:
            on_pool = PostgresStorage(pool=pool, schema=schema)
            async with storages(postgres_dsn, schema, 1) as (plain,), entered(on_pool):
                await refusal(plain)
                assert [] == await on_pool.query()  # the pool's one connection is free

    async def test_a_holder_in_another_process_is_named(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A runner in another process holds the schema: the refusal names its pid and host."""
        async with (
            holder_process("postgres", f"{postgres_dsn}#{schema}") as child,
            storages(postgres_dsn, schema, 1) as (storage,),
        ):
            refused = await refusal(storage)
        assert child.pid == refused.pid
        assert f"pid {child.pid} on host {socket.gethostname()!r}" in str(refused)
        assert repr(storage) in str(refused)

    async def test_a_killed_holder_blocks_no_one(self, postgres_dsn: str, schema: str) -> None:
        """Once a holder killed with SIGKILL is dead, the next runner enters, within the grace."""
        async with (
            holder_process("postgres", f"{postgres_dsn}#{schema}") as child,
            storages(postgres_dsn, schema, 2) as (before, after),
        ):
            await refusal(before)
            await killed(child)
            with anyio.fail_after(holding.DEAD_HOLDER_GRACE + GUARD):
                async with LocalRunner(after):
                    pass

    async def test_a_dead_holders_session_is_waited_for(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A session left by a dead process of this host is waited for until the server ends it."""
        async with (
            storages(postgres_dsn, schema, 1) as (storage,),
            fake_holder(postgres_dsn, schema, ended_pid()) as holder,
        ):

            async def end_once_waited_for() -> None:
                await wait_until_waiting(postgres_dsn, schema)
                await holder.close()  # the server ends the dead process's session

            async with anyio.create_task_group() as tg:
                tg.start_soon(end_once_waited_for)
                async with entered(storage):
                    pass

    async def test_a_dead_holders_session_is_waited_for_a_bounded_time(
        self, postgres_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A session of a dead process that does not end within the grace is refused."""
        monkeypatch.setattr(holding, "DEAD_HOLDER_GRACE", 0.2)
        pid = ended_pid()
        async with (
            storages(postgres_dsn, schema, 1) as (storage,),
            fake_holder(postgres_dsn, schema, pid),
        ):
            refused = await refusal(storage)
        assert pid == refused.pid

    async def test_a_live_holder_is_not_waited_for(
        self, postgres_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A holder whose process lives is refused at once, not after the grace."""
        monkeypatch.setattr(holding, "DEAD_HOLDER_GRACE", 3600.0)
        async with (
            storages(postgres_dsn, schema, 1) as (storage,),
            fake_holder(postgres_dsn, schema, os.getpid()),
        ):
            await refusal(storage)  # within GUARD
