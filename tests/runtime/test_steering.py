"""SteeringRunner: the runner API's changes to stored instances, with nothing driven.

It is what ``hephaestus instances cancel/resume/send`` act through when no
runner drives the storage: each change is stored as a ``LocalRunner`` would
store it, no step runs, and the next ``LocalRunner`` on the storage goes on.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from hephaestus import (
    Context,
    Done,
    Instance,
    InstanceNotFound,
    LocalRunner,
    NotWaiting,
    Ok,
    SQLiteStorage,
    Status,
    Step,
    StorageHeld,
    WaitForEvent,
    Workflow,
    telemetry,
)
from hephaestus.core.step import Config
from hephaestus.runtime.steering import SteeringRunner

from .conftest import GUARD, signal


class Ship(Step):
    events = ("shipped",)
    runs: ClassVar[int] = 0

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        Ship.runs += 1
        return Ok("shipped", {"by": context.steps["wait_for_event"].get("by")})


class Approval(Workflow):
    start = (WaitForEvent, {"events": ("approved",), "timeout": 3600})
    transitions: ClassVar[Any] = {
        WaitForEvent: {"approved": Ship, "timeout": Done},
        Ship: {"shipped": Done},
    }


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "steer.db")


async def parked(database: str, count: int = 1) -> list[str]:
    """``count`` Approval instances left waiting in ``database`` by a runner that has stopped."""
    with signal(telemetry.step_async_event(), count) as all_parked:
        async with LocalRunner(SQLiteStorage(database)) as runner:
            ids = [await runner.start(Approval, {}, id=f"a{i}") for i in range(count)]
            with anyio.fail_after(GUARD):
                await all_parked.wait()
    return ids


class TestChanges:
    async def test_a_resume_is_stored_and_the_next_runner_runs_what_it_activated(
        self, database: str
    ) -> None:
        """The resumed step's data is in the context; Ship runs only once a LocalRunner opens."""
        (iid,) = await parked(database)
        Ship.runs = 0
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            await steering.resume(iid, "approved", {"by": "ana"})
            resumed = await steering.get(iid)
        assert Status.RUNNING == resumed.status
        assert {Ship} == resumed.active_steps
        assert 0 == Ship.runs
        async with LocalRunner(SQLiteStorage(database)) as runner:
            done = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == done.status
        assert {"by": "ana"} == done.context.steps["ship"]
        kinds = [record.kind for record in await SQLiteStorage(database).history(iid)]
        resumed_at = kinds.index("resumed")
        assert ["resumed", "recovered", "step_completed"] == kinds[resumed_at : resumed_at + 3]

    async def test_a_cancel_ends_the_instance_in_the_storage(self, database: str) -> None:
        (iid,) = await parked(database)
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            cancelled = await steering.cancel(iid)
            again = await steering.cancel(iid)  # already ended: unchanged
        assert Status.CANCELLED == cancelled.status == again.status
        stored = await SQLiteStorage(database).get(iid)
        assert stored is not None
        assert Status.CANCELLED == stored.status
        assert {} == stored.timers

    async def test_a_message_to_an_instance_that_waits_for_something_else_is_kept(
        self, database: str
    ) -> None:
        """A waiting step that declares the event takes it at once; no step ran."""
        ids = await parked(database, 2)
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            await steering.send(ids[0], "approved", {"by": "bo"})
            taken = await steering.get(ids[0])
        assert Status.RUNNING == taken.status
        assert {"by": "bo"} == taken.context.steps["wait_for_event"]
        assert () == taken.messages

    async def test_refusals_change_nothing(self, database: str) -> None:
        (iid,) = await parked(database)
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            with pytest.raises(InstanceNotFound):
                await steering.resume("nobody", "approved")
            await steering.cancel(iid)
            with pytest.raises(NotWaiting):
                await steering.resume(iid, "approved")
        kinds = [record.kind for record in await SQLiteStorage(database).history(iid)]
        assert "cancelled" == kinds[-1]

    async def test_it_starts_and_waits_for_nothing(self, database: str) -> None:
        """Nothing would run an instance it started: start, run and wait say so."""
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            with pytest.raises(TypeError, match="use a LocalRunner"):
                await steering.start(Approval, {})
            with pytest.raises(TypeError, match="cannot wait"):
                await steering.wait("a0")


class TestHold:
    async def test_it_is_refused_while_a_local_runner_drives_the_storage(
        self, database: str
    ) -> None:
        async with LocalRunner(SQLiteStorage(database)):
            with pytest.raises(StorageHeld):
                async with SteeringRunner(SQLiteStorage(database)):
                    pass

    async def test_a_local_runner_is_refused_while_it_acts(self, database: str) -> None:
        async with SteeringRunner(SQLiteStorage(database)):
            with pytest.raises(StorageHeld):
                async with LocalRunner(SQLiteStorage(database)):
                    pass

    async def test_entering_recovers_nothing(self, database: str) -> None:
        """An instance left running is not driven by a SteeringRunner: its step does not run."""
        (iid,) = await parked(database)
        Ship.runs = 0
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            await steering.resume(iid, "approved")
        async with SteeringRunner(SQLiteStorage(database)) as steering:
            assert Status.RUNNING == (await steering.get(iid)).status
        assert 0 == Ship.runs
