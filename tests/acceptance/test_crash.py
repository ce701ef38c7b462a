"""Crash tests: a process running 200 instances is killed with SIGKILL; another finishes them.

The killed process runs a ``LocalRunner`` on a durable storage; every step
logs its start and end to a file. After the kill, the test reads which steps
each stored instance still had active (in flight: started, or finished but
not yet stored), then a second process recovers the storage. Every instance
must complete with its whole context, and a step may have run twice only if
it was in flight at the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crash_flows import LOGGED_STEPS, expected
from crashing import ROOT, child_env, log_lines, postgres_states, sqlite_states, wait_for

COUNT = 200


def _crash_and_recover(
    kind: str, target: str, log: Path, states: Callable[[], list[dict[str, Any]]]
) -> None:
    command = [sys.executable, "-m", "crash_child"]
    child = subprocess.Popen(
        [*command, "start", kind, target, str(COUNT)], env=child_env(log), cwd=ROOT
    )
    try:

        def far_enough() -> bool:
            lines = log_lines(log)
            if not any(line[2] == "started" for line in lines):
                return False  # the kill comes once all 200 instances are stored
            ends = sum(1 for line in lines if line[2] == "end")
            finished = sum(1 for line in lines if line[1] == "finish" and line[2] == "end")
            return ends >= 400 and finished >= 20

        wait_for(far_enough, 60, "the first process to get going")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert -signal.SIGKILL == child.returncode

    at_kill = {state["id"]: state for state in states()}
    assert COUNT == len(at_kill), "every instance was stored by start()"
    unfinished = [s for s in at_kill.values() if s["status"] != "completed"]
    assert unfinished, "the kill came before the end"
    in_flight = {
        (state["id"], path.rsplit(".", 1)[-1].split(":")[-1]) for state in at_kill.values()
        for path in state["active_steps"]
    }  # fmt: skip

    recovery = subprocess.run(
        [*command, "recover", kind, target, "0"],
        env=child_env(log),
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == recovery.returncode, recovery.stderr

    final = {state["id"]: state for state in states()}
    assert {"completed"} == {state["status"] for state in final.values()}
    assert COUNT == len(final)
    for instance_id, state in final.items():
        for key in LOGGED_STEPS:
            assert expected(instance_id, key) == state["context"]["steps"][key]

    starts = Counter((line[0], line[1]) for line in log_lines(log) if line[2] == "start")
    for instance_id in final:
        for key in LOGGED_STEPS:
            assert starts[(instance_id, key)] >= 1
    ran_twice = {pair for pair, count in starts.items() if count > 1}
    step_of = {key: name for name, key in _STEP_NAMES.items()}
    assert set() == {
        (instance_id, key) for instance_id, key in ran_twice
        if (instance_id, step_of[key]) not in in_flight
    }  # fmt: skip
    assert all(count <= 2 for count in starts.values())


_STEP_NAMES = {
    "Prepare": "prepare",
    "Left": "left",
    "Middle": "middle",
    "Right": "right",
    "Join": "join",
    "Finish": "finish",
}


class TestCrashOnSQLite:
    def test_a_killed_process_loses_nothing(self, tmp_path: Path) -> None:
        """After a SIGKILL mid-run, a new process completes all 200 instances intact."""
        database = tmp_path / "crash.db"
        log = tmp_path / "steps.log"

        _crash_and_recover("sqlite", str(database), log, sqlite_states(database))


class TestCrashOnPostgres:
    def test_a_killed_process_loses_nothing(
        self, tmp_path: Path, postgres_schema: tuple[str, str]
    ) -> None:
        """After a SIGKILL mid-run, a new process completes all 200 instances intact."""
        dsn, schema = postgres_schema
        log = tmp_path / "steps.log"
        _crash_and_recover("postgres", f"{dsn}#{schema}", log, postgres_states(dsn, schema))
