"""Crash test: the workers driving instances killed with SIGKILL, in a fan-out and in a chain.

Three worker processes (``crash_worker``) share one schema. Twelve instances
run ``CrashFlow`` (a fan-out of three, a join, a 0.5 s timer), ``LinearFlow``
(the same steps in a row: instance 1) or ``EventFlow`` (an external event
instead of the timer: instance 7); instances 0 and 1 have a slow step ``b``;
instance 5 has a step ``c`` that always fails. Every step logs its start and
end, with its pid (``crash_flows``).

- Kill #1: the worker driving instance 0 is killed while its step ``b`` runs,
  in the middle of the fan-out (its siblings ``a`` and ``c`` have run).
- Kill #2: the worker driving instance 1 is killed while ``b`` runs, in the
  middle of the chain (``prepare`` and ``a`` are stored), unless kill #1
  killed it already.

The survivors' reconcilers retry the dead workers' drive jobs once their
heartbeat is 2 s old, and another worker drives each instance on from its
last stored step. In the end every instance has ended as it should, no step
stored before a kill ran again, each result was applied once, and nothing is
left to do.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from hephaestus import Status, WaitForEvent
from hephaestus.distributed import DistributedRunner

from . import crash_flows
from .conftest import Database, eventually

TESTS = Path(__file__).parent.parent
ROOT = TESTS.parent
COUNT = 12
FANNED = 0
"""The instance whose step ``b`` is slow, killed in the middle of its fan-out."""
CHAINED = 1
"""The instance whose step ``b`` is slow, killed in the middle of its chain."""
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

    def spawn(
        self, name: str, module: str = "distributed.crash_worker", **extra_env: str
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        env["HEPHAESTUS_CRASH_LOG"] = str(self.log)
        env.update(extra_env)
        with (self.folder / f"{name}.out").open("w") as sink:
            child = subprocess.Popen(
                [sys.executable, "-m", module, self.dsn, self.schema],
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


def flow_of(n: int) -> type[crash_flows.Workflow]:
    if n == EVENTFUL:
        return crash_flows.EventFlow
    return crash_flows.LinearFlow if n == CHAINED else crash_flows.CrashFlow


async def test_killed_workers_lose_nothing(
    postgres_dsn: str, schema: str, db: Database, tmp_path: Path
) -> None:
    """After SIGKILLs of driving workers, every instance ends right from its last stored step."""
    log = tmp_path / "steps.log"
    workers = Workers(postgres_dsn, schema, tmp_path, log)
    ids = [f"crash-{n:02d}" for n in range(COUNT)]
    deadline = time.monotonic() + DEADLINE
    async with DistributedRunner(postgres_dsn, schema=schema) as runner:  # migrates the schema
        for n, iid in enumerate(ids):
            context = {"n": n} | ({"slow": "b"} if n in (FANNED, CHAINED) else {})
            context |= {"fail": "c"} if n == FAILING else {}
            await runner.start(flow_of(n), context, id=iid)
        try:
            for name in ("first", "second", "third"):
                workers.spawn(name)

            def running_b(n: int) -> Callable[[], Awaitable[int | None]]:
                async def check() -> int | None:
                    found = lines(log)
                    ended = {int(line[3]) for line in found if line[:3] == [ids[n], "b", "end"]}
                    for line in found:
                        if line[:3] == [ids[n], "b", "start"]:
                            pid = int(line[3])
                            if pid in workers.alive() and pid not in ended:
                                return pid
                    return None

                return check

            victims = []
            for n in (FANNED, CHAINED):
                victim = await eventually(running_b(n), f"step b of instance {n} to run", DEADLINE)
                if victim not in workers.killed:
                    workers.kill(victim)
                victims.append(victim)
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
            histories = {iid: await runner.history(iid) for iid in ids}

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
        path = Counter(entry.step for entry in instance.execution_history)
        assert set(path.values()) == {1}, (iid, path)
        assert (6 if n == CHAINED else 7) == len(path)
        completed = Counter(r.step for r in histories[iid] if r.kind == "step_completed")
        assert set(completed.values()) == {1}, (iid, histories[iid])

    # The killed steps ran again elsewhere, in a worker that said it recovered the instance.
    for n, victim in zip((FANNED, CHAINED), victims, strict=True):
        b_runs = [int(line[3]) for line in lines(log) if line[:3] == [ids[n], "b", "start"]]
        assert victim in b_runs
        assert len(set(b_runs)) >= 2
        assert "recovered" in [r.kind for r in histories[ids[n]]]

    # A step ran more than once only when a killed worker had started it (or it failed):
    # what was stored before a kill did not run again.
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
    # The chain went on from b: a step starts only once the one before is stored.
    chain = [line[1] for line in lines(log) if line[0] == ids[CHAINED] and line[2] == "start"]
    first_b = chain.index("b")
    assert {"prepare", "a"}.isdisjoint(chain[first_b:]), chain

    # Each wait was resumed once: by its timer, or by the external event; no letter is left.
    resumes = Counter(
        (iid, r.details["source"])
        for iid, history in histories.items()
        for r in history
        if r.kind == "resumed"
    )
    expected_resumes = {
        (iid, "external" if n == EVENTFUL else "timeout"): 1
        for n, iid in enumerate(ids)
        if n not in (FAILING, CHAINED)
    }
    assert expected_resumes == dict(resumes)
    assert [] == await db.rows("SELECT id FROM heph_inbox")
