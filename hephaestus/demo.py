"""The demo: an order workflow with a branch, a fan-out and join, a timer and an external event.

``hephaestus demo`` runs three orders through it, on the embedded durable
storage (a SQLite file), with the LogHandler telling what happens (every
telemetry event with ``-v``):
one valid order, which parks on a one-second ``Wait`` and then on a
``WaitForEvent`` that the demo resumes, and one invalid order, which takes
the other branch; both end at ``Done``. The third order is left waiting for
its confirmation, for the operator's commands to find (``docs/cli.md``).
"""

from __future__ import annotations

from typing import Any

import anyio

from hephaestus import telemetry
from hephaestus.core.instance import Context, Instance, Status
from hephaestus.core.step import Config, Ok, Step
from hephaestus.core.workflow import Unique, Workflow
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage.base import Storage
from hephaestus.steps import Done, Wait, WaitForEvent

__all__ = ["OrderFlow", "run_demo"]


class ValidateOrder(Step):
    """An order is valid when it has items."""

    events = ("valid", "invalid")

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        items = context.initial.get("items", [])
        if items:
            return Ok("valid", {"item_count": len(items)})
        return Ok("invalid", {"reason": "no items"})


class ChargePayment(Step):
    """Charges the customer (runs beside ReserveStock)."""

    events = ("charged",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        await anyio.sleep(0.05)  # the payment provider's round trip
        total = sum(item["price"] for item in context.initial["items"])
        return Ok("charged", {"amount": total})


class ReserveStock(Step):
    """Reserves the items in the warehouse (runs beside ChargePayment)."""

    events = ("reserved",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        await anyio.sleep(0.02)
        return Ok("reserved", {"skus": [item["sku"] for item in context.initial["items"]]})


class PackOrder(Step):
    """Runs once both the payment and the reservation are done (a join)."""

    events = ("packed",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        charged = context.steps["charge_payment"]["amount"]
        return Ok("packed", {"parcel": f"{len(context.steps['reserve_stock']['skus'])} items"},
                  {"charged": charged})  # fmt: skip


class ShipOrder(Step):
    """Ships the parcel once the customer confirmed the address."""

    events = ("shipped",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        return Ok("shipped", {"carrier": "demo-post"})


class RejectOrder(Step):
    """Tells the customer why the order was rejected."""

    events = ("rejected",)

    async def execute(self, instance: Instance, config: Config, context: Context) -> Ok:
        return Ok("rejected")


class OrderFlow(Workflow):
    """Validate; charge and reserve in parallel; pack; wait; confirm; ship."""

    unique = Unique(key="order")
    start = ValidateOrder
    transitions = {  # noqa: RUF012  # the workflow's definition, read once
        ValidateOrder: {"valid": [ChargePayment, ReserveStock], "invalid": RejectOrder},
        ChargePayment: {"charged": PackOrder},
        ReserveStock: {"reserved": PackOrder},
        PackOrder: {"packed": (Wait, {"duration": 1, "unit": "second"})},
        Wait: {"timeout": (WaitForEvent, {"timeout": 30})},
        WaitForEvent: {"received": ShipOrder, "timeout": RejectOrder},
        ShipOrder: {"shipped": Done},
        RejectOrder: {"rejected": Done},
    }


async def run_demo(storage: Storage | None = None) -> list[Instance]:
    """Run the three demo orders; return them: two completed, the third waiting."""
    confirmation_awaited = anyio.Event()
    parked: set[str] = set()

    def on_async(event: Any, measurements: Any, metadata: dict[str, Any], config: Any) -> None:
        if metadata["step"] is WaitForEvent:
            parked.add(metadata["instance_id"])
            if len(parked) == 2:
                confirmation_awaited.set()

    telemetry.attach("hephaestus-demo", telemetry.step_async_event(), on_async)
    try:
        async with LocalRunner(storage, name="demo") as runner:
            items = [{"sku": "mug", "price": 12}, {"sku": "tea", "price": 8}]
            valid = await runner.start(OrderFlow, {"items": items}, id="1001")
            invalid = await runner.start(OrderFlow, {"items": []}, id="1002")
            pot = [{"sku": "teapot", "price": 30}]
            unconfirmed = await runner.start(OrderFlow, {"items": pot}, id="1003")
            with anyio.fail_after(10):
                await confirmation_awaited.wait()
            await runner.resume(valid, "received")
            with anyio.fail_after(10):
                done = [await runner.wait(valid), await runner.wait(invalid)]
            waiting = await runner.get(unconfirmed)
    finally:
        telemetry.detach("hephaestus-demo")
    for instance in done:
        if instance.status is not Status.COMPLETED:
            raise RuntimeError(f"demo order {instance.id} ended {instance.status}")
    return [*done, waiting]
