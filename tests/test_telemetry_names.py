"""Tests for hephaestus.telemetry.names: the 11 event names."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import pytest

from hephaestus import telemetry

EXPECTED = [
    ("hephaestus", "workflow", "start"),
    ("hephaestus", "workflow", "stop"),
    ("hephaestus", "workflow", "exception"),
    ("hephaestus", "step", "start"),
    ("hephaestus", "step", "stop"),
    ("hephaestus", "step", "exception"),
    ("hephaestus", "step", "async"),
    ("hephaestus", "step", "resume"),
    ("hephaestus", "workflow", "transition"),
    ("hephaestus", "engine", "advance"),
    ("hephaestus", "runner", "init"),
]


class TestEvents:
    def test_events_lists_the_11_names_in_catalogue_order(self) -> None:
        """events() returns the 11 names, workflow span first and standalone events last."""
        assert EXPECTED == list(telemetry.events())

    def test_names_are_tuples_of_strings(self) -> None:
        """Every event name is a tuple of strings."""
        assert all(
            type(name) is tuple and all(type(part) is str for part in name)
            for name in telemetry.events()
        )

    @pytest.mark.parametrize("expected", EXPECTED, ids="_".join)
    def test_each_event_has_a_name_function(self, expected: tuple[str, ...]) -> None:
        """Each event's *_event() function returns its name."""
        function = getattr(telemetry, f"{expected[1]}_{expected[2]}_event")
        assert expected == function()
