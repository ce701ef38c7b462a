"""Hephaestus: an asyncio workflow runner with built-in telemetry.

Define steps (``Step`` subclasses returning ``Ok``, ``Async`` or ``Error``),
join them in a ``Workflow``, and run it with a runner. See the README.

Every type a step's annotations need is here: ``def execute(self, instance:
Instance, config: Config, context: Context) -> Result`` (or ``async def``; the
return type may be narrowed, to ``Ok`` for one). A telemetry handler's are in
``hephaestus.telemetry``: ``EventName``, ``Measurements`` and ``Metadata``.
"""

from hephaestus.core.history import Record as Record
from hephaestus.core.instance import Context as Context
from hephaestus.core.instance import ExecutionEntry as ExecutionEntry
from hephaestus.core.instance import Failure as Failure
from hephaestus.core.instance import Instance as Instance
from hephaestus.core.instance import MapState as MapState
from hephaestus.core.instance import Status as Status
from hephaestus.core.step import Async as Async
from hephaestus.core.step import Config as Config
from hephaestus.core.step import Error as Error
from hephaestus.core.step import Ok as Ok
from hephaestus.core.step import Result as Result
from hephaestus.core.step import Retry as Retry
from hephaestus.core.step import Step as Step
from hephaestus.core.workflow import Map as Map
from hephaestus.core.workflow import Route as Route
from hephaestus.core.workflow import Unique as Unique
from hephaestus.core.workflow import Workflow as Workflow
from hephaestus.exceptions import AlreadyRunning as AlreadyRunning
from hephaestus.exceptions import AmbiguousResume as AmbiguousResume
from hephaestus.exceptions import HephaestusError as HephaestusError
from hephaestus.exceptions import InstanceLoadError as InstanceLoadError
from hephaestus.exceptions import InstanceLost as InstanceLost
from hephaestus.exceptions import InstanceNotFound as InstanceNotFound
from hephaestus.exceptions import InvalidStepResult as InvalidStepResult
from hephaestus.exceptions import MapError as MapError
from hephaestus.exceptions import NotSerializable as NotSerializable
from hephaestus.exceptions import NotWaiting as NotWaiting
from hephaestus.exceptions import RemoteStepError as RemoteStepError
from hephaestus.exceptions import RouteError as RouteError
from hephaestus.exceptions import RunnerStopped as RunnerStopped
from hephaestus.exceptions import StepFailed as StepFailed
from hephaestus.exceptions import StepTimeout as StepTimeout
from hephaestus.exceptions import StorageError as StorageError
from hephaestus.exceptions import StorageHeld as StorageHeld
from hephaestus.exceptions import UndeclaredEvent as UndeclaredEvent
from hephaestus.exceptions import WorkflowDefinitionError as WorkflowDefinitionError
from hephaestus.runtime.local import LocalRunner as LocalRunner
from hephaestus.runtime.runner import Runner as Runner
from hephaestus.runtime.storage import MemoryStorage as MemoryStorage
from hephaestus.runtime.storage import SQLiteStorage as SQLiteStorage
from hephaestus.runtime.storage import Storage as Storage
from hephaestus.steps import Debug as Debug
from hephaestus.steps import Done as Done
from hephaestus.steps import Wait as Wait
from hephaestus.steps import WaitForEvent as WaitForEvent

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    # PostgresStorage needs the `postgres` extra: import psycopg only when asked for.
    if name == "PostgresStorage":
        from hephaestus.runtime.storage.postgres import PostgresStorage  # noqa: PLC0415

        return PostgresStorage
    raise AttributeError(f"module 'hephaestus' has no attribute {name!r}")


__all__ = [
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
