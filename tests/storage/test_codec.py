"""The codec: the one JSON form of an instance that every durable storage keeps."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from hephaestus import Done, Failure, Instance, InstanceLoadError, NotSerializable, Workflow
from hephaestus.runtime.storage import codec

from . import flows
from .flows import T0, Charge, OrderFlow, Reserve, lifecycle, new

STAGES = lifecycle()
FLOWS = flows.__name__  # "storage.flows" or "tests.storage.flows", as pytest imported it

# For each field, a stage where it holds something other than its default.
FIELD_STAGES = {
    "id": "pending",
    "workflow": "pending",
    "workflow_version": "pending",
    "status": "waiting",
    "context": "completed",
    "current_step": "joining",
    "step_configs": "waiting",
    "active_steps": "fanned_out",
    "completed_steps": "completed",
    "waiting_steps": "waiting",
    "runtime_metadata": "fanned_out",
    "execution_history": "completed",
    "telemetry_metadata": "pending",
    "started_at": "pending",
    "timers": "waiting",
    "pending_joins": "joining",
    "error": "refused",
    "maps": "mapping",
    "messages": "mapping",
}


def round_trip(instance: Instance) -> Instance:
    return codec.loads(codec.dumps(instance))


class TestRoundTrip:
    def test_every_field_is_covered(self) -> None:
        """Each field of Instance but the monotonic start is checked below."""
        expected = {f.name for f in attrs.fields(Instance)} - {"started_monotonic"}
        assert expected == set(FIELD_STAGES)

    @pytest.mark.parametrize(("field", "stage"), FIELD_STAGES.items())
    def test_field(self, field: str, stage: str) -> None:
        """Each field comes back equal (checked on a stage where it is not empty)."""
        instance = STAGES[stage]
        default = attrs.fields_dict(Instance)[field].default
        default = default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[attr-defined]
        assert default != getattr(instance, field)
        assert getattr(instance, field) == getattr(round_trip(instance), field)

    @pytest.mark.parametrize("stage", [s for s in STAGES if s != "failed"])
    def test_whole_instance(self, stage: str) -> None:
        """A whole instance comes back equal, but for its monotonic start."""
        instance = STAGES[stage]
        assert attrs.evolve(instance, started_monotonic=None) == round_trip(instance)

    def test_monotonic_start_dropped(self) -> None:
        """The monotonic start is not stored; the wall-clock start is."""
        loaded = round_trip(STAGES["running"])
        assert (None, T0) == (loaded.started_monotonic, loaded.started_at)
        assert "started_monotonic" not in codec.encode(STAGES["running"])

    def test_exception_reason_as_text(self) -> None:
        """A failure's exception is stored as ``"Type: message"``."""
        expected = Failure(Reserve, "exception", "ValueError: out of stock")
        assert expected == round_trip(STAGES["failed"]).error

    def test_other_reason_as_repr(self) -> None:
        """A failure's reason that is neither JSON nor an exception is stored as its repr."""
        failed = attrs.evolve(STAGES["failed"], error=Failure(Reserve, "error", {3, 4}))
        assert Failure(Reserve, "error", "{3, 4}") == round_trip(failed).error

    def test_tuples_become_lists(self) -> None:
        """Tuples in the context are stored as lists."""
        loaded = round_trip(new(context={"pair": (1, 2), "nested": {"t": ("a",)}}))
        assert {"pair": [1, 2], "nested": {"t": ["a"]}} == loaded.context.initial

    def test_json_text(self) -> None:
        """``dumps`` gives JSON text naming classes by import path, with its format version."""
        data = json.loads(codec.dumps(STAGES["fanned_out"]))
        assert (2, f"{FLOWS}:OrderFlow") == (data["format"], data["workflow"])
        assert [f"{FLOWS}:Charge", f"{FLOWS}:Reserve"] == data["active_steps"]


class TestNotSerializable:
    @pytest.mark.parametrize(
        ("context", "where"),
        [
            pytest.param({"when": {1, 2}}, "context['when'] is a set", id="set"),
            pytest.param({"thing": object()}, "context['thing'] is a object", id="object"),
            pytest.param({"ratio": float("nan")}, "context['ratio'] is nan", id="nan"),
            pytest.param({"big": float("inf")}, "context['big'] is inf", id="inf"),
            pytest.param({1: "one"}, "context has a key that is not a string: 1", id="int-key"),
            pytest.param(
                {"order": {"lines": [{"at": datetime(2024, 1, 1, tzinfo=UTC)}]}},
                "context['order']['lines'][0]['at'] is a datetime",
                id="nested",
            ),
            pytest.param(
                {"order": {("a", "b"): 1}},
                "context['order'] has a key that is not a string: ('a', 'b')",
                id="nested-key",
            ),
        ],
    )
    def test_context(self, context: dict[Any, Any], where: str) -> None:
        """A context value JSON cannot hold is refused, naming its key path."""
        with pytest.raises(NotSerializable) as caught:
            codec.encode(new(context=context))
        assert str(caught.value).startswith(where)

    def test_step_updates(self) -> None:
        """A step's updates JSON cannot hold are refused, naming the step key."""
        instance = STAGES["joining"]
        bad = attrs.evolve(
            instance, context=attrs.evolve(instance.context, steps={"charge": {"card": b"x"}})
        )
        with pytest.raises(NotSerializable, match=r"context\.steps\['charge'\]\['card'\]"):
            codec.encode(bad)

    def test_local_class(self) -> None:
        """A workflow defined inside a function is refused: it could not be imported again."""

        class LocalFlow(Workflow):
            start = Done
            transitions = {}

        with pytest.raises(NotSerializable) as caught:
            codec.encode(new(workflow=LocalFlow))
        message = str(caught.value)
        assert "LocalFlow is defined inside a function" in message
        assert "define it at module level" in message


class TestDecode:
    @pytest.mark.parametrize(
        "path",
        [f"{FLOWS}:GoneFlow", "hephaestus_gone_module:OrderFlow"],
        ids=["class-gone", "module-gone"],
    )
    def test_workflow_gone(self, path: str) -> None:
        """An instance whose workflow no longer imports raises InstanceLoadError naming it."""
        data = codec.encode(STAGES["waiting"])
        data["workflow"] = path
        with pytest.raises(InstanceLoadError) as caught:
            codec.decode(data)
        assert f"instance 'order-1' of workflow {path} cannot be loaded" in str(caught.value)

    def test_step_gone(self) -> None:
        """An instance whose step no longer imports raises InstanceLoadError naming the step."""
        data = codec.encode(STAGES["fanned_out"])
        data["active_steps"] = [f"{FLOWS}:Refund"]
        with pytest.raises(InstanceLoadError, match="Refund"):
            codec.decode(data)

    def test_not_a_workflow(self) -> None:
        """A path that names something other than a workflow raises InstanceLoadError."""
        data = codec.encode(STAGES["pending"])
        data["workflow"] = f"{FLOWS}:Charge"
        with pytest.raises(InstanceLoadError, match="is not a Workflow"):
            codec.decode(data)

    def test_state_without_workflow(self) -> None:
        """A state that is not an encoded instance raises InstanceLoadError, not KeyError."""
        with pytest.raises(InstanceLoadError):
            codec.decode({"id": "order-1"})

    def test_workflow_identity(self) -> None:
        """Decoding gives the very classes, not copies."""
        loaded = round_trip(STAGES["fanned_out"])
        assert (OrderFlow, {Charge, Reserve}) == (loaded.workflow, set(loaded.active_steps))
