"""Timers of instances resumed early release what they held at once, not at their due time."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import gc
import tracemalloc

import anyio

from hephaestus import Done, LocalRunner, MemoryStorage, Status, WaitForEvent, Workflow, telemetry

from .conftest import GUARD, signal


class HourLong(Workflow):
    """Waits for an event, or an hour."""

    start = (WaitForEvent, {"timeout": 3600})
    transitions = {WaitForEvent: {"received": Done, "timeout": Done}}


async def resume_early(runner: LocalRunner, storage: MemoryStorage, count: int) -> None:
    """``count`` instances park for an hour, are resumed at once, end, and are deleted."""
    for n in range(count):
        iid = f"early-{n}"
        with signal(telemetry.step_async_event(), instance_id=iid) as parked:
            await runner.start(HourLong, {}, id=iid)
            await parked.wait()
        await runner.resume(iid, "received")
        assert Status.COMPLETED == (await runner.wait(iid)).status
        await storage.delete(iid)


class TestTimerLeak:
    async def test_early_resumes_keep_nothing(self) -> None:
        """Memory after 10,000 early resumes is back within 256 KiB of before."""
        storage = MemoryStorage()
        with anyio.fail_after(GUARD * 12):
            async with LocalRunner(storage) as runner:
                await resume_early(runner, storage, 200)  # warm every cache first
                gc.collect()
                tracemalloc.start()
                try:
                    before = tracemalloc.get_traced_memory()[0]
                    await resume_early(runner, storage, 10_000)
                    gc.collect()
                    after = tracemalloc.get_traced_memory()[0]
                finally:
                    tracemalloc.stop()
        assert after - before < 256 * 1024, f"{after - before} bytes kept"

    async def test_a_cancelled_instance_drops_its_timer(self) -> None:
        """Cancelling a parked instance disarms its timer."""
        async with LocalRunner() as runner:
            with signal(telemetry.step_async_event(), instance_id="c") as parked:
                await runner.start(HourLong, {}, id="c")
                await parked.wait()
            assert 1 == len(runner._timers)
            await runner.cancel("c")
            assert 0 == len(runner._timers)
