"""A 200-item spread map over two worker processes, one of them killed with SIGKILL.

The test's own worker drives the instance and runs no step job
(``spread_concurrency=0``); two ``crash_worker`` processes run the items
(``Crunch``: 20 ms each, four at a time per process). Once 40 items are
stored, one process is killed: its running items' jobs are retried by the
reconciler after its heartbeat is 2 s old, and the other process runs them.
Every item's result lands once, in order, and both processes ran items.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hephaestus import Status
from hephaestus.distributed import DistributedRunner

from . import flows
from .conftest import Database, eventually, until, worker
from .test_crash import DEADLINE, Workers

ITEMS = 200


async def test_a_spread_map_survives_the_death_of_a_worker_running_its_items(
    postgres_dsn: str, schema: str, db: Database, tmp_path: Path
) -> None:
    workers = Workers(postgres_dsn, schema, tmp_path, tmp_path / "steps.log")
    probe = flows.probe("spread")
    try:
        async with (
            worker(postgres_dsn, schema, spread_concurrency=0),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            iid = await runner.start(
                flows.SpreadCrash, {"numbers": list(range(ITEMS))}, id="spread"
            )
            await until(probe.started)  # driven here: Gate holds it while the processes start
            first = workers.spawn("a").pid
            second = workers.spawn("b").pid
            probe.release.set()

            async def stored(count: int) -> bool:
                rows = await db.rows(
                    "SELECT count(*) FROM heph_history WHERE instance_id = %s"
                    " AND kind = 'step_completed' AND step = 'crunch'",
                    iid,
                )
                return rows[0][0] >= count

            await eventually(lambda: stored(40), "40 items to be stored", DEADLINE)
            workers.kill(first)
            instance = await runner.wait(iid, timeout=DEADLINE)
            records = await runner.history(iid)
    finally:
        workers.stop()

    assert Status.COMPLETED == instance.status
    items = instance.context.steps["crunch"]["items"]
    assert [2 * n for n in range(ITEMS)] == [item["value"] for item in items]
    assert {first, second} == {item["pid"] for item in items}  # both ran items
    stored_items = Counter(
        r.item for r in records if r.kind == "step_completed" and r.step == "crunch"
    )
    assert dict.fromkeys(range(ITEMS), 1) == dict(stored_items)  # each result applied once
    assert not {"todo", "doing"} & set(await db.statuses(iid))
