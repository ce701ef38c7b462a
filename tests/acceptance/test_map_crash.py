"""Map crash tests: a process running 300-item maps is killed with SIGKILL; another finishes them.

The killed process runs three instances of ``MapCrashFlow`` (300 items each,
at most 20 at once) on a durable storage; every item logs its start and end,
with the process's phase and pid, to a file. Once 150 items have ended (of
900), the test kills the process and reads which items each stored instance
has done (the bitmask in ``"maps"``, which must agree with the items in its
history), then a second process recovers the storage. Every instance must
complete with each item's result exactly once, in item order; an item stored
done must not run again, every other item must run in the second process
exactly once, and no item runs more than twice in all.
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

from crashing import ROOT, child_env, log_lines, postgres_states, sqlite_states, wait_for
from map_crash_flows import expected_gather, expected_item, item_of

INSTANCES = 3
ITEMS = 300
KILL_AFTER_ITEM_ENDS = 150
ITEM_PATH = "map_crash_flows:Item"  # how the storage names the mapped step


def _done_items(state: dict[str, Any]) -> set[int]:
    """The items a stored instance has done: its map's bitmask (all once the map completed)."""
    mapped = state["maps"].get(ITEM_PATH)
    if mapped is not None:
        done = int(mapped["done"], 16)
        return {i for i in range(len(mapped["items"])) if done >> i & 1}
    if "item" in state["context"]["steps"]:
        return set(range(ITEMS))
    return set()  # the map has not started


def _history_items(state: dict[str, Any]) -> list[int]:
    """The item indexes in a stored instance's history, in history order."""
    return [entry[4] for entry in state["execution_history"] if entry[0] == ITEM_PATH]


def _crash_and_recover(
    kind: str, target: str, log: Path, states: Callable[[], list[dict[str, Any]]]
) -> None:
    """Start, kill and recover on one storage; ``states`` reads its stored instances."""
    command = [sys.executable, "-m", "map_crash_child"]
    child = subprocess.Popen(
        [*command, "start", kind, target, str(INSTANCES), str(ITEMS)],
        env=child_env(log, HEPHAESTUS_CRASH_PHASE="start"),
        cwd=ROOT,
    )
    try:

        def far_enough() -> bool:
            lines = log_lines(log)
            if not any(line[3] == "started" for line in lines):
                return False  # the kill comes once every instance is stored
            ends = sum(1 for line in lines if line[1] == "item" and line[3] == "end")
            return ends >= KILL_AFTER_ITEM_ENDS

        wait_for(far_enough, 60, "the first process to get going")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert -signal.SIGKILL == child.returncode

    at_kill = {state["id"]: state for state in states()}
    assert INSTANCES == len(at_kill), "every instance was stored by start()"
    done_at_kill = {instance_id: _done_items(state) for instance_id, state in at_kill.items()}
    for instance_id, state in at_kill.items():
        assert sorted(done_at_kill[instance_id]) == sorted(_history_items(state)), (
            "the stored bitmask and the stored history agree on which items are done"
        )
    done_count = sum(len(done) for done in done_at_kill.values())
    assert 0 < done_count < INSTANCES * ITEMS, "the kill came after some items, before all"
    assert any(ITEM_PATH in state["maps"] for state in at_kill.values()), (
        "the kill came while a map ran"
    )
    started = {
        (line[0], int(line[2]))
        for line in log_lines(log)
        if line[1] == "item" and line[3] == "start"
    }
    interrupted = {
        (instance_id, i) for instance_id, done in done_at_kill.items() for i in range(ITEMS)
        if i not in done and (instance_id, i) in started
    }  # fmt: skip
    assert interrupted, "the kill came while items ran that were not stored done"

    recovery = subprocess.run(
        [*command, "recover", kind, target, "0", "0"],
        env=child_env(log, HEPHAESTUS_CRASH_PHASE="recover"),
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == recovery.returncode, recovery.stderr

    final = {state["id"]: state for state in states()}
    assert INSTANCES == len(final)
    assert {"completed"} == {state["status"] for state in final.values()}
    for instance_id, state in final.items():
        steps = state["context"]["steps"]
        assert [item_of(instance_id, i) for i in range(ITEMS)] == steps["plan"]["items"]
        assert [expected_item(instance_id, i) for i in range(ITEMS)] == steps["item"]["items"]
        assert ["done"] * ITEMS == steps["item"]["events"]
        assert expected_gather(ITEMS) == steps["gather"]
        assert list(range(ITEMS)) == sorted(_history_items(state)), "each item folded once"
        assert {} == state["maps"]

    lines = log_lines(log)
    assert {str(child.pid)} == {line[5] for line in lines if line[4] == "start"}
    assert str(child.pid) not in {line[5] for line in lines if line[4] == "recover"}
    item_lines = [(line[0], int(line[2]), line[3], line[4]) for line in lines if line[1] == "item"]
    starts = Counter((i, index, phase) for i, index, what, phase in item_lines if what == "start")
    ends = Counter((i, index, phase) for i, index, what, phase in item_lines if what == "end")
    for instance_id, done in done_at_kill.items():
        not_done = sorted(set(range(ITEMS)) - done)
        in_killed = {i: starts[(instance_id, i, "start")] for i in range(ITEMS)}
        ended_in_killed = {i: ends[(instance_id, i, "start")] for i in done}
        rerun = {i: starts[(instance_id, i, "recover")] for i in done}
        recovered = {i: starts[(instance_id, i, "recover")] for i in not_done}
        ended_in_recovery = {i: ends[(instance_id, i, "recover")] for i in not_done}
        assert dict.fromkeys(done, 1) == ended_in_killed, "stored done: it ended before the kill"
        assert dict.fromkeys(done, 0) == rerun, "stored done: it does not run again"
        assert dict.fromkeys(not_done, 1) == recovered, (
            "not stored done: it runs in the recovery, once"
        )
        assert dict.fromkeys(not_done, 1) == ended_in_recovery
        assert set() == {i for i, count in in_killed.items() if count > 1}
    runs = Counter((i, index) for i, index, what, _ in item_lines if what == "start")
    assert set() == {item for item, count in runs.items() if count > 2}, "no item ran 3 times"


class TestMapCrashOnSQLite:
    def test_a_killed_process_reruns_only_the_items_not_stored_done(self, tmp_path: Path) -> None:
        """After a SIGKILL mid-map, a new process runs exactly the items not stored done, once."""
        database = tmp_path / "map-crash.db"
        log = tmp_path / "steps.log"

        _crash_and_recover("sqlite", str(database), log, sqlite_states(database))


class TestMapCrashOnPostgres:
    def test_a_killed_process_reruns_only_the_items_not_stored_done(
        self, tmp_path: Path, postgres_schema: tuple[str, str]
    ) -> None:
        """After a SIGKILL mid-map, a new process runs exactly the items not stored done, once."""
        dsn, schema = postgres_schema
        log = tmp_path / "steps.log"
        _crash_and_recover("postgres", f"{dsn}#{schema}", log, postgres_states(dsn, schema))
