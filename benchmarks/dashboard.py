"""The dashboard's pages on a million instances: ``python -m benchmarks.dashboard``.

Builds the SQLite file and the PostgreSQL schema of ``benchmarks.listing``
(``--count`` instances, 1,000,000 by default, straight in SQL), serves each
with ``hephaestus web`` (its own process, uvicorn on 127.0.0.1), and times
each page as a browser asks for it, over HTTP on a kept-alive connection:

- the instances page: the first page (50 rows), filtered by status, by
  workflow, and the next page through its cursor; its live table alone;
- an instance's page;
- the overview (counts by status and workflow, and what ended in the last
  hour, per minute).

Each figure is the median of ``--repeats`` requests (after one untimed
request), in milliseconds, from the request to the last byte of the page.
The target: the instances page under 200 ms. ``--postgres DSN`` (default
``$HEPHAESTUS_TEST_DSN``, else the local ``test`` database; ``none`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.listing import build_postgres, build_sqlite

TARGET_MS = 200.0
PAGES = {
    "instances": "/instances",
    "instances, status waiting": "/instances?status=waiting",
    "instances, one workflow": "/instances?workflow=benchmarks.listing:Refund",
    "instances, next page (cursor)": None,  # the first page's link
    "instances, live table": "/live/instances",
    "an instance": "/instances/inst-{middle:07d}",
    "overview": "/",
}
_TARGETED = ("instances",)
"""The pages the target is for (a label starting with one of these)."""


@contextmanager
def served(database: str, schema: str) -> Iterator[str]:
    """``hephaestus web`` on ``database``, read-only; its address."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hephaestus",
            "web",
            "-d",
            database,
            "--schema",
            schema,
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://\S+/", line)
        if found is None:
            raise RuntimeError(f"hephaestus web did not start: {line!r}")
        yield found[0].rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def figures(base: str, count: int, repeats: int) -> dict[str, float]:
    """Median ms of each page, on one kept-alive connection."""
    found: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=60) as http:
        first = http.get("/instances?status=waiting")
        link = re.search(r'href="([^"]+)" id="next-page"', first.text)
        assert link is not None, "the first page has no next page"
        for label, path in PAGES.items():
            url = path.format(middle=count // 2) if path else link[1].replace("&amp;", "&")
            rows = len(re.findall(r"<tr data-id=", http.get(url).text))
            assert http.get(url).status_code == 200
            times = []
            for _ in range(repeats):
                begin = time.perf_counter()
                response = http.get(url)
                response.read()
                times.append((time.perf_counter() - begin) * 1000)
            shown = f"{label} ({rows} rows)" if rows else label
            found[shown] = statistics.median(times)
    return found


def report(name: str, count: int, found: dict[str, float]) -> None:
    print(f"{name}, {count:,} instances (median ms; target < {TARGET_MS:.0f} ms):")
    for label, ms in found.items():
        if not label.startswith(_TARGETED):
            print(f"         {label:<44} {ms:8.2f} ms")
            continue
        mark = "ok    " if ms < TARGET_MS else "MISSED"
        print(f"  {mark} {label:<44} {ms:8.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HEPHAESTUS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "million.db"
        begin = time.perf_counter()
        asyncio.run(build_sqlite(path, args.count))
        print(f"(SQLite file built in {time.perf_counter() - begin:.1f} s)")
        with served(str(path), "hephaestus") as base:
            report("SQLite", args.count, figures(base, args.count, args.repeats))

    if args.postgres == "none":
        return
    import psycopg

    schema = f"heph_dashboard_{uuid.uuid4().hex[:8]}"
    try:
        begin = time.perf_counter()
        build_postgres(args.postgres, schema, args.count)
        print(f"(PostgreSQL schema {schema} built in {time.perf_counter() - begin:.1f} s)")
        with served(args.postgres, schema) as base:
            report("PostgreSQL", args.count, figures(base, args.count, args.repeats))
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
