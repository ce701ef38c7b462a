"""Spread steps (``Step.spread``): each run is a ``heph.step`` job any worker may take.

The in-process worker of the ``runner`` fixture both drives the instances and
runs the step jobs here; ``test_spread_crash`` spreads a map over worker
processes and kills one of them.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from hephaestus import RemoteStepError, Status
from hephaestus.distributed import DistributedRunner, Worker
from hephaestus.telemetry import step_exception_event, step_stop_event
from hephaestus.testing import capture_events

from . import flows
from .conftest import GUARD, Database, eventually, parked, until, worker


async def step_jobs(db: Database, instance_id: str) -> list[str]:
    """The statuses of the instance's ``heph.step`` jobs, oldest first."""
    return [status for name, status, _ in await db.jobs(instance_id) if name == "heph.step"]


class TestSpread:
    async def test_a_spread_map_runs_each_item_as_a_step_job(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Each item is a heph.step job; the outputs land in the items' order, the inbox empties."""
        with capture_events(step_stop_event()) as stopped:
            instance = await runner.run(
                flows.SpreadMapped, {"n": 2, "numbers": [3, 1, 2]}, id="spread", timeout=GUARD
            )

        assert Status.COMPLETED == instance.status
        assert [
            {"value": 9, "index": 0},
            {"value": 3, "index": 1},
            {"value": 6, "index": 2},
        ] == instance.context.steps["spread_scale"]["items"]
        assert ["succeeded"] * 3 == await step_jobs(db, "spread")
        assert [] == await db.inbox("spread")  # the answers went with the folds that took them
        items = sorted(meta["item"] for _, _, meta in stopped if meta.get("item") is not None)
        assert [0, 1, 2] == items  # the driver tells of each item, as if it had run it

    async def test_a_raising_spread_step_is_retried_and_fails_as_if_run_by_its_driver(
        self, runner: DistributedRunner
    ) -> None:
        """Each attempt is a job; a failure's reason and frames are those of the raising worker."""
        instance = await runner.run(flows.SpreadRetries, {}, id="flaky", timeout=GUARD)
        assert Status.COMPLETED == instance.status
        assert {"attempts": 3} == instance.context.steps["spread_flaky"]
        records = await runner.history("flaky")
        assert [
            (1, "exception", "ValueError: attempt 1 fails"),
            (2, "exception", "ValueError: attempt 2 fails"),
        ] == [
            (r.attempt, r.details["failure"], r.details["reason"])  # type: ignore[index]
            for r in records
            if r.kind == "step_failed"
        ]

        with capture_events(step_exception_event()) as raised:
            doomed = await runner.run(flows.SpreadDoomedFlow, {}, id="doomed", timeout=GUARD)
        assert Status.FAILED == doomed.status
        assert doomed.error is not None
        assert "LookupError: no such thing" == doomed.error.reason
        ((_, _, meta),) = [event for event in raised if event[2]["instance_id"] == "doomed"]
        assert isinstance(meta["reason"], RemoteStepError)
        assert "execute" == meta["stacktrace"][-1].name  # where it was raised: the step's body
        assert meta["stacktrace"][-1].filename.endswith("flows.py")

    async def test_a_spread_step_past_its_timeout_times_out(
        self, runner: DistributedRunner
    ) -> None:
        """The worker running it applies the timeout; the driver records a timeout failure."""
        instance = await runner.run(flows.SpreadTooSlow, {}, id="slow", timeout=GUARD)
        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert "timeout" == instance.error.kind
        assert "StepTimeout: step SpreadDawdles timed out after 0.05s" == instance.error.reason

    async def test_a_spread_step_may_park(self, runner: DistributedRunner) -> None:
        """Async from a spread step parks the instance; a resume goes on as usual."""
        iid = await runner.start(flows.SpreadApproval, {}, id="approval")
        await parked(runner, iid, flows.SpreadParks)
        await runner.resume(iid, "approved", {"by": "ada"})
        instance = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == instance.status
        assert {"by": "ada"} == instance.context.steps["spread_parks"]

    async def test_cancel_aborts_the_running_step_job(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A cancel stops the spread step where it runs: its job is aborted, not retried."""
        probe = flows.probe("cancel")
        iid = await runner.start(flows.SpreadMapped, {"n": 1, "numbers": [5, 6]}, id="cancel")
        await until(probe.started)  # item 0 runs, in a heph.step job
        cancelled = await runner.cancel(iid)
        assert Status.CANCELLED == cancelled.status
        await until(probe.cancelled)

        async def settled() -> list[str] | None:
            statuses = await step_jobs(db, iid)
            return None if {"todo", "doing"} & set(statuses) else statuses

        assert "aborted" in await eventually(settled, "the step jobs to settle")


async def test_the_docs_example_renders_a_book(postgres_dsn: str, schema: str) -> None:
    """docs/distributed.md's RenderBook, as written, on a worker and a runner."""
    text = (Path(__file__).parents[2] / "docs" / "distributed.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "RenderBook" in c]
    module = types.ModuleType("docs_render_book")  # importable: the worker resolves its steps
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/distributed.md", "exec"), module.__dict__)
        async with (
            worker(postgres_dsn, schema),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            book = await runner.run(module.RenderBook, {"pages": 3}, timeout=GUARD)
    finally:
        del sys.modules[module.__name__]
    assert Status.COMPLETED == book.status
    assert [{"page": n, "pixels": n * 1000} for n in range(3)] == book.context.steps["render"][
        "items"
    ]


def test_a_negative_spread_concurrency_is_refused(postgres_dsn: str) -> None:
    with pytest.raises(ValueError, match="spread_concurrency must be >= 0, got: -1"):
        Worker(postgres_dsn, spread_concurrency=-1)
