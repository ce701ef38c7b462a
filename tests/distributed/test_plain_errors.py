"""Errors surface plainly: never wrapped in an ExceptionGroup, timeouts that name the instance."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from hephaestus import LocalRunner, SQLiteStorage
from hephaestus.distributed import DistributedRunner
from hephaestus.runtime.storage.postgres import PostgresStorage

from . import flows
from .conftest import parked, worker


class Refused(ValueError):
    """What the body of each block raises."""


def contexts(dsn: str, schema: str, path: Path) -> dict[str, AbstractAsyncContextManager[Any]]:
    return {
        "LocalRunner": LocalRunner(),
        "SQLiteStorage": SQLiteStorage(path / "errors.db"),
        "PostgresStorage": PostgresStorage(dsn, schema=schema),
        "Worker": worker(dsn, schema),
        "DistributedRunner": DistributedRunner(dsn, schema=schema),
    }


NAMES = ["LocalRunner", "SQLiteStorage", "PostgresStorage", "Worker", "DistributedRunner"]


@pytest.mark.parametrize("name", NAMES)
async def test_an_exception_in_the_block_reaches_the_caller_as_itself(
    name: str, postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    """``except ValueError`` around ``async with <runner or storage>:`` catches the body's error."""
    block = contexts(postgres_dsn, schema, tmp_path)[name]
    with pytest.raises(Refused, match=r"^no$"):
        async with block:
            raise Refused("no")


async def test_a_local_wait_that_times_out_names_the_instance() -> None:
    async with LocalRunner() as runner:
        instance_id = await runner.start(flows.Parks, {}, id="slow")
        with pytest.raises(
            TimeoutError, match=r"^instance 'slow' is still (running|waiting) after"
        ):
            await runner.wait(instance_id, timeout=0.01)
        await runner.cancel(instance_id)


async def test_a_distributed_wait_that_times_out_names_the_instance(
    runner: DistributedRunner,
) -> None:
    instance_id = await runner.start(flows.Parks, {}, id="slow")
    await parked(runner, instance_id, flows.Hold)
    with pytest.raises(TimeoutError, match=r"^instance 'slow' is still waiting after 0\.01 s"):
        await runner.wait(instance_id, timeout=0.01)
    await runner.cancel(instance_id)
