"""A worker process of the crash test: ``python -m distributed.crash_worker <dsn> <schema>``.

A :class:`Worker` with short intervals (heartbeat 0.5 s, stalled after 2 s,
reconciling every 0.5 s), running until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import logging
import sys

import anyio

from distributed import crash_flows, flows  # noqa: F401  # the steps are resolved from here
from hephaestus.distributed import Worker


def main() -> None:
    dsn, schema = sys.argv[1:3]
    # Which job ran where, and how it ended: the test prints this when it fails.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = Worker(
        dsn,
        schema=schema,
        concurrency=4,
        spread_concurrency=4,
        poll_interval=0.05,
        reconcile_every=0.5,
        heartbeat=0.5,
        stalled_after=2,
        shutdown_timeout=5,
    )
    anyio.run(worker.run)


if __name__ == "__main__":
    main()
