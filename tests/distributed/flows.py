"""Workflows of the distributed runner's tests, importable by every worker (``distributed.flows``).

The state stores workflows and steps by import path, so they live here at
module level. An in-process worker runs steps on the test's own event loop,
so a step and its test meet on the :class:`Probe` the test registered for the
instance id (:func:`probe`); a step of an instance with no probe does not
wait for anyone, which is how the worker subprocesses run them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import anyio

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    Instance,
    Map,
    Ok,
    Retry,
    Route,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
)

PROBES: dict[str, Probe] = {}
"""The probe of each instance id, set by the test before it starts the instance."""

ATTEMPTS: Counter[str] = Counter()
"""How many times the failing steps ran, per instance id (every attempt counted)."""


class Probe:
    """What a test shares with the steps of one instance.

    ``started`` is set when a probing step begins, ``release`` lets a
    blocking step go on, ``cancelled`` is set when a step was interrupted.
    ``calls`` lists the step keys of every run, retries included.
    """

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.calls: list[str] = []


def probe(instance_id: str) -> Probe:
    """A new probe for the instance that will have ``instance_id``."""
    found = PROBES[instance_id] = Probe()
    return found


def reset() -> None:
    """Forget every probe and attempt count (between tests)."""
    PROBES.clear()
    ATTEMPTS.clear()


def _called(instance: Instance, step: Step) -> Probe | None:
    found = PROBES.get(instance.id)
    if found is not None:
        found.calls.append(type(step).step_key)
    return found


class Passes(Step):
    """Returns its first event with ``{"by": step_key}``; records the call on the probe."""

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _called(instance, self)
        return Ok(self.events[0], {"by": type(self).step_key})


# ---------------------------------------------------------------- linear


class First(Step):
    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _called(instance, self)
        return Ok("done", {"n": context.initial["n"] + 1}, {"first_ran": True})


class Second(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _called(instance, self)  # a plain def: run inline by the worker
        return Ok("done", {"n": context.steps["first"]["n"] * 10})


class Linear(Workflow):
    start = First
    transitions = {First: {"done": Second}, Second: {"done": Done}}


# ---------------------------------------------------------------- fan-out and join


class Prepare(Passes):
    events = ("ready",)


class Left(Passes):
    events = ("done",)


class Middle(Passes):
    events = ("done",)


class Right(Passes):
    events = ("done",)


class Merge(Step):
    """The join: records which branches it saw."""

    events = ("merged",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _called(instance, self)
        return Ok("merged", {"saw": sorted(context.steps)})


class FanOut(Workflow):
    start = Prepare
    transitions = {
        Prepare: {"ready": [Left, Middle, Right]},
        Left: {"done": Merge},
        Middle: {"done": Merge},
        Right: {"done": Merge},
        Merge: {"merged": Done},
    }


# ---------------------------------------------------------------- route and config


class Choose(Passes):
    events = ("chosen",)


class Express(Passes):
    events = ("shipped",)


class Standard(Passes):
    events = ("shipped",)


def pick(context: Context) -> type[Step]:
    """Express for an express order, Standard otherwise."""
    return Express if context.initial["express"] else Standard


class Routed(Workflow):
    start = Choose
    transitions = {
        Choose: {"chosen": Route(pick, targets=[Express, Standard])},
        Express: {"shipped": Done},
        Standard: {"shipped": Done},
    }


class Greet(Step):
    """Says its configured greeting."""

    events = ("greeted",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("greeted", {"said": f"{config['greeting']}, {context.initial['name']}"})


class Repeat(Step):
    """Repeats the greeting as many times as configured."""

    events = ("repeated",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("repeated", {"said": [context.steps["greet"]["said"]] * config["times"]})


class Configured(Workflow):
    start = (Greet, {"greeting": "hello"})
    transitions = {Greet: {"greeted": (Repeat, {"times": 2})}, Repeat: {"repeated": Done}}


# ---------------------------------------------------------------- parking


class Begin(Passes):
    events = ("begun",)


class After(Passes):
    events = ("done",)


class Hold(Step):
    """Parks until resumed with "ok"; with a probe, it first waits for ``release``."""

    events = ("ok",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        found = _called(instance, self)
        if found is not None:
            found.started.set()
            await found.release.wait()
        return Async()


class HoldToo(Hold):
    """A second parking step, for instances with two waiting steps."""


class Parks(Workflow):
    start = Begin
    transitions = {Begin: {"begun": Hold}, Hold: {"ok": After}, After: {"done": Done}}


class Twins(Workflow):
    """Two steps park at once: a resume must say which."""

    start = Begin
    transitions = {
        Begin: {"begun": [Hold, HoldToo]},
        Hold: {"ok": Merge},
        HoldToo: {"ok": Merge},
        Merge: {"merged": Done},
    }


class Got(Passes):
    events = ("done",)


class TimedOut(Step):
    """The step after a timeout; with a probe, it waits for ``release`` first."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        found = _called(instance, self)
        if found is not None:
            found.started.set()
            await found.release.wait()
        return Ok("done")


class Timed(Workflow):
    """A WaitForEvent whose timer is far away: tests fire it when they choose."""

    start = Begin
    transitions = {
        Begin: {"begun": (WaitForEvent, {"timeout": 60})},
        WaitForEvent: {"received": Got, "timeout": TimedOut},
        Got: {"done": Done},
        TimedOut: {"done": Done},
    }


class Sleeps(Workflow):
    """A short Wait that ends by itself."""

    start = Begin
    transitions = {
        Begin: {"begun": (Wait, {"seconds": 0.2})},
        Wait: {"timeout": After},
        After: {"done": Done},
    }


# ---------------------------------------------------------------- failures


class Flaky(Step):
    """Raises until it has failed ``context.initial["failures"]`` times."""

    events = ("done",)
    retry = Retry(max_attempts=3, base=0.01)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        ATTEMPTS[instance.id] += 1
        if ATTEMPTS[instance.id] <= context.initial["failures"]:
            raise ConnectionError(f"attempt {ATTEMPTS[instance.id]} failed")
        return Ok("done", {"attempts": ATTEMPTS[instance.id]})


class Retries(Workflow):
    start = Flaky
    transitions = {Flaky: {"done": Done}}


class Doomed(Step):
    """Always raises; two attempts in all."""

    events = ("done",)
    retry = Retry(max_attempts=2, base=0.01)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        ATTEMPTS[instance.id] += 1
        raise ValueError("the printer is on fire")


class DoomedFlow(Workflow):
    """Parks (with a far timer), then, once resumed, fails for good."""

    start = Begin
    transitions = {
        Begin: {"begun": (WaitForEvent, {"timeout": 60})},
        WaitForEvent: {"received": Doomed, "timeout": Done},
        Doomed: {"done": Done},
    }


class Refuses(Step):
    """Returns ``Error``: a deliberate failure, never retried although it has a retry."""

    events = ("done",)
    retry = Retry(max_attempts=3, base=0.01)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Error:
        ATTEMPTS[instance.id] += 1
        return Error({"code": 42})


class Refusal(Workflow):
    start = Refuses
    transitions = {Refuses: {"done": Done}}


class Strays(Step):
    """Returns an event it does not declare."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("elsewhere")


class Stray(Workflow):
    start = Strays
    transitions = {Strays: {"done": Done}}


class Hoards(Step):
    """Returns updates that JSON cannot hold."""

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("done", {"lock": anyio.Lock()})


class Unstorable(Workflow):
    start = Hoards
    transitions = {Hoards: {"done": Done}}


def pick_badly(context: Context) -> type[Step]:
    """A step the route does not name."""
    return Standard


class Misrouted(Workflow):
    start = Choose
    transitions = {
        Choose: {"chosen": Route(pick_badly, targets=[Express])},
        Express: {"shipped": Done},
    }


class Dawdles(Step):
    """Runs past its timeout."""

    events = ("done",)
    timeout = 0.1

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await anyio.sleep(30)
        return Ok("done")


class TooSlow(Workflow):
    start = Dawdles
    transitions = {Dawdles: {"done": Done}}


# ---------------------------------------------------------------- cancel


class Long(Step):
    """Runs until released, telling the probe it started and whether it was interrupted.

    Its probe is the one of ``context.initial["probe"]`` if given, else the instance id's.
    """

    events = ("done",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        found = PROBES[context.initial.get("probe", instance.id)]
        found.calls.append(type(self).step_key)
        found.started.set()
        try:
            await found.release.wait()
        except anyio.get_cancelled_exc_class():
            found.cancelled.set()
            raise
        return Ok("done")


class Cancellable(Workflow):
    """A long step beside a parked one (with a far timer)."""

    start = Begin
    transitions = {
        Begin: {"begun": [Long, (WaitForEvent, {"timeout": 60})]},
        Long: {"done": Merge},
        WaitForEvent: {"received": Merge, "timeout": Merge},
        Merge: {"merged": Done},
    }


# ---------------------------------------------------------------- versions


class Draft(Passes):
    events = ("drafted",)


class Review(Passes):
    events = ("reviewed",)


class ReportV1(Workflow):
    version = 1
    start = Draft
    transitions = {Draft: {"drafted": Hold}, Hold: {"ok": Done}}


class ReportV2(Workflow):
    version = 2
    start = Draft
    transitions = {Draft: {"drafted": Hold}, Hold: {"ok": Review}, Review: {"reviewed": Done}}


class Report(Workflow):
    """A workflow family: version 2 is current."""

    versions = {1: ReportV1, 2: ReportV2}


# ---------------------------------------------------------------- maps


class Scale(Step):
    """One item of a map: its item times First's ``n``, with its index."""

    events = ("scaled",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        _called(instance, self)
        value = config["item"] * context.steps["first"]["n"]
        return Ok("scaled", {"value": value, "index": config["index"]})


def numbers(context: Context) -> list[int]:
    """The items of the map: the initial context's ``numbers``."""
    return list(context.initial["numbers"])


class Mapped(Workflow):
    """Scale once per number of the initial context, then Done."""

    start = First
    transitions = {
        First: {"done": Map(Scale, items=numbers)},
        Scale: {"scaled": Done},
    }


# ---------------------------------------------------------------- spread steps


class SpreadScale(Scale):
    """Scale, run as a job any worker may take; waits on the probe when there is one."""

    spread = True

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        found = _called(instance, self)
        if found is not None and config["index"] == 0:
            found.started.set()
            try:
                await found.release.wait()
            except BaseException:
                found.cancelled.set()
                raise
        value = config["item"] * context.steps["first"]["n"]
        return Ok("scaled", {"value": value, "index": config["index"]})


class SpreadMapped(Workflow):
    """Mapped, its items spread over the workers."""

    start = First
    transitions = {
        First: {"done": Map(SpreadScale, items=numbers)},
        SpreadScale: {"scaled": Done},
    }


class SpreadFlaky(Step):
    """Raises ValueError on its first two attempts (counted per instance), then passes."""

    events = ("done",)
    spread = True
    retry = Retry(max_attempts=3, base=0.01)

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        ATTEMPTS[instance.id] += 1
        if ATTEMPTS[instance.id] < 3:
            raise ValueError(f"attempt {ATTEMPTS[instance.id]} fails")
        return Ok("done", {"attempts": ATTEMPTS[instance.id]})


class SpreadRetries(Workflow):
    start = SpreadFlaky
    transitions = {SpreadFlaky: {"done": Done}}


class SpreadDoomed(Step):
    """Always raises, in whichever worker runs it."""

    events = ("done",)
    spread = True

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        raise LookupError("no such thing")


class SpreadDoomedFlow(Workflow):
    start = SpreadDoomed
    transitions = {SpreadDoomed: {"done": Done}}


class SpreadDawdles(Step):
    """Takes longer than its timeout, wherever it runs."""

    events = ("done",)
    spread = True
    timeout = 0.05

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        await anyio.sleep(30)
        return Ok("done")


class SpreadTooSlow(Workflow):
    start = SpreadDawdles
    transitions = {SpreadDawdles: {"done": Done}}


class SpreadParks(Step):
    """Parks, from whichever worker runs it, until a resume gives "approved"."""

    events = ("approved",)
    spread = True

    def execute(self, instance: Instance, config: Any, context: Context) -> Async:
        return Async()


class SpreadApproval(Workflow):
    start = SpreadParks
    transitions = {SpreadParks: {"approved": Done}}


class Gate(Step):
    """Waits on the probe (when there is one) until the test releases it."""

    events = ("open",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        found = _called(instance, self)
        if found is not None:
            found.started.set()
            await found.release.wait()
        return Ok("open")


class Crunch(Step):
    """A blocking item, spread: 20 ms in a thread of whichever worker takes it; says its pid."""

    events = ("done",)
    spread = True
    blocking = True

    def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        time.sleep(0.02)
        return Ok("done", {"value": config["item"] * 2, "pid": os.getpid()})


class SpreadCrash(Workflow):
    """Gate, then Crunch once per number, spread over the workers."""

    start = Gate
    transitions = {Gate: {"open": Map(Crunch, items=numbers)}, Crunch: {"done": Done}}


class Traced(Step):
    """A spread item that opens a span of its own (``user work``) and says its pid."""

    events = ("done",)
    spread = True

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        from opentelemetry import trace  # the otel extra: only the tracing test runs this step

        with trace.get_tracer("user").start_as_current_span("user work") as span:
            span.set_attribute("item", config["item"])
        return Ok("done", {"pid": os.getpid()})


class TracedMap(Workflow):
    """Gate, then Traced once per number, spread over the workers."""

    start = Gate
    transitions = {Gate: {"open": Map(Traced, items=numbers)}, Traced: {"done": Done}}
