"""The benchmark harness still runs: ``python -m benchmarks --quick`` gives every scenario's rows.

Nothing here is timed: the quick run proves that each scenario runs to the
end on every installed system and reports its figures. The peers (the
``bench`` extra) may be installed or not: a missing one must be skipped with
a note. The PostgreSQL rows are checked only when the server answers (and
must be there under ``CI=true``: see the ``postgres_dsn`` fixture).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("linear10", "fanout8", "async_resume", "map1000", "telemetry", "storage")
OURS = ("asyncio (await)", "asyncio (tasks)", "Hephaestus", "Hephaestus + LogHandler")
PEERS = ("LangGraph", "pydantic-graph")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON report (and the printed table) of one ``--quick`` run, in a subprocess."""
    path = tmp_path_factory.mktemp("benchmarks") / "quick.json"
    dsn = os.environ.get("HEPHAESTUS_TEST_DSN", DEFAULT_DSN)
    command = [sys.executable, "-m", "benchmarks", "--quick", "--json", str(path)]
    completed = subprocess.run(
        [*command, "--postgres", dsn],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report: dict[str, Any] = json.loads(path.read_text())
    report["stdout"] = completed.stdout
    return report


def bench(module: str) -> ModuleType:
    """``benchmarks.<module>``, imported from the checkout (the package is not installed)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{module}")


def figures(report: dict[str, Any], scenario: str) -> dict[tuple[str, str], float]:
    """``(metric, system) -> median`` of one scenario."""
    return {
        (row["metric"], row["system"]): row["median"]
        for row in report["rows"]
        if row["scenario"] == scenario
    }


class TestQuickRun:
    def test_every_scenario_has_rows(self, quick: dict[str, Any]) -> None:
        """Each of the six scenarios reports figures."""
        assert set(SCENARIOS) == {row["scenario"] for row in quick["rows"]}

    @pytest.mark.parametrize("scenario", ["linear10", "fanout8"])
    def test_workflow_scenarios_measure_our_systems(
        self, quick: dict[str, Any], scenario: str
    ) -> None:
        """Latency (median, p99) and throughput of both floors and of Hephaestus, logging or not."""
        found = figures(quick, scenario)
        for system in OURS:
            for metric in ("latency median", "latency p99", "throughput"):
                assert found[(metric, system)] > 0

    def test_async_resume_measures_round_trip_and_memory(self, quick: dict[str, Any]) -> None:
        """The round trip (median, p99) and the memory per parked workflow of our systems."""
        found = figures(quick, "async_resume")
        for system in OURS:
            for metric in ("round trip median", "round trip p99", "memory per parked"):
                assert found[(metric, system)] > 0

    def test_map1000_measures_latency_throughput_and_memory(self, quick: dict[str, Any]) -> None:
        """The map's latency and items/s on the gather floor and Hephaestus, and its memory."""
        found = figures(quick, "map1000")
        for system in ("asyncio (gather)", "Hephaestus"):
            for metric in ("latency median", "throughput", "memory per in-flight item"):
                assert found[(metric, system)] > 0
        hephaestus = next(
            row
            for row in quick["rows"]
            if (row["scenario"], row["metric"], row["system"])
            == ("map1000", "throughput", "Hephaestus")
        )
        assert "asyncio (gather)" in hephaestus["vs_floor"]
        skipped = any(note.startswith("LangGraph skipped") for note in quick["notes"])
        assert (("throughput", "LangGraph") in found) != skipped
        assert ("LangGraph" in hephaestus["vs_peers"]) != skipped
        labels = {entry["target"] for entry in quick["targets"]}
        assert {"map1000 throughput vs LangGraph", "memory per in-flight map item"} <= labels

    @pytest.mark.parametrize("peer", PEERS)
    def test_a_peer_is_measured_or_skipped_with_a_note(
        self, quick: dict[str, Any], peer: str
    ) -> None:
        """A peer has rows in every in-memory scenario, or a note says it was skipped."""
        skipped = any(note.startswith(f"{peer} skipped") for note in quick["notes"])
        for scenario in ("linear10", "fanout8", "async_resume"):
            measured = any(system == peer for _, system in figures(quick, scenario))
            assert measured != skipped

    def test_telemetry_rows_are_the_overhead_benchmark(self, quick: dict[str, Any]) -> None:
        """Each emitter with 0, 1, 5 handlers, and the bare call, with a ratio to the bare call."""
        found = figures(quick, "telemetry")
        for case in ("step_stop", "workflow_transition"):
            for system in ("bare call", "0 handlers", "1 handler", "5 handlers"):
                assert found[(case, system)] > 0
        ratios = [row["vs_floor"] for row in quick["rows"] if row["system"] == "5 handlers"]
        assert all("bare call" in ratio for ratio in ratios)

    def test_storage_measures_memory_and_sqlite(self, quick: dict[str, Any]) -> None:
        """Memory and both SQLite settings, with ratios to memory; DBOS or a note."""
        found = figures(quick, "storage")
        for system in ("Hephaestus memory", "Hephaestus SQLite normal", "Hephaestus SQLite full"):
            assert found[("linear10 throughput", system)] > 0
            assert found[("linear10 latency median", system)] > 0
        dbos = ("linear10 throughput", "DBOS SQLite") in found
        assert dbos != any(note.startswith("DBOS SQLite skipped") for note in quick["notes"])

    def test_the_table_and_targets_are_printed(self, quick: dict[str, Any]) -> None:
        """The table names every scenario; every target is listed, measured or not."""
        for scenario in SCENARIOS:
            assert scenario in quick["stdout"]
        assert "Targets:" in quick["stdout"]
        assert len(bench("report").TARGETS) == len(quick["targets"])


def test_storage_runs_on_postgresql(quick: dict[str, Any], postgres_dsn: str) -> None:
    """With PostgreSQL reachable, the storage scenario measures it too."""
    found = figures(quick, "storage")
    for metric in ("linear10 latency median", "linear10 latency p99", "linear10 throughput"):
        assert found[(metric, "Hephaestus PostgreSQL")] > 0


class TestHelpers:
    def test_rotation_starts_one_further_each_repeat(self) -> None:
        """Repeat n starts with the n-th system and wraps around."""

        harness = bench("harness")

        async def nothing() -> list[Any]:
            return []

        trials = [harness.Trial(name, nothing) for name in "abc"]
        assert ["b", "c", "a"] == [trial.system for trial in harness.rotated(trials, 1)]
        assert ["a", "b", "c"] == [trial.system for trial in harness.rotated(trials, 3)]

    def test_percentile_is_nearest_rank(self) -> None:
        """p99 of 1..100 is 99; p50 of four values is the second."""
        percentile = bench("harness").percentile
        assert 99 == percentile(list(range(1, 101)), 99)
        assert 2 == percentile([4, 1, 3, 2], 50)


def test_distributed_quick_run(postgres_dsn: str, tmp_path: Path) -> None:
    """``benchmarks.distributed --quick``: every figure but DBOS's, the targets, no worker left."""
    path = tmp_path / "distributed.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.distributed", "--quick", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "HEPHAESTUS_TEST_DSN": postgres_dsn},
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(path.read_text())
    for kind in ("trivial", "io"):
        assert ["1", "2"] == list(report[kind])
        assert all(figure["steps_per_second"] > 0 for figure in report[kind].values())
    assert report["trivial_unanalyzed"]["steps_per_second"] > 0
    assert report["local_postgres"]["steps_per_second"] > 0
    assert "skipped" in report["dbos_postgres"]  # --quick skips DBOS
    assert report["per_step"]["statements_per_step"] > 0
    assert report["per_step"]["commits_per_step"] > 0
    assert 6 == len(report["targets"])
    assert "Targets:" in completed.stdout
    for kind in ("trivial", "cpu"):  # a map run by its driver, and spread
        for workers in (1, 2):
            figure = report["spread"][f"{kind}_{workers}"]
            assert figure["driver_s"] > 0
            assert figure["spread_s"] > 0
