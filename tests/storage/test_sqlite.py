"""SQLiteStorage beyond the contract: the file, its schema, durability settings, failures."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import structlog

from hephaestus import InstanceLoadError, NotSerializable, SQLiteStorage, StorageError
from hephaestus.runtime.storage import sqlite as sqlite_module

from . import flows
from .conftest import GUARD
from .flows import lifecycle, new

NEWEST = len(sqlite_module.migrations("sqlite"))

STAGES = lifecycle()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hephaestus.db"


def read(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the file, through a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def write(path: Path, statement: str, *params: Any) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


async def once(path: Path, **options: Any) -> None:
    """Open a storage on ``path``, use it once, close it."""
    async with SQLiteStorage(path, **options) as storage:
        await storage.put(STAGES["running"])


class TestFile:
    async def test_wal(self, path: Path) -> None:
        """The file is in WAL mode."""
        with anyio.fail_after(GUARD):
            await once(path)
        assert [("wal",)] == read(path, "PRAGMA journal_mode")

    async def test_schema_version(self, path: Path) -> None:
        """After first use the schema is at the newest version, in one row."""
        with anyio.fail_after(GUARD):
            await once(path)
        assert [(NEWEST,)] == read(path, "SELECT version FROM heph_schema_version")

    async def test_reopen_does_not_migrate(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reopening a file at the newest version runs no migration; its data stays."""
        with anyio.fail_after(GUARD):
            await once(path)
        again = [(version, "CREATE TABLE migrated_again (x)") for version in range(1, NEWEST + 1)]
        monkeypatch.setattr(sqlite_module, "migrations", lambda backend: again)
        with anyio.fail_after(GUARD):
            async with SQLiteStorage(path) as storage:
                expected = attrs.evolve(STAGES["running"], started_monotonic=None)
                assert expected == await storage.get("order-1")
        assert [] == read(path, "SELECT name FROM sqlite_master WHERE name = 'migrated_again'")
        assert [(NEWEST,)] == read(path, "SELECT version FROM heph_schema_version")

    async def test_newer_schema(self, path: Path) -> None:
        """A file at a newer schema version than this Hephaestus knows is refused."""
        with anyio.fail_after(GUARD):
            await once(path)
        write(path, f"UPDATE heph_schema_version SET version = {NEWEST + 1}")
        storage = SQLiteStorage(path)
        try:
            with (
                anyio.fail_after(GUARD),
                pytest.raises(StorageError, match=f"version {NEWEST + 1}, newer"),
            ):
                await storage.get("order-1")
        finally:
            await storage.aclose()


class TestSynchronous:
    @pytest.fixture
    def connections(self, monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
        """The connections the storages open (their thread opens them with sqlite3.connect)."""
        opened: list[sqlite3.Connection] = []
        connect = sqlite3.connect

        def recording(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            opened.append(conn)
            return conn

        monkeypatch.setattr(sqlite3, "connect", recording)
        return opened

    @pytest.mark.parametrize(
        ("options", "level"),
        [({}, 2), ({"synchronous": "full"}, 2), ({"synchronous": "normal"}, 1)],
        ids=["default-full", "full", "normal"],
    )
    async def test_applied(
        self,
        path: Path,
        connections: list[sqlite3.Connection],
        options: dict[str, Any],
        level: int,
    ) -> None:
        """The storage's connection runs with the synchronous level asked for (FULL=2, NORMAL=1)."""
        with anyio.fail_after(GUARD):
            async with SQLiteStorage(path, **options) as storage:
                (conn,) = connections
                seen = await storage.get("order-1")  # the thread is idle after this
                assert None is seen
                assert (level,) == conn.execute("PRAGMA synchronous").fetchone()

    def test_unknown(self, path: Path) -> None:
        """A synchronous setting other than full and normal is refused."""
        with pytest.raises(ValueError, match="'off'"):
            SQLiteStorage(path, synchronous="off")  # type: ignore[arg-type]


class TestFailures:
    async def test_unencodable_in_a_batch(self, path: Path) -> None:
        """An unencodable instance is refused; the puts around it still commit."""
        bad = new("bad", context={"when": datetime(2024, 1, 1, tzinfo=UTC)})
        good = [attrs.evolve(STAGES["running"], id=f"good-{n}") for n in range(2)]
        with anyio.fail_after(GUARD):
            async with SQLiteStorage(path) as storage:
                results = await asyncio.gather(
                    storage.put(good[0]), storage.put(bad), storage.put(good[1]),
                    return_exceptions=True,
                )  # fmt: skip
                stored = sorted(i.id for i in await storage.query())
        assert None is results[0]
        assert None is results[2]
        assert isinstance(results[1], NotSerializable)
        assert "context['when']" in str(results[1])
        assert ["good-0", "good-1"] == stored

    async def test_unloadable_row(self, path: Path) -> None:
        """A row whose workflow no longer imports is skipped by query and refused by get."""
        gone = f"{flows.__name__}:GoneFlow"
        with anyio.fail_after(GUARD):
            async with SQLiteStorage(path) as storage:
                await storage.put(attrs.evolve(STAGES["waiting"], id="broken"))
                await storage.put(STAGES["running"])
            write(
                path,
                "UPDATE heph_instances SET state = json_set(state, '$.workflow', ?) WHERE id = ?",
                gone,
                "broken",
            )
            async with SQLiteStorage(path) as storage:
                with structlog.testing.capture_logs() as logs:
                    found = await storage.query()
                with pytest.raises(InstanceLoadError, match=gone):
                    await storage.get("broken")
        assert ["order-1"] == [i.id for i in found]
        assert ["instance skipped"] == [e["event"] for e in logs if e["log_level"] == "warning"]

    async def test_sqlite_errors(self, path: Path) -> None:
        """SQLite's errors become StorageError, with SQLite's exception as the cause."""
        with anyio.fail_after(GUARD):
            async with SQLiteStorage(path) as storage:
                await storage.put(STAGES["running"])
                write(path, "DROP TABLE heph_instances")
                for call in (storage.put(STAGES["waiting"]), storage.get("order-1")):
                    with pytest.raises(StorageError, match="heph_instances") as caught:
                        await call
                    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)

    def test_two_event_loops(self, path: Path) -> None:
        """One storage serves one event loop, then another."""
        storage = SQLiteStorage(path)

        async def put() -> None:
            with anyio.fail_after(GUARD):
                await storage.put(STAGES["waiting"])

        async def get_and_close() -> Any:
            with anyio.fail_after(GUARD):
                found = await storage.get("order-1")
                await storage.aclose()
                return found

        anyio.run(put)
        assert STAGES["waiting"].timers == anyio.run(get_and_close).timers

    async def test_aclose_twice(self, path: Path) -> None:
        """Closing a closed storage does nothing."""
        storage = SQLiteStorage(path)
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            await storage.aclose()
            await storage.aclose()

    async def test_aclose_unused(self, path: Path) -> None:
        """A storage that was never used closes at once, creating no file."""
        with anyio.fail_after(GUARD):
            await SQLiteStorage(path).aclose()
        assert not await anyio.Path(path).exists()

    async def test_closed_before_use(self, path: Path) -> None:
        """A storage closed before its first use refuses calls with StorageError."""
        storage = SQLiteStorage(path)
        await storage.aclose()
        with anyio.fail_after(GUARD), pytest.raises(StorageError, match="is closed"):
            await storage.get("order-1")

    async def test_closed_after_use(self, path: Path) -> None:
        """A storage closed after use refuses calls with StorageError."""
        storage = SQLiteStorage(path)
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            await storage.aclose()
        with anyio.fail_after(0.5), pytest.raises(StorageError, match="is closed"):
            await storage.get("order-1")

    async def test_unopenable_file(self, tmp_path: Path) -> None:
        """A path that cannot hold a database fails every call with StorageError."""
        storage = SQLiteStorage(tmp_path / "missing-dir" / "hephaestus.db")
        try:
            with anyio.fail_after(GUARD), pytest.raises(StorageError, match="cannot open") as e:
                await storage.get("order-1")
            assert isinstance(e.value.__cause__, sqlite3.Error)
        finally:
            await storage.aclose()
