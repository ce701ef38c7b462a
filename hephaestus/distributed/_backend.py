"""What the distributed runner and its workers share: the pool, the schema, the SQL.

One psycopg pool per process serves both procrastinate and Hephaestus; its
connections have ``search_path`` set to the schema, so procrastinate's tables
(``procrastinate_jobs``, ...) and ours (``heph_instances``, ``heph_inbox``,
``heph_history``) live side by side in it. Every write here is one statement
on an autocommit connection (one round trip, one commit), except a cancel;
a drive job is deferred inside the statement that makes it needed, by
procrastinate's own ``procrastinate_defer_jobs_v1``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import procrastinate
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from hephaestus.core import history as h
from hephaestus.core.history import Record
from hephaestus.core.instance import Instance
from hephaestus.exceptions import StorageError
from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.postgres import PostgresStorage, utc

__all__ = ["DRIVE", "Backend", "Letter", "migrate"]

DRIVE = "heph.drive"
"""The procrastinate task that drives one instance (lock ``heph:<id>``)."""

OLD_TASKS = ("heph.advance", "heph.execute_step", "heph.resume_timeout")
"""The tasks of the per-step design, which ``migrate`` retires."""

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PROCRASTINATE_LOCK = 0x6865_7068_7072_6F63
"""The advisory lock taken while procrastinate's schema is applied ("hephproc")."""

Conn = psycopg.AsyncConnection[Any]


def check_schema(schema: str) -> str:
    """A schema name usable in ``search_path`` without quoting: ``[a-z_][a-z0-9_]*``."""
    if not isinstance(schema, str) or not _NAME.fullmatch(schema):
        raise ValueError(
            f"the distributed runner's schema must match [a-z_][a-z0-9_]* (63 at most), "
            f"got: {schema!r}"
        )
    return schema


def queue_name(schema: str, prefix: str = "heph") -> str:
    """The procrastinate queue of a schema's jobs: ``heph_<schema>`` (hashed when long).

    procrastinate's notifications (new jobs, abort requests that carry only a
    job id) go to database-wide channels named after the queue: one queue per
    schema keeps the workers of one schema deaf to another's. A channel name
    holds 63 bytes, 23 of which procrastinate's prefix takes. The spread
    steps' jobs have a queue of their own, ``hephsteps_<schema>``.
    """
    name = f"{prefix}_{schema}"
    if len(name) <= 40:
        return name
    return f"{prefix}_" + hashlib.sha256(schema.encode()).hexdigest()[:24]


def make_pool(
    dsn: str,
    schema: str,
    max_size: int,
    *,
    configure: Callable[[Conn], Awaitable[None]] | None = None,
) -> AsyncConnectionPool[Conn]:
    """A pool whose connections work in ``schema`` (autocommit, like procrastinate's own).

    ``configure``, if given, is awaited on each new connection after that.
    """

    async def setup(conn: Conn) -> None:
        await conn.set_autocommit(True)
        if configure is not None:
            await configure(conn)

    # autocommit is set by `configure`, not in `kwargs`: procrastinate's listener
    # connects with the pool's kwargs plus autocommit=True of its own.
    return AsyncConnectionPool(
        dsn,
        open=False,
        min_size=1,
        max_size=max_size,
        # A custom plan per call: procrastinate's job fetch, a PL/pgSQL function, otherwise
        # keeps a generic plan made on a near-empty table, which grows with the square
        # of the jobs waiting (24 ms a fetch with 1,000 waiting, 0.09 ms planned for them).
        kwargs={"options": f"-c search_path={schema} -c plan_cache_mode=force_custom_plan"},
        configure=setup,
        name=f"hephaestus-distributed:{schema}",
    )


async def migrate(pool: AsyncConnectionPool[Conn], schema: str) -> None:
    """Create the schema with Hephaestus's tables and procrastinate's, idempotently.

    Hephaestus's tables follow the numbered migrations of ``PostgresStorage``;
    procrastinate's schema (which procrastinate applies in one go, and not
    idempotently) is applied once, when ``procrastinate_jobs`` is missing,
    under an advisory lock so that workers starting together do it once.
    Then the per-step design's jobs not started yet are cancelled, and every
    unfinished instance that no drive job will drive gets one: instances in
    flight when the design changed go on from their last stored state.
    """
    storage = PostgresStorage(pool=pool, schema=schema)
    await storage.migrate()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    text = app.schema_manager.get_schema()
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (PROCRASTINATE_LOCK,))
            try:
                cursor = await conn.execute(
                    "SELECT to_regclass(%s::text) IS NOT NULL", (f"{schema}.procrastinate_jobs",)
                )
                row = await cursor.fetchone()
                if not (row and row[0]):
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL search_path TO {schema}")
                        await conn.execute(text.encode(), prepare=False)
                await conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'cancelled'"
                    " WHERE status = 'todo' AND task_name = ANY(%s)",
                    (list(OLD_TASKS),),
                )
                await conn.execute(_ORPHANS, {"queue": queue_name(schema), "age": 0.0})
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (PROCRASTINATE_LOCK,))
    except psycopg.Error as exc:
        raise StorageError(f"cannot apply procrastinate's schema in {schema!r}: {exc}") from exc


def _defer(rows: str) -> str:
    """A select that defers a drive job for each ``id`` of ``rows`` (none: no call)."""
    return (
        "SELECT procrastinate_defer_jobs_v1(array_agg(ROW(%(queue)s, 'heph.drive', 0,"
        " 'heph:' || id, NULL, jsonb_build_object('instance_id', id), NULL)"
        f"::procrastinate_job_to_defer_v1)) FROM {rows} HAVING count(*) > 0"
    )


_TERMINAL = "('completed', 'failed', 'cancelled')"

_START = (
    "WITH ins AS (INSERT INTO heph_instances (id, workflow, workflow_version, status, state)"
    " VALUES (%(id)s, %(workflow)s, %(version)s, %(status)s, %(state)s)"
    " ON CONFLICT (id) DO UPDATE SET workflow = excluded.workflow,"
    " workflow_version = excluded.workflow_version, status = excluded.status,"
    " state = excluded.state, epoch = heph_instances.epoch + 1, wake_at = NULL,"
    " created_at = now(), updated_at = now()"
    f" WHERE heph_instances.status IN {_TERMINAL} RETURNING id),"
    " gone AS (DELETE FROM heph_inbox WHERE instance_id IN (SELECT id FROM ins)),"
    " logged AS (INSERT INTO heph_history (instance_id, kind, at)"
    " SELECT id, 'started', %(at)s FROM ins) " + _defer("ins")
)

_POST = (
    "WITH box AS (INSERT INTO heph_inbox (instance_id, kind, step, event, data, delay, sent_at)"
    " VALUES (%(id)s, %(kind)s, %(step)s, %(event)s, %(data)s, %(delay)s, %(at)s)"
    " RETURNING instance_id AS id)"
    " SELECT pg_notify(%(channel)s, id), (" + _defer("box") + ") FROM box"
)

_SPREAD = (
    "SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(%(queue)s, 'heph.step', 0, NULL, NULL,"
    " %(args)s, NULL)::procrastinate_job_to_defer_v1]))[1]"
)

_ANSWER = (
    "WITH box AS (INSERT INTO heph_inbox (instance_id, kind, event, data, sent_at)"
    " VALUES (%(id)s, 'result', %(token)s, %(data)s, %(at)s) RETURNING instance_id AS id)"
    " SELECT pg_notify(%(channel)s, id) FROM box"
)

_INBOX = (
    "SELECT coalesce(json_agg(json_build_array(b.id, b.kind, b.step, b.event, b.data,"
    " b.delay, b.sent_at) ORDER BY b.id), '[]')::text FROM heph_inbox b"
    " WHERE b.instance_id = %(id)s"
)

_CLAIM = (
    "WITH c AS (UPDATE heph_instances SET epoch = epoch + 1 WHERE id = %(id)s"
    " RETURNING state::text, epoch, wake_at)"
    " SELECT c.state, c.epoch, c.wake_at, (" + _INBOX + ") FROM c"
)

_PEEK = "SELECT epoch, (" + _INBOX + ") FROM heph_instances WHERE id = %(id)s"

# ``wake_at`` holds due times stamped by the drivers' clock, so the worker compares it
# with its own clock's time (``%(now)s``), not the database's ``now()``: a worker on a
# virtual clock wakes the timers due by that clock. The lease (a due instance is woken
# again if its drive job did not fix ``wake_at``) is counted on the same clock.
_WAKE = (
    "WITH due AS (SELECT id FROM heph_instances WHERE wake_at <= %(now)s"
    " ORDER BY wake_at LIMIT 500 FOR UPDATE SKIP LOCKED),"
    " up AS (UPDATE heph_instances i SET wake_at = %(now)s + make_interval(secs => %(lease)s)"
    " FROM due WHERE i.id = due.id RETURNING i.id) " + _defer("up")
)

# Unfinished instances that no drive job will drive: not ended and untouched for
# ``age`` seconds, or holding inbox rows that old, with no drive job to do. A safety
# net against lost jobs, counted in the database's real time (``now()``); a letter's
# ``sent_at`` is its sender's clock, so letters from a virtual clock may look older or
# younger than they are (at worst a redundant drive job, or a later rescue).
_ORPHANS = (
    "WITH lost AS (SELECT i.id FROM heph_instances i"
    " WHERE i.status IN ('pending', 'running')"
    " AND i.updated_at < now() - make_interval(secs => %(age)s)"
    " UNION SELECT DISTINCT b.instance_id FROM heph_inbox b"
    " WHERE b.sent_at < (extract(epoch FROM now()) - %(age)s) * 1e9),"
    " orphans AS (SELECT id FROM lost WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
    " WHERE j.lock = 'heph:' || lost.id AND j.status IN ('todo', 'doing')) LIMIT 1000) "
    + _defer("orphans")
)


class Letter(NamedTuple):
    """A row of an instance's inbox: a resume, a message or a timer sent by any process."""

    id: int
    kind: str  # resume, send, timer, result (a spread step's answer)
    step: str | None  # the step's import path, for a resume or a timer
    event: str  # a result's: the token of the run it answers
    data: dict[str, Any] | None
    delay: float | None  # a timer's, in seconds from ``sent_at``
    sent_at: int  # ns


def _letters(text: str) -> list[Letter]:
    return [Letter(*row) for row in json.loads(text)]


class Backend:
    """The pool, the procrastinate app and the SQL of one process (a runner or a worker).

    ``clock`` is the runner's or worker's: it stamps the letters and records
    written here and says which timers are due (``wake``).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        schema: str,
        app: procrastinate.App,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.pool = pool
        self.schema = schema
        self.app = app
        self.clock = clock
        self.queue = queue_name(schema)
        self.steps_queue = queue_name(schema, "hephsteps")
        self.channel = f"{self.queue}_inbox"
        self.storage = PostgresStorage(pool=pool, schema=schema)

    async def _one(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def start(self, instance: Instance, state: dict[str, Any]) -> bool:
        """Store a new instance (or replace an ended one) and defer its drive job; False if
        an active instance has the id. One statement."""
        row = await self._one(
            _START,
            {
                "id": instance.id,
                "workflow": state["workflow"],
                "version": instance.workflow_version,
                "status": instance.status.value,
                "state": Jsonb(state),
                "at": instance.started_at,
                "queue": self.queue,
            },
        )
        return row is not None

    async def post(
        self,
        instance_id: str,
        kind: str,
        event: str,
        *,
        step: str | None = None,
        data: Any = None,
        delay: float | None = None,
        at: int,
    ) -> None:
        """Post a letter to the instance's inbox, notify, defer a drive job: one statement."""
        await self._one(
            _POST,
            {
                "id": instance_id,
                "kind": kind,
                "step": step,
                "event": event,
                "data": None if data is None else Jsonb(data),
                "delay": delay,
                "at": at,
                "channel": self.channel,
                "queue": self.queue,
            },
        )

    async def spread(
        self,
        instance_id: str,
        step: str,
        item: int | None,
        token: str,
        carried: Mapping[str, str] | None,
    ) -> int:
        """Defer a ``heph.step`` job that runs ``step`` (``item`` of its map); its job id.

        ``carried`` (what the driver's step-scope hooks set for a run elsewhere)
        goes with the job when there is any.
        """
        args: dict[str, Any] = {"instance_id": instance_id, "step": step, "item": item}
        args["token"] = token
        if carried:
            args["carried"] = dict(carried)
        row = await self._one(_SPREAD, {"queue": self.steps_queue, "args": Jsonb(args)})
        assert row is not None
        job_id: int = row[0]
        return job_id

    async def answer(self, instance_id: str, token: str, outcome: dict[str, Any]) -> None:
        """Post a spread step's outcome to its instance's inbox and notify: one statement."""
        params = {
            "id": instance_id,
            "token": token,
            "data": Jsonb(outcome),
            "at": self.clock.time_ns(),
            "channel": self.channel,
        }
        await self._one(_ANSWER, params)

    async def abort(self, job_id: int) -> None:
        """Abort a ``heph.step`` job: not run if it waits, cancelled where it runs."""
        await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)

    async def claim(self, instance_id: str) -> tuple[Instance, int, Any, list[Letter]] | None:
        """Take the instance (its epoch goes up): its state, epoch, wake time and inbox."""
        row = await self._one(_CLAIM, {"id": instance_id})
        if row is None:
            return None
        state, epoch, wake_at, inbox = row
        return codec.loads(state), epoch, wake_at, _letters(inbox)

    async def peek(self, instance_id: str) -> tuple[int, list[Letter]] | None:
        """The instance's epoch and inbox, or None once it is gone."""
        row = await self._one(_PEEK, {"id": instance_id})
        return None if row is None else (row[0], _letters(row[1]))

    async def discard(self, letter_ids: Sequence[int]) -> None:
        """Delete inbox rows that were refused (nothing to apply)."""
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM heph_inbox WHERE id = ANY(%s)", (list(letter_ids),))

    async def set_wake(self, instance_id: str, epoch: int, due: int | None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE heph_instances SET wake_at = %s WHERE id = %s AND epoch = %s",
                (None if due is None else utc(due), instance_id, epoch),
            )

    async def wake(self, lease: float) -> None:
        """Defer a drive job for each instance whose timer is due by the clock.

        Each is held ``lease`` seconds (of the clock) before it may be woken again.
        """
        now = utc(self.clock.time_ns())
        await self._one(_WAKE, {"now": now, "lease": lease, "queue": self.queue})

    async def orphans(self, age: float) -> None:
        """Defer a drive job for each unfinished instance that nothing drives."""
        await self._one(_ORPHANS, {"age": age, "queue": self.queue})

    async def cancel(self, instance_id: str, cancel: Any) -> Instance | None:
        """Cancel the instance in one transaction: ``cancel(instance)`` is its new state.

        Its epoch goes up, so the worker driving it can write nothing more, and
        that worker is told at once (NOTIFY) to stop its running steps.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT state::text FROM heph_instances WHERE id = %s FOR UPDATE", (instance_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            before = codec.loads(row[0])
            if before.terminal:
                return before
            new: Instance = cancel(before)
            stopped = [step.step_key for step in before.active_steps]
            record = Record(h.CANCELLED, self.clock.time_ns(), details={"stopped": stopped})
            await conn.execute(
                "UPDATE heph_instances SET status = %s, state = %s, epoch = epoch + 1,"
                " wake_at = NULL, updated_at = now() WHERE id = %s",
                (new.status.value, Jsonb(codec.encode(new)), instance_id),
            )
            await conn.execute(
                "INSERT INTO heph_history (instance_id, kind, at, details) VALUES (%s, %s, %s, %s)",
                (instance_id, record.kind, record.at, Jsonb(record.details)),
            )
            await conn.execute("DELETE FROM heph_inbox WHERE instance_id = %s", (instance_id,))
            await conn.execute("SELECT pg_notify(%s, %s)", (self.channel, instance_id))
            return new

    async def retry_stalled(self, seconds_since_heartbeat: float) -> int:
        """Retry the jobs of workers whose heartbeat stopped (drive and step jobs); how many."""
        manager = self.app.job_manager
        retried = 0
        for queue in (self.queue, self.steps_queue):
            for job in await manager.get_stalled_jobs(
                queue=queue, seconds_since_heartbeat=seconds_since_heartbeat
            ):
                try:
                    await manager.retry_job(job)
                    retried += 1
                except Exception:  # another reconciler won, or the job moved on
                    continue
        return retried
