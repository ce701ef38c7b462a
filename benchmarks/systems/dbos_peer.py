"""DBOS on SQLite: the durable peer. A workflow of 10 ``@DBOS.step()`` steps, all async.

Each step returns the counter plus one, and DBOS records each step's output
in its system database before the workflow goes on, as Hephaestus stores the
instance after each step. The system database is a fresh SQLite file per
session (``system_database_url="sqlite:///..."``), with DBOS's own settings:
SQLite's default rollback journal and ``synchronous=FULL``, so each commit
is synced to disk. DBOS is a process-wide singleton: a session launches it
and destroys it on exit.

DBOS makes its own thread pool (unbounded) the event loop's default
executor, and shuts it down when destroyed; the session gives the loop its
previous default executor back, so that the other systems' ``to_thread``
calls (the SQLite storage's) keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def increment(count: int) -> int:
    """One durable step."""
    return count + 1


@DBOS.workflow()
async def linear10() -> int:
    """Ten durable steps in a row."""
    count = 0
    for _ in range(10):
        count = await increment(count)
    return count


class _DBOS:
    async def linear10(self) -> int:
        return await linear10()


@asynccontextmanager
async def session(path: Path) -> AsyncIterator[_DBOS]:
    """DBOS launched on a SQLite system database at ``path`` (a new file)."""
    config: DBOSConfig = {
        "name": "hephaestus-bench",
        "system_database_url": f"sqlite:///{path}",
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()
    # asyncio has no public getter for it; None means "make one when first needed".
    previous = getattr(loop, "_default_executor", None)
    DBOS(config=config)
    DBOS.launch()
    try:
        yield _DBOS()
    finally:
        DBOS.destroy()
        loop.set_default_executor(previous or ThreadPoolExecutor())
