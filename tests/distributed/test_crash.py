"""Crash test: worker processes killed with SIGKILL, in a step and inside an advance.

Three worker processes (``crash_worker``) share one schema. Twelve instances
run ``CrashFlow`` (a fan-out of three, a join, a 0.5 s timer) or, for one of
them, ``EventFlow`` (an external event instead of the timer); instance 0 has
a slow step ``b``; one instance has a step ``c`` that always fails. Every
step logs its start and end, with its pid (``crash_flows``).

- Kill #2 first: the first worker runs alone with the test hook that pauses
  each advance once it holds the instance's row lock; as soon as it logs a
  pause, it is killed there (the other two workers are started just before).
  Alone, it pauses first in the advance a step job runs itself once it has
  recorded its result (when the row lock is free): PostgreSQL rolls back the
  result with the advance, and the step runs again.
- Kill #1: the worker running the slow step ``b`` of instance 0 is killed.

The survivor's reconciler retries the dead workers' jobs once their
heartbeat is 2 s old. In the end every instance has ended as it should, each
step result was applied once, and nothing is left to do.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

from hephaestus import Status, WaitForEvent
from hephaestus.distributed import DistributedRunner

from . import crash_flows
from .conftest import Database, eventually

TESTS = Path(__file__).parent.parent
ROOT = TESTS.parent
COUNT = 12
SLOW = 0
"""The instance whose step ``b`` is slow (and killed)."""
FAILING = 5
"""The instance whose step ``c`` always fails."""
EVENTFUL = 7
"""The instance that waits for an external event."""
DEADLINE = 60.0


class Workers:
    """The worker processes of one test; their output goes to files in ``folder``."""

    def __init__(self, dsn: str, schema: str, folder: Path, log: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.folder = folder
        self.log = log
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[int] = set()

    def spawn(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        env["HEPHAESTUS_CRASH_LOG"] = str(self.log)
        env.update(extra_env)
        with (self.folder / f"{name}.out").open("w") as sink:
            child = subprocess.Popen(
                [sys.executable, "-m", "distributed.crash_worker", self.dsn, self.schema],
                env=env,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.started[name] = child
        return child

    def alive(self) -> set[int]:
        return {child.pid for child in self.started.values() if child.poll() is None}

    def kill(self, pid: int) -> None:
        """SIGKILL one of the workers and reap it."""
        [child] = [child for child in self.started.values() if child.pid == pid]
        os.kill(pid, signal.SIGKILL)
        child.wait(timeout=10)
        self.killed.add(pid)

    def stop(self) -> None:
        """SIGTERM the survivors, SIGKILL those that do not stop; print every output."""
        for child in self.started.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in self.started.items():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            output = (self.folder / f"{name}.out").read_text()
            print(f"--- {name} (pid {child.pid}, exit {child.returncode})\n{output[-3000:]}")


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


async def row_is_locked(db: Database, instance_id: str) -> bool:
    """Whether a transaction holds the instance's row lock (an advance in progress)."""
    async with await db.connect() as conn:  # autocommit: the statement is its transaction
        try:
            await conn.execute(
                "SELECT 1 FROM heph_instances WHERE id = %s FOR NO KEY UPDATE NOWAIT",
                (instance_id,),
            )
        except psycopg.errors.LockNotAvailable:
            return True
    return False


async def test_killed_workers_lose_nothing(
    postgres_dsn: str, schema: str, db: Database, tmp_path: Path
) -> None:
    """After SIGKILLs in a step and in an advance, every instance ends right, nothing twice."""
    log = tmp_path / "steps.log"
    advance_log = tmp_path / "advances.log"
    workers = Workers(postgres_dsn, schema, tmp_path, log)
    ids = [f"crash-{n:02d}" for n in range(COUNT)]
    deadline = time.monotonic() + DEADLINE
    async with DistributedRunner(postgres_dsn, schema=schema) as runner:  # migrates the schema
        for n, iid in enumerate(ids):
            flow = crash_flows.EventFlow if n == EVENTFUL else crash_flows.CrashFlow
            context = {"n": n} | ({"slow": "b"} if n == SLOW else {})
            context |= {"fail": "c"} if n == FAILING else {}
            await runner.start(flow, context, id=iid)
        try:
            # Kill #2: inside an advance transaction, holding the row lock.
            pauser = workers.spawn(
                "pauser",
                HEPHAESTUS_TEST_PAUSE_IN_ADVANCE="60",
                HEPHAESTUS_TEST_ADVANCE_LOG=str(advance_log),
            )

            async def pausing() -> list[list[str]]:
                return lines(advance_log)

            [paused_id, _, pid] = (await eventually(pausing, "an advance to pause", DEADLINE))[0]
            assert pauser.pid == int(pid)
            assert await row_is_locked(db, paused_id), "the kill lands inside the transaction"
            workers.spawn("first")
            workers.spawn("second")
            workers.kill(pauser.pid)
            paused = {line[0] for line in lines(advance_log)}

            # Kill #1: the worker running the slow step b of instance 0.
            async def running_b() -> int | None:
                found = lines(log)
                ended = {int(line[3]) for line in found if line[:3] == [ids[SLOW], "b", "end"]}
                for line in found:
                    if line[:3] == [ids[SLOW], "b", "start"]:
                        pid = int(line[3])
                        if pid in workers.alive() and pid not in ended:
                            return pid
                return None

            victim = await eventually(running_b, "step b of instance 0 to start", DEADLINE)
            workers.kill(victim)
            assert workers.alive(), "a worker survives"

            async def event_awaited() -> bool:
                instance = await runner.get(ids[EVENTFUL])
                return WaitForEvent in instance.waiting_steps

            await eventually(event_awaited, "the event instance to wait", DEADLINE)
            await runner.resume(ids[EVENTFUL], "received")

            final = {
                iid: await runner.wait(iid, timeout=max(deadline - time.monotonic(), 1))
                for iid in ids
            }

            async def settled() -> bool:
                return not await db.rows(
                    "SELECT id FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                )

            await eventually(settled, "every job to finish", max(deadline - time.monotonic(), 1))
        finally:
            workers.stop()

    # Each instance ended as it should, every step's result in its context, once.
    assert {
        iid: Status.FAILED if n == FAILING else Status.COMPLETED for n, iid in enumerate(ids)
    } == {iid: instance.status for iid, instance in final.items()}
    failed = final[ids[FAILING]]
    assert failed.error is not None
    assert crash_flows.C is failed.error.step
    for n, iid in enumerate(ids):
        if n == FAILING:
            continue
        instance = final[iid]
        for key in crash_flows.LOGGED_STEPS:
            assert crash_flows.expected(iid, key) == instance.context.steps[key]
        history = Counter(entry.step for entry in instance.execution_history)
        assert set(history.values()) == {1}, (iid, history)
        assert 7 == len(history)

    # The killed step ran again elsewhere; its result was recorded and applied once.
    b_runs = [int(line[3]) for line in lines(log) if line[:3] == [ids[SLOW], "b", "start"]]
    assert len(b_runs) >= 2
    assert victim in b_runs
    assert len(set(b_runs)) >= 2
    assert [("B", "completed", True)] == [
        (step, kind, processed)
        for step, kind, _, _, processed in await db.results(ids[SLOW])
        if step == "B"
    ]

    # A step ran more than once only when a killed worker had started it (or it failed).
    starts: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for instance_id, step, what, pid in lines(log):
        if what == "start":
            starts[(instance_id, step)].append(int(pid))
    again = {
        pair
        for pair, pids in starts.items()
        if len(pids) > 1 and not workers.killed & set(pids) and pair != (ids[FAILING], "c")
    }
    assert set() == again

    # The advance killed mid-transaction left nothing half-done.
    assert paused
    for iid in paused:
        rows = await db.results(iid)
        outcomes = Counter(step for step, kind, *_ in rows if kind in ("completed", "failed"))
        assert set(outcomes.values()) == {1}, (iid, rows)
        assert all(processed for *_, processed in rows), (iid, rows)

    # One outcome per (instance, step, activation); every row applied; every job done.
    assert [] == await db.rows(
        "SELECT instance_id, step, activation FROM heph_step_results WHERE slot = 'outcome'"
        " GROUP BY instance_id, step, activation HAVING count(*) > 1"
    )
    assert [] == await db.rows("SELECT id FROM heph_step_results WHERE processed_at IS NULL")
    assert [] == await db.rows(
        "SELECT id, task_name, status FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    )
    # Each wait was resumed once: by its timer, or by the external event.
    resumes = await db.rows(
        "SELECT instance_id, source, count(*) FROM heph_step_results WHERE kind = 'resumed'"
        " GROUP BY instance_id, source ORDER BY instance_id"
    )
    expected_resumes = [
        (iid, "external" if n == EVENTFUL else "timeout", 1)
        for n, iid in enumerate(ids)
        if n != FAILING
    ]
    assert expected_resumes == resumes
