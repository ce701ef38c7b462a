"""Tests for hephaestus.testing: capture_events."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus import telemetry
from hephaestus.testing import capture_events

PING = ("test", "ping")


@pytest.fixture(autouse=True)
def _detach_new_handlers() -> Iterator[None]:
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)


class TestCaptureEvents:
    def test_records_events_in_order(self) -> None:
        """capture_events records (event_name, measurements, metadata) tuples in order."""
        with capture_events(PING, telemetry.runner_init_event()) as events:
            telemetry.execute(PING, {"n": 1}, {"m": 1})
            telemetry.runner_init({"name": "r"})
            telemetry.execute(PING, {"n": 2}, {"m": 2})
        assert [PING, telemetry.runner_init_event(), PING] == [name for name, _, _ in events]
        assert ({"n": 1}, {"m": 1}) == events[0][1:]

    def test_default_is_the_11_events(self) -> None:
        """Without names it listens to the 11 Hephaestus events and nothing else."""
        before = telemetry.list_handlers()
        with capture_events():
            added = [h for h in telemetry.list_handlers() if h not in before]
        assert list(telemetry.events()) == [handler.event_name for handler in added]

    def test_detaches_on_exit(self) -> None:
        """After the block nothing more is recorded and no handler is left behind."""
        before = telemetry.list_handlers()
        with capture_events(PING) as events:
            telemetry.execute(PING, {}, {})
        telemetry.execute(PING, {}, {})
        assert 1 == len(events)
        assert before == telemetry.list_handlers()

    def test_detaches_when_the_block_raises(self) -> None:
        """An exception in the block still detaches the handler."""
        before = telemetry.list_handlers()
        with pytest.raises(RuntimeError), capture_events(PING):
            raise RuntimeError("test failure")
        assert before == telemetry.list_handlers()

    def test_captures_nest(self) -> None:
        """Nested captures each record what happens while they are active."""
        with capture_events(PING) as outer:
            telemetry.execute(PING, {}, {"n": 1})
            with capture_events(PING) as inner:
                telemetry.execute(PING, {}, {"n": 2})
        assert ([1, 2], [2]) == (
            [meta["n"] for _, _, meta in outer],
            [meta["n"] for _, _, meta in inner],
        )
