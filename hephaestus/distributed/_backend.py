"""What the distributed runner and its workers share: the pool, the schema, the SQL.

One psycopg pool per process serves both procrastinate and Hephaestus; its
connections have ``search_path`` set to the schema, so procrastinate's tables
(``procrastinate_jobs``, ...) and ours (``heph_instances``,
``heph_step_results``) live side by side in it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import procrastinate
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from hephaestus.core.instance import Instance
from hephaestus.exceptions import StorageError
from hephaestus.runtime.storage import codec
from hephaestus.runtime.storage.postgres import PostgresStorage

__all__ = ["Backend", "migrate"]

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


def queue_name(schema: str) -> str:
    """The procrastinate queue of a schema's jobs: ``heph_<schema>`` (hashed when long).

    procrastinate's notifications (new jobs, abort requests that carry only a
    job id) go to database-wide channels named after the queue: one queue per
    schema keeps the workers of one schema deaf to another's. A channel name
    holds 63 bytes, 23 of which procrastinate's prefix takes.
    """
    name = f"heph_{schema}"
    if len(name) <= 40:
        return name
    return "heph_" + hashlib.sha256(schema.encode()).hexdigest()[:24]


def make_pool(dsn: str, schema: str, max_size: int) -> AsyncConnectionPool[Conn]:
    """A pool whose connections work in ``schema`` (autocommit, like procrastinate's own)."""
    # autocommit is set by `configure`, not in `kwargs`: procrastinate's listener
    # connects with the pool's kwargs plus autocommit=True of its own.
    return AsyncConnectionPool(
        dsn,
        open=False,
        min_size=1,
        max_size=max_size,
        kwargs={"options": f"-c search_path={schema}"},
        configure=_autocommit,
        name=f"hephaestus-distributed:{schema}",
    )


async def _autocommit(conn: Conn) -> None:
    await conn.set_autocommit(True)


async def migrate(pool: AsyncConnectionPool[Conn], schema: str) -> None:
    """Create the schema with Hephaestus's tables and procrastinate's, idempotently.

    Hephaestus's tables follow the numbered migrations of ``PostgresStorage``;
    procrastinate's schema (which procrastinate applies in one go, and not
    idempotently) is applied once, when ``procrastinate_jobs`` is missing,
    under an advisory lock so that workers starting together do it once.
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
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (PROCRASTINATE_LOCK,))
    except psycopg.Error as exc:
        raise StorageError(f"cannot apply procrastinate's schema in {schema!r}: {exc}") from exc


class Backend:
    """The pool, the procrastinate app and the SQL of one process (a runner or a worker)."""

    def __init__(self, pool: AsyncConnectionPool[Conn], schema: str, app: procrastinate.App):
        self.pool = pool
        self.schema = schema
        self.app = app
        self.queue = queue_name(schema)
        self.storage = PostgresStorage(pool=pool, schema=schema)

    # ------------------------------------------------------------------ instances

    async def load(
        self, conn: Conn, instance_id: str, *, lock: bool, nowait: bool = False
    ) -> tuple[Instance, int] | None:
        """The instance and its advance count; ``lock`` takes the row (FOR NO KEY UPDATE).

        With ``nowait``, a row another transaction holds raises ``LockNotAvailable``.
        """
        suffix = (" FOR NO KEY UPDATE" + (" NOWAIT" if nowait else "")) if lock else ""
        cursor = await conn.execute(
            "SELECT state, advance_count FROM heph_instances WHERE id = %s" + suffix,
            (instance_id,),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        return codec.decode(row[0]), row[1]

    async def insert(self, conn: Conn, instance: Instance, state: dict[str, Any]) -> bool:
        """Store a new instance; replace one that ended; False if an active one has the id."""
        cursor = await conn.execute(
            """
            INSERT INTO heph_instances (id, workflow, workflow_version, status, state)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET
                workflow = excluded.workflow, workflow_version = excluded.workflow_version,
                status = excluded.status, state = excluded.state, advance_count = 0,
                created_at = now(), updated_at = now()
            WHERE heph_instances.status IN ('completed', 'failed', 'cancelled')
            RETURNING (xmax <> 0) AS replaced
            """,
            (
                instance.id,
                state["workflow"],
                instance.workflow_version,
                instance.status.value,
                Jsonb(state),
            ),
        )
        row = await cursor.fetchone()
        if row is None:
            return False
        if row[0]:  # the id's previous, ended instance: its results go too
            await conn.execute(
                "DELETE FROM heph_step_results WHERE instance_id = %s", (instance.id,)
            )
        return True

    async def update(
        self, conn: Conn, instance: Instance, advance_count: int, processed: Sequence[int] = ()
    ) -> None:
        """Store the instance; mark the result rows it applied processed (one round trip)."""
        await conn.execute(
            "WITH applied AS (UPDATE heph_step_results SET processed_at = now()"
            " WHERE id = ANY(%s))"
            " UPDATE heph_instances SET status = %s, state = %s, advance_count = %s,"
            " updated_at = now() WHERE id = %s",
            (
                list(processed),
                instance.status.value,
                Jsonb(codec.encode(instance)),
                advance_count,
                instance.id,
            ),
        )

    # ------------------------------------------------------------------ step results

    async def record(
        self,
        conn: Conn,
        instance_id: str,
        step_path: str,
        kind: str,
        *,
        event: str | None = None,
        updates: Any = None,
        metadata: Any = None,
        error: Any = None,
        source: str | None = None,
        duration: int | None = None,
        job_id: int | None = None,
    ) -> bool:
        """Insert a result row unless its slot is taken; True if this call inserted it."""
        cursor = await conn.execute(
            """
            INSERT INTO heph_step_results
                (instance_id, step, kind, event, updates, metadata, error, source, duration, job_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (instance_id, step, activation, slot) DO NOTHING
            RETURNING id
            """,
            (
                instance_id,
                step_path,
                kind,
                event,
                None if updates is None else Jsonb(updates),
                None if metadata is None else Jsonb(metadata),
                None if error is None else Jsonb(error),
                source,
                duration,
                job_id,
            ),
        )
        return await cursor.fetchone() is not None

    async def pending(self, conn: Conn, instance_id: str) -> list[dict[str, Any]]:
        """The unprocessed results of an instance: outcomes and parks first, then resumes."""
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                "SELECT id, step, kind, event, updates, metadata, error, source, inserted_at"
                " FROM heph_step_results WHERE instance_id = %s AND processed_at IS NULL"
                " ORDER BY (kind = 'resumed'), id",
                (instance_id,),
            )
            return await cursor.fetchall()

    async def processed(self, conn: Conn, ids: Sequence[int]) -> None:
        if ids:
            await conn.execute(
                "UPDATE heph_step_results SET processed_at = now() WHERE id = ANY(%s)",
                (list(ids),),
            )

    async def load_for_step(
        self, conn: Conn, instance_id: str, step_path: str
    ) -> tuple[Instance, bool] | None:
        """The instance, and whether the step has recorded its outcome (or its park) already."""
        cursor = await conn.execute(
            "SELECT state, EXISTS (SELECT 1 FROM heph_step_results r"
            " WHERE r.instance_id = i.id AND r.step = %s AND r.slot IN ('outcome', 'async'))"
            " FROM heph_instances i WHERE i.id = %s",
            (step_path, instance_id),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        return codec.decode(row[0]), row[1]

    async def unprocessed_parks(self, conn: Conn, instance_id: str) -> dict[str, Any]:
        """Steps whose ``async`` row is not applied yet, with when it was written."""
        cursor = await conn.execute(
            "SELECT step, inserted_at FROM heph_step_results WHERE instance_id = %s"
            " AND kind = 'async' AND processed_at IS NULL",
            (instance_id,),
        )
        return dict(await cursor.fetchall())

    async def parked_at(self, conn: Conn, instance_id: str, step_path: str) -> Any:
        cursor = await conn.execute(
            "SELECT inserted_at FROM heph_step_results WHERE instance_id = %s AND step = %s"
            " AND kind = 'async'",
            (instance_id, step_path),
        )
        row = await cursor.fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ jobs

    async def jobs_of(self, conn: Conn, instance_id: str, status: str) -> list[int]:
        """Ids of the procrastinate jobs of an instance in ``status`` (todo, doing)."""
        cursor = await conn.execute(
            "SELECT id FROM procrastinate_jobs WHERE args->>'instance_id' = %s AND status = %s",
            (instance_id, status),
        )
        return [job_id for (job_id,) in await cursor.fetchall()]

    async def cancel_todo(self, conn: Conn, instance_id: str, keep: int | None = None) -> None:
        """Cancel, in this transaction, the instance's jobs that have not started."""
        manager = self.app.job_manager
        for job_id in await self.jobs_of(conn, instance_id, "todo"):
            if job_id != keep:
                await manager.cancel_job_by_id_async(job_id, connection=conn)

    async def abort_doing(self, instance_id: str, keep: int | None = None) -> None:
        """Ask the workers running the instance's jobs to abort them (after the commit)."""
        manager = self.app.job_manager
        async with self.pool.connection() as conn:
            doing = await self.jobs_of(conn, instance_id, "doing")
        for job_id in doing:
            if job_id != keep:
                await manager.cancel_job_by_id_async(job_id, abort=True)
