"""Tests for hephaestus.telemetry.metrics: the metric definitions."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import attrs
import pytest

from hephaestus.telemetry.metrics import Metric, metrics

MS = ("nanosecond", "millisecond")


class TestMetrics:
    def test_all_nine_definitions(self) -> None:
        """metrics() returns the nine definitions: workflow, then step, then engine."""
        expected = [
            Metric(
                "hephaestus.workflow.start.count",
                "counter",
                ("hephaestus", "workflow", "start"),
                "system_time",
                ("workflow",),
            ),
            Metric(
                "hephaestus.workflow.stop.count",
                "counter",
                ("hephaestus", "workflow", "stop"),
                "duration",
                ("workflow",),
            ),
            Metric(
                "hephaestus.workflow.exception.count",
                "counter",
                ("hephaestus", "workflow", "exception"),
                None,
                ("workflow", "failed_step"),
            ),
            Metric(
                "hephaestus.workflow.stop.duration",
                "distribution",
                ("hephaestus", "workflow", "stop"),
                "duration",
                ("workflow",),
                MS,
            ),
            Metric(
                "hephaestus.step.stop.duration",
                "distribution",
                ("hephaestus", "step", "stop"),
                "duration",
                ("workflow", "step"),
                MS,
            ),
            Metric(
                "hephaestus.step.exception.count",
                "counter",
                ("hephaestus", "step", "exception"),
                None,
                ("workflow", "step", "kind"),
            ),
            Metric(
                "hephaestus.step.async.count",
                "counter",
                ("hephaestus", "step", "async"),
                None,
                ("workflow", "step"),
            ),
            Metric(
                "hephaestus.step.resume.wait_duration",
                "distribution",
                ("hephaestus", "step", "resume"),
                "wait_duration",
                ("workflow", "step", "source"),
                MS,
            ),
            Metric(
                "hephaestus.engine.advance.active_steps_count",
                "last_value",
                ("hephaestus", "engine", "advance"),
                "active_steps_count",
                ("workflow",),
            ),
        ]
        assert expected == metrics()

    @pytest.mark.parametrize(("scope", "count"), [("workflow", 4), ("step", 4), ("engine", 1)])
    def test_scope_selects_its_metrics(self, scope: str, count: int) -> None:
        """A scope returns the metrics of its events only."""
        selected = metrics(scope)  # type: ignore[arg-type]
        assert count == len(selected)
        assert all(metric.name.startswith(f"hephaestus.{scope}.") for metric in selected)

    def test_unknown_scope_raises_naming_it(self) -> None:
        """An unknown scope raises ValueError that names it."""
        with pytest.raises(ValueError, match="'runner'"):
            metrics("runner")  # type: ignore[arg-type]

    def test_definitions_are_frozen(self) -> None:
        """A Metric cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            metrics()[0].name = "changed"  # type: ignore[misc]

    def test_callers_cannot_change_the_catalogue(self) -> None:
        """Each call returns a new list."""
        first = metrics()
        first.clear()
        assert 9 == len(metrics())


class TestConvert:
    def test_nanoseconds_to_milliseconds(self) -> None:
        """A duration metric converts nanoseconds to milliseconds."""
        assert 2.5 == metrics("step")[0].convert(2_500_000)

    def test_without_unit_value_is_unchanged(self) -> None:
        """A metric without a unit returns the value as is."""
        assert 3 == metrics("engine")[0].convert(3)
