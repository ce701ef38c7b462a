"""An application that drives its instances and mounts the dashboard, read-write: for the tests.

Run as ``python -m web.live_app --database DB [--schema S]`` with ``tests/`` on
``PYTHONPATH`` (the databases keep the workflows of ``cli.flows``): a
``LocalRunner`` takes the database (and goes on with what it holds), and
uvicorn serves ``create_app(runner=...)`` mounted at ``/ops`` of a host
Starlette application on 127.0.0.1, on a port of the system's choice. Its
first line on standard output is ``ready http://127.0.0.1:PORT/ops/``.
"""

from __future__ import annotations

import argparse
import sys

import anyio
import uvicorn
from cli import flows
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from hephaestus import LocalRunner, SQLiteStorage, Storage
from hephaestus.web import create_app

REFRESH = 0.2
"""How often the pages' live parts refresh, in seconds: the tests wait for them."""


def storage_of(database: str, schema: str | None) -> Storage:
    if schema is None:
        return SQLiteStorage(database)
    from hephaestus.runtime.storage.postgres import PostgresStorage

    return PostgresStorage(database, schema=schema)


async def main(database: str, schema: str | None) -> None:
    async with storage_of(database, schema) as storage, LocalRunner(storage) as runner:
        dashboard = create_app(
            runner=runner,
            workflows=[flows.Quick, flows.Breaks, flows.Approval, flows.Signoff, flows.Crawl],
            read_only=False,
            refresh=REFRESH,
        )

        async def home(request: object) -> PlainTextResponse:
            return PlainTextResponse("the host application")

        host = Starlette(routes=[Route("/", home), Mount("/ops", dashboard)])
        server = uvicorn.Server(
            uvicorn.Config(host, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        )
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            while not server.started:  # noqa: ASYNC110  # uvicorn signals nothing when it listens
                await anyio.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"ready http://127.0.0.1:{port}/ops/", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--schema")
    arguments = parser.parse_args()
    anyio.run(main, arguments.database, arguments.schema)
    sys.exit(0)
