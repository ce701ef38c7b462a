"""PostgresStorage beyond the contract: its schema, migrations, pools and failures."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs
import pytest
import structlog

from hephaestus import InstanceLoadError, NotSerializable, Record, StorageError

from . import flows
from .conftest import GUARD, drop_schema, fresh_schema
from .flows import lifecycle, new

psycopg = pytest.importorskip("psycopg")
psycopg_pool = pytest.importorskip("psycopg_pool")

from psycopg import sql  # noqa: E402  # after the skip: PostgreSQL is an extra
from psycopg.rows import dict_row  # noqa: E402

from hephaestus.runtime.storage import postgres as postgres_module  # noqa: E402
from hephaestus.runtime.storage.postgres import PostgresStorage  # noqa: E402

NEWEST = len(postgres_module.migrations("postgres"))

STAGES = lifecycle()


async def rows(dsn: str, query: Any, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query``, through a connection of the test's own."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query, params or None)
        return await cursor.fetchall() if cursor.description else []


def table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


@pytest.fixture
async def storage(postgres_dsn: str, pg_schema: str) -> AsyncIterator[PostgresStorage]:
    """A storage on a fresh schema (dropped after the test)."""
    async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
        yield storage


class TestSchema:
    async def test_tables_in_schema(self, postgres_dsn: str, pg_schema: str) -> None:
        """First use creates the schema with its tables and indexes."""
        with anyio.fail_after(GUARD):
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                await storage.put(STAGES["running"])
            tables = await rows(
                postgres_dsn,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                pg_schema,
            )
            indexes = await rows(
                postgres_dsn, "SELECT indexname FROM pg_indexes WHERE schemaname = %s", pg_schema
            )
        assert {"heph_instances", "heph_schema_version", "heph_inbox", "heph_history"} == {
            t for (t,) in tables
        }
        assert {
            "heph_instances_pkey",
            "heph_instances_status",
            "heph_instances_workflow",
            "heph_instances_created",
            "heph_instances_counts",
            "heph_instances_ended",
            "heph_instances_id_pattern",
            "heph_instances_wake",
            "heph_inbox_pkey",
            "heph_inbox_instance",
            "heph_history_pkey",
            "heph_history_instance",
        } == {i for (i,) in indexes}

    async def test_version_row(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """The schema is at the newest version, in one row."""
        with anyio.fail_after(GUARD):
            found = await rows(
                postgres_dsn,
                sql.SQL("SELECT version FROM {}").format(
                    table(storage.schema, "heph_schema_version")
                ),
            )
        assert [(NEWEST,)] == found

    async def test_columns(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """A row holds the id, the workflow's path, version, status, and the state as jsonb."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["waiting"])
            found = await rows(
                postgres_dsn,
                sql.SQL(
                    "SELECT id, workflow, workflow_version, status, state->'context'->'initial',"
                    " created_at <= updated_at FROM {}"
                ).format(table(storage.schema, "heph_instances")),
            )
        initial = {"items": ["book", "pen"], "total": 30.5}
        path = f"{flows.__name__}:OrderFlow"
        assert [("order-1", path, 1, "waiting", initial, True)] == found

    async def test_put_keeps_created_at(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """A put that replaces a row keeps when it was created and moves when it was updated."""
        query = sql.SQL("SELECT created_at, updated_at FROM {}").format(
            table(storage.schema, "heph_instances")
        )
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            [(created, updated)] = await rows(postgres_dsn, query)
            await storage.put(STAGES["waiting"])
            [(created_again, updated_again)] = await rows(postgres_dsn, query)
        assert created == created_again
        assert updated < updated_again

    async def test_odd_schema_name(self, postgres_dsn: str) -> None:
        """A schema name that needs quoting works."""
        schema = f'{fresh_schema()} "Odd"'
        try:
            with anyio.fail_after(GUARD):
                async with PostgresStorage(postgres_dsn, schema=schema) as storage:
                    await storage.put(STAGES["waiting"])
                    assert ["order-1"] == [i.id for i in await storage.query(status="waiting")]
                tables = await rows(
                    postgres_dsn,
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                    schema,
                )
            assert [(4,)] == tables  # instances, step results, history, schema version
        finally:
            await drop_schema(postgres_dsn, schema)

    async def test_existing_schema(self, postgres_dsn: str, pg_schema: str) -> None:
        """A schema that already exists (made by an administrator) is used as it is."""
        with anyio.fail_after(GUARD):
            await rows(postgres_dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                await storage.put(STAGES["running"])
                assert 1 == len(await storage.query())


class TestMigrations:
    async def test_concurrent_migrators(self, postgres_dsn: str, pg_schema: str) -> None:
        """Two storages migrating the same fresh schema at once both succeed."""
        first = PostgresStorage(postgres_dsn, schema=pg_schema)
        second = PostgresStorage(postgres_dsn, schema=pg_schema)
        try:
            with anyio.fail_after(GUARD):
                await asyncio.gather(first.put(STAGES["running"]), second.get("order-1"))
                await second.put(attrs.evolve(STAGES["running"], id="order-2"))
                assert ["order-1", "order-2"] == sorted(i.id for i in await first.query())
                versions = await rows(
                    postgres_dsn,
                    sql.SQL("SELECT version FROM {}").format(
                        table(pg_schema, "heph_schema_version")
                    ),
                )
            assert [(NEWEST,)] == versions
        finally:
            await first.aclose()
            await second.aclose()

    async def test_concurrent_first_calls(
        self, postgres_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Calls racing on a storage's first use migrate once, and all succeed."""
        runs: list[str] = []
        real = postgres_module.migrations

        def counted(backend: str) -> list[tuple[int, str]]:
            runs.append(backend)
            return real(backend)

        monkeypatch.setattr(postgres_module, "migrations", counted)
        storage = PostgresStorage(postgres_dsn, schema=pg_schema)
        try:
            with anyio.fail_after(GUARD):
                puts = [storage.put(attrs.evolve(STAGES["running"], id=f"i{n}")) for n in range(5)]
                await asyncio.gather(*puts, storage.query())
                assert 5 == len(await storage.query())
        finally:
            await storage.aclose()
        assert ["postgres"] == runs

    async def test_reopen_does_not_migrate(
        self, postgres_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A schema at the newest version runs no migration again."""
        real = postgres_module.migrations("postgres")
        with anyio.fail_after(GUARD):
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                await storage.put(STAGES["running"])
            monkeypatch.setattr(
                postgres_module,
                "migrations",
                lambda backend: [*real[:-1], (NEWEST, "CREATE TABLE again (x int)")],
            )
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                assert 1 == len(await storage.query())
            found = await rows(postgres_dsn, "SELECT to_regclass(%s::text)", f"{pg_schema}.again")
        assert [(None,)] == found

    async def test_new_migration(
        self, postgres_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A later migration is applied once, naming the tables bare (they are in the schema)."""
        real = postgres_module.migrations("postgres")
        with anyio.fail_after(GUARD):
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                await storage.put(STAGES["running"])
            monkeypatch.setattr(
                postgres_module,
                "migrations",
                lambda backend: [
                    *real,
                    (NEWEST + 1, "ALTER TABLE heph_instances ADD COLUMN note text;"),
                ],
            )
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                assert 1 == len(await storage.query())
            found = await rows(
                postgres_dsn,
                sql.SQL("SELECT version, (SELECT note FROM {} LIMIT 1) FROM {}").format(
                    table(pg_schema, "heph_instances"), table(pg_schema, "heph_schema_version")
                ),
            )
        assert [(NEWEST + 1, None)] == found

    async def test_failed_migration_rolls_back(
        self, postgres_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A migration that fails changes nothing, and the storage says so."""
        real = postgres_module.migrations("postgres")
        bad = "CREATE TABLE half_done (x int); SELECT 1 / 0;"
        monkeypatch.setattr(
            postgres_module, "migrations", lambda backend: [*real, (NEWEST + 1, bad)]
        )
        storage = PostgresStorage(postgres_dsn, schema=pg_schema)
        try:
            with anyio.fail_after(GUARD), pytest.raises(StorageError, match="division by zero"):
                await storage.get("order-1")
        finally:
            await storage.aclose()
        found = await rows(
            postgres_dsn,
            sql.SQL("SELECT version, to_regclass(%s::text) FROM {}").format(
                table(pg_schema, "heph_schema_version")
            ),
            f"{pg_schema}.half_done",
        )
        assert [(NEWEST, None)] == found  # the released ones committed; the bad one rolled back

    async def test_newer_version(self, postgres_dsn: str, pg_schema: str) -> None:
        """A schema at a newer version than this Hephaestus knows is refused."""
        with anyio.fail_after(GUARD):
            async with PostgresStorage(postgres_dsn, schema=pg_schema) as storage:
                await storage.put(STAGES["running"])
            await rows(
                postgres_dsn,
                sql.SQL("UPDATE {} SET version = %s").format(
                    table(pg_schema, "heph_schema_version")
                ),
                NEWEST + 1,
            )
            storage = PostgresStorage(postgres_dsn, schema=pg_schema)
            try:
                with pytest.raises(
                    StorageError, match=f"version {NEWEST + 1}, newer than this Hephaestus"
                ):
                    await storage.get("order-1")
            finally:
                await storage.aclose()


class TestFailures:
    async def test_missing_database(self, postgres_dsn: str) -> None:
        """A DSN naming a database that does not exist fails at first use with StorageError."""
        dsn = psycopg.conninfo.make_conninfo(postgres_dsn, dbname="heph_no_such_database")
        storage = PostgresStorage(dsn, schema="unused")
        try:
            with anyio.fail_after(GUARD), pytest.raises(StorageError, match="does not exist") as e:
                await storage.get("order-1")
            assert isinstance(e.value.__cause__, psycopg.OperationalError)
        finally:
            await storage.aclose()

    async def test_table_dropped(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """Every call fails with StorageError (caused by psycopg's) when the table is gone."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            await rows(
                postgres_dsn,
                sql.SQL("DROP TABLE {} CASCADE").format(table(storage.schema, "heph_instances")),
            )
            calls = [
                storage.put(STAGES["waiting"]),
                storage.get("order-1"),
                storage.delete("order-1"),
                storage.query(status="running"),
            ]
            for call in calls:
                with pytest.raises(StorageError, match="heph_instances") as e:
                    await call
                assert isinstance(e.value.__cause__, psycopg.errors.UndefinedTable)

    async def test_unencodable_runs_no_sql(self, postgres_dsn: str) -> None:
        """An unencodable instance raises NotSerializable before the database is reached."""
        dsn = psycopg.conninfo.make_conninfo(postgres_dsn, dbname="heph_no_such_database")
        storage = PostgresStorage(dsn, schema="unused")
        bad = new(context={"when": datetime(2024, 1, 1, tzinfo=UTC)})
        try:
            with (
                anyio.fail_after(GUARD),
                pytest.raises(NotSerializable, match=r"context\['when'\]"),
            ):
                await storage.put(bad)
        finally:
            await storage.aclose()

    async def test_unencodable_stores_nothing(self, storage: PostgresStorage) -> None:
        """An unencodable put leaves the stored instance as it was."""
        bad = new(context={"when": {1, 2}})
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            with pytest.raises(NotSerializable):
                await storage.put(bad)
            assert attrs.evolve(STAGES["running"], started_monotonic=None) == (
                await storage.get("order-1")
            )

    async def test_unloadable_row(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """A row whose workflow no longer imports is skipped by query and refused by get."""
        gone = f"{flows.__name__}:GoneFlow"
        with anyio.fail_after(GUARD):
            await storage.put(attrs.evolve(STAGES["waiting"], id="broken"))
            await storage.put(STAGES["running"])
            await rows(
                postgres_dsn,
                sql.SQL(
                    "UPDATE {} SET state = jsonb_set(state, '{{workflow}}', to_jsonb(%s::text))"
                    " WHERE id = 'broken'"
                ).format(table(storage.schema, "heph_instances")),
                gone,
            )
            with structlog.testing.capture_logs() as logs:
                found = await storage.query()
            with pytest.raises(InstanceLoadError, match=gone):
                await storage.get("broken")
        assert ["order-1"] == [i.id for i in found]
        warnings = [(e["event"], e["instance_id"]) for e in logs if e["log_level"] == "warning"]
        assert [("instance skipped", "broken")] == warnings

    async def test_corrupt_row(self, storage: PostgresStorage, postgres_dsn: str) -> None:
        """A row whose state is not an instance at all is skipped by query."""
        with anyio.fail_after(GUARD):
            await storage.put(attrs.evolve(STAGES["waiting"], id="broken"))
            await storage.put(STAGES["running"])
            await rows(
                postgres_dsn,
                sql.SQL("UPDATE {} SET state = '{{}}' WHERE id = 'broken'").format(
                    table(storage.schema, "heph_instances")
                ),
            )
            assert ["order-1"] == [i.id for i in await storage.query()]

    async def test_closed(self, postgres_dsn: str, pg_schema: str) -> None:
        """A closed storage refuses every call with StorageError; closing again does nothing."""
        storage = PostgresStorage(postgres_dsn, schema=pg_schema)
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            await storage.aclose()
            await storage.aclose()
            for call in (storage.get("order-1"), storage.put(STAGES["running"]), storage.query()):
                with pytest.raises(StorageError, match="is closed"):
                    await call

    async def test_closed_before_use(self, postgres_dsn: str) -> None:
        """A storage closed before its first use never connects, and refuses calls."""
        storage = PostgresStorage(postgres_dsn, schema="unused")
        await storage.aclose()
        with anyio.fail_after(GUARD), pytest.raises(StorageError, match="is closed"):
            await storage.get("order-1")

    def test_other_event_loop(self, postgres_dsn: str, pg_schema: str) -> None:
        """A storage used from a second event loop says so with StorageError."""
        pool = psycopg_pool.AsyncConnectionPool(postgres_dsn, open=False)
        storage = PostgresStorage(pool=pool, schema=pg_schema)

        async def first() -> None:
            with anyio.fail_after(GUARD):
                await pool.open()
                try:
                    await storage.put(STAGES["running"])
                finally:
                    await pool.close()

        async def second() -> None:
            with anyio.fail_after(GUARD), pytest.raises(StorageError, match="event loop"):
                await storage.get("order-1")

        anyio.run(first)
        anyio.run(second)


class TestConstruction:
    @pytest.mark.parametrize(
        ("args", "kwargs", "message"),
        [
            pytest.param((), {}, "exactly one of dsn= and pool=, got: neither", id="neither"),
            pytest.param(("dbname=x",), {"pool": object()}, "got: both", id="both"),
            pytest.param(("dbname=x",), {"schema": ""}, "schema must be", id="empty-schema"),
            pytest.param(("dbname=x",), {"schema": "s" * 64}, "1 to 63 bytes", id="long-schema"),
            pytest.param(("dbname=x",), {"max_size": 0}, "max_size", id="sizes"),
            pytest.param(("dbname=x",), {"min_size": 3, "max_size": 2}, "got: 3, 2", id="min>max"),
            pytest.param(("no_equal_sign",), {}, "connection string", id="bad-dsn"),
        ],
    )
    def test_refused(self, args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
        """Arguments that cannot work are refused when the storage is made."""
        with pytest.raises(ValueError, match=message):
            PostgresStorage(*args, **kwargs)

    async def test_sizes_with_pool(self, postgres_dsn: str) -> None:
        """Pool sizes are refused with pool=: they size the storage's own pool."""
        pool = psycopg_pool.AsyncConnectionPool(postgres_dsn, open=False)
        with pytest.raises(ValueError, match="with pool=, size yours"):
            PostgresStorage(pool=pool, max_size=20)

    def test_repr_hides_password(self) -> None:
        """The repr shows where the database is, never the password."""
        storage = PostgresStorage("postgresql://heph:s3cret@db.example:6543/orders", schema="s")
        assert "PostgresStorage(host=db.example port=6543 dbname=orders, schema='s')" == repr(
            storage
        )


class TestGivenPool:
    async def test_not_closed(self, postgres_dsn: str, pg_schema: str) -> None:
        """A storage on a given pool works, and leaves the pool open when it closes."""
        async with psycopg_pool.AsyncConnectionPool(
            postgres_dsn, open=False, kwargs={"autocommit": True}
        ) as pool:
            with anyio.fail_after(GUARD):
                async with PostgresStorage(pool=pool, schema=pg_schema) as storage:
                    await storage.put(STAGES["waiting"])
                    assert "waiting" == (await storage.get("order-1") or new()).status
                assert not pool.closed
                async with pool.connection() as conn:
                    cursor = await conn.execute("SHOW search_path")
                    assert ('"$user", public',) == await cursor.fetchone()

    async def test_dict_rows_and_transactions(self, postgres_dsn: str, pg_schema: str) -> None:
        """A pool with another row factory and no autocommit works; its puts are committed."""
        async with psycopg_pool.AsyncConnectionPool(
            postgres_dsn, open=False, kwargs={"row_factory": dict_row}
        ) as pool:
            with anyio.fail_after(GUARD):
                async with PostgresStorage(pool=pool, schema=pg_schema) as storage:
                    await storage.put(STAGES["waiting"])
                    await storage.put(attrs.evolve(STAGES["running"], id="other"))
                    assert True is await storage.delete("other")
                    assert ["order-1"] == [i.id for i in await storage.query()]
                    assert "waiting" == (await storage.get("order-1") or new()).status
                seen = await rows(
                    postgres_dsn,
                    sql.SQL("SELECT id FROM {}").format(table(pg_schema, "heph_instances")),
                )
        assert [("order-1",)] == seen

    async def test_pool_to_missing_database(self, postgres_dsn: str) -> None:
        """A given pool that cannot connect fails the first call with StorageError."""
        dsn = psycopg.conninfo.make_conninfo(postgres_dsn, dbname="heph_no_such_database")
        async with psycopg_pool.AsyncConnectionPool(
            dsn, open=False, timeout=0.5, reconnect_timeout=1
        ) as pool:
            storage = PostgresStorage(pool=pool, schema="unused")
            with anyio.fail_after(GUARD), pytest.raises(StorageError, match="cannot open") as e:
                await storage.get("order-1")
            assert isinstance(e.value.__cause__, psycopg_pool.PoolTimeout)

    async def test_pool_not_open(self, postgres_dsn: str) -> None:
        """A given pool that was never opened is not opened by the storage: it says so."""
        pool = psycopg_pool.AsyncConnectionPool(postgres_dsn, open=False)
        storage = PostgresStorage(pool=pool, schema="unused")
        with anyio.fail_after(GUARD), pytest.raises(StorageError, match="not open"):
            await storage.get("order-1")


class TestOrdering:
    async def test_locks_released(self, storage: PostgresStorage) -> None:
        """The per-instance write locks are dropped once nobody holds or awaits them."""
        same = [attrs.evolve(STAGES["running"], runtime_metadata={"n": n}) for n in range(10)]
        others = [attrs.evolve(STAGES["running"], id=f"i{n}") for n in range(10)]
        with anyio.fail_after(GUARD):
            await asyncio.gather(*(storage.put(i) for i in [*same, *others]))
            await asyncio.gather(storage.delete("i0"), storage.delete("i0"))
        assert {} == storage._locks


class TestGroupCommit:
    async def test_puts_made_together_share_one_statement(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        """50 instances put at once are one statement (one commit), each kept with its history."""
        statements = []

        class Counting(psycopg.AsyncCursor[Any]):
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                statements.append(query)
                return await super().execute(query, *args, **kwargs)

        async def counting(conn: Any) -> None:
            conn.cursor_factory = Counting

        pool = psycopg_pool.AsyncConnectionPool(
            postgres_dsn, open=False, kwargs={"autocommit": True}, configure=counting
        )
        instances = [attrs.evolve(STAGES["running"], id=f"i{n}") for n in range(50)]
        records = [(Record("started", n),) for n in range(50)]
        async with pool, PostgresStorage(pool=pool, schema=pg_schema) as storage:
            with anyio.fail_after(GUARD):
                await storage.put(STAGES["waiting"])  # migrated, warm
                statements.clear()
                await asyncio.gather(*map(storage.put, instances, records))
                assert 1 == len(statements)
                kept = {i.id: i for i in await storage.query()}
                histories = [await storage.history(i.id) for i in instances]
        assert {i.id: i.status for i in instances} == {
            iid: kept[iid].status for iid in kept if iid != "order-1"
        }
        assert [[("started", n)] for n in range(50)] == [
            [(r.kind, r.at) for r in history] for history in histories
        ]
