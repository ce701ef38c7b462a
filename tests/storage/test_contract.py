"""The Storage contract: one suite, run against memory, SQLite and PostgreSQL."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
import pytest

from hephaestus import Context, Instance, MemoryStorage, NotSerializable, Record, Status, Storage
from hephaestus.runtime.storage import codec

from .conftest import GUARD, as_stored
from .flows import OrderFlow, OrderFlowV2, RefusedFlow, lifecycle, new

STAGES = lifecycle()


def ids(instances: list[Instance]) -> list[str]:
    return sorted(instance.id for instance in instances)


async def fill(storage: Storage) -> None:
    """Store one instance per stage (ids are the stage names), plus other workflows."""
    for name, instance in STAGES.items():
        await storage.put(attrs.evolve(instance, id=name))
    await storage.put(new("v2-pending", OrderFlowV2))
    await storage.put(attrs.evolve(new("refused-flow", RefusedFlow), status=Status.FAILED))


class TestGet:
    async def test_missing(self, storage: Storage) -> None:
        """An id that was never stored gives None."""
        with anyio.fail_after(GUARD):
            assert None is await storage.get("nobody")

    @pytest.mark.parametrize("stage", list(STAGES))
    async def test_round_trip(self, storage: Storage, stage: str) -> None:
        """A stored instance comes back equal, at every point of its life."""
        instance = STAGES[stage]
        with anyio.fail_after(GUARD):
            await storage.put(instance)
            assert as_stored(storage)(instance) == await storage.get(instance.id)


class TestPut:
    async def test_replaces(self, storage: Storage) -> None:
        """A put replaces the instance with the same id."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            await storage.put(STAGES["waiting"])
            assert as_stored(storage)(STAGES["waiting"]) == await storage.get("order-1")
            assert ["order-1"] == ids(await storage.query())

    async def test_later_put_wins_when_concurrent(self, storage: Storage) -> None:
        """Of puts of one id issued at once, the one called last is kept."""
        versions = [attrs.evolve(STAGES["running"], runtime_metadata={"n": n}) for n in range(20)]
        with anyio.fail_after(GUARD):
            await asyncio.gather(*(storage.put(v) for v in versions))
            assert as_stored(storage)(versions[-1]) == await storage.get("order-1")

    async def test_two_concurrent_puts(self, storage: Storage) -> None:
        """A put issued after another, while the first is still running, wins."""
        with anyio.fail_after(GUARD):
            await asyncio.gather(storage.put(STAGES["waiting"]), storage.put(STAGES["completed"]))
            assert as_stored(storage)(STAGES["completed"]) == await storage.get("order-1")

    async def test_many_concurrent_puts(self, storage: Storage) -> None:
        """200 instances put at once are all stored."""
        instances = [attrs.evolve(STAGES["joining"], id=f"bulk-{n:03}") for n in range(200)]
        with anyio.fail_after(GUARD):
            await asyncio.gather(*(storage.put(i) for i in instances))
            stored = await storage.query()
        assert ids(instances) == ids(stored)
        assert [as_stored(storage)(i) for i in instances] == sorted(stored, key=lambda i: i.id)


class TestDelete:
    async def test_true_then_false(self, storage: Storage) -> None:
        """Delete says True when it removed an instance, False when there was none."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"])
            assert True is await storage.delete("order-1")
            assert False is await storage.delete("order-1")
            assert None is await storage.get("order-1")

    async def test_keeps_the_others(self, storage: Storage) -> None:
        """Delete removes only the instance with that id."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            await storage.delete("waiting")
            remaining = ids(await storage.query())
        assert sorted([*(s for s in STAGES if s != "waiting"), "v2-pending", "refused-flow"]) == (
            remaining
        )

    async def test_after_put_in_call_order(self, storage: Storage) -> None:
        """A delete issued after a put of the same id, both at once, leaves nothing."""
        with anyio.fail_after(GUARD):
            put, deleted = await asyncio.gather(
                storage.put(STAGES["running"]), storage.delete("order-1")
            )
            assert (None, True) == (put, deleted)
            assert None is await storage.get("order-1")


class TestQuery:
    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            pytest.param({}, [*STAGES, "v2-pending", "refused-flow"], id="no-filter"),
            pytest.param({"id": "waiting"}, ["waiting"], id="id"),
            pytest.param({"id": "nobody"}, [], id="unknown-id"),
            pytest.param({"status": Status.WAITING}, ["waiting"], id="status"),
            pytest.param({"status": "failed"}, ["failed", "refused", "refused-flow"], id="str"),
            pytest.param(
                {"status_in": [Status.PENDING, "waiting"]},
                ["pending", "v2-pending", "waiting"],
                id="status_in",
            ),
            pytest.param({"status_in": []}, [], id="status_in-empty"),
            pytest.param({"workflow": OrderFlowV2}, ["v2-pending"], id="workflow"),
            pytest.param({"workflow": RefusedFlow}, ["refused-flow"], id="workflow-other"),
            pytest.param({"workflow_version": 2}, ["v2-pending"], id="workflow_version"),
            pytest.param(
                {"workflow": OrderFlow, "status": "failed"}, ["failed", "refused"], id="wf+status"
            ),
            pytest.param({"workflow": OrderFlow, "workflow_version": 2}, [], id="wf+other-version"),
            pytest.param(
                {"status_in": ["pending", "running"], "workflow_version": 1},
                ["fanned_out", "joining", "mapping", "pending", "running"],
                id="status_in+version",
            ),
            pytest.param({"id": "waiting", "status": "running"}, [], id="id+status-mismatch"),
            pytest.param(
                {"id": "joining", "status_in": ["running"], "workflow": OrderFlow},
                ["joining"],
                id="id+status_in+workflow",
            ),
        ],
    )
    async def test_filters(
        self, storage: Storage, filters: dict[str, object], expected: list[str]
    ) -> None:
        """A query returns the instances matching every filter given."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            assert sorted(expected) == ids(await storage.query(**filters))  # type: ignore[arg-type]

    async def test_status_in_any_iterable(self, storage: Storage) -> None:
        """``status_in`` takes any iterable, a generator included."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            found = await storage.query(status_in=(s for s in ["completed", "waiting"]))
            assert ["completed", "waiting"] == ids(found)

    async def test_returns_whole_instances(self, storage: Storage) -> None:
        """A query returns the instances as ``get`` does."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            (found,) = await storage.query(id="waiting")
            assert await storage.get("waiting") == found

    async def test_empty(self, storage: Storage) -> None:
        """An empty storage has nothing to return."""
        with anyio.fail_after(GUARD):
            assert [] == await storage.query()

    async def test_unknown_status(self, storage: Storage) -> None:
        """A status that does not exist is refused with ValueError."""
        with anyio.fail_after(GUARD), pytest.raises(ValueError, match="sleeping"):
            await storage.query(status="sleeping")


def records(count: int, start: int = 0) -> list[Record]:
    """``count`` records of every shape: with and without step, item, details."""
    made = []
    for n in range(start, start + count):
        if n % 2:
            made.append(Record("step_completed", 1_000 + n, "charge", None, 1, "charged", 5_000))
        else:
            details = {"source": "external", "data_keys": ["by", "note"], "n": n}
            made.append(Record("resumed", 1_000 + n, "approve", n, None, "approved", None, details))
    return made


class TestHistory:
    async def test_appended_in_order(self, storage: Storage) -> None:
        """Each put appends its records after those of the puts before, fields intact."""
        first, second = records(3), records(2, start=3)
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"], first)
            await storage.put(STAGES["waiting"])
            await storage.put(STAGES["completed"], second)
            assert [*first, *second] == await storage.history("order-1")

    async def test_pages(self, storage: Storage) -> None:
        """``offset`` and ``limit`` page through the records, oldest first."""
        written = records(10)
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"], written)
            assert written[3:7] == await storage.history("order-1", offset=3, limit=4)
            assert written[8:] == await storage.history("order-1", offset=8)
            assert written[:2] == await storage.history("order-1", limit=2)
            assert [] == await storage.history("order-1", offset=10)
            assert [] == await storage.history("order-1", limit=0)

    async def test_by_instance(self, storage: Storage) -> None:
        """Each instance has its own history; an unknown one has none."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"], records(2))
            await storage.put(attrs.evolve(STAGES["running"], id="other"), records(1, start=5))
            assert records(1, start=5) == await storage.history("other")
            assert [] == await storage.history("nobody")

    async def test_concurrent_puts_keep_call_order(self, storage: Storage) -> None:
        """Puts of one instance issued at once append their records in call order."""
        versions = [attrs.evolve(STAGES["running"], runtime_metadata={"n": n}) for n in range(20)]
        with anyio.fail_after(GUARD):
            await asyncio.gather(
                *(storage.put(v, records(1, start=n)) for n, v in enumerate(versions))
            )
            assert records(20) == await storage.history("order-1")

    async def test_deleted_with_its_instance(self, storage: Storage) -> None:
        """Deleting an instance deletes its history."""
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"], records(3))
            await storage.delete("order-1")
            assert [] == await storage.history("order-1")

    async def test_refused_put_appends_nothing(self, storage: Storage) -> None:
        """A put refused for its instance (NotSerializable) writes none of its records."""
        if isinstance(storage, MemoryStorage):
            pytest.skip("MemoryStorage keeps any object: it refuses no put")
        bad = attrs.evolve(STAGES["running"], context=Context({"when": object()}))
        with anyio.fail_after(GUARD):
            await storage.put(STAGES["running"], records(1))
            with pytest.raises(NotSerializable):
                await storage.put(bad, records(2, start=1))
            assert records(1) == await storage.history("order-1")

    @pytest.mark.parametrize(
        ("offset", "limit"), [(-1, None), (0, -1), (1.5, None), (0, "3"), (True, None)]
    )
    async def test_bad_page(self, storage: Storage, offset: object, limit: object) -> None:
        """An offset or limit that is not a count is refused with ValueError."""
        with anyio.fail_after(GUARD), pytest.raises(ValueError, match=r"offset|limit"):
            await storage.history("order-1", offset=offset, limit=limit)  # type: ignore[arg-type]


class TestCount:
    async def test_by_status_and_workflow(self, storage: Storage) -> None:
        """Instances are counted per status and workflow import path."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            counts = await storage.count()
        v2, refused = codec.import_path(OrderFlowV2), codec.import_path(RefusedFlow)
        expected: dict[tuple[object, ...], int] = {}
        for instance in STAGES.values():
            key = (instance.status.value, codec.import_path(instance.workflow))
            expected[key] = expected.get(key, 0) + 1
        expected[("pending", v2)] = 1
        expected[("failed", refused)] = 1
        assert expected == counts

    @pytest.mark.parametrize(
        ("by", "expected"),
        [
            pytest.param(("workflow_version",), {(1,): len(STAGES) + 1, (2,): 1}, id="version"),
            pytest.param("workflow_version", {(1,): len(STAGES) + 1, (2,): 1}, id="a-string"),
        ],
    )
    async def test_by_one_field(
        self, storage: Storage, by: object, expected: dict[tuple[object, ...], int]
    ) -> None:
        """One field gives one-element keys; a lone string is that field."""
        with anyio.fail_after(GUARD):
            await fill(storage)
            assert expected == await storage.count(by=by)  # type: ignore[arg-type]

    async def test_counts_follow_every_write_and_delete(self, storage: Storage) -> None:
        """A status change moves the instance to its new group; a delete removes it."""
        path = codec.import_path(OrderFlow)
        with anyio.fail_after(GUARD):
            await storage.put(new("a"))
            await storage.put(new("b"))
            assert {("pending", path): 2} == await storage.count()
            await storage.put(attrs.evolve(new("a"), status=Status.RUNNING))
            await storage.put(attrs.evolve(new("a"), status=Status.RUNNING))  # no change
            assert {("pending", path): 1, ("running", path): 1} == await storage.count()
            await storage.delete("b")
            assert {("running", path): 1} == await storage.count()
            await storage.delete("a")
            assert {} == await storage.count()

    async def test_empty(self, storage: Storage) -> None:
        """An empty storage has no group."""
        with anyio.fail_after(GUARD):
            assert {} == await storage.count()

    @pytest.mark.parametrize(
        ("by", "message"),
        [
            pytest.param((), "at least one field", id="none"),
            pytest.param(("context",), "cannot group by 'context'", id="unknown"),
            pytest.param(("status", "status"), "each field once", id="twice"),
        ],
    )
    async def test_refused(self, storage: Storage, by: object, message: str) -> None:
        """A field it cannot group by is refused with ValueError naming it."""
        with anyio.fail_after(GUARD), pytest.raises(ValueError, match=message):
            await storage.count(by=by)  # type: ignore[arg-type]


class TestEnded:
    async def test_ended_instances_per_status_in_the_slot_of_their_end(
        self, storage: Storage
    ) -> None:
        """Completed, failed and cancelled instances count, each in the slot of its last write."""
        with anyio.fail_after(GUARD):
            before = datetime.now(UTC)
            ended = [Status.COMPLETED, Status.COMPLETED, Status.FAILED, Status.CANCELLED]
            for n, status in enumerate([*ended, Status.RUNNING, Status.WAITING, Status.PENDING]):
                await storage.put(attrs.evolve(new(f"e{n}"), status=status))
            after = datetime.now(UTC)
            counts = await storage.ended(since=before, every=3600)
        slots = {int(moment.timestamp()) // 3600 * 3600 for moment in (before, after)}
        found: dict[str, int] = {}
        for (slot, status), n in counts.items():
            assert slot in slots
            found[status] = found.get(status, 0) + n
        assert {"completed": 2, "failed": 1, "cancelled": 1} == found

    async def test_only_since(self, storage: Storage) -> None:
        """An instance that ended before ``since`` is not counted."""
        with anyio.fail_after(GUARD):
            await storage.put(attrs.evolve(new("old"), status=Status.COMPLETED))
            later = datetime.now(UTC) + timedelta(seconds=5)
            assert {} == await storage.ended(since=later)

    async def test_an_instance_ends_once(self, storage: Storage) -> None:
        """A running instance that completes counts once, as completed."""
        with anyio.fail_after(GUARD):
            before = datetime.now(UTC) - timedelta(seconds=1)
            await storage.put(attrs.evolve(new("x"), status=Status.RUNNING))
            assert {} == await storage.ended(since=before, every=1)
            await storage.put(attrs.evolve(new("x"), status=Status.COMPLETED))
            counts = await storage.ended(since=before, every=1)
        assert [("completed", 1)] == [(status, n) for (_, status), n in counts.items()]
        assert all(slot % 1 == 0 and isinstance(slot, int) for slot, _ in counts)

    @pytest.mark.parametrize(
        ("arguments", "error", "message"),
        [
            pytest.param({"every": 0}, ValueError, "every must be an int >= 1", id="every-0"),
            pytest.param({"every": 1.5}, ValueError, "every must be an int", id="every-float"),
            pytest.param({"since": datetime(2026, 1, 1)}, ValueError, "aware datetime", id="naive"),
            pytest.param({"since": 12.0}, TypeError, "since must be a datetime", id="number"),
        ],
    )
    async def test_refused(
        self, storage: Storage, arguments: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A wrong argument is refused naming it."""
        chosen = {"since": datetime.now(UTC), **arguments}
        with anyio.fail_after(GUARD), pytest.raises(error, match=message):
            await storage.ended(**chosen)


async def stored_in_turn(storage: Storage, ids: list[str]) -> list[datetime]:
    """Store one instance per id, in turn; the time just after each was stored."""
    after = []
    for n, instance_id in enumerate(ids):
        status = (Status.WAITING, Status.COMPLETED, Status.FAILED)[n % 3]
        workflow = OrderFlowV2 if n % 4 == 3 else OrderFlow
        instance = attrs.evolve(
            new(instance_id, workflow, started_at=time.time_ns()), status=status
        )
        await storage.put(instance)
        after.append(datetime.now(UTC))
    return after


IDS = [f"i{n:02d}" for n in range(10)]


class TestPage:
    async def test_newest_first_by_default_and_oldest_on_request(self, storage: Storage) -> None:
        """Instances come in the order they were stored, newest first unless asked otherwise."""
        with anyio.fail_after(GUARD):
            await stored_in_turn(storage, IDS)
            newest = await storage.page()
            oldest = await storage.page(newest_first=False)
        assert [*reversed(IDS)] == [i.id for i in newest.instances]
        assert IDS == [i.id for i in oldest.instances]
        assert (None, None) == (newest.next, oldest.next)

    @pytest.mark.parametrize("newest_first", [True, False], ids=["newest", "oldest"])
    async def test_pages_follow_one_another_with_a_cursor(
        self, storage: Storage, newest_first: bool
    ) -> None:
        """Pages of 3 go through every instance once; the last page has no next cursor."""
        with anyio.fail_after(GUARD):
            await stored_in_turn(storage, IDS)
            seen: list[str] = []
            page = await storage.page(limit=3, newest_first=newest_first)
            pages = 1
            while True:
                seen += [i.id for i in page.instances]
                if page.next is None:
                    break
                page = await storage.page(limit=3, newest_first=newest_first, after=page.next)
                pages += 1
        assert (IDS if not newest_first else [*reversed(IDS)]) == seen
        assert 4 == pages

    async def test_a_cursor_is_stable_while_instances_are_stored(self, storage: Storage) -> None:
        """An instance stored between two pages does not shift the next page (newest first)."""
        with anyio.fail_after(GUARD):
            await stored_in_turn(storage, IDS)
            first = await storage.page(limit=4)
            await stored_in_turn(storage, ["late"])
            second = await storage.page(limit=4, after=first.next)
        assert ["i09", "i08", "i07", "i06"] == [i.id for i in first.instances]
        assert ["i05", "i04", "i03", "i02"] == [i.id for i in second.instances]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            pytest.param({"status_in": ["waiting"]}, ["i00", "i03", "i06", "i09"], id="status"),
            pytest.param(
                {"status_in": ["failed", Status.COMPLETED]},
                ["i01", "i02", "i04", "i05", "i07", "i08"],
                id="statuses",
            ),
            pytest.param({"status_in": []}, [], id="no-status"),
            pytest.param({"workflow": OrderFlowV2}, ["i03", "i07"], id="workflow-class"),
            pytest.param(
                {"workflow": "storage.flows:OrderFlowV2"}, ["i03", "i07"], id="workflow-path"
            ),
            pytest.param({"workflow_version": 2}, ["i03", "i07"], id="version"),
            pytest.param(
                {"workflow": OrderFlow, "status_in": ["waiting"]},
                ["i00", "i06", "i09"],
                id="workflow+status",
            ),
            pytest.param({"id_prefix": "i0"}, IDS, id="prefix-all"),
            pytest.param({"id_prefix": "i05"}, ["i05"], id="prefix-one"),
            pytest.param({"id_prefix": "j"}, [], id="prefix-none"),
        ],
    )
    async def test_filters(
        self, storage: Storage, filters: dict[str, Any], expected: list[str]
    ) -> None:
        """A page holds the instances matching every filter given."""
        with anyio.fail_after(GUARD):
            await stored_in_turn(storage, IDS)
            page = await storage.page(newest_first=False, **filters)
        assert expected == [i.id for i in page.instances]

    async def test_an_id_prefix_is_literal(self, storage: Storage) -> None:
        """``_`` and ``%`` in a prefix are characters, not wildcards."""
        with anyio.fail_after(GUARD):
            await stored_in_turn(storage, ["a_1", "ab1", "a%1", "aX1"])
            underscore = await storage.page(id_prefix="a_")
            percent = await storage.page(id_prefix="a%")
        assert (["a_1"], ["a%1"]) == (
            [i.id for i in underscore.instances],
            [i.id for i in percent.instances],
        )

    async def test_time_ranges(self, storage: Storage) -> None:
        """started_after is inclusive, started_before exclusive; updated_* read the last write."""
        with anyio.fail_after(GUARD):
            after = await stored_in_turn(storage, IDS)
            late = await storage.page(started_after=after[4], newest_first=False)
            early = await storage.page(started_before=after[4], newest_first=False)
            touched = datetime.now(UTC)
            await storage.put(attrs.evolve((await storage.get("i01")), status=Status.CANCELLED))  # type: ignore[arg-type]
            updated = await storage.page(updated_after=touched)
            old = await storage.page(updated_before=touched, newest_first=False)
        assert IDS[5:] == [i.id for i in late.instances]
        assert IDS[:5] == [i.id for i in early.instances]
        assert ["i01"] == [i.id for i in updated.instances]
        assert [i for i in IDS if i != "i01"] == [i.id for i in old.instances]

    @pytest.mark.parametrize(
        ("arguments", "error", "message"),
        [
            pytest.param({"limit": 0}, ValueError, "limit must be", id="limit-0"),
            pytest.param({"limit": 10_001}, ValueError, "limit must be", id="limit-big"),
            pytest.param({"after": "nonsense"}, ValueError, "cursor", id="cursor"),
            pytest.param({"status_in": ["sleeping"]}, ValueError, "sleeping", id="status"),
            pytest.param({"workflow": 3}, TypeError, "workflow must be", id="workflow"),
            pytest.param({"started_after": datetime(2026, 1, 1)}, ValueError, "aware", id="naive"),
            pytest.param({"updated_before": "yesterday"}, TypeError, "datetime", id="not-time"),
        ],
    )
    async def test_bad_arguments_are_refused(
        self, storage: Storage, arguments: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A bad argument raises, naming it."""
        with anyio.fail_after(GUARD), pytest.raises(error, match=message):
            await storage.page(**arguments)
