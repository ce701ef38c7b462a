"""Hostile values through the public API, on every storage: refused cleanly, or a cleanly
failed instance; never a hang, never a storage that stops serving.

Each example runs under ``anyio.fail_after``; after each, the same storage
must still run a workflow to completion.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime.conftest import signal

from hephaestus import (
    Done,
    HephaestusError,
    InstanceNotFound,
    LocalRunner,
    NotSerializable,
    NotWaiting,
    RunnerStopped,
    Status,
    Storage,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
    telemetry,
)
from hephaestus.runtime.storage import codec

from .conftest import GUARD
from .hostile import (
    GIVEN,
    BadStr,
    CancelledFlow,
    Parks,
    ParksFlow,
    PlainFlow,
    RaisesFlow,
    Returns,
    ReturnsFlow,
    deep,
)

T = TypeVar("T")

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text with everything a request body can hold: lone surrogates, NUL, any code point.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    any_text,
    st.sampled_from(["huge", "-huge", "deep", "150-deep", "bytes", "set", "object"]).map(
        lambda name: {
            "huge": lambda: 10**5000,
            "-huge": lambda: -(10**4500),
            "deep": lambda: deep(5000),
            "150-deep": lambda: deep(150),
            "bytes": lambda: b"bytes",
            "set": lambda: {1, 2},
            "object": object,
        }[name]()
    ),
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(any_text, st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)

# What a refusal may raise: ours, or the builtin a bad argument means.
REFUSALS = (HephaestusError, TypeError, ValueError)


async def outcome(call: Awaitable[T]) -> T | Exception:
    """What ``call`` returns, or the refusal it raises."""
    try:
        return await call
    except REFUSALS as exc:
        return exc


async def start_parked(runner: LocalRunner) -> str:
    """Start a ParksFlow instance; return its id once its step has parked."""
    iid = secrets.token_hex(6)
    with signal(telemetry.step_async_event(), instance_id=iid) as parked:
        await runner.start(ParksFlow, {}, id=iid)
        await parked.wait()
    return iid


async def still_serves(storage: Storage) -> None:
    """The storage (and a new runner on it) runs a plain workflow to completion."""
    async with LocalRunner(storage) as runner:
        done = await runner.run(PlainFlow, {}, id=f"ok-{secrets.token_hex(4)}")
    assert Status.COMPLETED == done.status


class TestHostileContexts:
    @EXAMPLES
    @given(context=st.dictionaries(any_text, values, max_size=3))
    async def test_a_context_is_stored_or_refused(
        self, storage: Storage, context: dict[str, Any]
    ) -> None:
        """A start either runs the instance or raises naming the culprit, storing nothing."""
        iid = f"ctx-{secrets.token_hex(6)}"
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                done = await outcome(runner.run(PlainFlow, context, id=iid))
                if isinstance(done, Exception):
                    assert str(done)
                    if isinstance(done, NotSerializable):
                        assert str(done).startswith("context")
                    assert await storage.get(iid) is None
                else:
                    assert Status.COMPLETED == done.status
            await still_serves(storage)

    @pytest.mark.parametrize("storage", ["sqlite", "postgres"], indirect=True)
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (10**5000, r"context\['n'\] is an integer of more than 4000 digits"),
            (
                deep(5000),
                r"context\['n'\]\[0\]\[0\]\[0\]\.\.\.\[0\]\[0\]\[0\] nests dicts and lists",
            ),
            ("a\x00b", r"context\['n'\] holds a NUL character"),
            ("a\udc80b", r"context\['n'\] holds a lone surrogate"),
            (math.nan, r"context\['n'\] is nan"),
        ],
        ids=["5000-digits", "5000-deep", "nul", "lone-surrogate", "nan"],
    )
    async def test_the_refusal_names_the_key(
        self, storage: Storage, value: Any, message: str
    ) -> None:
        """A durable storage refuses what it cannot keep, naming the key, and keeps serving."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                with pytest.raises(NotSerializable, match=message):
                    await runner.start(PlainFlow, {"n": value}, id="bad")
            assert await storage.get("bad") is None
            await still_serves(storage)


class TestHostileUpdates:
    @EXAMPLES
    @given(value=values)
    async def test_a_step_result_is_stored_or_fails_the_instance(
        self, storage: Storage, value: Any
    ) -> None:
        """Updates a storage cannot keep fail the instance with invalid_result, blaming the step.

        The stored instance is the last good state, marked failed: never
        ``running``.
        """
        token = secrets.token_hex(6)
        GIVEN[token] = value
        try:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    done = await runner.run(ReturnsFlow, {"token": token}, id=token)
                stored = await storage.get(token)
                await still_serves(storage)
        finally:
            del GIVEN[token]
        assert stored is not None
        assert done.status == stored.status
        if done.status is Status.FAILED:
            assert done.error is not None
            assert (Returns, "invalid_result") == (done.error.step, done.error.kind)
            assert "returns" not in stored.context.steps  # the last good state
            assert "first" in stored.context.steps
        else:
            assert Status.COMPLETED == done.status

    @pytest.mark.parametrize(
        "error",
        [BadStr(), ValueError("nul \x00 here"), ValueError("lone \udc80"), KeyError(10**5000)],
        ids=["str-raises", "nul", "lone-surrogate", "huge-int"],
    )
    async def test_a_step_raising_anything_fails_cleanly(
        self, storage: Storage, error: BaseException
    ) -> None:
        """A step's exception, whatever its message does, fails the instance and is stored."""
        token = secrets.token_hex(6)
        GIVEN[token] = error
        try:
            with anyio.fail_after(GUARD):
                async with LocalRunner(storage) as runner:
                    done = await runner.run(RaisesFlow, {"token": token}, id=token)
                stored = await storage.get(token)
                await still_serves(storage)
        finally:
            del GIVEN[token]
        assert Status.FAILED == done.status
        assert stored is not None
        assert Status.FAILED == stored.status
        assert stored.error is not None
        assert codec.reason_text(stored.error.reason).startswith(type(error).__qualname__)

    async def test_a_step_raising_cancelled_error_fails(self, storage: Storage) -> None:
        """A step that raises CancelledError without being cancelled fails; wait returns."""
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                done = await runner.run(CancelledFlow, {}, id="cancelled")
            stored = await storage.get("cancelled")
        assert Status.FAILED == done.status
        assert done.error is not None
        assert "exception" == done.error.kind
        assert stored is not None
        assert Status.FAILED == stored.status


class TestHostileIds:
    @EXAMPLES
    @given(value=st.one_of(any_text, st.integers(), st.none(), st.binary(max_size=8)))
    async def test_every_call_refuses_or_answers(self, storage: Storage, value: Any) -> None:
        """start, get, resume, cancel, wait and schedule_resume refuse a bad id clearly."""
        calls = {
            "get": lambda r: r.get(value),
            "resume": lambda r: r.resume(value, "go"),
            "cancel": lambda r: r.cancel(value),
            "wait": lambda r: r.wait(value),
            "schedule_resume": lambda r: r.schedule_resume(value, Parks, 1),
        }
        with anyio.fail_after(GUARD):
            async with LocalRunner(storage) as runner:
                for name, call in calls.items():
                    with pytest.raises((InstanceNotFound, TypeError, ValueError)) as caught:
                        await call(runner)
                    assert str(caught.value), name
                iid = await outcome(runner.start(ParksFlow, {}, id=value))
                if isinstance(iid, Exception):
                    assert "instance id" in str(iid)
                else:
                    assert value in (None, iid)  # None: a generated id
                    await runner.cancel(iid)
            await still_serves(storage)


class TestHostileArguments:
    async def test_start_needs_a_workflow(self) -> None:
        """start("not a workflow") says what it needs."""
        async with LocalRunner() as runner:
            with pytest.raises(TypeError, match="start needs a Workflow subclass, got: 'not a"):
                await runner.start("not a workflow", {})  # type: ignore[arg-type]

    @pytest.mark.parametrize("step", [42, 1.5, object()])
    async def test_resume_needs_a_step(self, step: Any) -> None:
        """resume(..., step=42) says what step= takes, and changes nothing."""
        async with LocalRunner() as runner:
            iid = await start_parked(runner)
            with pytest.raises(TypeError, match="step must be a Step class, a step key or None"):
                await runner.resume(iid, "go", step=step)
            assert Status.WAITING == (await runner.get(iid)).status
            await runner.resume(iid, "go")

    @EXAMPLES
    @given(delay=st.one_of(st.floats(), st.integers(), st.just(1e300), st.just(10**400)))
    async def test_schedule_resume_checks_the_delay(self, delay: Any) -> None:
        """A delay outside 0 s to 100 years is refused, naming it; a good one is armed."""
        async with LocalRunner() as runner:
            iid = await start_parked(runner)
            refused = await outcome(runner.schedule_resume(iid, Parks, delay))
            if isinstance(refused, Exception):
                assert str(refused).startswith("delay must be a finite number of seconds")
                assert {} == dict((await runner.get(iid)).timers)
            else:
                assert 0 <= delay <= 3_155_760_000
            await runner.cancel(iid)

    @EXAMPLES
    @given(
        config=st.dictionaries(
            st.sampled_from(["seconds", "duration", "unit", "units", "timeout"]),
            st.one_of(st.floats(), st.integers(), any_text, st.none()),
            max_size=3,
        )
    )
    def test_wait_configs_are_checked_at_definition(self, config: dict[str, Any]) -> None:
        """A Wait or WaitForEvent config is accepted with a delay in bounds, or refused."""
        for step in (Wait, WaitForEvent):
            try:
                delay = step.timer(config)
            except ValueError:
                with pytest.raises(ValueError, match=r"\S"):  # refused at definition, saying why
                    step.check_config(config)
                continue
            step.check_config(config)
            assert delay is None or 0 <= delay <= 3_155_760_000

    async def test_calls_after_the_block_say_the_runner_stopped(self) -> None:
        """Once the block has exited, resume, cancel, wait and start raise RunnerStopped."""
        async with LocalRunner() as runner:
            iid = await start_parked(runner)
        for call in (
            runner.resume(iid, "go"),
            runner.cancel(iid),
            runner.wait(iid),
            runner.start(ParksFlow, {}),
        ):
            with pytest.raises(RunnerStopped, match="is not running"):
                await call
        assert Status.WAITING == (await runner.get(iid)).status  # reads still answer

    async def test_a_resume_after_the_end_is_refused(self) -> None:
        """A resume of an instance that ended says so."""
        async with LocalRunner() as runner:
            iid = await runner.start(ParksFlow, {})
            await runner.cancel(iid)
            with pytest.raises(NotWaiting, match="is cancelled, not waiting"):
                await runner.resume(iid, "go")

    async def test_a_definition_with_nan_fails_at_class_creation(self) -> None:
        """A NaN Wait is a WorkflowDefinitionError, not a failure at run time."""
        with pytest.raises(WorkflowDefinitionError, match="got: nan"):

            class NanFlow(Workflow):
                start = (Wait, {"seconds": math.nan})
                transitions = {Wait: {"timeout": Done}}
