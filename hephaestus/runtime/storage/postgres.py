"""``PostgresStorage``: instances in PostgreSQL, through a psycopg 3 connection pool.

Needs the extra: ``pip install 'hephaestus[postgres]'``.

The tables live in one PostgreSQL schema (``"hephaestus"`` unless told
otherwise), created if missing. Every statement names its table with the
schema, quoted by ``psycopg.sql`` (``"hephaestus".heph_instances``), so the
storage works on any pool whatever its connections' ``search_path``; the
statements are composed once, when the storage is built. The migration files
(``migrations/postgres``) name their tables bare: each runs with
``search_path`` set to the schema for its own transaction only.

First use opens the pool and migrates the schema (once, under an asyncio
lock). Each migration runs in its own transaction that first takes
``pg_advisory_xact_lock`` on a fixed key, so processes starting at once
migrate one after the other and the later ones find the work done.

A ``put`` is one upsert with its history records, and puts are
group-committed: those called while a batch is on its way make the next
batch, one statement and one commit (one round trip on the storage's own
pool, whose connections are in autocommit). Writes of one instance are
applied in the order they were called: each holds a per-instance
``asyncio.Lock`` (locks are FIFO) from its call until its statement has
committed, so one batch never holds two puts of an instance.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, TypeAlias

import structlog

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import tuple_row
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the extras installed
    raise ImportError(
        "PostgresStorage needs psycopg 3 and psycopg-pool: pip install 'hephaestus[postgres]'"
    ) from exc

from hephaestus._show import text_of
from hephaestus.core.history import Record
from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import InstanceLoadError, InstanceLost, StorageError
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.base import (
    ENDINGS,
    Page,
    check_by,
    check_ended,
    check_page,
    paged,
    select,
    where_of,
)
from hephaestus.runtime.storage.migrations import migrations

__all__ = ["PostgresStorage"]

_logger = structlog.get_logger("hephaestus.storage")

MIGRATION_LOCK = 0x6865_7068_6D69_6772
"""The ``pg_advisory_xact_lock`` key every migration transaction takes ("hephmigr")."""

_SIZES = (1, 10)

_Pool: TypeAlias = "AsyncConnectionPool[psycopg.AsyncConnection[Any]]"
"""A psycopg pool of async connections, whatever their row factory."""


# SQLSTATE classes of a server that may accept the same statement later: connection
# exceptions, transaction rollbacks (serialization, deadlock), insufficient resources
# (disk full, out of memory), operator intervention (shutdown), system errors (I/O).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"25006"})  # read_only_sql_transaction: a standby, a read-only disk


def transient(exc: BaseException) -> bool:
    """Whether the same statement may succeed later: the server, not the data, failed."""
    if not isinstance(exc, psycopg.Error):
        return isinstance(exc, OSError)
    state = exc.sqlstate
    if state is None:  # no server answer: a lost connection, a pool timeout
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES


class _IdLock:
    """Orders the writes of one instance; ``users`` counts the calls holding or awaiting it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Put:
    """One put waiting for its batch: the row, its records, its fence, its future."""

    __slots__ = ("done", "fence", "iid", "records", "row", "state", "wake")

    def __init__(
        self,
        iid: str,
        row: tuple[str, str, int, str],
        state: str,
        wake: datetime.datetime | None,
        records: Sequence[Record],
        fence: tuple[int, tuple[int, ...]] | None,
    ) -> None:
        self.iid = iid
        self.row = row
        self.state = state
        self.wake = wake
        self.records = records
        self.fence = fence
        self.done: asyncio.Future[None] = None  # type: ignore[assignment]  # set when queued


_applying: ContextVar[tuple[int, ...]] = ContextVar("hephaestus_applying", default=())


def applying(letters: tuple[int, ...]) -> None:
    """The next fenced put made in this task stores the effect of these inbox rows (by id).

    That put deletes them in its statement, with the change they made (and
    those named earlier in this task since its last put), and so does no
    other put: a row is gone only once its effect is stored.
    """
    _applying.set(_applying.get() + letters)


def _taking() -> tuple[int, ...]:
    letters = _applying.get()
    if letters:
        _applying.set(())
    return letters


def _params(puts: list[_Put]) -> list[Any]:
    """The parameters of a batch statement: one array per column."""
    history: list[list[Any]] = [[] for _ in range(9)]
    for put in puts:
        for record in put.records:
            history[0].append(put.iid)
            for column, value in zip(history[1:], record, strict=True):
                column.append(value)
    history[8] = [None if d is None else json.dumps(d) for d in history[8]]
    ids = [p.iid for p in puts]
    states = [p.state for p in puts]
    wakes = [p.wake for p in puts]
    if puts[0].fence is None:
        rows = [
            ids,
            [p.row[1] for p in puts],
            [p.row[2] for p in puts],
            [p.row[3] for p in puts],
            states,
            wakes,
        ]
    else:
        rows = [ids, [p.row[3] for p in puts], states, wakes, [p.fence[0] for p in puts]]  # type: ignore[index]
        read: tuple[list[str], list[int]] = ([], [])
        for put in puts:
            for letter in put.fence[1]:  # type: ignore[index]
                read[0].append(put.iid)
                read[1].append(letter)
        return rows + history + list(read)
    return rows + history


def _succeed(put: _Put) -> None:
    if not put.done.done():
        put.done.set_result(None)


def _fail(put: _Put, error: Exception) -> None:
    if not put.done.done():
        put.done.set_exception(error)
        put.done.exception()  # retrieved: a caller that was cancelled never reads it


def utc(ns: int) -> datetime.datetime:
    """A time in nanoseconds since the epoch, as an aware UTC datetime (a timestamptz)."""
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)


class PostgresStorage:
    """Instances in PostgreSQL (the schema and its tables are created on first use).

    Give exactly one of ``dsn`` (a libpq connection string or URL: the storage
    makes its own pool of ``min_size`` to ``max_size`` autocommit connections,
    and closes it in ``aclose``) and ``pool`` (an ``AsyncConnectionPool`` you
    open, size and close; connections with ``autocommit=True`` save a put two
    round trips). ``schema`` is the PostgreSQL schema holding the tables.
    Close it with ``await storage.aclose()`` or use it as an async context
    manager. A storage belongs to the event loop that first uses it.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: _Pool | None = None,
        schema: str = "hephaestus",
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        if (dsn is None) == (pool is None):
            given = "both" if dsn is not None else "neither"
            raise ValueError(f"PostgresStorage needs exactly one of dsn= and pool=, got: {given}")
        if not isinstance(schema, str) or not 0 < len(schema.encode()) <= 63:
            raise ValueError(f"schema must be a PostgreSQL name of 1 to 63 bytes, got: {schema!r}")
        if dsn is not None:
            if not 0 <= min_size <= max_size or max_size < 1:
                raise ValueError(
                    f"need 0 <= min_size <= max_size >= 1, got: {min_size}, {max_size}"
                )
            try:
                info = conninfo_to_dict(dsn)
            except psycopg.Error as exc:
                raise ValueError(f"dsn is not a PostgreSQL connection string: {exc}") from None
            # What the repr shows: never the password.
            shown = " ".join(f"{k}={info[k]}" for k in ("host", "port", "dbname") if k in info)
            shown = shown or "libpq defaults"
        elif (min_size, max_size) != _SIZES:
            raise ValueError(
                "min_size and max_size size the storage's own pool: with pool=, size yours"
            )
        else:
            assert pool is not None
            shown = f"pool={pool.name!r}"
        self.schema = schema
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self._given = pool
        self._shown = shown
        self._pool: _Pool | None = None  # set once open and migrated
        self._loop: asyncio.AbstractEventLoop | None = None
        self._init_lock = asyncio.Lock()
        self._closed = False
        self._locks: dict[str, _IdLock] = {}
        self._fences: dict[str, int] = {}
        self._queue: list[_Put] = []
        self._flusher: asyncio.Task[None] | None = None

        schema_id = sql.Identifier(schema)

        def compose(text: str) -> str:
            return sql.SQL(text).format(schema=schema_id).as_string(None)

        self._schema_sql = schema_id.as_string(None)
        # A batch of puts is one statement: the rows upserted (or, fenced, updated
        # only where the epoch matches), their history appended, the inbox rows
        # they applied deleted. One round trip and one commit for the batch.
        batch = (
            " INSERT INTO {schema}.heph_history"
            " (instance_id, kind, at, step, item, attempt, event, duration, details)"
            " SELECT r.id, r.kind, r.at, r.step, r.item, r.attempt, r.event, r.duration,"
            " r.details::jsonb FROM unnest("
            "%b::text[], %b::text[], %s::bigint[], %b::text[], %s::integer[], %s::integer[],"
            " %b::text[], %s::bigint[], %b::text[]) WITH ORDINALITY"
            " AS r(id, kind, at, step, item, attempt, event, duration, details, n)"
            " WHERE r.id IN (SELECT id FROM up) ORDER BY r.n"
        )
        self._upsert = compose(
            "WITH up AS (INSERT INTO {schema}.heph_instances"
            " (id, workflow, workflow_version, status, state, wake_at)"
            " SELECT u.id, u.workflow, u.version, u.status, u.state::jsonb, u.wake FROM unnest("
            "%b::text[], %b::text[], %s::integer[], %b::text[], %b::text[], %s::timestamptz[])"
            " AS u(id, workflow, version, status, state, wake)"
            " ON CONFLICT (id) DO UPDATE SET"
            " workflow = excluded.workflow, workflow_version = excluded.workflow_version,"
            " status = excluded.status, state = excluded.state, wake_at = excluded.wake_at,"
            " updated_at = now() RETURNING id),"
            " logged AS (" + batch + ") SELECT id FROM up"
        )
        self._update_fenced = compose(
            "WITH up AS (UPDATE {schema}.heph_instances i SET"
            " status = u.status, state = u.state::jsonb, wake_at = u.wake, updated_at = now()"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %s::timestamptz[], %s::bigint[])"
            " AS u(id, status, state, wake, epoch)"
            " WHERE i.id = u.id AND i.epoch = u.epoch RETURNING i.id),"
            " logged AS (" + batch + "),"
            " read AS (DELETE FROM {schema}.heph_inbox b USING unnest(%b::text[], %s::bigint[])"
            " AS r(id, letter) WHERE b.id = r.letter AND r.id IN (SELECT id FROM up))"
            " SELECT id FROM up"
        )
        self._get = compose("SELECT state::text FROM {schema}.heph_instances WHERE id = %s")
        self._delete = compose(
            "WITH gone AS (DELETE FROM {schema}.heph_history WHERE instance_id = %s)"
            " DELETE FROM {schema}.heph_instances WHERE id = %s"
        )
        self._history = compose(
            "SELECT kind, at, step, item, attempt, event, duration, details::text"
            " FROM {schema}.heph_history WHERE instance_id = %s ORDER BY seq"
            " LIMIT %s OFFSET %s"
        )
        self._select = compose("SELECT id, state::text FROM {schema}.heph_instances")
        self._table = compose("{schema}.heph_instances")
        self._version_table = compose("{schema}.heph_schema_version")
        self._create_schema = compose("CREATE SCHEMA {schema}")
        self._search_path = compose("SET LOCAL search_path TO {schema}")

    def __repr__(self) -> str:
        return f"PostgresStorage({self._shown}, schema={self.schema!r})"

    async def __aenter__(self) -> PostgresStorage:
        await self._ready()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the protocol

    async def get(self, instance_id: str) -> Instance | None:
        """The stored instance with this id, or None; ``InstanceLoadError`` if it cannot load."""
        rows = await self._read(self._get, (instance_id,), f"get of {instance_id!r}")
        return codec.loads(rows[0][0]) if rows else None

    async def put(self, instance: Instance, history: Sequence[Record] = ()) -> None:
        """Upsert ``instance`` and append ``history``, in one statement (see ``_flush``).

        ``NotSerializable`` (nothing stored) if the codec refuses the instance.
        """
        state = codec.encode(instance)  # raises before any SQL runs
        iid = instance.id
        epoch = self._fences.get(iid)
        timers = instance.timers
        wake = None
        if timers and not instance.status.terminal:
            wake = utc(min(timer.due for timer in timers.values()))
        put = _Put(
            iid,
            (iid, state["workflow"], instance.workflow_version, instance.status.value),
            json.dumps(state, separators=(",", ":")),
            wake,
            history,
            None if epoch is None else (epoch, _taking()),
        )
        entry = self._locks.get(iid)
        if entry is None:
            entry = self._locks[iid] = _IdLock()
        entry.users += 1
        try:
            await entry.lock.acquire()  # after the earlier writes of the instance: call order
        except BaseException:
            self._release(iid, entry, locked=False)
            raise
        try:
            await self._ready()
        except BaseException:
            self._release(iid, entry)
            raise
        loop = asyncio.get_running_loop()
        put.done = loop.create_future()
        put.done.add_done_callback(lambda _: self._release(iid, entry))
        self._queue.append(put)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        try:
            await asyncio.shield(put.done)
        except asyncio.CancelledError:
            if put in self._queue:  # not sent: it never will be
                self._queue.remove(put)
                put.done.cancel()
            # Sent: the instance's next write waits until it has landed.
            raise

    def _release(self, iid: str, entry: _IdLock, *, locked: bool = True) -> None:
        if locked:
            entry.lock.release()
        entry.users -= 1
        if not entry.users:
            del self._locks[iid]

    def fence(self, instance_id: str, epoch: int | None) -> None:
        """Make the puts of ``instance_id`` conditional on its ``epoch`` (None: not any more).

        A fenced put updates the row only if its epoch is still ``epoch`` and
        raises ``InstanceLost`` otherwise: another process took the instance.
        It also deletes the inbox rows whose effect it stores (see
        ``applying``). The distributed runner's workers use it.
        """
        if epoch is None:
            self._fences.pop(instance_id, None)
        else:
            self._fences[instance_id] = epoch

    async def _flush(self) -> None:
        """Write the queued puts, a batch at a time, until none is left: the group commit.

        The puts queued while a batch is on its way make the next batch, so
        many drivers' checkpoints share one statement and one commit, and a
        lone put goes at once. Each put's caller is released once its batch
        has committed (or failed).
        """
        try:
            while self._queue:
                puts, self._queue = self._queue, []
                await self._send(puts)
        finally:
            self._flusher = None
            if self._queue:  # queued as it stopped (cancelled with the loop): fail them
                for put in self._queue:
                    _fail(put, StorageError(f"{self!r}: the writer stopped"))
                self._queue = []

    async def _send(self, puts: list[_Put]) -> None:
        plain = [p for p in puts if p.fence is None]
        fenced = [p for p in puts if p.fence is not None]
        for group, statement in ((plain, self._upsert), (fenced, self._update_fenced)):
            if not group:
                continue
            try:
                pool = await self._ready()
                async with pool.connection() as conn:
                    cursor = conn.cursor(row_factory=tuple_row)
                    await cursor.execute(statement, _params(group))
                    written = {row[0] for row in await cursor.fetchall()}
            except Exception as exc:  # psycopg's, or a value it cannot send
                if len(group) > 1 and not transient(exc):
                    for put in group:  # one put refused: find it, the others land
                        await self._send([put])
                    continue
                for put in group:
                    error = self._error(exc, f"put of instance {put.iid!r}")
                    error.__cause__ = exc
                    _fail(put, error)
                continue
            for put in group:
                if put.iid in written:
                    _succeed(put)
                else:
                    _fail(put, InstanceLost(put.iid))

    async def delete(self, instance_id: str) -> bool:
        """Remove the instance with this id and its history; True if there was one."""
        params = (instance_id, instance_id)
        return await self._write(instance_id, self._delete, params, "delete") > 0

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> list[Record]:
        """The instance's records, oldest first (see ``Storage.history``)."""
        check_page(offset, limit)
        rows = await self._read(
            self._history, (instance_id, limit, offset), f"history of {instance_id!r}"
        )
        return [
            Record._make((*row[:7], None if row[7] is None else json.loads(row[7]))) for row in rows
        ]

    async def query(
        self,
        *,
        id: str | None = None,  # the protocol's filter names the field
        status: Status | str | None = None,
        status_in: Iterable[Status | str] | None = None,
        workflow: type[Workflow] | None = None,
        workflow_version: int | None = None,
    ) -> list[Instance]:
        """The instances matching every filter, oldest first; unloadable rows are skipped."""
        filters = (
            ("id = %s", id),
            ("status = %s", None if status is None else Status(status).value),
            # ANY: one statement whatever the number of statuses; [] matches nothing.
            (
                "status = ANY(%s)",
                None if status_in is None else [Status(s).value for s in status_in],
            ),
            ("workflow = %s", None if workflow is None else codec.import_path(workflow)),
            ("workflow_version = %s", workflow_version),
        )
        given = [(clause, value) for clause, value in filters if value is not None]
        where = f" WHERE {' AND '.join(c for c, _ in given)}" if given else ""
        params = [value for _, value in given]
        rows = await self._read(f"{self._select}{where} ORDER BY created_at, id", params, "query")
        found = []
        for row_id, state in rows:
            try:
                found.append(codec.loads(state))
            except InstanceLoadError as exc:  # one broken instance must not hide the others
                _logger.warning("instance skipped", instance_id=row_id, reason=str(exc))
        return found

    async def page(self, **selection: Any) -> Page:
        """A page of the matching instances (see ``Storage.page``), from the indexes."""
        chosen = select(**selection)
        clauses, params = where_of(chosen, "%s", "to_timestamp(%s)", _prefix_like)
        if chosen.cursor is not None:
            clauses.append(
                f"(created_at, id) {'<' if chosen.newest_first else '>'} (%s::timestamptz, %s)"
            )
            params += [chosen.cursor[0], chosen.cursor[1]]
        order = "DESC" if chosen.newest_first else "ASC"
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT id, state::text, created_at FROM {self._table}{where}"
            f" ORDER BY created_at {order}, id {order} LIMIT %s"
        )
        rows = await self._read(query, [*params, chosen.limit + 1], "page")
        return paged(rows, chosen.limit, datetime.datetime.isoformat)

    async def count(
        self, *, by: Sequence[str] = ("status", "workflow")
    ) -> dict[tuple[Any, ...], int]:
        """How many instances per value of the ``by`` fields (see ``Storage.count``)."""
        columns = ", ".join(check_by(by))  # the fields are the columns' names
        rows = await self._read(
            f"SELECT {columns}, count(*) FROM {self._table} GROUP BY {columns}", (), "count"
        )
        return {tuple(row[:-1]): row[-1] for row in rows}

    async def ended(
        self, *, since: datetime.datetime, every: int = 60
    ) -> dict[tuple[int, str], int]:
        """Instances ended per slot and status (see ``Storage.ended``), from a partial index."""
        stamp = check_ended(since, every)
        ended = ", ".join(f"'{status}'" for status in ENDINGS)  # the index's condition
        rows = await self._read(
            f"SELECT (floor(extract(epoch FROM updated_at) / %s) * %s)::bigint, status, count(*)"
            f" FROM {self._table} WHERE status IN ({ended}) AND updated_at >= to_timestamp(%s)"
            " GROUP BY 1, 2",
            (every, every, stamp),
            "ended",
        )
        return {(int(slot), status): n for slot, status, n in rows}

    async def migrate(self) -> None:
        """Create the schema and bring its tables to the newest version (first use does it too)."""
        await self._ready()

    async def aclose(self) -> None:
        """Close the pool if the storage made it; later calls raise ``StorageError``."""
        self._closed = True
        async with self._init_lock:  # waits for a first use in progress
            pool, self._pool = self._pool, None
        if pool is not None and self._given is None:
            await pool.close()

    # ------------------------------------------------------------------ the database

    async def _read(self, query: str, params: Any, what: str) -> list[tuple[Any, ...]]:
        pool = await self._ready()
        try:
            async with pool.connection() as conn:
                cursor = conn.cursor(row_factory=tuple_row)  # whatever the pool's row factory
                await cursor.execute(query, params)
                return await cursor.fetchall()
        except Exception as exc:  # psycopg's, or a value it cannot send: this call fails alone
            raise self._error(exc, what) from exc

    def _error(self, exc: Exception, what: str) -> StorageError:
        return StorageError(f"{self!r}: {what} failed: {text_of(exc)}", transient=transient(exc))

    async def _write(self, instance_id: str, query: str, params: Any, what: str) -> int:
        """Run ``query`` after the earlier writes of ``instance_id``; return its rowcount."""
        entry = self._locks.get(instance_id)
        if entry is None:
            entry = self._locks[instance_id] = _IdLock()
        entry.users += 1
        try:
            async with entry.lock:  # taken (or queued for) before the first await: call order
                pool = await self._ready()
                try:
                    # A pool in transaction mode commits when the connection goes back,
                    # so the lock is held until then.
                    async with pool.connection() as conn:
                        cursor = await conn.execute(query, params)
                        return cursor.rowcount
                except Exception as exc:  # psycopg's, or a value it cannot send
                    raise self._error(exc, f"{what} of instance {instance_id!r}") from exc
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[instance_id]

    async def _ready(self) -> _Pool:
        """The open pool, after the first call opened it and migrated the schema."""
        pool = self._pool
        if pool is not None and self._loop is asyncio.get_running_loop():
            return pool
        loop = asyncio.get_running_loop()
        async with self._init_lock:
            if self._closed:
                raise StorageError(f"{self!r} is closed")
            if self._pool is not None:
                if self._loop is not loop:
                    raise StorageError(
                        f"{self!r} belongs to the event loop that first used it: "
                        f"make one storage per event loop"
                    )
                return self._pool
            try:
                if self._dsn is not None:
                    # Migrate on a connection of its own: a bad DSN fails now, with
                    # libpq's reason, rather than as a pool timeout.
                    async with await psycopg.AsyncConnection.connect(
                        self._dsn, autocommit=True
                    ) as conn:
                        await self._migrate(conn)
                    pool = AsyncConnectionPool(
                        self._dsn,
                        open=False,
                        min_size=self._sizes[0],
                        max_size=self._sizes[1],
                        kwargs={"autocommit": True},
                        name=f"hephaestus:{self.schema}",
                    )
                    await pool.open()
                else:
                    pool = self._given
                    assert pool is not None
                    async with pool.connection() as conn:
                        await self._migrate(conn)
            except psycopg.Error as exc:
                raise StorageError(
                    f"{self!r} cannot open its database: {exc}", transient=transient(exc)
                ) from exc
            self._loop = loop
            self._pool = pool
            return pool

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Bring the schema to the newest version, one migration per transaction."""
        known = migrations("postgres")
        newest = len(known)
        cursor = conn.cursor(row_factory=tuple_row)
        for version, text in known:
            async with conn.transaction():
                # Read committed: after the lock, each statement sees what the
                # migrator before this one committed.
                await cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await cursor.execute(
                    "SELECT to_regnamespace(%s::text) IS NOT NULL,"
                    " to_regclass(%s::text) IS NOT NULL",
                    (self._schema_sql, self._version_table),
                )
                has_schema, has_table = await cursor.fetchone() or (False, False)
                if not has_schema:  # checked first: CREATE ... IF NOT EXISTS needs the privilege
                    await cursor.execute(self._create_schema)
                if not has_table:
                    await cursor.execute(
                        f"CREATE TABLE {self._version_table} (version integer NOT NULL)"
                    )
                await cursor.execute(f"SELECT version FROM {self._version_table}")
                row = await cursor.fetchone()
                if row is None:
                    await cursor.execute(f"INSERT INTO {self._version_table} VALUES (0)")
                current = 0 if row is None else row[0]
                if current > newest:
                    raise StorageError(
                        f"schema {self.schema!r} is at version {current}, newer than this "
                        f"Hephaestus knows ({newest}): upgrade Hephaestus"
                    )
                if current >= version:
                    continue
                await cursor.execute(self._search_path)
                await cursor.execute(text, prepare=False)  # several statements, no parameters
                await cursor.execute(f"UPDATE {self._version_table} SET version = %s", (version,))

    @property
    def dsn(self) -> str | None:
        """The ``dsn`` it was given (None: it was given a ``pool``)."""
        return self._dsn

    @property
    def pool(self) -> _Pool | None:
        """The ``pool`` it was given (None: it makes its own from ``dsn``)."""
        return self._given


def _prefix_like(prefix: str) -> tuple[str, list[Any]]:
    """Ids that start with ``prefix``: a LIKE (its wildcards escaped) on a pattern index."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "id LIKE %s", [escaped + "%"]
