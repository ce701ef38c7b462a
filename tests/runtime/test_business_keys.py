"""Instance ids: business keys (Unique), given and generated ids, and duplicate active ids."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from hephaestus import AlreadyRunning, Done, Status, Unique, Workflow
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import MemoryStorage

from .conftest import Blocks, Passes, Probe, ended, until

# ---------------------------------------------------------------- steps and workflows


class Alpha(Passes):
    events = ("done",)


class Work(Blocks):
    events = ("done",)


class Ordered(Workflow):
    unique = Unique(key="orderid")
    start = Alpha
    transitions = {Alpha: {"done": Done}}


class OrderedBusy(Workflow):
    unique = Unique(key="orderid")
    start = Work
    transitions = {Work: {"done": Done}}


class Unscoped(Workflow):
    unique = Unique(key="orderid", scope="none")
    start = Work
    transitions = {Work: {"done": Done}}


class Plain(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Done}}


class PlainBusy(Workflow):
    start = Work
    transitions = {Work: {"done": Done}}


# ---------------------------------------------------------------- tests


class TestBusinessKey:
    async def test_the_id_is_workflow_key_and_value(self) -> None:
        """With Unique(key="orderid") (scope "workflow"), id="abc" makes "Ordered::orderid::abc"."""
        async with LocalRunner() as runner:
            instance_id = await runner.start(Ordered, {}, id="abc")
            instance = await ended(runner, instance_id)

        assert "Ordered::orderid::abc" == instance_id
        assert "Ordered::orderid::abc" == instance.id
        assert Status.COMPLETED == instance.status

    @pytest.mark.parametrize(
        "value",
        ["ABC", "a-b", "a b", "abc/def", "", "ünïcode", 12, str(uuid.uuid4()).upper()],
        ids=["upper", "dash", "space", "slash", "empty", "unicode", "int", "upper-uuid"],
    )
    async def test_a_bad_value_is_refused(self, value: Any) -> None:
        """A value that is not [a-z0-9]+ or a lowercase UUID raises ValueError; nothing stored."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(
                ValueError, match=re.escape("must be [a-z0-9]+ or a lowercase UUID")
            ):
                await runner.start(Ordered, {}, id=value)

        assert [] == await storage.query()

    async def test_a_missing_value_is_refused(self) -> None:
        """A workflow with a business key needs id=; without it start raises ValueError."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(
                ValueError, match=re.escape("'orderid': start(..., id=value) needs")
            ):
                await runner.start(Ordered, {})

        assert [] == await storage.query()

    async def test_a_uuid_value_is_accepted(self) -> None:
        """A lowercase UUID is a valid business key value."""
        value = str(uuid.uuid4())
        async with LocalRunner() as runner:
            instance = await ended(runner, await runner.start(Ordered, {}, id=value))

        assert f"Ordered::orderid::{value}" == instance.id
        assert Status.COMPLETED == instance.status

    async def test_scope_none_appends_a_random_suffix(self) -> None:
        """With scope "none" two starts with the same value get distinct ids and both run."""
        probe = Probe(expected=2)
        async with LocalRunner() as runner:
            first = await runner.start(Unscoped, {"probe": probe}, id="abc")
            second = await runner.start(Unscoped, {"probe": probe}, id="abc")
            await until(probe.all_arrived)  # both run at the same time
            probe.release.set()
            statuses = [(await ended(runner, i)).status for i in (first, second)]

        assert first != second
        assert all(re.fullmatch(r"orderid::abc::[0-9a-f]+", i) for i in (first, second))
        assert [Status.COMPLETED, Status.COMPLETED] == statuses

    async def test_a_finished_instance_id_can_be_started_again(self) -> None:
        """Once an instance has ended, its business key may start a new instance."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            first = await runner.run(Ordered, {"run": 1}, id="abc")
            second = await runner.run(Ordered, {"run": 2}, id="abc")

        assert first.id == second.id
        assert [Status.COMPLETED, Status.COMPLETED] == [first.status, second.status]
        assert [second] == await storage.query()


def keyed(name: str, scope: Any, version: int = 1) -> type[Workflow]:
    return type(
        name,
        (Workflow,),
        {
            "__module__": __name__,
            "__qualname__": name,
            "unique": Unique(key="orderid", scope=scope),
            "version": version,
            "start": Work,
            "transitions": {Work: {"done": Done}},
        },
    )


class TestScopes:
    @pytest.mark.parametrize(
        ("scope", "clash"),
        [("global", True), ("workflow", False), ("version", False)],
    )
    async def test_two_workflows_share_a_value(self, scope: str, clash: bool) -> None:
        """The same value in two workflows clashes only under scope "global"."""
        first, second = keyed("FirstFlow", scope), keyed("SecondFlow", scope)
        probe = Probe()
        async with LocalRunner() as runner:
            one = await runner.start(first, {"probe": probe}, id="v")
            if clash:
                with pytest.raises(AlreadyRunning):
                    await runner.start(second, {"probe": probe}, id="v")
                ids = [one]
            else:
                ids = [one, await runner.start(second, {"probe": probe}, id="v")]
            probe.release.set()
            statuses = {(await ended(runner, i)).status for i in ids}
            found = [await runner.get(i) for i in ids]  # get by the ids start returned

        assert {Status.COMPLETED} == statuses
        assert ids == [instance.id for instance in found]

    async def test_versions_of_a_family(self) -> None:
        """Scope "version" tells a family's versions apart; scope "workflow" does not."""
        probe = Probe()
        v1, v2 = keyed("PerVersionV1", "version", 1), keyed("PerVersionV2", "version", 2)
        w1, w2 = keyed("PerFamilyV1", "workflow", 1), keyed("PerFamilyV2", "workflow", 2)
        per_version = type("PerVersion", (Workflow,), {"versions": {1: v1, 2: v2}})
        per_family = type("PerFamily", (Workflow,), {"versions": {1: w1, 2: w2}})
        async with LocalRunner() as runner:
            a = await runner.start(per_version, {"probe": probe}, id="v", version=1)
            b = await runner.start(per_version, {"probe": probe}, id="v", version=2)
            c = await runner.start(per_family, {"probe": probe}, id="v", version=1)
            with pytest.raises(AlreadyRunning):
                await runner.start(per_family, {"probe": probe}, id="v", version=2)
            probe.release.set()
            for i in (a, b, c):
                await ended(runner, i)

        assert ["PerVersion::v1::orderid::v", "PerVersion::v2::orderid::v"] == [a, b]
        assert "PerFamily::orderid::v" == c


class TestDuplicateActiveId:
    @pytest.mark.parametrize(
        ("workflow", "given", "expected_id"),
        [(OrderedBusy, "abc", "OrderedBusy::orderid::abc"), (PlainBusy, "order-1", "order-1")],
        ids=["business-key", "plain-id"],
    )
    async def test_a_second_start_is_refused_and_changes_nothing(
        self, workflow: type[Workflow], given: str, expected_id: str
    ) -> None:
        """Starting an id that an active instance has raises AlreadyRunning; nothing changes."""
        probe = Probe()
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            instance_id = await runner.start(workflow, {"probe": probe, "run": 1}, id=given)
            await until(probe.all_arrived)
            before = await storage.get(instance_id)
            with pytest.raises(AlreadyRunning, match=f"already has id '{expected_id}'"):
                await runner.start(workflow, {"probe": probe, "run": 2}, id=given)
            after = await storage.get(instance_id)
            probe.release.set()
            instance = await ended(runner, instance_id)

        assert expected_id == instance_id
        assert before == after
        assert {"probe": probe, "run": 1} == instance.context.initial
        assert Status.COMPLETED == instance.status
        assert 1 == probe.calls


class TestPlainIds:
    async def test_a_given_id_is_used_as_is(self) -> None:
        """Without a business key, id= is the instance id as given."""
        async with LocalRunner() as runner:
            instance = await runner.run(Plain, {}, id="Order 1/A")

        assert "Order 1/A" == instance.id

    async def test_generated_ids_are_distinct_hex(self) -> None:
        """Without id=, each instance gets a fresh 32-character hex id."""
        async with LocalRunner() as runner:
            ids = [(await runner.run(Plain, {})).id for _ in range(3)]

        assert 3 == len(set(ids))
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)

    @pytest.mark.parametrize(
        ("value", "error", "message"),
        [
            ("", ValueError, "must have 1 to 255 characters, got 0"),
            ("x" * 256, ValueError, "must have 1 to 255 characters, got 256"),
            (12, TypeError, "an instance id must be a string, got: 12"),
            ("a\udc80b", ValueError, r"must be valid Unicode text, got: 'a\\udc80b'"),
            ("a\x00b", ValueError, "must not hold a NUL character"),
        ],
        ids=["empty", "too-long", "int", "lone-surrogate", "nul"],
    )
    async def test_a_bad_id_is_refused(
        self, value: Any, error: type[Exception], message: str
    ) -> None:
        """An id no storage can keep raises, naming it, and stores nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(error, match=message):
                await runner.start(Plain, {}, id=value)

        assert [] == await storage.query()
