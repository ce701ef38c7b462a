"""One ``LocalRunner`` per durable storage: the hold a runner takes while it runs.

A ``LocalRunner`` keeps the instances it drives in memory and, when it enters,
recovers every unfinished instance of its storage; two of them on one storage
would drive the same instances twice. So entering takes a hold on the storage,
before it recovers anything, and leaving lets it go. A hold is the operating
system's or the database server's, never a row with a lease: it ends with the
process that took it, so a runner that was killed never blocks the next one.

- ``SQLiteStorage``: an exclusive ``flock`` on a file beside the database,
  ``<database>.runner.lock``, kept open while the runner runs. The lock
  belongs to the open file, so a second runner in the same process is
  refused too, and the kernel drops it the moment the process dies. The
  file says who holds it (runner, pid, host, since when), for the refusal's
  message; it stays when the runner leaves (deleting a lock file races with
  the next runner opening it). An in-memory database (``":memory:"`` or
  ``""``) is each connection's own: nothing to hold.
- ``PostgresStorage``: a session-level advisory lock, ``pg_try_advisory_lock``
  on :func:`lock_key` of the schema, on a connection of the runner's own,
  kept open while it runs (its ``application_name`` names the process and
  host). The server drops the lock when the session ends: at once when the
  process is killed (its kernel closes the socket); for a host that vanished
  without closing it, when TCP keepalive finds the peer dead (the session's
  ``tcp_keepalives_*`` are set to find it within 25 seconds). A runner that
  finds the lock held by a process of its own host that no longer exists
  waits up to :data:`DEAD_HOLDER_GRACE` seconds for the server to end that
  session.
- Any other storage: nothing. A ``MemoryStorage`` is its own runner's.

The distributed runner's workers share their schema on purpose (their writes
are fenced by epochs): their driver does not take the hold.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import json
import os
import socket
import sys
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs
import structlog

from hephaestus._show import text_of
from hephaestus.exceptions import StorageError, StorageHeld
from hephaestus.runtime.storage.base import Storage
from hephaestus.runtime.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    import psycopg

    from hephaestus.runtime.storage.postgres import PostgresStorage

__all__ = ["DEAD_HOLDER_GRACE", "KEEPALIVE", "LOCK_SUFFIX", "Hold", "Holder", "lock_key", "take"]

_logger = structlog.get_logger("hephaestus.runner")

LOCK_SUFFIX = ".runner.lock"
"""The SQLite hold's file is the database's path (symbolic links resolved) plus this."""

DEAD_HOLDER_GRACE = 5.0
"""Seconds a runner waits for PostgreSQL to end the session of a holder known to be dead.

Known dead: the holder ran on this host and its process no longer exists. The
server ends such a session as soon as it reads the closed socket, usually
within milliseconds; the wait ends as soon as the lock is free.
"""

KEEPALIVE = {"idle": 10, "interval": 5, "count": 3}
"""TCP keepalive of the PostgreSQL hold's connection, both ends: probes after
10 idle seconds, every 5 seconds, dead after 3 unanswered (25 seconds)."""

_PG_MODULE = "hephaestus.runtime.storage.postgres"

_HOLDER = (
    "SELECT l.pid, a.application_name, a.backend_start"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"
)


class Hold(Protocol):
    """A runner's hold on its storage, until ``release``."""

    async def release(self) -> None:
        """Let the storage go (again: nothing); never raises, never stops half-way."""


@attrs.frozen
class Holder:
    """Who holds a storage, as far as it can be known (None: unknown)."""

    pid: int | None = None
    host: str | None = None
    since: str | None = None  # ISO 8601
    runner: str | None = None
    where: str | None = None  # the lock file, the PostgreSQL session

    def __str__(self) -> str:
        parts: list[str] = []
        if self.runner is not None:
            parts.append(f"runner {self.runner!r}")
        process = [] if self.pid is None else [f"pid {self.pid}"]
        if self.host is not None:
            process.append(f"on host {self.host!r}")
        if self.pid == os.getpid() and self.host == socket.gethostname():
            process.append("in this process")
        if process:
            parts.append(" ".join(process))
        if self.since is not None:
            parts.append(f"since {self.since}")
        if self.where is not None:
            parts.append(self.where)
        return ", ".join(parts) or "holder unknown"

    def gone(self) -> bool:
        """Whether the holder ran on this host and its process no longer exists."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # it exists, as another user's process
            pass
        return False


async def take(storage: Storage, runner: str) -> Hold | None:
    """Hold ``storage`` for the runner named ``runner``; None when it needs no hold.

    Raises ``StorageHeld`` when another live ``LocalRunner`` holds it, and
    ``StorageError`` when the hold cannot be taken (the lock file cannot be
    opened, the database cannot be reached).
    """
    if isinstance(storage, SQLiteStorage):
        return _take_file(storage, runner)
    postgres = sys.modules.get(_PG_MODULE)  # not imported: it cannot be a PostgresStorage
    if postgres is not None and isinstance(storage, postgres.PostgresStorage):
        return await _take_session(storage)
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _held(storage: Storage, holder: Holder) -> StorageHeld:
    return StorageHeld(repr(storage), str(holder), pid=holder.pid)


# ---------------------------------------------------------------------- SQLite

if sys.platform != "win32":  # no flock on Windows: no hold there (see _take_file)
    import fcntl

    def _lock(fd: int) -> bool:
        """Lock the open file ``fd``, exclusively; False when another open file has it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class _FileHold:
    """An open lock file, locked: closing it releases the lock."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder for the next one's refusals to name
        with contextlib.suppress(OSError):
            os.close(fd)


def _take_file(storage: SQLiteStorage, runner: str) -> _FileHold | None:
    # Opening, locking without waiting and writing a few bytes on a local disk:
    # done here rather than in a thread, which a cancel could leave holding it.
    if storage.path in ("", ":memory:"):  # each connection's own database
        return None
    if sys.platform == "win32":  # pragma: no cover - not held (documented)
        return None
    path = os.path.realpath(storage.path) + LOCK_SUFFIX
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(
            f"{storage!r} cannot open its runner lock file {path}: {text_of(exc)}"
        ) from exc
    try:
        if not _lock(fd):
            raise _held(storage, _read_holder(fd, path))
        about = {"runner": runner, "pid": os.getpid(), "host": socket.gethostname()}
        data = json.dumps({**about, "since": _now()}).encode()
        with contextlib.suppress(OSError):  # only the refusals' messages need it
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
    except OSError as exc:
        os.close(fd)
        raise StorageError(
            f"{storage!r} cannot lock its runner lock file {path}: {text_of(exc)}"
        ) from exc
    except BaseException:
        os.close(fd)
        raise
    return _FileHold(fd)


def _read_holder(fd: int, path: str) -> Holder:
    where = f"lock file {path}"
    try:
        about = json.loads(os.pread(fd, 4096, 0))
        pid, host, since, runner = (about.get(k) for k in ("pid", "host", "since", "runner"))
    except (OSError, ValueError, AttributeError):  # being written, or not ours
        return Holder(where=where)
    return Holder(
        pid if isinstance(pid, int) else None,
        host if isinstance(host, str) else None,
        since if isinstance(since, str) else None,
        runner if isinstance(runner, str) else None,
        where,
    )


# ---------------------------------------------------------------------- PostgreSQL


def lock_key(schema: str) -> int:
    """The advisory lock key of a schema's runner: 64 bits of BLAKE2b, signed (a bigint)."""
    digest = hashlib.blake2b(f"hephaestus runner:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _SessionHold:
    """A connection holding a session-level advisory lock.

    Releasing unlocks it before closing the connection: the server ends a
    closed session in its own time, and a runner entering next, at once, in
    this process or another, must find the lock free.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any], key: int) -> None:
        self._conn: psycopg.AsyncConnection[Any] | None = conn
        self._key = key

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        await _close(conn)


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await conn.close()


_APPLICATION = "hephaestus runner "


async def _take_session(storage: PostgresStorage) -> _SessionHold:
    import psycopg  # noqa: PLC0415  # only with the `postgres` extra, as the storage

    from hephaestus.runtime.storage.postgres import transient  # noqa: PLC0415

    try:
        conn = await _connect(storage)
    except psycopg.Error as exc:
        raise StorageError(
            f"{storage!r} cannot open the runner's lock connection: {text_of(exc)}",
            transient=transient(exc),
        ) from exc
    key = lock_key(storage.schema)
    try:
        holder = await _lock_session(conn, key, storage)
    except psycopg.Error as exc:
        await _close(conn)
        raise StorageError(
            f"{storage!r} cannot take the runner's lock: {text_of(exc)}", transient=transient(exc)
        ) from exc
    except BaseException:
        await _close(conn)
        raise
    if holder is None:
        return _SessionHold(conn, key)
    await _close(conn)
    raise _held(storage, holder)


async def _lock_session(
    conn: psycopg.AsyncConnection[Any], key: int, storage: PostgresStorage
) -> Holder | None:
    """Take the lock ``key`` on ``conn``: None once taken, or who holds it."""
    import psycopg  # noqa: PLC0415
    from psycopg.rows import tuple_row  # noqa: PLC0415

    cursor = conn.cursor(row_factory=tuple_row)  # whatever the pool's row factory
    for _ in range(2):  # a holder that ends between the two statements: try again
        await cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        if (await cursor.fetchone() or (False,))[0]:
            return None
        await cursor.execute(_HOLDER, ((key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF))
        row = await cursor.fetchone()
        if row is not None:
            break
    else:
        return Holder()
    holder = _session_holder(row)
    if not holder.gone():
        return holder
    # Its process is gone: the server ends its session as soon as it reads the
    # closed socket. Wait for that in the server, a bounded time.
    _logger.info("waiting for a dead runner's session to end", storage=repr(storage))
    timeout = str(int(DEAD_HOLDER_GRACE * 1000))  # milliseconds
    await cursor.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))
    try:
        await cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
    except psycopg.errors.LockNotAvailable:
        return holder
    await cursor.execute("SELECT set_config('lock_timeout', '0', false)")
    return None


async def _connect(storage: PostgresStorage) -> psycopg.AsyncConnection[Any]:
    """A connection of its own to the storage's database (its DSN, or its pool's settings)."""
    import psycopg  # noqa: PLC0415

    pool = storage.pool
    if pool is None:
        conninfo: str = storage.dsn or ""
        kwargs: dict[str, Any] = {}
    else:
        conninfo = await _resolved(pool.conninfo)
        kwargs = dict(await _resolved(pool.kwargs))
    name = f"{_APPLICATION}{os.getpid()}@{socket.gethostname()}"
    kwargs.update(
        autocommit=True,
        application_name=name[:63],  # longer names are cut by the server anyway
        keepalives=1,
        keepalives_idle=KEEPALIVE["idle"],
        keepalives_interval=KEEPALIVE["interval"],
        keepalives_count=KEEPALIVE["count"],
    )
    conn = await psycopg.AsyncConnection.connect(conninfo, **kwargs)
    try:
        # The server's end: a vanished client is found by keepalive (ignored on a
        # Unix socket, whose peer cannot vanish); an idle session is never ended.
        settings = {f"tcp_keepalives_{k}": str(v) for k, v in KEEPALIVE.items()}
        if conn.info.server_version >= 140000:
            settings["idle_session_timeout"] = "0"
        calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
        await conn.execute(f"SELECT {calls}", [x for kv in settings.items() for x in kv])
    except BaseException:
        await _close(conn)
        raise
    return conn


async def _resolved(value: Any) -> Any:
    """A pool's ``conninfo`` or ``kwargs``: the value, or what its callable returns."""
    if callable(value):
        value = value()
        if inspect.isawaitable(value):
            value = await value
    return value


def _session_holder(row: tuple[Any, ...]) -> Holder:
    backend, application, started = row
    pid = host = since = None
    if isinstance(application, str) and application.startswith(_APPLICATION):
        process, _, host = application.removeprefix(_APPLICATION).partition("@")
        pid = int(process) if process.isdigit() else None
    if isinstance(started, datetime.datetime):
        since = started.astimezone(datetime.UTC).isoformat(timespec="seconds")
    return Holder(pid, host or None, since, None, f"PostgreSQL backend pid {backend}")
