"""The public surface: hephaestus.__all__ is pinned, sorted, and every name imports."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import importlib

import pytest

import hephaestus

PUBLIC = [
    "AlreadyRunning",
    "AmbiguousResume",
    "Async",
    "Config",
    "Context",
    "Debug",
    "Done",
    "Error",
    "ExecutionEntry",
    "Failure",
    "HephaestusError",
    "Instance",
    "InstanceLoadError",
    "InstanceLost",
    "InstanceNotFound",
    "InvalidStepResult",
    "LocalRunner",
    "Map",
    "MapError",
    "MapState",
    "MemoryStorage",
    "NotSerializable",
    "NotWaiting",
    "Ok",
    "PostgresStorage",
    "Record",
    "RemoteStepError",
    "Result",
    "Retry",
    "Route",
    "RouteError",
    "Runner",
    "RunnerStopped",
    "SQLiteStorage",
    "Status",
    "Step",
    "StepFailed",
    "StepTimeout",
    "Storage",
    "StorageError",
    "StorageHeld",
    "UndeclaredEvent",
    "Unique",
    "Wait",
    "WaitForEvent",
    "Workflow",
    "WorkflowDefinitionError",
]


class TestPublicAPI:
    """hephaestus re-exports one small, sorted surface."""

    def test_all_is_pinned(self) -> None:
        """__all__ is exactly the public names; a change here is an API change."""
        assert PUBLIC == hephaestus.__all__

    def test_all_is_sorted(self) -> None:
        """__all__ is kept sorted."""
        assert sorted(hephaestus.__all__) == hephaestus.__all__

    def test_no_duplicates(self) -> None:
        """No name is exported twice."""
        assert len(set(hephaestus.__all__)) == len(hephaestus.__all__)

    @pytest.mark.parametrize("name", PUBLIC)
    def test_importable(self, name: str) -> None:
        """Every public name imports from hephaestus."""
        module = importlib.import_module("hephaestus")
        assert getattr(module, name) is not None

    def test_star_import(self) -> None:
        """from hephaestus import * binds exactly __all__."""
        namespace: dict[str, object] = {}
        exec("from hephaestus import *", namespace)
        assert set(PUBLIC) == set(namespace) - {"__builtins__"}

    def test_version(self) -> None:
        """The package has a version string."""
        assert isinstance(hephaestus.__version__, str)
