"""The distributed runner's benchmark: ``python -m benchmarks.distributed [--quick] [--json PATH]``.

Two figures, measured in one run against the machine's PostgreSQL
(``HEPHAESTUS_TEST_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``):

- **scaling**: I/O-bound steps (each awaits 20 ms) per second with 1, 2 and 4
  worker processes (``hephaestus worker --concurrency 16``), as a ratio to one
  worker: ``instances`` instances of five such steps, started together; the
  clock runs from the first start to the last completion.
- **overhead**: the time per step of ``linear10`` (ten no-op steps and
  ``Done``), one workflow at a time: on the distributed runner with one worker
  process, and on a ``LocalRunner`` with ``PostgresStorage`` (the same
  database, a commit per step), in the same run. Their difference is what the
  queue costs per step: a job to fetch, a result row, an advance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psycopg

from benchmarks.distributed_flows import IO_SECONDS, IO_STEPS, IoFlow, Linear10
from hephaestus import LocalRunner
from hephaestus.distributed import DistributedRunner
from hephaestus.runtime.storage.postgres import PostgresStorage

DSN = os.environ.get("HEPHAESTUS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 16


def _workers(count: int, schema: str) -> list[subprocess.Popen[bytes]]:
    command = [
        sys.executable, "-m", "hephaestus", "worker", "--dsn", DSN, "--schema", schema,
        "--concurrency", str(CONCURRENCY), "--import", "benchmarks.distributed_flows",
    ]  # fmt: skip
    return [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _drop(schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _ready(runner: DistributedRunner) -> None:
    """Wait until the workers take jobs: one warm-up workflow completes."""
    await runner.run(Linear10, {}, timeout=60)


async def _scaling(workers: int, instances: int) -> float:
    schema = f"heph_bench_{uuid.uuid4().hex[:8]}"
    try:
        async with DistributedRunner(DSN, schema=schema, poll_interval=0.01) as runner:
            children = _workers(workers, schema)
            try:
                await _ready(runner)
                t0 = time.perf_counter()
                ids = [await runner.start(IoFlow, {}) for _ in range(instances)]
                for instance_id in ids:
                    await runner.wait(instance_id, timeout=300)
                elapsed = time.perf_counter() - t0
            finally:
                _stop(children)
    finally:
        _drop(schema)
    return instances * IO_STEPS / elapsed


async def _distributed_latency(runs: int) -> float:
    schema = f"heph_bench_{uuid.uuid4().hex[:8]}"
    try:
        async with DistributedRunner(DSN, schema=schema, poll_interval=0.001) as runner:
            children = _workers(1, schema)
            try:
                await _ready(runner)
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    await runner.run(Linear10, {}, timeout=60)
                    times.append(time.perf_counter() - t0)
            finally:
                _stop(children)
    finally:
        _drop(schema)
    return statistics.median(times) / 11


async def _local_latency(runs: int) -> float:
    schema = f"heph_bench_{uuid.uuid4().hex[:8]}"
    try:
        async with PostgresStorage(DSN, schema=schema) as storage, LocalRunner(storage) as runner:
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                await runner.run(Linear10, {})
                times.append(time.perf_counter() - t0)
    finally:
        _drop(schema)
    return statistics.median(times) / 11


async def run(quick: bool) -> dict[str, Any]:
    """Every figure, as a dict (seconds and steps per second)."""
    instances = 40 if quick else 400
    runs = 10 if quick else 100
    scaling = {str(n): await _scaling(n, instances) for n in (1, 2, 4)}
    local = await _local_latency(runs)
    distributed = await _distributed_latency(runs)
    return {
        "io_step_seconds": IO_SECONDS,
        "worker_concurrency": CONCURRENCY,
        "instances": instances,
        "steps_per_second": scaling,
        "scaling_ratio": {n: value / scaling["1"] for n, value in scaling.items()},
        "per_step_seconds": {"local_postgres": local, "distributed_1_worker": distributed},
        "overhead_ratio": distributed / local,
        "cpu_count": os.cpu_count(),
    }


def _print(result: dict[str, Any]) -> None:
    print(f"I/O-bound steps ({result['io_step_seconds'] * 1000:.0f} ms each), "
          f"{result['instances']} instances x {IO_STEPS} steps, "
          f"--concurrency {result['worker_concurrency']} per worker, "
          f"{result['cpu_count']} cores")  # fmt: skip
    print(f"{'workers':>8} {'steps/s':>10} {'vs 1 worker':>12}")
    for n, value in result["steps_per_second"].items():
        print(f"{n:>8} {value:>10.0f} {result['scaling_ratio'][n]:>11.2f}x")
    per = result["per_step_seconds"]
    print(
        f"per-step time, linear10 one at a time: LocalRunner+PostgresStorage "
        f"{per['local_postgres'] * 1e3:.2f} ms, distributed (1 worker) "
        f"{per['distributed_1_worker'] * 1e3:.2f} ms ({result['overhead_ratio']:.1f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few instances")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = anyio.run(run, args.quick)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
