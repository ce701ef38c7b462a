"""``SQLiteStorage``: the embedded durable storage, one SQLite file in WAL mode.

All database work happens in one thread of the storage's own, so the event
loop never waits on the disk. Writes are committed in groups: every ``put``
that arrives while the thread is committing joins the next transaction, so a
thousand instances advancing at once share one commit (and one ``fsync``),
and each ``put`` still returns only once its row is committed.

``synchronous="full"`` (the default) makes each commit durable against power
loss and operating-system crashes: SQLite syncs the WAL to disk before the
commit returns. ``synchronous="normal"`` syncs only at checkpoints: a commit
survives the process being killed (the WAL is in the operating system's
hands), but the last commits may be lost if the machine loses power.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import structlog

from hephaestus._show import text_of
from hephaestus.core.durations import seconds
from hephaestus.core.history import Record
from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import InstanceLoadError, NotSerializable, StorageError
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

__all__ = ["SQLiteStorage"]

_logger = structlog.get_logger("hephaestus.storage")

_UPSERT = """
INSERT INTO heph_instances (id, workflow, workflow_version, status, state, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    workflow = excluded.workflow,
    workflow_version = excluded.workflow_version,
    status = excluded.status,
    state = excluded.state,
    updated_at = excluded.updated_at
"""

_APPEND = """
INSERT INTO heph_history (instance_id, kind, at, step, item, attempt, event, duration, details)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_STOP = object()
_Request = tuple[str, Any, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class SQLiteStorage:
    """Instances in a SQLite file (created with its schema on first use).

    ``path`` is the database file; ``synchronous`` is ``"full"`` (each commit
    durable against power loss; the default) or ``"normal"`` (durable against
    a crash of the process); ``busy_timeout`` is how long, in seconds, a call
    waits for another connection's lock before it fails with a transient
    ``StorageError``. Close it with ``await storage.aclose()`` or use
    it as an async context manager; an unclosed storage's thread ends with the
    process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got: {synchronous!r}")
        self.busy_timeout = seconds(busy_timeout, "busy_timeout")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self._requests: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r}, synchronous={self.synchronous!r})"

    async def __aenter__(self) -> SQLiteStorage:
        await self._call("ping", None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the protocol

    async def get(self, instance_id: str) -> Instance | None:
        result: Instance | None = await self._call("get", instance_id)
        return result

    async def put(self, instance: Instance, history: Sequence[Record] = ()) -> None:
        await self._call("put", (instance, history))

    async def delete(self, instance_id: str) -> bool:
        result: bool = await self._call("delete", instance_id)
        return result

    async def history(
        self, instance_id: str, *, offset: int = 0, limit: int | None = None
    ) -> list[Record]:
        check_page(offset, limit)
        result: list[Record] = await self._call("history", (instance_id, offset, limit))
        return result

    async def query(
        self,
        *,
        id: str | None = None,  # the protocol's filter names the field
        status: Status | str | None = None,
        status_in: Iterable[Status | str] | None = None,
        workflow: type[Workflow] | None = None,
        workflow_version: int | None = None,
    ) -> list[Instance]:
        clauses: list[str] = []
        params: list[Any] = []
        if id is not None:
            clauses.append("id = ?")
            params.append(id)
        if status is not None:
            clauses.append("status = ?")
            params.append(Status(status).value)
        if status_in is not None:
            statuses = [Status(s).value for s in status_in]
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})" if statuses else "0")
            params.extend(statuses)
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(codec.import_path(workflow))
        if workflow_version is not None:
            clauses.append("workflow_version = ?")
            params.append(workflow_version)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        result: list[Instance] = await self._call("query", (where, params))
        return result

    async def page(self, **selection: Any) -> Page:
        """A page of the matching instances (see ``Storage.page``), from the indexes."""
        chosen = select(**selection)
        clauses, params = where_of(chosen, "?", "?", _prefix_range)
        if chosen.cursor is not None:
            clauses.append(f"(created_at, id) {'<' if chosen.newest_first else '>'} (?, ?)")
            params += [float(chosen.cursor[0]), chosen.cursor[1]]
        order = "DESC" if chosen.newest_first else "ASC"
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            "SELECT CAST(id AS BLOB), CAST(state AS BLOB), created_at FROM heph_instances"
            f"{where} ORDER BY created_at {order}, id {order} LIMIT ?"
        )
        rows: list[tuple[Any, ...]] = await self._call("rows", (sql, [*params, chosen.limit + 1]))
        return paged(rows, chosen.limit, repr)

    async def count(
        self, *, by: Sequence[str] = ("status", "workflow")
    ) -> dict[tuple[Any, ...], int]:
        columns = ", ".join(check_by(by))  # the fields are the columns' names
        result: dict[tuple[Any, ...], int] = await self._call("count", columns)
        return result

    async def ended(self, *, since: datetime, every: int = 60) -> dict[tuple[int, str], int]:
        """Instances ended per slot and status (see ``Storage.ended``), from a partial index."""
        stamp = check_ended(since, every)
        sql = (  # the IN list as the index's: SQLite uses a partial index on that condition alone
            "SELECT CAST(updated_at / ? AS INTEGER) * ?, status, count(*)"
            " FROM heph_instances INDEXED BY heph_instances_ended"
            f" WHERE status IN {_ENDED} AND updated_at >= ? GROUP BY 1, 2"
        )
        rows: list[tuple[int, str, int]] = await self._call("rows", (sql, [every, every, stamp]))
        return {(slot, status): n for slot, status, n in rows}

    async def aclose(self) -> None:
        """Finish the pending work, close the database and stop the thread."""
        with self._lock:
            thread = self._thread
            first = not self._closed
            self._closed = True
            if thread is not None and first:
                self._requests.put(_STOP)
        if thread is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    # ------------------------------------------------------------------ the thread

    async def _call(self, op: str, arg: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:  # so that nothing is queued behind the stop of aclose()
            if self._closed:
                raise StorageError(f"{self!r} is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name=f"hephaestus-sqlite:{self.path}", daemon=True
                )
                self._thread.start()
            self._requests.put((op, arg, future, loop))
        return await future

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self) -> None:
        """The storage thread: take requests in batches; commit each run of puts at once.

        It never dies of a request: whatever one raises fails that request (or,
        at worst, its batch) with a ``StorageError``, and the thread goes on.
        A database that cannot be opened fails the requests that came, and the
        next request tries again.
        """
        requests = self._requests
        conn: sqlite3.Connection | None = None
        try:
            while True:
                item = requests.get()
                batch = [item]
                while len(batch) < 4096:
                    try:
                        batch.append(requests.get_nowait())
                    except queue.Empty:
                        break
                stop = _STOP in batch
                work: list[_Request] = [r for r in batch if r is not _STOP]  # type: ignore[misc]
                if work:
                    try:
                        if conn is None:
                            conn = self._connect()
                        settled = self._run_batch(conn, work)
                    except BaseException as exc:  # the thread must live on
                        error = self._error(exc, "open" if conn is None else "batch")
                        settled = [(r[2], None, error, r[3]) for r in work]
                    _deliver(settled)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _error(self, exc: BaseException, what: str) -> BaseException:
        """The exception a caller gets for ``exc``, raised while doing ``what``."""
        if isinstance(exc, NotSerializable | InstanceLoadError):
            return exc
        if isinstance(exc, StorageError):
            error = StorageError(f"{self!r} cannot open its database: {exc}")
        elif what == "open":
            error = StorageError(
                f"{self!r} cannot open its database: {text_of(exc)}", transient=_transient(exc)
            )
        else:
            error = StorageError(
                f"{self!r}: {what} failed: {text_of(exc)}", transient=_transient(exc)
            )
        error.__cause__ = exc
        return error

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> list[_Settled]:
        settled: list[_Settled] = []
        puts: list[tuple[_Request, _Rows]] = []

        def write(rows: list[_Rows]) -> None:
            with _transaction(conn):
                conn.executemany(_UPSERT, [row for row, _ in rows])
                conn.executemany(_APPEND, [record for _, log in rows for record in log])

        def flush() -> None:
            if not puts:
                return
            try:
                write([rows for _, rows in puts])
            except Exception as exc:
                if len(puts) == 1 or _transient(exc):
                    error = self._error(exc, "the write")
                    settled.extend((r[2], None, error, r[3]) for r, _ in puts)
                else:  # one row refused: write the others alone, so that only it fails
                    for request, rows in puts:
                        try:
                            write([rows])
                        except Exception as one:
                            settled.append(
                                (request[2], None, self._error(one, "the write"), request[3])
                            )
                        else:
                            settled.append((request[2], None, None, request[3]))
            else:
                settled.extend((r[2], None, None, r[3]) for r, _ in puts)
            puts.clear()

        now = time.time()
        for request in batch:
            op, arg = request[0], request[1]
            if op == "put":
                try:
                    rows = _row(arg[0], arg[1], now), _log(arg[0].id, arg[1])
                except Exception as exc:
                    settled.append((request[2], None, self._error(exc, "put"), request[3]))
                else:
                    puts.append((request, rows))
                continue
            flush()
            try:
                result = _READS[op](conn, arg)
            except Exception as exc:
                settled.append((request[2], None, self._error(exc, op), request[3]))
            else:
                settled.append((request[2], result, None, request[3]))
        flush()
        return settled


_Settled = tuple["asyncio.Future[Any]", Any, BaseException | None, asyncio.AbstractEventLoop]
_Rows = tuple[tuple[Any, ...], list[tuple[Any, ...]]]
"""A put's rows: the instance's, and its history's."""


def _deliver(settled: list[_Settled]) -> None:
    """Hand each result to the loop of its caller."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for item in settled:
        by_loop.setdefault(item[3], []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, items)


# SQLite's primary result codes for a database that may accept the same write later:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL.
_TRANSIENT_CODES = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15})


def _transient(exc: BaseException) -> bool:
    """Whether the same call may succeed later: the database, not the data, failed."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT_CODES
    return isinstance(exc, OSError | MemoryError)


def _row(instance: Instance, history: Sequence[Record], now: float) -> tuple[Any, ...]:
    """The instance's row. A runner's put brings records: their times (its clock's) stamp it."""
    state = codec.dumps(instance)
    updated = history[-1].at / 1e9 if history else now
    return (
        instance.id,
        codec.import_path(instance.workflow),
        instance.workflow_version,
        instance.status.value,
        state,
        instance.started_at / 1e9 if instance.started_at else updated,
        updated,
    )


def _log(instance_id: str, history: Sequence[Record]) -> list[tuple[Any, ...]]:
    """The rows of ``history``'s records: their fields, ``details`` as JSON."""
    return [
        (instance_id, *record[:7], None if record[7] is None else json.dumps(record[7]))
        for record in history
    ]


def _settle(settled: list[_Settled]) -> None:
    for future, result, error, _ in settled:
        if future.done():  # the caller was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _transaction:  # noqa: N801  # used like a function: `with _transaction(conn):`
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to the newest version, one migration per transaction."""
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS heph_schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM heph_schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO heph_schema_version (version) VALUES (0)")
    for version, sql in migrations("sqlite"):
        with _transaction(conn):
            (current,) = conn.execute("SELECT version FROM heph_schema_version").fetchone()
            if current >= version:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("UPDATE heph_schema_version SET version = ?", (version,))
    (current,) = conn.execute("SELECT version FROM heph_schema_version").fetchone()
    newest = len(migrations("sqlite"))
    if current > newest:
        raise StorageError(
            f"the database is at schema version {current}, newer than this Hephaestus ({newest})"
        )


def _statements(sql: str) -> list[str]:
    """The statements of a migration (a trigger's body holds semicolons of its own)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], ""
    for part in "\n".join(lines).split(";"):
        current += f"{part};"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements


def _get(conn: sqlite3.Connection, instance_id: str) -> Instance | None:
    # As bytes: a row whose text is not valid UTF-8 fails in the codec, as itself.
    sql = "SELECT CAST(state AS BLOB) FROM heph_instances WHERE id = ?"
    row = conn.execute(sql, (instance_id,)).fetchone()
    return None if row is None else codec.loads(row[0])


def _delete(conn: sqlite3.Connection, instance_id: str) -> bool:
    with _transaction(conn):
        cursor = conn.execute("DELETE FROM heph_instances WHERE id = ?", (instance_id,))
        conn.execute("DELETE FROM heph_history WHERE instance_id = ?", (instance_id,))
    return cursor.rowcount > 0


def _history(conn: sqlite3.Connection, arg: tuple[str, int, int | None]) -> list[Record]:
    instance_id, offset, limit = arg
    sql = (
        "SELECT kind, at, step, item, attempt, event, duration, details FROM heph_history"
        " WHERE instance_id = ? ORDER BY seq LIMIT ? OFFSET ?"
    )
    rows = conn.execute(sql, (instance_id, -1 if limit is None else limit, offset))
    return [
        Record._make((*row[:7], None if row[7] is None else json.loads(row[7]))) for row in rows
    ]


def _count(conn: sqlite3.Connection, columns: str) -> dict[tuple[Any, ...], int]:
    # heph_counts: the counts per status, workflow and version, kept by triggers.
    sql = f"SELECT {columns}, sum(n) FROM heph_counts GROUP BY {columns} HAVING sum(n) > 0"
    return {tuple(row[:-1]): row[-1] for row in conn.execute(sql)}


def _query(conn: sqlite3.Connection, arg: tuple[str, list[Any]]) -> list[Instance]:
    where, params = arg
    found = []
    # Bytes, not text: a row that is not valid UTF-8 is skipped alone, not the whole query.
    sql = f"SELECT CAST(id AS BLOB), CAST(state AS BLOB) FROM heph_instances{where} ORDER BY rowid"
    for row_id, state in conn.execute(sql, params):
        try:
            found.append(codec.loads(state))
        except InstanceLoadError as exc:  # one broken instance must not hide the others
            shown_id = bytes(row_id).decode("utf-8", "replace")
            _logger.warning("instance skipped", instance_id=shown_id, reason=str(exc))
    return found


_READS: dict[str, Callable[[sqlite3.Connection, Any], Any]] = {
    "get": _get,
    "delete": _delete,
    "query": _query,
    "count": _count,
    "rows": lambda conn, arg: conn.execute(*arg).fetchall(),
    "history": _history,
    "ping": lambda conn, arg: None,
}


_ENDED = "(" + ", ".join(f"'{status}'" for status in ENDINGS) + ")"


def _prefix_range(prefix: str) -> tuple[str, list[Any]]:
    """Ids that start with ``prefix``, as a range of the primary key (BINARY: code point order)."""
    last = ord(prefix[-1])
    if last == 0x10FFFF:  # no next character: the open range
        return "id >= ?", [prefix]
    return "id >= ? AND id < ?", [prefix, prefix[:-1] + chr(last + 1)]
