"""Helpers that make a workflow test short: wait until parked, assert a path, run a step alone."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import anyio

from hephaestus._show import shown
from hephaestus.core import engine
from hephaestus.core.instance import Context, Instance, Status
from hephaestus.core.step import Config, Ok, Result, Step
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.clock import SYSTEM_CLOCK, Clock
from hephaestus.runtime.local import LocalRunner
from hephaestus.runtime.storage import codec
from hephaestus.steps import Done
from hephaestus.telemetry import attach_many, detach, names
from hephaestus.testing.events import is_step

__all__ = ["assert_path", "run_step", "until_parked"]

_ids = itertools.count(1)

_POLL = 0.01
"""How often, in real seconds, a runner that is not a LocalRunner is read again."""


class _Runner(Protocol):
    async def get(self, instance_id: str) -> Instance: ...


async def until_parked(
    runner: _Runner,
    instance_id: str,
    step: type[Step] | str,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109  # a deadline in real seconds, as wait's
) -> Instance:
    """Wait until the instance is parked on ``step`` (a class or a step key); return it.

    Parked means ``step`` is among the instance's waiting steps: it returned
    ``Async()`` (a ``Wait``, a ``WaitForEvent``) and nothing resumed it yet.
    On a runner with a virtual clock, time skips ahead meanwhile (the
    instance's earlier ``Wait`` steps pass), and stops as soon as it parks.
    Raises ``AssertionError`` if the instance ends first, and
    ``TimeoutError`` after ``timeout`` real seconds.
    """
    _check_step(step)
    clock: Clock = getattr(runner, "clock", SYSTEM_CLOCK)
    local = runner if isinstance(runner, LocalRunner) else None
    changed = anyio.Event()

    def heard(*_: object) -> None:
        changed.set()

    def met() -> bool:  # read by a virtual clock, between two of its jumps
        assert local is not None
        run = local._runs.get(instance_id)
        return run is None or _parked(run.instance, step)

    handler_id = f"hephaestus.testing.until_parked-{next(_ids)}"
    attach_many(
        handler_id,
        [names.STEP_ASYNC, names.STEP_RESUME, names.WORKFLOW_STOP, names.WORKFLOW_EXCEPTION],
        heard,
    )
    try:
        with (
            anyio.fail_after(timeout),
            clock._expecting(met) if local is not None else contextlib.nullcontext(),
        ):
            while True:
                instance = await runner.get(instance_id)
                if _parked(instance, step):
                    return instance
                if instance.terminal:
                    raise AssertionError(
                        f"instance {instance_id!r} is {instance.status} and never parked on "
                        f"{_name(step)}; it went through: {_path_text(_path(instance))}"
                    )
                if local is not None:
                    await changed.wait()  # a step parked, was resumed, or the instance ended
                    changed = anyio.Event()
                else:
                    await anyio.sleep(_POLL)
    finally:
        detach(handler_id)


def _parked(instance: Instance, step: type[Step] | str) -> bool:
    return any(is_step(waiting, step) for waiting in instance.waiting_steps)


def _name(step: type[Step] | str) -> str:
    return step if isinstance(step, str) else step.__qualname__


def _check_step(step: object) -> None:
    if isinstance(step, str) and step:
        return
    if isinstance(step, type) and issubclass(step, Step):
        return
    raise TypeError(f"a step is a Step subclass or a step key, got: {shown(step)}")


def _path(instance: Instance) -> list[type[Step]]:
    """The steps in the order they completed; a mapped step once, where its last item did."""
    history = instance.execution_history
    path: list[type[Step]] = []
    for index, entry in enumerate(history):
        if entry.item is not None and any(
            later.step is entry.step and later.item is not None for later in history[index + 1 :]
        ):
            continue  # not the map's last item
        path.append(entry.step)
    return path


def _path_text(path: Sequence[type[Step] | str | Collection[type[Step] | str]]) -> str:
    parts = []
    for step in path:
        if isinstance(step, str | type):
            parts.append(_name(step))
        else:
            parts.append("{" + ", ".join(sorted(_name(s) for s in step)) + "}")
    return "[" + ", ".join(parts) + "]"


def assert_path(
    instance: Instance, expected: Sequence[type[Step] | str | Collection[type[Step] | str]]
) -> None:
    """Assert that the instance's steps completed in the order ``expected`` gives.

    ``expected`` lists steps (classes or step keys) in the order they
    completed, as the instance's execution history has them; a mapped step
    appears once, where its last item completed. A set in the list stands
    for steps that ran concurrently and may complete in any order:
    ``assert_path(instance, [Fetch, {Prices, Stock}, Quote, Done])``.
    Raises ``AssertionError`` showing both paths when they differ.
    """
    taken = _path(instance)
    position = 0
    same = True
    for want in expected:
        if isinstance(want, str | type):
            group: list[type[Step] | str] = [want]
        else:
            group = list(want)
        for wanted in group:
            _check_step(wanted)
        chunk = taken[position : position + len(group)]
        position += len(group)
        if len(chunk) != len(group) or not _matches(chunk, group):
            same = False
            break
    if not same or position != len(taken):
        raise AssertionError(
            f"instance {instance.id!r} ({instance.status}) took a different path:\n"
            f"  expected: {_path_text(expected)}\n"
            f"  taken:    {_path_text(taken)}"
        )


def _matches(chunk: list[type[Step]], group: list[type[Step] | str]) -> bool:
    """Whether ``chunk`` is ``group`` in some order (each wanted step matching one taken)."""
    left = list(chunk)
    for wanted in group:
        for index, step in enumerate(left):
            if is_step(step, wanted):
                del left[index]
                break
        else:
            return False
    return True


async def run_step(
    step: type[Step],
    context: Mapping[str, Any] | None = None,
    config: Config = None,
    *,
    steps: Mapping[str, Mapping[str, Any]] | None = None,
    instance_id: str = "run-step",
    clock: Clock | None = None,
) -> Result:
    """Execute ``step`` alone, as a runner would, and return its result.

    The step gets a real instance of a workflow made of it alone (its every
    event leads to ``Done``), running, with ``context`` as the initial
    context and ``steps`` as the outputs of steps before it
    (``context.steps``, by step key), and ``config`` as its config (a mapped
    step's item is ``config["item"]``, its index ``config["index"]``).
    ``execute`` runs as in a runner: awaited, inline, or in a worker thread
    for a ``blocking`` step, under the step's ``timeout``. What it raises is
    raised here. A result the runner would refuse raises too: not ``Ok``,
    ``Async`` or ``Error`` (``InvalidStepResult``), an undeclared event
    (``UndeclaredEvent``), updates a durable storage cannot keep
    (``NotSerializable``).
    """
    if not (isinstance(step, type) and issubclass(step, Step)):
        raise TypeError(f"run_step needs a Step subclass, got: {shown(step)}")
    if context is not None and not isinstance(context, Mapping):
        raise TypeError(f"the context must be a dict, got: {shown(context)}")
    if steps is not None and not isinstance(steps, Mapping):
        raise TypeError(f"steps must be a dict of step key to outputs, got: {shown(steps)}")
    clock = SYSTEM_CLOCK if clock is None else clock
    workflow = _alone(step, config)
    instance = engine.advance(
        Instance(
            instance_id,
            workflow,
            workflow.version,
            Status.PENDING,
            Context(dict(context or {}), dict(steps or {})),
            started_at=clock.time_ns(),
            started_monotonic=clock.monotonic_ns(),
        )
    )
    result = await LocalRunner(clock=clock)._call(step, instance, config)
    engine.check_result(instance, step, result)
    if type(result) is Ok and result.updates is not None:
        codec.encode_value(dict(result.updates), f"the updates of step {step.__qualname__}")
    return result


def _alone(step: type[Step], config: Config) -> type[Workflow]:
    """A workflow of ``step`` alone: it starts there, and each of its events leads to ``Done``."""
    transitions: dict[type[Step], dict[str, Any]] = {}
    if not getattr(step, "ends_workflow", False):
        transitions[step] = dict.fromkeys(step.declared_events(config), Done)
    body = {"start": step if config is None else (step, config), "transitions": transitions}
    return type(f"Alone{step.__name__}", (Workflow,), body)
