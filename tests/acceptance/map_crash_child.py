"""The process of the map crash tests.

``python -m map_crash_child start|recover <kind> <target> <n> <items>``.

``start`` starts ``n`` instances of ``MapCrashFlow`` of ``items`` items each
and runs them until it is killed; ``recover`` enters a runner on the same
storage, which recovers the unfinished instances, and exits 0 once none is
left (``n`` and ``items`` unused).
"""

from __future__ import annotations

import sys

import anyio
from crashing import recover, storage_of
from map_crash_flows import MapCrashFlow, mark_started

from hephaestus import LocalRunner
from hephaestus.runtime.storage.base import Storage


async def _start(storage: Storage, count: int, items: int) -> None:
    async with LocalRunner(storage) as runner:
        for n in range(count):
            await runner.start(MapCrashFlow, {"n": items}, id=f"map-{n:02d}")
        mark_started()
        await anyio.sleep_forever()


async def _main(phase: str, kind: str, target: str, count: int, items: int) -> None:
    storage = storage_of(kind, target)
    try:
        if phase == "start":
            await _start(storage, count, items)
        else:
            await recover(storage)
    finally:
        await storage.aclose()  # type: ignore[attr-defined]


def main() -> None:
    phase, kind, target, count, items = sys.argv[1:6]
    anyio.run(_main, phase, kind, target, int(count), int(items))


if __name__ == "__main__":
    main()
