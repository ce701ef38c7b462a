"""Instances and the values they hold: frozen records, statuses, timestamps."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from hephaestus import Context, Done, ExecutionEntry, Failure, Instance, Ok, Status, Step, Workflow
from hephaestus.core.instance import Timer


class Greet(Step):
    events = ("greeted",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("greeted")


class GreetFlow(Workflow):
    start = Greet
    transitions = {Greet: {"greeted": Done}}


def new_instance(status: Status = Status.PENDING) -> Instance:
    return Instance("i-1", GreetFlow, 1, status, Context({"name": "Ada"}))


class TestStatus:
    """The six statuses."""

    def test_values(self) -> None:
        """Statuses are strings, in lifecycle order."""
        assert ["pending", "running", "waiting", "completed", "failed", "cancelled"] == [
            s.value for s in Status
        ]
        assert "waiting" == Status.WAITING
        assert "waiting" == str(Status.WAITING)

    @pytest.mark.parametrize(
        ("status", "terminal"),
        [
            (Status.PENDING, False),
            (Status.RUNNING, False),
            (Status.WAITING, False),
            (Status.COMPLETED, True),
            (Status.FAILED, True),
            (Status.CANCELLED, True),
        ],
    )
    def test_terminal(self, status: Status, terminal: bool) -> None:
        """Completed, failed and cancelled are terminal; the others are not."""
        assert terminal is status.terminal
        assert terminal is new_instance(status).terminal


class TestContext:
    """Context(initial, steps)."""

    def test_steps_default_empty(self) -> None:
        """A new context has no step updates."""
        assert {} == Context({"a": 1}).steps

    def test_steps_default_not_shared(self) -> None:
        """Each context gets its own steps mapping."""
        assert Context({}).steps is not Context({}).steps


class TestInstance:
    """Instance: one run of a workflow."""

    def test_defaults(self) -> None:
        """A new instance has nothing active, completed, waiting, timed or failed."""
        instance = new_instance()
        assert (None, {}, frozenset(), frozenset(), frozenset()) == (
            instance.current_step,
            instance.step_configs,
            instance.active_steps,
            instance.completed_steps,
            instance.waiting_steps,
        )
        assert ({}, (), {}, 0, None) == (
            instance.runtime_metadata,
            instance.execution_history,
            instance.telemetry_metadata,
            instance.started_at,
            instance.started_monotonic,
        )
        assert ({}, {}, None) == (instance.timers, instance.pending_joins, instance.error)

    def test_frozen(self) -> None:
        """An instance cannot be changed in place."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            new_instance().status = Status.RUNNING  # type: ignore[misc]

    def test_evolve(self) -> None:
        """attrs.evolve returns a changed copy and leaves the original alone."""
        instance = new_instance()
        running = attrs.evolve(instance, status=Status.RUNNING)
        assert (Status.PENDING, Status.RUNNING) == (instance.status, running.status)

    def test_equality(self) -> None:
        """Instances compare by value."""
        assert new_instance() == new_instance()
        assert new_instance() != new_instance(Status.RUNNING)


class TestRecords:
    """ExecutionEntry, Timer and Failure."""

    def test_execution_entry_at(self) -> None:
        """at is the timestamp as an aware UTC datetime."""
        entry = ExecutionEntry(Greet, "greeted", 1_700_000_000_500_000_000)
        assert datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC) == entry.at

    def test_execution_entry_updates_default(self) -> None:
        """An entry without updates holds None."""
        assert None is ExecutionEntry(Greet, "greeted", 0).updates

    def test_timer_default_event(self) -> None:
        """A timer resumes with "timeout" unless told otherwise."""
        assert Timer(5, "timeout") == Timer(5)

    def test_failure(self) -> None:
        """A failure names the step, the kind and the reason."""
        failure = Failure(Greet, "error", "no name")
        assert (Greet, "error", "no name") == (failure.step, failure.kind, failure.reason)
