"""Tests for hephaestus.telemetry's registry: attach, detach, execute, failure isolation."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from hephaestus import telemetry

PING = ("test", "ping")
PONG = ("test", "pong")
OTHER = ("other", "event")


@pytest.fixture(autouse=True)
def _detach_new_handlers() -> Iterator[None]:
    before = {handler.id for handler in telemetry.list_handlers()}
    yield
    for handler in telemetry.list_handlers():
        if handler.id not in before:
            telemetry.detach(handler.id)


class Recorder:
    """A handler that records its calls, optionally tagged."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, event_name: Any, measurements: Any, metadata: Any, config: Any) -> None:
        self.calls.append((self.tag, event_name, measurements, metadata, config))


def boom(event_name: Any, measurements: Any, metadata: Any, config: Any) -> None:
    raise ValueError("handler bug")


class TestAttach:
    def test_handler_receives_event_measurements_metadata_and_config(self) -> None:
        """A handler is called with the event name, measurements, metadata and its config."""
        recorder = Recorder()
        telemetry.attach("h", PING, recorder, config={"c": 1})
        telemetry.execute(PING, {"n": 1}, {"m": 2})
        assert [("", PING, {"n": 1}, {"m": 2}, {"c": 1})] == recorder.calls

    def test_handlers_run_in_attach_order(self) -> None:
        """Handlers of one event run synchronously, in the order they were attached."""
        order: list[str] = []
        for tag in ("first", "second", "third"):
            telemetry.attach(tag, PING, lambda *args, tag=tag: order.append(tag))
        telemetry.execute(PING, {}, {})
        assert ["first", "second", "third"] == order

    def test_duplicate_id_raises(self) -> None:
        """Attaching a second handler under an attached id raises ValueError."""
        telemetry.attach("dup", PING, Recorder())
        with pytest.raises(ValueError, match="'dup' is already attached"):
            telemetry.attach("dup", PONG, Recorder())
        assert [PING] == [h.event_name for h in telemetry.list_handlers() if h.id == "dup"]

    def test_attach_many_listens_to_every_event(self) -> None:
        """attach_many attaches one handler to several events under one id."""
        recorder = Recorder()
        telemetry.attach_many("many", [PING, PONG], recorder)
        telemetry.execute(PING, {}, {})
        telemetry.execute(PONG, {}, {})
        telemetry.execute(OTHER, {}, {})
        assert [PING, PONG] == [call[1] for call in recorder.calls]

    def test_attach_many_counts_a_repeated_event_once(self) -> None:
        """An event named twice in attach_many calls the handler once."""
        recorder = Recorder()
        telemetry.attach_many("many", [PING, PING], recorder)
        telemetry.execute(PING, {}, {})
        assert 1 == len(recorder.calls)

    def test_event_name_list_is_normalised_to_a_tuple(self) -> None:
        """An event name given as a list is stored and matched as a tuple."""
        recorder = Recorder()
        telemetry.attach("list", ["test", "ping"], recorder)  # type: ignore[arg-type]
        telemetry.execute(PING, {}, {})
        assert [PING] == [h.event_name for h in telemetry.list_handlers() if h.id == "list"]
        assert 1 == len(recorder.calls)

    @pytest.mark.parametrize("bad", ["test.ping", (), ("test", 1), None])
    def test_malformed_event_name_raises(self, bad: Any) -> None:
        """An event name that is not a non-empty tuple of strings raises TypeError."""
        with pytest.raises(TypeError, match="event name"):
            telemetry.attach("bad", bad, Recorder())
        assert [] == [h for h in telemetry.list_handlers() if h.id == "bad"]

    def test_handler_must_be_callable(self) -> None:
        """A function that is not callable raises TypeError."""
        with pytest.raises(TypeError, match="callable"):
            telemetry.attach("bad", PING, "not a function")  # type: ignore[arg-type]

    def test_attach_many_with_a_single_name_raises(self) -> None:
        """Passing one event name where attach_many wants a list of them raises TypeError."""
        with pytest.raises(TypeError, match="use attach for a single event"):
            telemetry.attach_many("one", PING, Recorder())  # type: ignore[arg-type]

    def test_attach_many_needs_an_event(self) -> None:
        """attach_many with no event raises ValueError."""
        with pytest.raises(ValueError, match="at least one event"):
            telemetry.attach_many("none", [], Recorder())


class TestDetach:
    def test_detach_returns_true_then_false(self) -> None:
        """detach returns True when it removed a handler and False when there was none."""
        telemetry.attach("d", PING, Recorder())
        assert (True, False) == (telemetry.detach("d"), telemetry.detach("d"))

    def test_detach_unknown_id_returns_false(self) -> None:
        """Detaching an id never attached returns False."""
        assert telemetry.detach("never-attached") is False

    def test_detached_handler_is_not_called(self) -> None:
        """A detached handler no longer receives events; the others still do."""
        gone, kept = Recorder("gone"), Recorder("kept")
        telemetry.attach_many("gone", [PING, PONG], gone)
        telemetry.attach("kept", PING, kept)
        telemetry.detach("gone")
        telemetry.execute(PING, {}, {})
        telemetry.execute(PONG, {}, {})
        assert ([], 1) == (gone.calls, len(kept.calls))
        assert not telemetry.listening(PONG)

    def test_id_can_be_reused_after_detach(self) -> None:
        """Once detached, an id can be attached again."""
        telemetry.attach("again", PING, Recorder())
        telemetry.detach("again")
        telemetry.attach("again", PONG, Recorder())
        assert [PONG] == [h.event_name for h in telemetry.list_handlers() if h.id == "again"]


class TestListHandlers:
    def test_describes_each_handler_and_event(self) -> None:
        """list_handlers gives one description per handler and event: id, name, function, config."""
        recorder = Recorder()
        telemetry.attach_many("described", [PING, OTHER], recorder, config="cfg")
        described = [h for h in telemetry.list_handlers() if h.id == "described"]
        expected = [
            telemetry.Handler("described", PING, recorder, "cfg"),
            telemetry.Handler("described", OTHER, recorder, "cfg"),
        ]
        assert expected == described

    def test_prefix_filters_event_names(self) -> None:
        """A prefix keeps the handlers whose event name starts with it."""
        telemetry.attach("ping", PING, Recorder())
        telemetry.attach("pong", PONG, Recorder())
        telemetry.attach("other", OTHER, Recorder())
        assert ["ping", "pong"] == [h.id for h in telemetry.list_handlers(("test",))]
        assert ["pong"] == [h.id for h in telemetry.list_handlers(PONG)]
        assert [] == telemetry.list_handlers(("test", "ping", "deeper"))

    def test_string_prefix_raises(self) -> None:
        """A string prefix is a mistake for a one-part tuple and raises TypeError."""
        with pytest.raises(TypeError, match="prefix"):
            telemetry.list_handlers("test")


class TestExecute:
    def test_event_without_handler_does_nothing(self) -> None:
        """execute on an event nobody listens to returns without calling anything."""
        recorder = Recorder()
        telemetry.attach("elsewhere", PING, recorder)
        telemetry.execute(("nobody", "listens"), {}, {})
        assert [] == recorder.calls

    def test_list_event_name_is_accepted(self) -> None:
        """execute accepts an event name given as a list."""
        recorder = Recorder()
        telemetry.attach("h", PING, recorder)
        telemetry.execute(["test", "ping"], {}, {})  # type: ignore[arg-type]
        assert 1 == len(recorder.calls)


class TestFailureIsolation:
    def test_raising_handler_is_detached_from_all_its_events(self) -> None:
        """A handler that raises is detached from every event it was attached to."""
        telemetry.attach_many("broken", [PING, PONG], boom)
        with capture_logs():
            telemetry.execute(PING, {}, {})
        assert [] == [h for h in telemetry.list_handlers() if h.id == "broken"]
        assert not telemetry.listening(PONG)

    def test_other_handlers_still_run_and_caller_sees_nothing(self) -> None:
        """The handlers after a raising one still run, and execute does not raise."""
        before, after = Recorder("before"), Recorder("after")
        telemetry.attach("before", PING, before)
        telemetry.attach("broken", PING, boom)
        telemetry.attach("after", PING, after)
        with capture_logs():
            telemetry.execute(PING, {}, {})
            telemetry.execute(PING, {}, {})
        assert (2, 2) == (len(before.calls), len(after.calls))

    def test_failure_event_is_emitted_with_its_fields(self) -> None:
        """A failure emits telemetry:handler:failure with the handler and the exception."""
        failures = Recorder()
        telemetry.attach("watch", telemetry.HANDLER_FAILURE_EVENT, failures)
        telemetry.attach("broken", PING, boom, config={"c": 1})
        with capture_logs():
            telemetry.execute(PING, {}, {})
        [(_, event_name, measurements, metadata, _)] = failures.calls
        assert ("telemetry", "handler", "failure") == event_name
        assert {"monotonic_time", "system_time"} == set(measurements)
        expected_keys = {
            "event_name",
            "handler_id",
            "handler_config",
            "kind",
            "reason",
            "stacktrace",
        }
        assert expected_keys == set(metadata)
        assert (PING, "broken", {"c": 1}, "ValueError") == (
            metadata["event_name"],
            metadata["handler_id"],
            metadata["handler_config"],
            metadata["kind"],
        )
        assert isinstance(metadata["reason"], ValueError)
        assert isinstance(metadata["stacktrace"], list)
        assert all(isinstance(f, traceback.FrameSummary) for f in metadata["stacktrace"])
        assert "boom" == metadata["stacktrace"][-1].name

    def test_failure_is_logged(self) -> None:
        """A failure is logged at error level with the handler id, event and exception."""
        telemetry.attach("broken", PING, boom)
        with capture_logs() as logs:
            telemetry.execute(PING, {}, {})
        [entry] = logs
        assert ("error", "broken", PING) == (
            entry["log_level"],
            entry["handler_id"],
            entry["event_name"],
        )
        assert isinstance(entry["exc_info"], ValueError)

    def test_raising_failure_handler_is_detached_too(self) -> None:
        """A failure handler that raises is detached in turn; nothing loops or escapes."""
        telemetry.attach("broken", PING, boom)
        telemetry.attach("broken-watcher", telemetry.HANDLER_FAILURE_EVENT, boom)
        with capture_logs() as logs:
            telemetry.execute(PING, {}, {})
        assert 2 == len(logs)
        assert [] == [h for h in telemetry.list_handlers() if str(h.id).startswith("broken")]

    def test_base_exceptions_propagate(self) -> None:
        """KeyboardInterrupt from a handler is not swallowed, and the handler stays."""

        def interrupt(*args: Any) -> None:
            raise KeyboardInterrupt

        telemetry.attach("interrupt", PING, interrupt)
        with pytest.raises(KeyboardInterrupt):
            telemetry.execute(PING, {}, {})
        assert telemetry.listening(PING)

    def test_reattached_id_is_not_detached_by_the_old_failure(self) -> None:
        """A handler that raises after its id was re-attached leaves the new handler in place."""
        replacement = Recorder("new")

        def replace_then_fail(*args: Any) -> None:
            telemetry.detach("flaky")
            telemetry.attach("flaky", PONG, replacement)
            raise ValueError("late failure")

        telemetry.attach("flaky", PING, replace_then_fail)
        with capture_logs():
            telemetry.execute(PING, {}, {})
        telemetry.execute(PONG, {}, {})
        assert 1 == len(replacement.calls)


class TestThreadSafety:
    def test_concurrent_attach_detach_and_execute(self) -> None:
        """Threads attaching, detaching and emitting at once leave a consistent registry."""
        errors: list[BaseException] = []
        calls: list[int] = []
        start = threading.Barrier(9)

        def churn(worker: int) -> None:
            try:
                start.wait()
                for round_ in range(200):
                    handler_id = f"thread-{worker}-{round_}"
                    telemetry.attach_many(handler_id, [PING, PONG], lambda *a: calls.append(1))
                    telemetry.execute(PING, {}, {})
                    assert telemetry.detach(handler_id)
            except BaseException as exc:  # the assertion must reach the main thread
                errors.append(exc)

        def emit() -> None:
            start.wait()
            for _ in range(2_000):
                telemetry.execute(PING, {}, {})
                telemetry.execute(PONG, {}, {})

        threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
        threads.append(threading.Thread(target=emit))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert [] == errors
        assert [] == [h for h in telemetry.list_handlers() if str(h.id).startswith("thread-")]
        assert not telemetry.listening(PING)
        assert len(calls) >= 8 * 200
