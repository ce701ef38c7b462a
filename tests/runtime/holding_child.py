"""A process whose LocalRunner holds a storage until it is killed.

``python holding_child.py sqlite <path>`` or ``python holding_child.py
postgres <dsn>#<schema>``: it enters a ``LocalRunner`` named ``child`` on the
storage, prints ``held`` once the runner is in, and waits forever.
"""

from __future__ import annotations

import sys

import anyio

from hephaestus import LocalRunner, SQLiteStorage
from hephaestus.runtime.storage.base import Storage


def storage_of(kind: str, target: str) -> Storage:
    """``sqlite <path>`` or ``postgres <dsn>#<schema>``."""
    if kind == "sqlite":
        return SQLiteStorage(target)
    from hephaestus.runtime.storage.postgres import PostgresStorage

    dsn, _, schema = target.partition("#")
    return PostgresStorage(dsn, schema=schema)


async def hold(kind: str, target: str) -> None:
    async with LocalRunner(storage_of(kind, target), name="child"):
        print("held", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(hold, sys.argv[1], sys.argv[2])
