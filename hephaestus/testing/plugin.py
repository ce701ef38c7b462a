"""The pytest plugin of Hephaestus: fixtures for workflow tests (``docs/testing.md``).

Installed with the package (entry point ``pytest11``), so any test of a
project that installs Hephaestus may ask for:

- ``heph_clock``: a :class:`~hephaestus.testing.VirtualClock`;
- ``heph_events``: the telemetry events emitted during the test
  (:class:`~hephaestus.testing.CapturedEvents`);
- ``heph_runner``: a started ``LocalRunner`` on a ``MemoryStorage`` and ``heph_clock``;
- ``heph_sqlite_runner``: a started ``LocalRunner`` on a ``SQLiteStorage`` in
  a temporary file (``heph_sqlite_path``) and ``heph_clock``.

The runner fixtures are async: they need pytest-asyncio (``pip install
'hephaestus[testing]'``), in its ``auto`` or ``strict`` mode. pytest-asyncio
may set an async fixture up and tear it down in different tasks, which a
runner's task group refuses: each runner fixture enters its runner in a task
of its own, which leaves it when the test is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage.memory import MemoryStorage
from hephaestus.runtime.storage.sqlite import SQLiteStorage
from hephaestus.testing.clock import VirtualClock
from hephaestus.testing.events import CapturedEvents, capture_events

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the runner fixtures then say what they need
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = [
    "heph_clock",
    "heph_events",
    "heph_runner",
    "heph_sqlite_path",
    "heph_sqlite_runner",
]


_T = TypeVar("_T")


async def _held(entering: contextlib.AbstractAsyncContextManager[_T]) -> AsyncIterator[_T]:
    """Yield what ``entering`` enters, entered and left in one task of its own."""
    loop = asyncio.get_running_loop()
    entered: asyncio.Future[_T] = loop.create_future()
    leave = asyncio.Event()

    async def hold() -> None:
        async with entering as value:
            entered.set_result(value)
            await leave.wait()

    task = loop.create_task(hold())
    await asyncio.wait((entered, task), return_when=asyncio.FIRST_COMPLETED)
    if not entered.done():
        task.result()  # it could not enter: its exception
    try:
        yield entered.result()
    finally:
        leave.set()
        await task


@pytest.fixture
def heph_clock() -> VirtualClock:
    """A virtual clock: time moves by ``advance``, or skips while the test awaits an outcome."""
    return VirtualClock()


@pytest.fixture
def heph_events() -> Iterator[CapturedEvents]:
    """The 11 telemetry events emitted while the test runs, in order."""
    with capture_events() as events:
        yield events


@pytest.fixture
def heph_sqlite_path(tmp_path: Path) -> Path:
    """The path of the SQLite file ``heph_sqlite_runner`` stores its instances in."""
    return tmp_path / "hephaestus.db"


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def heph_runner(heph_clock: VirtualClock) -> AsyncIterator[LocalRunner]:
        """A started ``LocalRunner`` on a fresh ``MemoryStorage``, reading ``heph_clock``."""
        async for runner in _held(LocalRunner(MemoryStorage(), clock=heph_clock)):
            yield runner

    @pytest_asyncio.fixture
    async def heph_sqlite_runner(
        heph_clock: VirtualClock, heph_sqlite_path: Path
    ) -> AsyncIterator[LocalRunner]:
        """A started ``LocalRunner`` on a ``SQLiteStorage`` at ``heph_sqlite_path``."""
        async with SQLiteStorage(heph_sqlite_path) as storage:
            async for runner in _held(LocalRunner(storage, clock=heph_clock)):
                yield runner

else:  # pragma: no cover

    @pytest.fixture
    def heph_runner() -> None:
        """Needs pytest-asyncio."""
        pytest.fail("the heph_runner fixture needs pytest-asyncio: pip install pytest-asyncio")

    @pytest.fixture
    def heph_sqlite_runner() -> None:
        """Needs pytest-asyncio."""
        pytest.fail(
            "the heph_sqlite_runner fixture needs pytest-asyncio: pip install pytest-asyncio"
        )
