"""The distributed runner's commands: ``hephaestus db migrate`` and ``hephaestus worker``."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio

from hephaestus import Status
from hephaestus.distributed import DistributedRunner
from hephaestus.runtime.storage.migrations import migrations

from . import flows
from .conftest import GUARD, Database, eventually

TESTS = Path(__file__).parent.parent
ROOT = TESTS.parent


def child_env() -> dict[str, str]:
    """The environment of a child process that imports ``distributed.flows``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    return env


class TestMigrate:
    async def test_migrate_twice(self, postgres_dsn: str, schema: str, db: Database) -> None:
        """`db migrate` creates every table in the schema, and a second run changes nothing."""
        command = [sys.executable, "-m", "hephaestus", "db", "migrate"]
        command += ["--dsn", postgres_dsn, "--schema", schema]
        for _ in range(2):
            with anyio.fail_after(60):
                done = await anyio.run_process(command, check=False, cwd=ROOT)
            assert 0 == done.returncode, done.stderr.decode()
            assert f"schema {schema!r} is up to date" in done.stdout.decode()

        tables = {
            name
            for (name,) in await db.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema
            )
        }
        expected = {"heph_instances", "heph_inbox", "heph_history", "heph_schema_version"}
        expected |= {"procrastinate_jobs", "procrastinate_workers", "procrastinate_events"}
        assert expected <= tables
        assert [(len(migrations("postgres")),)] == await db.rows(
            "SELECT version FROM heph_schema_version"
        )

    async def test_the_dsn_may_come_from_the_operator_commands_variable(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Without --dsn nor $HEPHAESTUS_DSN, `db migrate` reads $HEPHAESTUS_DATABASE."""
        env = {k: v for k, v in os.environ.items() if k != "HEPHAESTUS_DSN"}
        env["HEPHAESTUS_DATABASE"] = postgres_dsn
        command = [sys.executable, "-m", "hephaestus", "db", "migrate", "--schema", schema]
        with anyio.fail_after(60):
            done = await anyio.run_process(command, check=False, cwd=ROOT, env=env)
        assert 0 == done.returncode, done.stderr.decode()
        assert f"schema {schema!r} is up to date" in done.stdout.decode()

    async def test_no_dsn_at_all_says_where_to_give_one(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HEPHAESTUS_DSN", "HEPHAESTUS_DATABASE")
        }
        command = [sys.executable, "-m", "hephaestus", "db", "migrate"]
        with anyio.fail_after(60):
            done = await anyio.run_process(command, check=False, cwd=ROOT, env=env)
        assert 0 != done.returncode
        assert "give --dsn or set HEPHAESTUS_DSN (or HEPHAESTUS_DATABASE)" in done.stderr.decode()


class TestWorkerCommand:
    async def test_the_worker_runs_jobs_and_stops_on_sigterm(
        self, postgres_dsn: str, schema: str, tmp_path: Path
    ) -> None:
        """`hephaestus worker` runs a workflow started elsewhere, serves its metrics; SIGTERM
        stops it cleanly."""
        output = tmp_path / "worker.log"
        with socket.socket() as probe:  # a free port for the metrics
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "hephaestus", "worker", "--dsn", postgres_dsn]
        command += ["--schema", schema, "--import", "distributed.flows", "--concurrency", "2"]
        command += ["--metrics-port", str(port)]
        with output.open("w") as sink:
            child = await anyio.open_process(
                command, env=child_env(), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            async with DistributedRunner(postgres_dsn, schema=schema) as runner:
                instance = await runner.run(flows.Linear, {"n": 4}, id="cli", timeout=30)

            assert Status.COMPLETED == instance.status
            assert {"n": 50} == instance.context.steps["second"]

            async def scraped() -> str | None:
                url = f"http://127.0.0.1:{port}/metrics"
                try:
                    return await anyio.to_thread.run_sync(_get, url)
                except OSError:
                    return None  # not serving yet

            text = await eventually(scraped, "the worker's metrics")
            assert 'hephaestus_workflow_stop_total{workflow="Linear"} 1.0' in text.splitlines()
            child.send_signal(signal.SIGTERM)
            with anyio.fail_after(GUARD):
                code = await child.wait()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert 0 == code, output.read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # the test's own worker
        return response.read().decode()  # type: ignore[no-any-return]
