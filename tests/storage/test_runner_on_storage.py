"""LocalRunner on each durable storage, end to end: run, refuse, recover."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import pytest
from runtime.conftest import signal, until

from hephaestus import Done, LocalRunner, NotSerializable, Status, Storage, Wait, telemetry
from hephaestus.testing import capture_events

from .conftest import GUARD
from .flows import (
    GATES,
    ApprovalFlow,
    BadItemsFlow,
    Charge,
    FetchFlow,
    FetchOne,
    OrderFlow,
    Plan,
    Prepare,
    Reserve,
    Ship,
    lifecycle,
)

durable = pytest.mark.parametrize("storage", ["sqlite", "postgres"], indirect=True)


@durable
class TestRunnerOnStorage:
    async def test_runs_to_completion(self, storage: Storage) -> None:
        """A workflow with a fan-out and a Wait completes, and the storage holds the result."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                done = await runner.run(OrderFlow, {"items": ["book"]}, id="order-1")
            stored = await storage.get("order-1")
        assert Status.COMPLETED == done.status
        assert done.completed_steps == {Prepare, Charge, Reserve, Ship, Wait, Done}
        assert stored is not None
        assert (Status.COMPLETED, done.completed_steps) == (stored.status, stored.completed_steps)
        assert {"amount": 30} == stored.context.steps["charge"]
        assert {"items": ["book"]} == stored.context.steps["reserve"]

    async def test_unencodable_context(self, storage: Storage) -> None:
        """A context the storage cannot store is refused with NotSerializable; nothing is kept."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                with pytest.raises(NotSerializable, match=r"context\['when'\]"):
                    await runner.start(OrderFlow, {"when": datetime.now(UTC)}, id="order-1")
            assert [] == await storage.query()

    async def test_runs_a_map(self, storage: Storage) -> None:
        """A map's items are stored one by one and gathered in item order."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                done = await runner.run(FetchFlow, {"urls": ["a", "bb", "ccc"]}, id="fetch-1")
            stored = await storage.get("fetch-1")
        assert stored is not None
        assert (Status.COMPLETED, {"total": 6}) == (
            stored.status,
            stored.context.steps["summarize"],
        )
        assert [{"size": 1}, {"size": 2}, {"size": 3}] == stored.context.steps["fetch_one"]["items"]
        assert [0, 1, 2] == sorted(e.item for e in done.execution_history if e.step is FetchOne)

    async def test_items_it_cannot_store_fail_the_step_before_the_map(
        self, storage: Storage
    ) -> None:
        """Items the storage cannot keep are refused: Plan fails (invalid_result), naming them."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                done = await runner.run(BadItemsFlow, {"urls": []}, id="fetch-1")
        assert done.error is not None
        assert (Plan, "invalid_result") == (done.error.step, done.error.kind)
        assert "the items of Map(FetchOne)" in str(done.error.reason)

    async def test_resumes_a_half_done_map(self, storage: Storage) -> None:
        """A stored map with two of three items done: a new runner runs only the third."""
        with anyio.fail_after(GUARD):
            await storage.put(lifecycle()["mapping"])
            with capture_events() as events:
                async with LocalRunner(storage) as runner:
                    done = await runner.wait("fetch-1")
        items = [m["item"] for name, _, m in events if name == telemetry.step_start_event()
                 and m["step"] is FetchOne]  # fmt: skip
        assert [1] == items
        assert Status.COMPLETED == done.status
        assert ["missing", "fetched", "fetched"] == done.context.steps["fetch_one"]["events"]

    async def test_resume_data_survives_a_restart(self, storage: Storage) -> None:
        """Data given with a resume is stored: a new runner reads it back."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                with signal(telemetry.step_async_event()) as waiting:
                    await runner.start(ApprovalFlow, {}, id="a-1")
                    await until(waiting)
                await runner.resume("a-1", "approved", {"by": "ada"})
                await runner.wait("a-1")
            async with LocalRunner(storage) as runner:
                done = await runner.get("a-1")
        assert (Status.COMPLETED, {"by": "ada"}) == (
            done.status,
            done.context.steps["wait_for_event"],
        )

    async def test_unstorable_data_changes_nothing(self, storage: Storage) -> None:
        """Data the storage cannot keep is refused, naming the key; the step still waits."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                with signal(telemetry.step_async_event()) as waiting:
                    await runner.start(ApprovalFlow, {}, id="a-1")
                    await until(waiting)
                with pytest.raises(NotSerializable, match=r"\['wait_for_event'\]\['when'\]"):
                    await runner.resume("a-1", "approved", {"when": datetime.now(UTC)})
                assert Status.WAITING == (await storage.get("a-1")).status  # type: ignore[union-attr]
                await runner.resume("a-1", "rejected")
                done = await runner.wait("a-1")
                records = await runner.history("a-1")
        assert "rejected" == done.execution_history[-2].event
        resumes = [(r.kind, r.event) for r in records if r.kind == "resumed"]
        assert [("resumed", "rejected")] == resumes  # the refused resume left no trace

    async def test_a_message_kept_across_a_restart(self, storage: Storage) -> None:
        """Sent before the step parks, then the runner stops: the next runner delivers it."""
        GATES["a-1"] = gate = anyio.Event()
        try:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    await runner.start(ApprovalFlow, {}, id="a-1")
                    await runner.send("a-1", "rejected", {"why": "late"})
                kept = await storage.get("a-1")
                gate.set()
                async with LocalRunner(storage) as runner:
                    done = await runner.wait("a-1")
                    records = await runner.history("a-1")
        finally:
            del GATES["a-1"]
        assert kept is not None
        assert ["rejected"] == [m.event for m in kept.messages]
        assert (Status.COMPLETED, ()) == (done.status, done.messages)
        assert {"why": "late"} == done.context.steps["wait_for_event"]
        # The history kept what happened before the restart, and says a runner took over
        # (its status: pending or running, whether the first runner had opened it or not).
        assert [
            ("started", None, None, {}),
            ("message_kept", None, "rejected", {"data_keys": ["why"]}),
            ("recovered", None, None, {"runner": runner.name}),
            ("step_completed", "hold", "held", {}),
            ("step_parked", "wait_for_event", None, {"events": ["approved", "rejected"]}),
            ("resumed", "wait_for_event", "rejected", {"source": "message", "data_keys": ["why"]}),
            ("step_completed", "done", "done", {}),
            ("completed", None, None, {}),
        ] == [
            (r.kind, r.step, r.event, {k: v for k, v in (r.details or {}).items() if k != "status"})
            for r in records
        ]

    async def test_recovers_a_due_timer(self, storage: Storage) -> None:
        """A runner entering on an instance whose timer is due completes it, not restarts it."""
        waiting = lifecycle(started_at=time.time_ns() - 60 * 1_000_000_000)["waiting"]
        with anyio.fail_after(GUARD):
            await storage.put(waiting)
            with capture_events() as events:
                async with LocalRunner(storage) as runner:
                    done = await runner.wait("order-1")
            stored = await storage.get("order-1")
        names = [name for name, _, _ in events]
        resumes = [meta for name, _, meta in events if name == telemetry.step_resume_event()]
        assert Status.COMPLETED == done.status
        assert stored is not None
        assert Status.COMPLETED == stored.status
        assert telemetry.workflow_start_event() not in names
        assert 1 == names.count(telemetry.workflow_stop_event())
        assert [(Wait, "timeout", "timeout")] == [
            (m["step"], m["resume_event"], m["source"]) for m in resumes
        ]
