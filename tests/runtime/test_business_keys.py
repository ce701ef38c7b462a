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
    async def test_the_id_is_key_and_value(self) -> None:
        """With Unique(key="orderid"), start(..., id="abc") makes the id "orderid::abc"."""
        async with LocalRunner() as runner:
            instance_id = await runner.start(Ordered, {}, id="abc")
            instance = await ended(runner, instance_id)

        assert "orderid::abc" == instance_id
        assert "orderid::abc" == instance.id
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

        assert f"orderid::{value}" == instance.id
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


class TestDuplicateActiveId:
    @pytest.mark.parametrize(
        ("workflow", "given", "expected_id"),
        [(OrderedBusy, "abc", "orderid::abc"), (PlainBusy, "order-1", "order-1")],
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

    @pytest.mark.parametrize("value", ["", 12])
    async def test_an_empty_or_non_string_id_is_refused(self, value: Any) -> None:
        """An id that is not a non-empty string raises ValueError and stores nothing."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            with pytest.raises(ValueError, match="an instance id must be a non-empty string"):
                await runner.start(Plain, {}, id=value)

        assert [] == await storage.query()
