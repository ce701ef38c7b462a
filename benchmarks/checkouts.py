"""Hephaestus against earlier versions of itself: ``python -m benchmarks.checkouts REV [REV ...]``.

Each revision is checked out in a temporary git worktree; the working tree
(``HEAD`` plus uncommitted changes) is measured as ``now``. Every round runs
one process per version, one after the other, so that the machine's drift
falls on all of them alike; each process times ``linear10`` and ``fanout8``
on a ``LocalRunner`` with the memory storage, as the main benchmark's
Hephaestus row does: the median latency of 3,000 runs one at a time, the
median throughput of 5 batches of 1,000 in flight, and the CPU cost of one
run: the least thread CPU time per run over 12 batches of 250 runs one at a
time (the figure that moves least on a shared, noisy machine: other tenants
stretch wall-clock times, not the CPU time a run needs). The medians of the
rounds are printed, with each version's ratio to the first one given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import asyncio, gc, json, statistics, time
from benchmarks.systems import heph

async def main():
    out = {}
    async with heph.session() as session:
        for shape in ("linear10", "fanout8"):
            run = getattr(session, shape)
            for _ in range(200):
                await run()
            times = []
            for _ in range(3000):
                t = time.perf_counter()
                await run()
                times.append(time.perf_counter() - t)
            rates = []
            for _ in range(5):
                gc.collect()
                t = time.perf_counter()
                await asyncio.gather(*(run() for _ in range(1000)))
                rates.append(1000 / (time.perf_counter() - t))
            cpu = []
            for _ in range(12):
                t = time.thread_time()
                for _ in range(250):
                    await run()
                cpu.append((time.thread_time() - t) / 250)
            out[shape] = [statistics.median(times) * 1e6, statistics.median(rates), min(cpu) * 1e6]
    print(json.dumps(out))

asyncio.run(main())
"""


def measure(root: Path) -> dict[str, list[float]]:
    """One process on the version checked out at ``root``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[float]] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare with now")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        versions = {}
        for rev in args.revisions:
            path = Path(tmp) / rev.replace("/", "_")
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(path), rev], cwd=ROOT, check=True
            )
            versions[rev] = path
        versions["now"] = ROOT
        try:
            rounds: dict[str, list[dict[str, list[float]]]] = {v: [] for v in versions}
            for _ in range(args.rounds):
                for name, path in versions.items():
                    rounds[name].append(measure(path))
        finally:
            for rev in args.revisions:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(versions[rev])],
                    cwd=ROOT,
                    check=False,
                )
    first = next(iter(versions))
    table = {
        name: {
            shape: [statistics.median(r[shape][i] for r in runs) for i in (0, 1, 2)]
            for shape in ("linear10", "fanout8")
        }
        for name, runs in rounds.items()
    }
    for name, figures in table.items():
        cells = []
        for shape, (latency, rate, cpu) in figures.items():
            base_latency, base_rate, base_cpu = table[first][shape]
            cells.append(
                f"{shape} {latency:.1f} µs ({latency / base_latency:.3f}x), "
                f"cpu {cpu:.1f} µs ({cpu / base_cpu:.3f}x), "
                f"{rate:,.0f} wf/s ({rate / base_rate:.3f}x)"
            )
        print(f"{name:>12}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
