"""``hephaestus web``: the dashboard alone, served by uvicorn on 127.0.0.1.

The pages read the database's storage, opened once. With ``--read-write``
each action opens the database's runner for its own time
(``hephaestus.operating.database.acting``): the distributed runner on its
PostgreSQL schema, else a steering runner, which is refused while a
``LocalRunner`` holds the storage. The dashboard never holds it between
actions, so it may run beside the application.
"""

from __future__ import annotations

import functools
import os
import sys

import anyio
import uvicorn

from hephaestus.operating import catalog
from hephaestus.operating.database import Database, acting, reading
from hephaestus.web.app import build

__all__ = ["serve"]


async def serve(
    database: Database,
    *,
    host: str,
    port: int,
    read_write: bool,
    refresh: float,
    announce: bool = True,
) -> None:
    """Serve the dashboard of ``database`` until interrupted."""
    async with reading(database) as storage:
        app = build(
            lambda: storage,
            functools.partial(acting, database, f"web-{os.getpid()}") if read_write else None,
            workflows=catalog.imported(),
            read_only=not read_write,
            refresh=refresh,
        )
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            while not server.started:
                if server.should_exit:  # it could not bind its address
                    return
                await anyio.sleep(0.02)  # uvicorn signals nothing when it is listening
            if announce:
                bound = server.servers[0].sockets[0].getsockname()
                mode = "read-write" if read_write else "read-only"
                shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                print(
                    f"dashboard of {database} at http://{shown}:{bound[1]}/ ({mode}); "
                    "Ctrl-C stops it",
                    file=sys.stdout,
                    flush=True,
                )
