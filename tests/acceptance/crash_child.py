"""The process of the crash tests: ``python -m crash_child start|recover <storage> <target> <n>``.

``start`` starts ``n`` instances of ``CrashFlow`` (every fifth one slow) and
runs them until it is killed; ``recover`` enters a runner on the same storage,
which recovers the unfinished instances, and exits 0 once none is left.
"""

from __future__ import annotations

import sys

import anyio
from crash_flows import CrashFlow, mark_started
from crashing import recover, storage_of

from hephaestus import LocalRunner
from hephaestus.runtime.storage.base import Storage


async def _start(storage: Storage, count: int) -> None:
    async with LocalRunner(storage) as runner:
        for n in range(count):
            await runner.start(CrashFlow, {"n": n, "slow": n % 5 == 0}, id=f"crash-{n:03d}")
        mark_started()
        await anyio.sleep_forever()


async def _main(phase: str, kind: str, target: str, count: int) -> None:
    storage = storage_of(kind, target)
    try:
        if phase == "start":
            await _start(storage, count)
        else:
            await recover(storage)
    finally:
        await storage.aclose()  # type: ignore[attr-defined]


def main() -> None:
    phase, kind, target, count = sys.argv[1:5]
    anyio.run(_main, phase, kind, target, int(count))


if __name__ == "__main__":
    main()
