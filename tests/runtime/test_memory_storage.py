"""MemoryStorage: the reference Storage, a dict of instances by id."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import attrs
import pytest

from hephaestus import Context, Done, Instance, Status, Workflow
from hephaestus.runtime.storage import MemoryStorage, Storage

from .conftest import Passes


class Alpha(Passes):
    events = ("done",)


class Orders(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Done}}


class OrdersV2(Workflow):
    version = 2
    start = Alpha
    transitions = {Alpha: {"done": Done}}


class Refunds(Workflow):
    start = Alpha
    transitions = {Alpha: {"done": Done}}


def make(
    instance_id: str, status: Status = Status.RUNNING, workflow: type[Workflow] = Orders
) -> Instance:
    return Instance(instance_id, workflow, workflow.version, status, Context({"n": 1}))


@pytest.fixture
async def storage() -> MemoryStorage:
    """A storage holding four instances of three workflows in four statuses."""
    storage = MemoryStorage()
    for instance in (
        make("a", Status.RUNNING),
        make("b", Status.WAITING),
        make("c", Status.COMPLETED, OrdersV2),
        make("d", Status.FAILED, Refunds),
    ):
        await storage.put(instance)
    return storage


def ids(instances: list[Instance]) -> list[str]:
    return sorted(instance.id for instance in instances)


class TestGetPutDelete:
    def test_is_a_storage(self) -> None:
        """MemoryStorage satisfies the Storage protocol."""
        assert isinstance(MemoryStorage(), Storage)

    async def test_get_returns_what_put_stored(self) -> None:
        """get returns the instance put under its id; None for an unknown id."""
        storage = MemoryStorage()
        instance = make("a")
        await storage.put(instance)

        assert instance == await storage.get("a")
        assert None is await storage.get("nope")

    async def test_put_replaces_the_instance_with_the_same_id(self) -> None:
        """A second put under the same id replaces the first; the last put wins."""
        storage = MemoryStorage()
        await storage.put(make("a", Status.RUNNING))
        later = make("a", Status.COMPLETED)
        await storage.put(later)

        assert later == await storage.get("a")
        assert [later] == await storage.query()

    async def test_delete(self) -> None:
        """delete removes the instance and says whether there was one."""
        storage = MemoryStorage()
        await storage.put(make("a"))

        assert True is await storage.delete("a")
        assert False is await storage.delete("a")
        assert None is await storage.get("a")

    async def test_repr_counts_the_instances(self, storage: MemoryStorage) -> None:
        """The repr says how many instances the storage holds."""
        assert "MemoryStorage(4 instances)" == repr(storage)


class TestQuery:
    async def test_no_filter_returns_everything(self, storage: MemoryStorage) -> None:
        """query() returns every instance."""
        assert ["a", "b", "c", "d"] == ids(await storage.query())

    async def test_by_id(self, storage: MemoryStorage) -> None:
        """id= returns the instance with that id, or nothing."""
        assert ["b"] == ids(await storage.query(id="b"))
        assert [] == ids(await storage.query(id="nope"))

    @pytest.mark.parametrize("status", [Status.WAITING, "waiting"], ids=["enum", "string"])
    async def test_by_status(self, storage: MemoryStorage, status: Status | str) -> None:
        """status= keeps the instances in that status, given as a Status or its string."""
        assert ["b"] == ids(await storage.query(status=status))

    async def test_by_status_in(self, storage: MemoryStorage) -> None:
        """status_in= keeps the instances in any of those statuses."""
        assert ["a", "b"] == ids(await storage.query(status_in=[Status.RUNNING, "waiting"]))
        assert [] == ids(await storage.query(status_in=[]))

    async def test_by_workflow(self, storage: MemoryStorage) -> None:
        """workflow= keeps the instances of that workflow class."""
        assert ["a", "b"] == ids(await storage.query(workflow=Orders))
        assert ["d"] == ids(await storage.query(workflow=Refunds))

    async def test_by_workflow_version(self, storage: MemoryStorage) -> None:
        """workflow_version= keeps the instances of that version."""
        assert ["c"] == ids(await storage.query(workflow_version=2))
        assert ["a", "b", "d"] == ids(await storage.query(workflow_version=1))

    async def test_filters_combine(self, storage: MemoryStorage) -> None:
        """Several filters keep only the instances that match all of them."""
        assert ["a"] == ids(await storage.query(workflow=Orders, status="running"))
        assert [] == ids(await storage.query(id="a", status=Status.FAILED))
        assert ["c"] == ids(
            await storage.query(status_in=["completed", "failed"], workflow_version=2)
        )

    async def test_an_unknown_status_is_refused(self, storage: MemoryStorage) -> None:
        """A status that does not exist raises ValueError."""
        with pytest.raises(ValueError, match="'finished' is not a valid Status"):
            await storage.query(status="finished")

    async def test_query_sees_the_latest_put(self, storage: MemoryStorage) -> None:
        """A put that changes an instance's status moves it between status queries."""
        done = attrs.evolve(await storage.get("a"), status=Status.COMPLETED)
        await storage.put(done)

        assert ["b"] == ids(await storage.query(status_in=["running", "waiting"]))
        assert ["a", "c"] == ids(await storage.query(status="completed"))
