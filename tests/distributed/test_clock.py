"""The distributed runner and its workers read one clock, as a LocalRunner does.

Given the same :class:`VirtualClock`, a ``DistributedRunner`` and a
``Worker`` stamp instances, records and telemetry with the clock's time, and
the worker wakes the timers due by the clock, not by the database's: a
two-day ``Wait`` ends once the test moves the clock two days on, a moment
later in real time.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hephaestus import Context, Done, Instance, Ok, Status, Step, Wait, Workflow
from hephaestus.core import history as h
from hephaestus.telemetry import step_resume_event
from hephaestus.testing import VirtualClock, capture_events

from .conftest import GUARD, Database, parked, worker

pytest.importorskip("psycopg")
pytest.importorskip("procrastinate")

from hephaestus.distributed import DistributedRunner, Worker  # after the skips

START = datetime.datetime(2031, 3, 1, 12, 0, tzinfo=datetime.UTC)
"""Where the tests' virtual clock starts: far from the real time, so that its times show."""

START_NS = int(START.timestamp()) * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000


class Begin(Step):
    events = ("begun",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("begun")


class TwoDays(Workflow):
    """Begins, waits two days, ends."""

    start = Begin
    transitions = {
        Begin: {"begun": (Wait, {"duration": 2, "unit": "days"})},
        Wait: {"timeout": Done},
    }


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
async def runner(
    postgres_dsn: str, schema: str, clock: VirtualClock
) -> AsyncIterator[DistributedRunner]:
    """A runner and an in-process worker, both on the test's virtual clock."""
    async with (
        worker(postgres_dsn, schema, clock=clock),
        DistributedRunner(postgres_dsn, schema=schema, clock=clock) as runner,
    ):
        yield runner


async def test_a_two_day_wait_ends_when_the_clock_has_moved_two_days(
    runner: DistributedRunner, clock: VirtualClock, db: Database
) -> None:
    with capture_events(step_resume_event()) as resumes:
        iid = await runner.start(TwoDays, {})

        # The instance parks on its Wait; its timer is stored due two days on, by the clock.
        waiting = await parked(runner, iid, Wait)
        assert START_NS == waiting.started_at
        assert [START_NS + 2 * DAY_NS] == [timer.due for timer in waiting.timers.values()]
        status, _, wake_at = await db.instance(iid)
        assert ("waiting", START + datetime.timedelta(days=2)) == (status, wake_at)

        # Two days on by the clock, the worker finds the timer due and the instance ends.
        await clock.advance(2 * 86_400)
        done = await runner.wait(iid, timeout=GUARD)

    assert Status.COMPLETED == done.status
    records = await runner.history(iid)
    kinds = [record.kind for record in records]
    assert h.STARTED == kinds[0]
    assert h.COMPLETED == kinds[-1]
    assert START_NS == records[0].at
    assert records[-1].at >= records[0].at + 2 * DAY_NS
    resumed = [record for record in records if record.kind == h.RESUMED]
    assert [("timeout", START_NS + 2 * DAY_NS)] == [(r.event, r.at) for r in resumed]

    [(_, measurements, metadata)] = resumes
    assert (Wait, "timeout") == (metadata["step"], metadata["source"])
    assert measurements["wait_duration"] >= 2 * DAY_NS
    assert START_NS + 2 * DAY_NS == measurements["system_time"]


async def test_a_cancel_is_recorded_at_the_clocks_time(
    postgres_dsn: str, schema: str, clock: VirtualClock
) -> None:
    # No worker: the instance stays pending; the cancel ends it in the runner's process.
    async with DistributedRunner(postgres_dsn, schema=schema, clock=clock) as runner:
        iid = await runner.start(TwoDays, {})
        await clock.advance(60)
        cancelled = await runner.cancel(iid)
        records = await runner.history(iid)

    assert Status.CANCELLED == cancelled.status
    assert [(h.STARTED, START_NS), (h.CANCELLED, START_NS + 60 * 1_000_000_000)] == [
        (record.kind, record.at) for record in records
    ]


@pytest.mark.parametrize("make", [DistributedRunner, Worker])
def test_a_clock_that_is_no_clock_is_refused(make: Any) -> None:
    with pytest.raises(TypeError, match="'nope'"):
        make("postgresql://unused", clock="nope")
