"""Workflows for the storage tests, and instances at every point of their life.

Durable storages store workflows and steps by import path, so the classes
live here, at module level. The instances are made by the real engine
(``advance``, ``apply_result``, ``resume_step``, ``fail_step``), with fixed
times, so each has what its name says: history, step updates, a fan-out's
pending join, a parked ``Wait`` with its timer, a failure.
"""

from __future__ import annotations

from typing import Any

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    Instance,
    Map,
    Ok,
    Status,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.core import engine

T0 = 1_700_000_000_000_000_000
"""The wall-clock start (ns) of the instances made here."""

SECOND = 1_000_000_000


class Prepare(Step):
    """Prepares the order, then fans out to Charge and Reserve."""

    events = ("ready",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("ready", {"prepared": True}, {"node": "n1"})


class Charge(Step):
    """Charges the amount its config gives."""

    events = ("charged",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("charged", {"amount": config["amount"]})


class Reserve(Step):
    """Reserves the items."""

    events = ("reserved",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("reserved", {"items": list(context.initial.get("items", []))})


class Ship(Step):
    """The join of Charge and Reserve."""

    events = ("shipped",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("shipped")


class Refuse(Step):
    """Always fails, deliberately."""

    events = ("refused",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        return Error({"code": 402})


WAIT = {"duration": 10, "unit": "millisecond"}


class OrderFlow(Workflow):
    """Prepare, then Charge and Reserve at once, Ship when both are done, Wait a little."""

    start = Prepare
    transitions = {
        Prepare: {"ready": [(Charge, {"amount": 30}), Reserve]},
        Charge: {"charged": Ship},
        Reserve: {"reserved": Ship},
        Ship: {"shipped": (Wait, WAIT)},
        Wait: {"timeout": Done},
    }


class OrderFlowV2(Workflow):
    """A second version of an order flow: one step less."""

    version = 2
    start = Prepare
    transitions = {
        Prepare: {"ready": [(Charge, {"amount": 40}), Reserve]},
        Charge: {"charged": Ship},
        Reserve: {"reserved": Ship},
        Ship: {"shipped": Done},
    }


class RefusedFlow(Workflow):
    """Fails at its first step."""

    start = Refuse
    transitions = {Refuse: {"refused": Done}}


class Plan(Step):
    """Lists the pages to fetch."""

    events = ("planned",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("planned", {"urls": list(context.initial["urls"])})


class FetchOne(Step):
    """Fetches one page: its item is the URL."""

    events = ("fetched", "missing")

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("fetched", {"size": len(config["item"])})


class Summarize(Step):
    """Sums the sizes of the pages fetched."""

    events = ("summarized",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok(
            "summarized",
            {"total": sum(i.get("size", 0) for i in context.steps["fetch_one"]["items"])},
        )


class FetchFlow(Workflow):
    """Plan, then FetchOne once per URL (two at a time), then Summarize."""

    start = Plan
    transitions = {
        Plan: {
            "planned": Map(
                FetchOne,
                items=lambda ctx: ctx.steps["plan"]["urls"],
                config={"timeout": 5},
                max_concurrency=2,
                empty="fetched",
            )
        },
        FetchOne: {"fetched": Summarize, "missing": Summarize},
        Summarize: {"summarized": Done},
    }


class BadItemsFlow(Workflow):
    """Plan, then a map over items no durable storage can keep (sets)."""

    start = Plan
    transitions = {
        Plan: {"planned": Map(FetchOne, items=lambda ctx: [{1, 2}], empty="fetched")},
        FetchOne: {"fetched": Summarize, "missing": Summarize},
        Summarize: {"summarized": Done},
    }


GATES: dict[str, Any] = {}
"""Per instance id, an event its ``Hold`` step waits for (none: it passes at once)."""


class Hold(Step):
    """Waits for the test's gate of its instance, if it set one."""

    events = ("held",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        gate = GATES.get(instance.id)
        if gate is not None:
            await gate.wait()
        return Ok("held")


class ApprovalFlow(Workflow):
    """Hold, then wait for an approval or a rejection, then Done."""

    start = Hold
    transitions = {
        Hold: {"held": (WaitForEvent, {"events": ("approved", "rejected")})},
        WaitForEvent: {"approved": Done, "rejected": Done},
    }


def mapping(id: str = "fetch-1", started_at: int = T0) -> Instance:
    """A FetchFlow instance with two of its three items done."""
    t = started_at
    pending = new(id, FetchFlow, {"urls": ["a", "bb", "ccc"]}, started_at=t)
    running = engine.advance(pending)
    planned = fold(running, Plan, Ok("planned", {"urls": ["a", "bb", "ccc"]}), t + 1)
    one = engine.apply_item_result(planned, FetchOne, 2, Ok("fetched", {"size": 3}), now=t + 2)
    two = engine.apply_item_result(one.instance, FetchOne, 0, Ok("missing"), now=t + 3)
    kept, _ = engine.send(two.instance, "summarized", {"by": "ops"}, now=t + 4)
    return kept.instance


def new(
    id: str = "order-1",
    workflow: type[Workflow] = OrderFlow,
    context: dict[str, Any] | None = None,
    started_at: int = T0,
) -> Instance:
    """A pending instance, as a runner creates it."""
    return Instance(
        id,
        workflow,
        workflow.version,
        Status.PENDING,
        Context({"items": ["book", "pen"], "total": 30.5} if context is None else context),
        telemetry_metadata={"request_id": "r-1"},
        started_at=started_at,
        started_monotonic=123_456_789,
    )


def fold(instance: Instance, step: type[Step], result: Any, at: int) -> Instance:
    """``instance`` once the engine folded ``step``'s result, at ``at`` (wall-clock ns)."""
    return engine.apply_result(instance, step, result, now=at).instance


def lifecycle(id: str = "order-1", started_at: int = T0) -> dict[str, Instance]:
    """One instance of OrderFlow at each point of its life, by name."""
    t = started_at
    pending = new(id, started_at=t)
    running = engine.advance(pending)
    fanned_out = fold(running, Prepare, Ok("ready", {"prepared": True}, {"node": "n1"}), t + 1)
    joining = fold(fanned_out, Charge, Ok("charged", {"amount": 30}), t + 2)
    joined = fold(joining, Reserve, Ok("reserved", {"items": ["book", "pen"]}), t + 3)
    shipped = fold(joined, Ship, Ok("shipped"), t + 4)
    waiting = fold(shipped, Wait, Async(), t + 5)
    resumed = engine.resume_step(waiting, Wait, "timeout", now=t + 6 + SECOND).instance
    completed = engine.advance(fold(resumed, Done, Ok("done"), t + 7 + SECOND))
    failed = engine.fail_step(joining, Reserve, "exception", ValueError("out of stock"))
    refused = engine.fail_step(joining, Reserve, "error", {"code": 402, "why": ["stock"]})
    return {
        "pending": pending,
        "running": running,
        "fanned_out": fanned_out,
        "joining": joining,
        "waiting": waiting,
        "completed": completed,
        "failed": failed,
        "refused": refused,
        "mapping": mapping(),
    }
