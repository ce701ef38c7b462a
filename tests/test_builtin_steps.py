"""The built-in steps: Done, Wait, WaitForEvent and Debug."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
from typing import Any

import pytest
from structlog.testing import capture_logs

from hephaestus import (
    Async,
    Context,
    Debug,
    Done,
    ExecutionEntry,
    Instance,
    Ok,
    Status,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)


class Greet(Step):
    events = ("greeted",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("greeted")


class GreetFlow(Workflow):
    start = Greet
    transitions = {Greet: {"greeted": Debug}, Debug: {"completed": Done}}


def running(**fields: Any) -> Instance:
    fields.setdefault("context", Context({"name": "Ada"}))
    return Instance("i-1", GreetFlow, 1, Status.RUNNING, **fields)


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


class TestKeysAndEvents:
    """The built-in steps' step keys and events."""

    @pytest.mark.parametrize(
        ("step", "key", "events"),
        [
            (Done, "done", ("done",)),
            (Wait, "wait", ("timeout",)),
            (WaitForEvent, "wait_for_event", ("received",)),
            (Debug, "debug", ("completed",)),
        ],
    )
    def test_keys_and_events(self, step: type[Step], key: str, events: tuple[str, ...]) -> None:
        """Each built-in step has the step key and the events of DESIGN.md."""
        assert (key, events) == (step.step_key, step.events)

    def test_only_done_ends_the_workflow(self) -> None:
        """Done ends the workflow; the others do not."""
        assert [True, False, False, False] == [
            s.ends_workflow for s in (Done, Wait, WaitForEvent, Debug)
        ]


class TestDone:
    """Done."""

    def test_execute(self) -> None:
        """Done returns Ok("done")."""
        assert Ok("done") == Done().execute(running(), None, Context({}))

    def test_no_timer(self) -> None:
        """Done never parks."""
        assert None is Done.timer(None)


SECONDS = "a finite number of seconds >= 0 and at most 100 years (3155760000)"


class TestWait:
    """Wait: parks, then resumes itself with "timeout"."""

    def test_execute(self) -> None:
        """Wait parks the instance."""
        assert Async() == Wait().execute(running(), {"seconds": 1}, Context({}))

    @pytest.mark.parametrize(
        ("config", "seconds"),
        [
            ({"duration": 2, "unit": "second"}, 2.0),
            ({"duration": 2, "unit": "seconds"}, 2.0),
            ({"duration": 250, "unit": "millisecond"}, 0.25),
            ({"duration": 250, "unit": "milliseconds"}, 0.25),
            ({"duration": 3, "unit": "minute"}, 180.0),
            ({"duration": 3, "unit": "minutes"}, 180.0),
            ({"duration": 1.5, "unit": "hour"}, 5400.0),
            ({"duration": 2, "unit": "hours"}, 7200.0),
            ({"duration": 1, "unit": "day"}, 86400.0),
            ({"duration": 2, "unit": "days"}, 172800.0),
            ({"duration": 4}, 4.0),
            ({"seconds": 2.5}, 2.5),
            ({"seconds": 0}, 0.0),
        ],
    )
    def test_delay(self, config: dict[str, Any], seconds: float) -> None:
        """The delay is the duration in its unit (plural or not; seconds by default)."""
        assert seconds == Wait.delay(config)
        assert seconds == Wait.timer(config)
        assert isinstance(Wait.delay(config), float)

    def test_seconds_or_duration(self) -> None:
        """A config gives "seconds" or "duration" and "unit", never both."""
        with pytest.raises(ValueError, match=r"unknown key 'duration'; it takes 'seconds'"):
            Wait.delay({"seconds": 1, "duration": 9, "unit": "day"})

    @pytest.mark.parametrize(
        ("config", "key"),
        [({"duration": 1, "units": "second"}, "units"), ({"second": 3}, "second")],
    )
    def test_unknown_key(self, config: dict[str, Any], key: str) -> None:
        """A key Wait does not know (a typo) is refused, naming it."""
        with pytest.raises(ValueError, match=f"^Wait config has unknown key '{key}'"):
            Wait.check_config(config)

    @pytest.mark.parametrize(
        "config",
        [
            {"seconds": float("nan")},
            {"seconds": float("inf")},
            {"seconds": 1e300},
            {"duration": 10**400, "unit": "day"},
            {"duration": 101 * 365, "unit": "day"},
        ],
        ids=["nan", "inf", "1e300", "huge-int", "101-years"],
    )
    def test_unbounded(self, config: dict[str, Any]) -> None:
        """NaN, infinities and waits beyond 100 years are refused at definition time."""
        with pytest.raises(
            ValueError, match=r"finite number of seconds >= 0 and at most 100 years"
        ):
            Wait.check_config(config)

    @pytest.mark.parametrize("config", [None, {}])
    def test_missing_config(self, config: Any) -> None:
        """Wait without a config says what it needs."""
        with pytest.raises(ValueError, match=r"^Wait needs a config"):
            Wait.delay(config)

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            (
                {"duration": 2, "unit": "fortnight"},
                "Wait unit must be one of millisecond, second, minute, hour, day, got: 'fortnight'",
            ),
            ({"duration": "2", "unit": "second"}, "Wait duration must be a number, got: '2'"),
            ({"unit": "second"}, "Wait duration must be a number, got: None"),
            ({"duration": True}, "Wait duration must be a number, got: True"),
            ({"duration": -2}, f"Wait of -2 second must be {SECONDS}, got: -2.0"),
            ({"seconds": "soon"}, f"Wait seconds must be {SECONDS}, got: 'soon'"),
            ({"seconds": -1}, f"Wait seconds must be {SECONDS}, got: -1"),
            ({"seconds": False}, f"Wait seconds must be {SECONDS}, got: False"),
        ],
    )
    def test_bad_config(self, config: dict[str, Any], message: str) -> None:
        """A malformed config raises ValueError naming the value."""
        with pytest.raises(ValueError, match=exact(message)):
            Wait.delay(config)
        with pytest.raises(ValueError, match=exact(message)):
            Wait.check_config(config)

    def test_check_config_accepts_a_valid_config(self) -> None:
        """A valid config passes the definition check."""
        assert None is Wait.check_config({"duration": 1, "unit": "minute"})


class TestWaitForEvent:
    """WaitForEvent: parks until "received", or "timeout" when it has one."""

    def test_execute(self) -> None:
        """WaitForEvent parks the instance."""
        assert Async() == WaitForEvent().execute(running(), None, Context({}))

    @pytest.mark.parametrize("config", [None, {}, {"timeout": None}])
    def test_without_timeout(self, config: Any) -> None:
        """Without a timeout it declares only "received" and has no timer."""
        assert ("received",) == WaitForEvent.declared_events(config)
        assert None is WaitForEvent.timer(config)
        assert None is WaitForEvent.check_config(config)

    @pytest.mark.parametrize(("timeout", "seconds"), [(5, 5.0), (0.5, 0.5), (0, 0.0)])
    def test_with_timeout(self, timeout: float, seconds: float) -> None:
        """With a timeout it also declares "timeout", and its timer is the timeout in seconds."""
        config = {"timeout": timeout}
        assert ("received", "timeout") == WaitForEvent.declared_events(config)
        assert seconds == WaitForEvent.timer(config)

    def test_unknown_key(self) -> None:
        """A key WaitForEvent does not know (a typo) is refused, naming it."""
        with pytest.raises(ValueError, match=r"^WaitForEvent config has unknown key 'timout'"):
            WaitForEvent.check_config({"timout": 5})

    def test_configured_events(self) -> None:
        """The events it accepts come from its config; a timeout adds "timeout"."""
        config = {"events": ("approved", "rejected"), "timeout": 172800}
        assert ("approved", "rejected", "timeout") == WaitForEvent.declared_events(config)
        assert ("approved", "rejected") == WaitForEvent.declared_events(
            {"events": ["approved", "rejected"]}
        )

    @pytest.mark.parametrize("events", ["approved", (), [""], [1], {"a": 1}])
    def test_bad_events(self, events: Any) -> None:
        """Events that are not a non-empty list of names are refused, naming them."""
        with pytest.raises(ValueError, match=r"^WaitForEvent events must be a non-empty list"):
            WaitForEvent.check_config({"events": events})

    def test_a_definition_from_its_events_is_accepted(self) -> None:
        """{e: Next for e in WaitForEvent.events} is a valid definition (no hidden "timeout")."""

        class Approval(Workflow):
            start = WaitForEvent
            transitions = {WaitForEvent: dict.fromkeys(WaitForEvent.events, Done)}

        assert ("received",) == Approval.definition.events[WaitForEvent]

    def test_a_configured_definition_asks_for_every_event(self) -> None:
        """Configured with events and a timeout, each needs a transition."""
        with pytest.raises(WorkflowDefinitionError, match="'timeout' declared by WaitForEvent"):

            class Approval(Workflow):
                start = (WaitForEvent, {"events": ("approved", "rejected"), "timeout": 60})
                transitions = {WaitForEvent: {"approved": Done, "rejected": Done}}

    @pytest.mark.parametrize("timeout", [-1, "5", True, float("nan"), float("inf"), 1e300])
    def test_bad_timeout(self, timeout: Any) -> None:
        """A timeout that is not a number of seconds from 0 to 100 years raises ValueError."""
        message = f"WaitForEvent timeout must be {SECONDS}, got: {timeout!r}"
        with pytest.raises(ValueError, match=exact(message)):
            WaitForEvent.check_config({"timeout": timeout})


class TestDebug:
    """Debug: logs the context and the history, then completes."""

    def test_logs_at_debug_level(self) -> None:
        """Debug logs the instance, its context and its history at debug level."""
        instance = running(
            context=Context({"name": "Ada"}, {"greet": {"greeting": "hello"}}),
            execution_history=(ExecutionEntry(Greet, "greeted", 1_000, {"greeting": "hello"}),),
        )
        with capture_logs() as logs:
            result = Debug().execute(instance, None, instance.context)
        assert Ok("completed") == result
        assert [
            {
                "event": "[i-1] Debug",
                "log_level": "debug",
                "instance_id": "i-1",
                "workflow": "GreetFlow",
                "initial": {"name": "Ada"},
                "steps": {"greet": {"greeting": "hello"}},
                "history": [{"step": "Greet", "event": "greeted", "timestamp": 1_000}],
            }
        ] == logs

    def test_empty_instance(self) -> None:
        """With nothing done yet, Debug logs empty steps and history and completes."""
        with capture_logs() as logs:
            assert Ok("completed") == Debug().execute(running(), None, Context({}))
        assert ({}, {}, []) == (logs[0]["initial"], logs[0]["steps"], logs[0]["history"])
