"""Real write failures, damaged rows and cancelled callers: nothing stuck, nothing lost.

SQLite writes fail for real when another connection holds the write lock
past the storage's ``busy_timeout`` (``SQLITE_BUSY``, transient).
PostgreSQL writes fail for real through triggers raising the server's own
error codes: ``53100`` (disk full, transient) and ``22023`` (a value the
database refuses, permanent).
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from runtime.conftest import signal
from structlog.testing import capture_logs

from hephaestus import (
    InstanceLoadError,
    InstanceNotFound,
    LocalRunner,
    SQLiteStorage,
    Status,
    Storage,
    StorageError,
    telemetry,
)

from .conftest import GUARD
from .hostile import GIVEN, Parks, ParksFlow, PlainFlow, Returns, ReturnsFlow

RETRYING = "a write failed; retrying"
STEP_ASYNC = telemetry.step_async_event()


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def logged(logs: list[dict[str, object]], event: str) -> None:
    """Until a log entry says ``event``."""
    while not any(entry["event"] == event for entry in logs):  # noqa: ASYNC110  # a log line has no event to await
        await anyio.sleep(0.005)


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """A SQLite storage that gives up on a held lock after 50 ms."""
    storage = SQLiteStorage(tmp_path / "faults.db", busy_timeout=0.05)
    try:
        yield storage
    finally:
        await storage.aclose()


class TestSQLiteWriteFails:
    async def test_a_resume_whose_write_fails_changes_nothing(self, sqlite: SQLiteStorage) -> None:
        """The resume raises a transient StorageError; the instance waits on; a retry passes."""
        with anyio.fail_after(GUARD), capture_logs() as logs:
            async with LocalRunner(sqlite) as runner:
                with signal(STEP_ASYNC, instance_id="p1") as parked:
                    iid = await runner.start(ParksFlow, {}, id="p1")
                    await parked.wait()
                with write_lock(Path(sqlite.path)):
                    with pytest.raises(StorageError, match="database is locked") as caught:
                        await runner.resume(iid, "go")
                    assert caught.value.transient
                    assert Status.WAITING == (await runner.get(iid)).status
                await runner.resume(iid, "go")  # a retry is accepted
                done = await runner.wait(iid)
            stored = await sqlite.get(iid)
        assert stored is not None
        assert (Status.COMPLETED, Status.COMPLETED) == (done.status, stored.status)
        assert [] == [entry for entry in logs if entry["log_level"] == "error"]

    async def test_the_driver_retries_a_locked_database(self, sqlite: SQLiteStorage) -> None:
        """The driver's write of a step's result waits out the lock; nothing is lost."""
        token = "retried"
        GIVEN[token] = {"kept": True}
        try:
            with anyio.fail_after(GUARD), capture_logs() as logs:
                async with LocalRunner(sqlite) as runner:
                    iid = await runner.start(ReturnsFlow, {"token": token}, id=token)
                    with write_lock(Path(sqlite.path)):
                        await logged(logs, RETRYING)
                        assert not (await runner.get(iid)).terminal
                    done = await runner.wait(iid)
                stored = await sqlite.get(iid)
        finally:
            del GIVEN[token]
        assert stored is not None
        assert (Status.COMPLETED, Status.COMPLETED) == (done.status, stored.status)
        assert {"value": {"kept": True}} == stored.context.steps["returns"]

    async def test_a_cancelled_start_leaves_nothing(self, tmp_path: Path) -> None:
        """A start cancelled while its write waits is undone: no row, no claim, id reusable."""
        path = tmp_path / "cancelled.db"
        async with SQLiteStorage(path, busy_timeout=5) as storage:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    with write_lock(path):
                        with anyio.move_on_after(0.05) as scope:
                            await runner.start(PlainFlow, {}, id="c1")
                        assert scope.cancelled_caught
                    while True:  # the undo runs once the lock is gone
                        try:
                            await runner.get("c1")
                        except InstanceNotFound:
                            break
                        await anyio.sleep(0.005)
                    assert await storage.get("c1") is None
                    again = await runner.run(PlainFlow, {}, id="c1")
        assert Status.COMPLETED == again.status

    async def test_a_cancelled_resume_is_undone_and_says_so(self, tmp_path: Path) -> None:
        """A resume cancelled while its write waits is written back; the history says undone."""
        path = tmp_path / "undone.db"
        async with SQLiteStorage(path, busy_timeout=5) as storage:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    with signal(STEP_ASYNC, instance_id="u1") as parked:
                        await runner.start(ParksFlow, {}, id="u1")
                        await parked.wait()
                    with write_lock(path):
                        with anyio.move_on_after(0.05) as scope:
                            await runner.resume("u1", "go")
                        assert scope.cancelled_caught
                    # The undo runs once the lock is gone; nothing announces it.
                    while not [r for r in await runner.history("u1") if r.kind == "undone"]:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                    assert Status.WAITING == (await storage.get("u1")).status  # type: ignore[union-attr]
                    await runner.resume("u1", "go")
                    done = await runner.wait("u1")
                    records = await runner.history("u1")
        assert Status.COMPLETED == done.status
        assert [
            "started",
            "step_parked",
            "resumed",
            "undone",
            "resumed",
            "step_completed",
            "completed",
        ] == [r.kind for r in records]
        assert {"records": 1} == records[3].details

    async def test_a_newer_schema_is_a_storage_error(self, tmp_path: Path) -> None:
        """A runner on a file from a newer Hephaestus raises StorageError, not a group."""
        path = tmp_path / "newer.db"
        async with SQLiteStorage(path):
            pass
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE heph_schema_version SET version = 99")
        storage = SQLiteStorage(path)
        try:
            with pytest.raises(StorageError, match="schema version 99, newer"):
                async with LocalRunner(storage):
                    pass
        finally:
            await storage.aclose()


class TestDamagedRows:
    async def test_one_bad_row_does_not_stop_recovery(self, tmp_path: Path) -> None:
        """Rows with invalid UTF-8 or 100,000-deep JSON are skipped; the others recover."""
        path = tmp_path / "damaged.db"
        async with SQLiteStorage(path) as storage, LocalRunner(storage) as runner:
            with signal(STEP_ASYNC, instance_id="good") as parked:
                await runner.start(ParksFlow, {}, id="good")
                await parked.wait()
        deep = "[" * 100_000 + "]" * 100_000
        with sqlite3.connect(path) as conn:
            insert = (
                "INSERT INTO heph_instances (id, workflow, workflow_version, status, state,"
                " created_at, updated_at) VALUES (?, 'x:Y', 1, 'running', {}, 0, 0)"
            )
            conn.execute(insert.format("CAST(x'7b22ff22' AS TEXT)"), ("bad-utf8",))
            conn.execute(insert.format("?"), ("too-deep", deep))
        with anyio.fail_after(GUARD), capture_logs() as logs:
            async with SQLiteStorage(path) as storage, LocalRunner(storage) as runner:
                await runner.resume("good", "go")
                done = await runner.wait("good")
                with pytest.raises(InstanceLoadError):
                    await storage.get("too-deep")
                with pytest.raises(InstanceLoadError):
                    await storage.get("bad-utf8")
        assert Status.COMPLETED == done.status
        skipped = {entry["instance_id"] for entry in logs if entry["event"] == "instance skipped"}
        assert {"bad-utf8", "too-deep"} == skipped


postgres = pytest.mark.parametrize("storage", ["postgres"], indirect=True)


async def sql(storage: Storage, statement: str) -> None:
    """Run ``statement`` in the storage's schema (``{schema}`` is replaced by it)."""
    import psycopg

    from hephaestus.runtime.storage.postgres import PostgresStorage

    assert isinstance(storage, PostgresStorage)
    await storage.migrate()
    dsn = storage._dsn  # the test's own DSN
    assert dsn is not None
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(statement.replace("{schema}", f'"{storage.schema}"'))  # type: ignore[arg-type]


async def fail_writes(storage: Storage, condition: str, code: str, times: int | None) -> None:
    """Make writes whose new row meets ``condition`` fail with ``code`` (``times``, or always)."""
    # Nested IFs: SQL's AND does not promise to skip nextval when the condition is false.
    limit = "TRUE" if times is None else f"nextval('{{schema}}.faults') <= {times}"
    await sql(storage, "CREATE SEQUENCE {schema}.faults")
    await sql(
        storage,
        "CREATE FUNCTION {schema}.fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF {condition} THEN IF {limit} THEN"
        f" RAISE EXCEPTION 'injected fault' USING ERRCODE = '{code}'; END IF; END IF;"
        " RETURN NEW; END $$",
    )
    await sql(
        storage,
        "CREATE TRIGGER fault BEFORE INSERT OR UPDATE ON {schema}.heph_instances"
        " FOR EACH ROW EXECUTE FUNCTION {schema}.fault()",
    )


@postgres
class TestPostgresWriteFails:
    async def test_a_disk_full_once_is_retried(self, storage: Storage) -> None:
        """The last write fails once with disk_full: it is retried; the instance completes."""
        await fail_writes(storage, "NEW.status = 'completed'", "53100", times=1)
        with anyio.fail_after(GUARD), capture_logs() as logs:
            async with LocalRunner(storage) as runner:
                done = await runner.run(PlainFlow, {}, id="full-once")
            stored = await storage.get("full-once")
        assert stored is not None
        assert (Status.COMPLETED, Status.COMPLETED) == (done.status, stored.status)
        assert {"first": True} == stored.context.steps["first"]
        assert any(entry["event"] == RETRYING for entry in logs)

    async def test_a_refused_result_fails_the_step_from_the_last_good_state(
        self, storage: Storage
    ) -> None:
        """A result the database refuses fails its step (kind storage) from the last good state."""
        await fail_writes(storage, "NEW.state->'context'->'steps' ? 'returns'", "22023", None)
        GIVEN["refused"] = "fine"
        try:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    done = await runner.run(ReturnsFlow, {"token": "refused"}, id="refused")
                stored = await storage.get("refused")
        finally:
            del GIVEN["refused"]
        assert stored is not None
        assert Status.FAILED == done.status == stored.status
        assert stored.error is not None
        assert (Returns, "storage") == (stored.error.step, stored.error.kind)
        assert "injected fault" in str(stored.error.reason)
        assert {"first"} == set(stored.context.steps)

    async def test_a_nul_in_updates_blames_the_step(self, storage: Storage) -> None:
        """Updates holding a NUL fail their own step with invalid_result, before any SQL."""
        GIVEN["nul"] = "a\x00b"
        try:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    done = await runner.run(ReturnsFlow, {"token": "nul"}, id="nul")
                stored = await storage.get("nul")
        finally:
            del GIVEN["nul"]
        assert stored is not None
        assert done.error is not None
        assert (Status.FAILED, Returns, "invalid_result") == (
            stored.status,
            done.error.step,
            done.error.kind,
        )
        assert "holds a NUL character" in str(done.error.reason)

    async def test_a_resume_whose_write_fails_changes_nothing(self, storage: Storage) -> None:
        """The resume raises StorageError; the instance still waits; a retry completes it."""
        await fail_writes(storage, "TG_OP = 'UPDATE' AND OLD.status = 'waiting'", "53100", 1)
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                with signal(STEP_ASYNC, instance_id="resume-fails") as parked:
                    iid = await runner.start(ParksFlow, {}, id="resume-fails")
                    await parked.wait()
                with pytest.raises(StorageError, match="injected fault"):
                    await runner.resume(iid, "go", step=Parks)
                assert Status.WAITING == (await runner.get(iid)).status
                stored = await storage.get(iid)
                assert stored is not None
                assert Status.WAITING == stored.status
                await runner.resume(iid, "go")
                done = await runner.wait(iid)
        assert Status.COMPLETED == done.status
