"""The process of the crash tests: ``python -m crash_child start|recover <storage> <target> <n>``.

``start`` starts ``n`` instances of ``CrashFlow`` (every fifth one slow) and
runs them until it is killed; ``recover`` enters a runner on the same storage,
which recovers the unfinished instances, and exits 0 once none is left.
"""

from __future__ import annotations

import sys

import anyio
from crash_flows import CrashFlow, mark_started

from hephaestus import LocalRunner, SQLiteStorage, Status
from hephaestus.runtime.storage.base import Storage


def _storage(kind: str, target: str) -> Storage:
    if kind == "sqlite":
        return SQLiteStorage(target)
    from hephaestus.runtime.storage.postgres import PostgresStorage

    dsn, _, schema = target.partition("#")
    return PostgresStorage(dsn, schema=schema)


async def _start(storage: Storage, count: int) -> None:
    async with LocalRunner(storage) as runner:
        for n in range(count):
            await runner.start(CrashFlow, {"n": n, "slow": n % 5 == 0}, id=f"crash-{n:03d}")
        mark_started()
        await anyio.sleep_forever()


async def _recover(storage: Storage) -> None:
    active = (Status.PENDING, Status.RUNNING, Status.WAITING)
    async with LocalRunner(storage) as runner:
        ids = [instance.id for instance in await storage.query(status_in=active)]
        print(f"recovering {len(ids)}", flush=True)
        with anyio.fail_after(60):
            for instance_id in ids:
                await runner.wait(instance_id)


async def _main(phase: str, kind: str, target: str, count: int) -> None:
    storage = _storage(kind, target)
    try:
        if phase == "start":
            await _start(storage, count)
        else:
            await _recover(storage)
    finally:
        await storage.aclose()  # type: ignore[attr-defined]


def main() -> None:
    phase, kind, target, count = sys.argv[1:5]
    anyio.run(_main, phase, kind, target, int(count))


if __name__ == "__main__":
    main()
