"""The engine: every function on hand-built instances, and the join semantics."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from hephaestus import (
    Async,
    Context,
    Done,
    Error,
    ExecutionEntry,
    Failure,
    Instance,
    InvalidStepResult,
    Map,
    MapError,
    NotWaiting,
    Ok,
    Route,
    RouteError,
    Status,
    Step,
    UndeclaredEvent,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus.core import engine
from hephaestus.core.engine import Applied
from hephaestus.core.instance import Timer

NOW = 1_700_000_000_000_000_000


def make_step(name: str, *events: str) -> type[Step]:
    """A step class named ``name`` that declares ``events`` and returns the first."""

    def execute(self: Step, instance: Any, config: Any, context: Any) -> Ok:
        return Ok(events[0])

    return type(name, (Step,), {"events": events, "execute": execute})


def make_workflow(name: str, start: Any, transitions: Any) -> type[Workflow]:
    return type(name, (Workflow,), {"start": start, "transitions": transitions})


def instance(workflow: type[Workflow], status: Status = Status.RUNNING, **fields: Any) -> Instance:
    """A hand-built instance of ``workflow``; ``active`` and ``waiting`` take step lists."""
    fields.setdefault("context", Context({}))
    for name in ("active", "waiting", "completed"):
        if name in fields:
            fields[f"{name}_steps"] = frozenset(fields.pop(name))
    return Instance("i-1", workflow, 1, status, **fields)


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


A = make_step("A", "ok")
B = make_step("B", "ok")
C = make_step("C", "ok")
D = make_step("D", "ok")
Join = make_step("Join", "ok")
Pick = make_step("Pick", "left", "right")
Split = make_step("Split", "go")


class Hold(Step):
    """Parks until resumed with "ok"."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Async:
        return Async()


Linear = make_workflow("Linear", A, {A: {"ok": B}, B: {"ok": Done}})
Configured = make_workflow(
    "Configured", (A, {"limit": 3}), {A: {"ok": (B, {"n": 1})}, B: {"ok": Done}}
)
Exclusive = make_workflow(
    "Exclusive",
    Pick,
    {Pick: {"left": B, "right": C}, B: {"ok": Join}, C: {"ok": Join}, Join: {"ok": Done}},
)
FanIn = make_workflow(
    "FanIn",
    Split,
    {
        Split: {"go": [B, C, D]},
        B: {"ok": Join},
        C: {"ok": Join},
        D: {"ok": Join},
        Join: {"ok": Done},
    },
)
TwoLevels = make_workflow(
    "TwoLevels",
    Pick,
    {
        Pick: {"left": B, "right": C},
        B: {"ok": Join},
        C: {"ok": D},
        D: {"ok": Join},
        Join: {"ok": Done},
    },
)
JoinConfig = make_workflow(
    "JoinConfig",
    Pick,
    {
        Pick: {"left": B, "right": C},
        B: {"ok": (Join, {"via": "b"})},
        C: {"ok": (Join, {"via": "c"})},
        Join: {"ok": Done},
    },
)
Parked = make_workflow(
    "Parked",
    A,
    {A: {"ok": [Hold, B]}, Hold: {"ok": Join}, B: {"ok": Join}, Join: {"ok": Done}},
)
Waiting = make_workflow(
    "Waiting", A, {A: {"ok": (Wait, {"seconds": 1.5})}, Wait: {"timeout": Done}}
)
Event = make_workflow("Event", A, {A: {"ok": WaitForEvent}, WaitForEvent: {"received": Done}})
TimedEvent = make_workflow(
    "TimedEvent",
    A,
    {
        A: {"ok": (WaitForEvent, {"timeout": 2})},
        WaitForEvent: {"received": B, "timeout": Done},
        B: {"ok": Done},
    },
)


def choose_from_context(context: Context) -> Any:
    return context.initial["pick"]


Routed = make_workflow(
    "Routed",
    A,
    {
        A: {"ok": Route(choose_from_context, [B, (C, {"x": 1})])},
        B: {"ok": Join},
        C: {"ok": Join},
        Join: {"ok": Done},
    },
)


def routed(pick: Any) -> Instance:
    """A Routed instance whose route will choose ``pick``, with A active."""
    return instance(Routed, context=Context({"pick": pick}), active=[A], current_step=A)


def drive(start: Instance, results: Sequence[tuple[type[Step], Any]]) -> Instance:
    """Fold each (step, result) in turn, then advance."""
    current = start
    for step, result in results:
        current = engine.apply_result(current, step, result, now=NOW).instance
    return engine.advance(current)


class TestAdvance:
    """advance(instance)."""

    def test_pending_activates_start(self) -> None:
        """A pending instance activates its start step and runs."""
        started = engine.advance(instance(Linear, Status.PENDING))
        assert (Status.RUNNING, frozenset({A}), A) == (
            started.status,
            started.active_steps,
            started.current_step,
        )

    def test_pending_keeps_everything_else(self) -> None:
        """Starting changes only status, current step and active steps."""
        pending = instance(Linear, Status.PENDING, telemetry_metadata={"r": 1}, started_at=5)
        started = engine.advance(pending)
        assert (
            attrs.evolve(
                pending, status=Status.RUNNING, current_step=A, active_steps=frozenset({A})
            )
            == started
        )

    def test_start_config(self) -> None:
        """The start step's config is recorded in step_configs."""
        started = engine.advance(instance(Configured, Status.PENDING))
        assert {A: {"limit": 3}} == started.step_configs

    def test_no_start_config(self) -> None:
        """A start without config records none."""
        assert {} == engine.advance(instance(Linear, Status.PENDING)).step_configs

    def test_running_with_nothing_left_completes(self) -> None:
        """A running instance with nothing active or waiting completes."""
        done = engine.advance(instance(Linear, completed=[A, B, Done]))
        assert Status.COMPLETED == done.status

    def test_running_with_a_waiting_step_waits(self) -> None:
        """A running instance with nothing active but a waiting step waits."""
        parked = engine.advance(instance(Parked, waiting=[Hold]))
        assert Status.WAITING == parked.status

    def test_busy_instance_is_returned_unchanged(self) -> None:
        """A running instance with active steps is returned as is."""
        busy = instance(Linear, active=[A])
        assert busy is engine.advance(busy)

    @pytest.mark.parametrize(
        "status", [Status.WAITING, Status.COMPLETED, Status.FAILED, Status.CANCELLED]
    )
    def test_other_statuses_are_returned_unchanged(self, status: Status) -> None:
        """Waiting and terminal instances are returned as is."""
        parked = instance(Parked, status, waiting=[Hold])
        assert parked is engine.advance(parked)


class TestApplyOk:
    """apply_result with Ok."""

    def test_updates_land_under_the_step_key(self) -> None:
        """Updates land in context.steps[step_key], next to earlier ones."""
        start = instance(
            Linear, context=Context({"n": 1}, {"z": {"old": True}}), active=[A], current_step=A
        )
        applied = engine.apply_result(start, A, Ok("ok", {"count": 3}), now=NOW)
        assert (
            Context({"n": 1}, {"z": {"old": True}, "a": {"count": 3}}) == applied.instance.context
        )

    def test_no_updates_leave_the_context(self) -> None:
        """Without updates the context is the same object."""
        start = instance(Linear, active=[A])
        assert start.context is engine.apply_result(start, A, Ok("ok"), now=NOW).instance.context

    def test_metadata_merges(self) -> None:
        """Metadata merges into runtime_metadata, the newer value winning."""
        start = instance(Linear, active=[A], runtime_metadata={"a": 1, "b": 1})
        applied = engine.apply_result(start, A, Ok("ok", None, {"b": 2, "c": 3}), now=NOW)
        assert {"a": 1, "b": 2, "c": 3} == applied.instance.runtime_metadata

    def test_empty_metadata_changes_nothing(self) -> None:
        """Empty metadata leaves runtime_metadata alone."""
        start = instance(Linear, active=[A], runtime_metadata={"a": 1})
        applied = engine.apply_result(start, A, Ok("ok", None, {}), now=NOW)
        assert start.runtime_metadata is applied.instance.runtime_metadata

    def test_history(self) -> None:
        """An ExecutionEntry with the step, event, time and updates is appended."""
        earlier = ExecutionEntry(Split, "go", 1)
        start = instance(Linear, active=[A], execution_history=(earlier,))
        applied = engine.apply_result(start, A, Ok("ok", {"x": 1}), now=NOW)
        assert (
            earlier,
            ExecutionEntry(A, "ok", NOW, {"x": 1}),
        ) == applied.instance.execution_history

    def test_bookkeeping(self) -> None:
        """The step completes, its successor becomes active and current."""
        applied = engine.apply_result(
            instance(Linear, active=[A], current_step=A), A, Ok("ok"), now=NOW
        )
        new = applied.instance
        assert (frozenset({A}), frozenset({B}), B, Status.RUNNING) == (
            new.completed_steps,
            new.active_steps,
            new.current_step,
            new.status,
        )
        assert ((B,), (B,)) == (applied.targets, applied.activated)

    def test_applied_is_a_named_tuple(self) -> None:
        """Applied unpacks as (instance, targets, activated)."""
        applied = engine.apply_result(instance(Linear, active=[A]), A, Ok("ok"), now=NOW)
        new, targets, activated = applied
        assert Applied(new, targets, activated) == applied

    def test_edge_config(self) -> None:
        """A target's config from the edge lands in step_configs."""
        applied = engine.apply_result(instance(Configured, active=[A]), A, Ok("ok"), now=NOW)
        assert {B: {"n": 1}} == applied.instance.step_configs

    def test_done_completes(self) -> None:
        """Done completing the last active step completes the instance, leading nowhere."""
        start = instance(Linear, active=[Done], completed=[A, B], current_step=Done)
        applied = engine.apply_result(start, Done, Ok("done"), now=NOW)
        assert (Status.COMPLETED, (), (), Done) == (
            applied.instance.status,
            applied.targets,
            applied.activated,
            applied.instance.current_step,
        )

    def test_status_stays_running_while_others_run(self) -> None:
        """The instance keeps running while a sibling is active."""
        start = instance(FanIn, active=[B, C, D])
        assert Status.RUNNING == engine.apply_result(start, B, Ok("ok"), now=NOW).instance.status

    def test_status_waits_when_only_a_waiting_step_is_left(self) -> None:
        """When the last active step completes and another waits, the instance waits."""
        start = instance(Parked, active=[B], waiting=[Hold], completed=[A])
        applied = engine.apply_result(start, B, Ok("ok"), now=NOW)
        assert (Status.WAITING, frozenset(), ()) == (
            applied.instance.status,
            applied.instance.active_steps,
            applied.activated,
        )

    def test_undeclared_event(self) -> None:
        """An event the step does not declare raises UndeclaredEvent naming step and event."""
        with pytest.raises(
            UndeclaredEvent, match=exact("step A does not declare event 'okay'; it declares 'ok'")
        ) as info:
            engine.apply_result(instance(Linear, active=[A]), A, Ok("okay"), now=NOW)
        assert ("A", "okay", ("ok",)) == (info.value.step, info.value.event, info.value.declared)

    def test_undeclared_event_of_done(self) -> None:
        """Done declares only "done"."""
        with pytest.raises(UndeclaredEvent, match="step Done does not declare event 'finished'"):
            engine.apply_result(instance(Linear, active=[Done]), Done, Ok("finished"), now=NOW)

    @pytest.mark.parametrize("event", [["ok"], 1, None])
    def test_non_string_event(self, event: Any) -> None:
        """An event that is not a string, even an unhashable one, is undeclared."""
        with pytest.raises(
            UndeclaredEvent, match=f"step A does not declare event {re.escape(repr(event))}"
        ):
            engine.apply_result(instance(Linear, active=[A]), A, Ok(event), now=NOW)

    @pytest.mark.parametrize("result", ["ok", None, ("ok",), Ok])
    def test_not_a_result(self, result: Any) -> None:
        """A value that is not Ok, Async or Error raises InvalidStepResult naming step and value."""
        message = f"step A returned {result!r}, which is not Ok, Async or Error"
        with pytest.raises(InvalidStepResult, match=exact(message)):
            engine.apply_result(instance(Linear, active=[A]), A, result, now=NOW)

    def test_updates_not_a_dict(self) -> None:
        """Updates that are not a mapping raise InvalidStepResult."""
        message = "step A returned updates that are not a dict: [('x', 1)]"
        with pytest.raises(InvalidStepResult, match=exact(message)):
            engine.apply_result(instance(Linear, active=[A]), A, Ok("ok", [("x", 1)]), now=NOW)  # type: ignore[arg-type]

    def test_metadata_not_a_dict(self) -> None:
        """Metadata that is not a mapping raises InvalidStepResult."""
        message = "step A returned metadata that is not a dict: ['m']"
        with pytest.raises(InvalidStepResult, match=exact(message)):
            engine.apply_result(instance(Linear, active=[A]), A, Ok("ok", None, ["m"]), now=NOW)  # type: ignore[arg-type]


class TestApplyAsync:
    """apply_result with Async."""

    def test_parks(self) -> None:
        """The step leaves active for waiting; with nothing else active the instance waits."""
        start = instance(Parked, active=[Hold], completed=[A, B])
        new = engine.apply_result(start, Hold, Async(), now=NOW).instance
        assert (Status.WAITING, frozenset(), frozenset({Hold}), {}) == (
            new.status,
            new.active_steps,
            new.waiting_steps,
            new.timers,
        )

    def test_applied_is_empty(self) -> None:
        """Parking leads nowhere and activates nothing."""
        applied = engine.apply_result(instance(Parked, active=[Hold]), Hold, Async(), now=NOW)
        assert ((), ()) == (applied.targets, applied.activated)

    def test_running_while_others_are_active(self) -> None:
        """The instance keeps running while another step is active."""
        start = instance(Parked, active=[Hold, B], completed=[A])
        assert Status.RUNNING == engine.apply_result(start, Hold, Async(), now=NOW).instance.status

    def test_wait_sets_a_timer(self) -> None:
        """Wait parks with a timer due at now plus its delay, in nanoseconds."""
        start = instance(Waiting, active=[Wait], step_configs={Wait: {"seconds": 1.5}})
        new = engine.apply_result(start, Wait, Async(), now=NOW).instance
        assert {Wait: Timer(NOW + 1_500_000_000, "timeout")} == new.timers

    def test_wait_for_event_with_timeout_sets_a_timer(self) -> None:
        """WaitForEvent with a timeout parks with a timer."""
        start = instance(
            TimedEvent, active=[WaitForEvent], step_configs={WaitForEvent: {"timeout": 2}}
        )
        new = engine.apply_result(start, WaitForEvent, Async(), now=NOW).instance
        assert {WaitForEvent: Timer(NOW + 2_000_000_000)} == new.timers

    def test_wait_for_event_without_timeout_sets_none(self) -> None:
        """WaitForEvent without a timeout parks without a timer."""
        start = instance(Event, active=[WaitForEvent])
        assert {} == engine.apply_result(start, WaitForEvent, Async(), now=NOW).instance.timers

    def test_timers_of_others_are_kept(self) -> None:
        """Parking adds a timer next to the existing ones."""
        other = Timer(NOW + 1)
        start = instance(
            Waiting, active=[Wait], step_configs={Wait: {"seconds": 1}}, timers={Hold: other}
        )
        new = engine.apply_result(start, Wait, Async(), now=NOW).instance
        assert {Hold: other, Wait: Timer(NOW + 1_000_000_000)} == new.timers


class TestApplyError:
    """apply_result with Error."""

    def test_fails(self) -> None:
        """The instance fails with the step and reason; nothing stays active, waiting or timed."""
        start = instance(
            Parked,
            active=[B],
            waiting=[Hold],
            completed=[A],
            timers={Hold: Timer(NOW)},
        )
        applied = engine.apply_result(start, B, Error("card declined"), now=NOW)
        new = applied.instance
        assert (Status.FAILED, Failure(B, "error", "card declined")) == (new.status, new.error)
        assert (frozenset(), frozenset(), {}) == (new.active_steps, new.waiting_steps, new.timers)
        assert ((), ()) == (applied.targets, applied.activated)

    def test_keeps_the_record(self) -> None:
        """A failure keeps what completed and the history."""
        history = (ExecutionEntry(A, "ok", 1),)
        start = instance(Linear, active=[B], completed=[A], execution_history=history)
        new = engine.apply_result(start, B, Error("x"), now=NOW).instance
        assert (frozenset({A}), history) == (new.completed_steps, new.execution_history)


class TestCheckResult:
    """check_result(instance, step, result): the checks apply_result makes, alone."""

    @pytest.mark.parametrize(
        "result", [Ok("ok"), Ok("ok", {"a": 1}, {"m": 1}), Async(), Error("x")]
    )
    def test_accepts_results(self, result: Any) -> None:
        """A well-formed result passes."""
        assert None is engine.check_result(instance(Linear, active=[A]), A, result)

    def test_undeclared_event(self) -> None:
        """An undeclared event raises UndeclaredEvent."""
        with pytest.raises(UndeclaredEvent, match="step A does not declare event 'nope'"):
            engine.check_result(instance(Linear, active=[A]), A, Ok("nope"))

    @pytest.mark.parametrize(
        ("result", "message"),
        [
            ("ok", "step A returned 'ok', which is not Ok, Async or Error"),
            (Ok("ok", 5), "step A returned updates that are not a dict: 5"),  # type: ignore[arg-type]
            (Ok("ok", None, "m"), "step A returned metadata that are not a dict: 'm'"),  # type: ignore[arg-type]
        ],
    )
    def test_invalid(self, result: Any, message: str) -> None:
        """A value that is no result, or non-dict updates or metadata, raises InvalidStepResult."""
        with pytest.raises(InvalidStepResult, match=exact(message)):
            engine.check_result(instance(Linear, active=[A]), A, result)


class TestRoutes:
    """A Route chooses at run time; what it does not choose is ruled out."""

    def test_chooses_one(self) -> None:
        """A route choosing one step activates it alone."""
        applied = engine.apply_result(routed(B), A, Ok("ok"), now=NOW)
        assert ((B,), (B,), frozenset({B})) == (
            applied.targets,
            applied.activated,
            applied.instance.active_steps,
        )

    def test_chooses_a_list(self) -> None:
        """A route choosing a list activates each, with its config."""
        applied = engine.apply_result(routed([C, B]), A, Ok("ok"), now=NOW)
        assert ((C, B), (B, C)) == (applied.targets, applied.activated)
        assert {C: {"x": 1}} == applied.instance.step_configs

    def test_a_repeated_choice_counts_once(self) -> None:
        """A step chosen twice is activated once."""
        applied = engine.apply_result(routed([B, B]), A, Ok("ok"), now=NOW)
        assert ((B,), (B,)) == (applied.targets, applied.activated)

    def test_unchosen_targets_are_ruled_out(self) -> None:
        """The join after a route fires once the chosen branch completes."""
        after_a = engine.apply_result(routed(C), A, Ok("ok"), now=NOW).instance
        assert {Join: (1, False)} == after_a.pending_joins
        applied = engine.apply_result(after_a, C, Ok("ok"), now=NOW)
        assert ((Join,), frozenset({Join}), {}) == (
            applied.activated,
            applied.instance.active_steps,
            applied.instance.pending_joins,
        )

    def test_a_step_it_does_not_name(self) -> None:
        """Choosing a step the route does not name raises RouteError naming both."""
        message = f"the route after A chose {D!r}, which is not one of its targets (B, C)"
        with pytest.raises(RouteError, match=exact(message)):
            engine.apply_result(routed(D), A, Ok("ok"), now=NOW)

    def test_an_empty_choice(self) -> None:
        """Choosing nothing raises RouteError."""
        with pytest.raises(RouteError, match=exact("the route after A chose no step")):
            engine.apply_result(routed([]), A, Ok("ok"), now=NOW)

    @pytest.mark.parametrize("choice", [None, 3, [{"step": "B"}]])
    def test_not_a_step(self, choice: Any) -> None:
        """Choosing something that is neither a step nor a list of steps raises RouteError."""
        message = f"the route after A chose {choice!r}, which is not a step or a list of steps"
        with pytest.raises(RouteError, match=exact(message)):
            engine.apply_result(routed(choice), A, Ok("ok"), now=NOW)

    def test_chooser_reads_the_updated_context(self) -> None:
        """The chooser sees the context with the step's own updates."""

        def by_update(context: Context) -> type[Step]:
            return B if context.steps["a"]["fast"] else C

        Flow = make_workflow(
            "Flow", A, {A: {"ok": Route(by_update, [B, C])}, B: {"ok": Done}, C: {"ok": Done}}
        )
        applied = engine.apply_result(
            instance(Flow, active=[A]), A, Ok("ok", {"fast": True}), now=NOW
        )
        assert (B,) == applied.activated


class TestJoins:
    """Joins with dead-path elimination."""

    def test_exclusive_branches_then_a_shared_step(self) -> None:
        """A step shared by exclusive branches runs after the branch taken."""
        after_pick = engine.apply_result(
            instance(Exclusive, active=[Pick]), Pick, Ok("left"), now=NOW
        )
        assert ((B,), frozenset({B}), {Join: (1, False)}) == (
            after_pick.activated,
            after_pick.instance.active_steps,
            after_pick.instance.pending_joins,
        )
        after_b = engine.apply_result(after_pick.instance, B, Ok("ok"), now=NOW)
        assert ((Join,), frozenset({Join})) == (after_b.activated, after_b.instance.active_steps)

    def test_fan_in_waits_for_every_branch(self) -> None:
        """A fan-in over three branches activates only when the third completes."""
        start = engine.apply_result(instance(FanIn, active=[Split]), Split, Ok("go"), now=NOW)
        assert frozenset({B, C, D}) == start.instance.active_steps
        after_b = engine.apply_result(start.instance, B, Ok("ok"), now=NOW)
        after_c = engine.apply_result(after_b.instance, C, Ok("ok"), now=NOW)
        after_d = engine.apply_result(after_c.instance, D, Ok("ok"), now=NOW)
        assert [(), (), (Join,)] == [a.activated for a in (after_b, after_c, after_d)]
        assert [{Join: (1, True)}, {Join: (2, True)}, {}] == [
            a.instance.pending_joins for a in (after_b, after_c, after_d)
        ]
        assert [Status.RUNNING, Status.RUNNING, Status.RUNNING] == [
            a.instance.status for a in (after_b, after_c, after_d)
        ]

    def test_fan_in_in_any_order(self) -> None:
        """The join fires on the last branch whatever the order."""
        start = engine.apply_result(instance(FanIn, active=[Split]), Split, Ok("go"), now=NOW)
        current = start.instance
        activated = []
        for step in (D, B, C):
            applied = engine.apply_result(current, step, Ok("ok"), now=NOW)
            activated.append(applied.activated)
            current = applied.instance
        assert [(), (), (Join,)] == activated

    def test_dead_path_across_two_levels(self) -> None:
        """A ruled-out branch two steps long still lets the join fire."""
        after_pick = engine.apply_result(
            instance(TwoLevels, active=[Pick]), Pick, Ok("left"), now=NOW
        )
        assert {Join: (1, False)} == after_pick.instance.pending_joins
        after_b = engine.apply_result(after_pick.instance, B, Ok("ok"), now=NOW)
        assert (Join,) == after_b.activated
        final = drive(after_b.instance, [(Join, Ok("ok")), (Done, Ok("done"))])
        assert Status.COMPLETED == final.status
        assert [Pick, B, Join, Done] == [e.step for e in final.execution_history]

    def test_the_long_branch(self) -> None:
        """Taking the two-step branch rules out the short one; the join waits for D."""
        final = drive(
            instance(TwoLevels, active=[Pick]),
            [
                (Pick, Ok("right")),
                (C, Ok("ok")),
                (D, Ok("ok")),
                (Join, Ok("ok")),
                (Done, Ok("done")),
            ],
        )
        assert Status.COMPLETED == final.status
        assert frozenset({Pick, C, D, Join, Done}) == final.completed_steps

    @pytest.mark.parametrize(("event", "branch", "via"), [("left", B, "b"), ("right", C, "c")])
    def test_join_config_comes_from_the_live_edge(
        self, event: str, branch: type[Step], via: str
    ) -> None:
        """A join's config is the one on the edge that was taken."""
        after_pick = engine.apply_result(
            instance(JoinConfig, active=[Pick]), Pick, Ok(event), now=NOW
        )
        after = engine.apply_result(after_pick.instance, branch, Ok("ok"), now=NOW)
        assert {Join: {"via": via}} == after.instance.step_configs

    def test_join_waits_for_a_parked_branch(self) -> None:
        """A join after a parked step fires only when that step is resumed."""
        start = instance(Parked, active=[Hold, B], completed=[A])
        parked = engine.apply_result(start, Hold, Async(), now=NOW).instance
        after_b = engine.apply_result(parked, B, Ok("ok"), now=NOW)
        assert ((), Status.WAITING) == (after_b.activated, after_b.instance.status)
        resumed = engine.resume_step(after_b.instance, Hold, "ok", now=NOW)
        assert ((Join,), Status.RUNNING) == (resumed.activated, resumed.instance.status)


class TestResumeStep:
    """resume_step(instance, step, event, now=)."""

    def parked(self) -> Instance:
        return instance(
            TimedEvent,
            Status.WAITING,
            waiting=[WaitForEvent],
            completed=[A],
            step_configs={WaitForEvent: {"timeout": 2}},
            timers={WaitForEvent: Timer(NOW + 2_000_000_000)},
            current_step=WaitForEvent,
        )

    def test_completes_and_activates(self) -> None:
        """The waiting step completes with the event and its successors activate."""
        applied = engine.resume_step(self.parked(), WaitForEvent, "received", now=NOW)
        new = applied.instance
        assert (Status.RUNNING, frozenset({B}), frozenset(), B) == (
            new.status,
            new.active_steps,
            new.waiting_steps,
            new.current_step,
        )
        assert frozenset({A, WaitForEvent}) == new.completed_steps
        assert ((B,), (B,)) == (applied.targets, applied.activated)
        assert ExecutionEntry(WaitForEvent, "received", NOW) == new.execution_history[-1]

    def test_removes_its_timer(self) -> None:
        """The resumed step's timer is gone; other timers stay."""
        other = Timer(NOW + 5)
        start = attrs.evolve(self.parked(), timers={**self.parked().timers, Hold: other})
        applied = engine.resume_step(start, WaitForEvent, "received", now=NOW)
        assert {Hold: other} == applied.instance.timers

    def test_timeout_event(self) -> None:
        """A WaitForEvent with a timeout may be resumed with "timeout"."""
        applied = engine.resume_step(self.parked(), WaitForEvent, "timeout", now=NOW)
        assert (Done,) == applied.targets

    def test_not_waiting_step(self) -> None:
        """Resuming a step that does not wait raises NotWaiting naming instance and step."""
        message = "instance 'i-1' (waiting) has no waiting step B"
        with pytest.raises(NotWaiting, match=exact(message)):
            engine.resume_step(self.parked(), B, "ok", now=NOW)

    @pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
    def test_terminal_instance(self, status: Status) -> None:
        """A terminal instance cannot be resumed, whatever it holds."""
        with pytest.raises(NotWaiting, match=f"\\({status}\\) has no waiting step WaitForEvent"):
            engine.resume_step(
                attrs.evolve(self.parked(), status=status), WaitForEvent, "received", now=NOW
            )

    def test_undeclared_event(self) -> None:
        """An event the step does not declare raises UndeclaredEvent."""
        with pytest.raises(
            UndeclaredEvent, match="step WaitForEvent does not declare event 'late'"
        ):
            engine.resume_step(self.parked(), WaitForEvent, "late", now=NOW)

    def test_timeout_without_a_timeout(self) -> None:
        """WaitForEvent without a timeout does not declare "timeout"."""
        start = instance(Event, Status.WAITING, waiting=[WaitForEvent], completed=[A])
        message = "step WaitForEvent does not declare event 'timeout'; it declares 'received'"
        with pytest.raises(UndeclaredEvent, match=exact(message)):
            engine.resume_step(start, WaitForEvent, "timeout", now=NOW)

    def test_event_declared_by_the_config_but_not_the_workflow(self) -> None:
        """A resume needs the event in this workflow's definition too."""
        start = instance(
            Event,
            Status.WAITING,
            waiting=[WaitForEvent],
            step_configs={WaitForEvent: {"timeout": 1}},
        )
        with pytest.raises(UndeclaredEvent, match="does not declare event 'timeout'"):
            engine.resume_step(start, WaitForEvent, "timeout", now=NOW)

    def test_resume_to_done_completes(self) -> None:
        """Resuming the last step into Done, then Done, completes the instance."""
        start = instance(Event, Status.WAITING, waiting=[WaitForEvent], completed=[A])
        resumed = engine.resume_step(start, WaitForEvent, "received", now=NOW).instance
        final = drive(resumed, [(Done, Ok("done"))])
        assert Status.COMPLETED == final.status


class TestCompleteStep:
    """complete_step(instance, step, event, updates, metadata, now=)."""

    def test_completes_an_active_step(self) -> None:
        """The step completes with its updates, metadata and history; nothing activates."""
        start = instance(Linear, active=[A])
        new = engine.complete_step(start, A, "ok", {"x": 1}, {"m": 2}, now=NOW)
        assert (frozenset(), frozenset({A}), Status.RUNNING) == (
            new.active_steps,
            new.completed_steps,
            new.status,
        )
        assert (Context({}, {"a": {"x": 1}}), {"m": 2}) == (new.context, new.runtime_metadata)
        assert (ExecutionEntry(A, "ok", NOW, {"x": 1}),) == new.execution_history

    def test_completes_a_waiting_step(self) -> None:
        """A waiting step completes and its timer is removed."""
        start = instance(
            Waiting,
            Status.WAITING,
            waiting=[Wait],
            step_configs={Wait: {"seconds": 1}},
            timers={Wait: Timer(NOW)},
        )
        new = engine.complete_step(start, Wait, "timeout", now=NOW)
        assert (frozenset(), frozenset({Wait}), {}, Status.WAITING) == (
            new.waiting_steps,
            new.completed_steps,
            new.timers,
            new.status,
        )

    def test_neither_active_nor_waiting(self) -> None:
        """Completing a step that is neither active nor waiting raises NotWaiting."""
        message = "instance 'i-1': step B is neither active nor waiting"
        with pytest.raises(NotWaiting, match=exact(message)):
            engine.complete_step(instance(Linear, active=[A]), B, "ok", now=NOW)

    def test_undeclared_event(self) -> None:
        """An undeclared event raises UndeclaredEvent."""
        with pytest.raises(UndeclaredEvent, match="step A does not declare event 'no'"):
            engine.complete_step(instance(Linear, active=[A]), A, "no", now=NOW)


class TestActivateTransitions:
    """activate_transitions(instance, step, event)."""

    def test_activates_targets(self) -> None:
        """The event's targets become active with their configs; the status is unchanged."""
        start = engine.complete_step(instance(Configured, active=[A]), A, "ok", now=NOW)
        applied = engine.activate_transitions(start, A, "ok")
        new = applied.instance
        assert (frozenset({B}), B, {B: {"n": 1}}, Status.RUNNING) == (
            new.active_steps,
            new.current_step,
            new.step_configs,
            new.status,
        )
        assert ((B,), (B,)) == (applied.targets, applied.activated)

    def test_fan_out(self) -> None:
        """A fan-out activates every branch, in definition order."""
        start = engine.complete_step(instance(FanIn, active=[Split]), Split, "go", now=NOW)
        applied = engine.activate_transitions(start, Split, "go")
        assert ((B, C, D), frozenset({B, C, D}), D) == (
            applied.activated,
            applied.instance.active_steps,
            applied.instance.current_step,
        )

    def test_done_leads_nowhere(self) -> None:
        """Done activates nothing and leaves the instance as it was."""
        start = instance(Linear, completed=[A, B, Done], current_step=Done)
        applied = engine.activate_transitions(start, Done, "done")
        assert (start, (), ()) == (applied.instance, applied.targets, applied.activated)

    def test_join_pending(self) -> None:
        """A join that still waits activates nothing and keeps its count."""
        start = instance(FanIn, active=[C, D], completed=[Split, B], current_step=D)
        applied = engine.activate_transitions(start, B, "ok")
        assert ((Join,), (), {Join: (1, True)}, D) == (
            applied.targets,
            applied.activated,
            applied.instance.pending_joins,
            applied.instance.current_step,
        )

    def test_undeclared_event(self) -> None:
        """An undeclared event raises UndeclaredEvent."""
        with pytest.raises(UndeclaredEvent):
            engine.activate_transitions(instance(Linear), A, "nope")


class TestCheckCompletion:
    """check_completion(instance)."""

    def test_completes(self) -> None:
        """A running instance with nothing active or waiting completes."""
        assert Status.COMPLETED == engine.check_completion(instance(Linear)).status

    def test_waits(self) -> None:
        """A running instance with only waiting steps waits."""
        assert Status.WAITING == engine.check_completion(instance(Parked, waiting=[Hold])).status

    def test_active_is_unchanged(self) -> None:
        """A running instance with active steps is returned as is."""
        busy = instance(Linear, active=[A])
        assert busy is engine.check_completion(busy)

    @pytest.mark.parametrize(
        "status", [Status.PENDING, Status.WAITING, Status.FAILED, Status.CANCELLED]
    )
    def test_not_running_is_unchanged(self, status: Status) -> None:
        """An instance that is not running is returned as is."""
        other = instance(Linear, status)
        assert other is engine.check_completion(other)


class TestFailStep:
    """fail_step(instance, step, kind, reason)."""

    def test_fails(self) -> None:
        """The instance fails: nothing active, waiting or timed; the failure recorded."""
        start = instance(
            Parked, active=[B], waiting=[Hold], completed=[A], timers={Hold: Timer(NOW)}
        )
        failed = engine.fail_step(start, B, "exception", ValueError("boom"))
        assert (Status.FAILED, frozenset(), frozenset(), {}) == (
            failed.status,
            failed.active_steps,
            failed.waiting_steps,
            failed.timers,
        )
        assert failed.error is not None
        assert (B, "exception", "boom") == (
            failed.error.step,
            failed.error.kind,
            str(failed.error.reason),
        )
        assert frozenset({A}) == failed.completed_steps


class TestCancel:
    """cancel(instance)."""

    def test_cancels(self) -> None:
        """The instance is cancelled: nothing active, waiting or timed; the record kept."""
        history = (ExecutionEntry(A, "ok", 1),)
        start = instance(
            Parked,
            active=[B],
            waiting=[Hold],
            completed=[A],
            timers={Hold: Timer(NOW)},
            execution_history=history,
        )
        cancelled = engine.cancel(start)
        assert (Status.CANCELLED, frozenset(), frozenset(), {}) == (
            cancelled.status,
            cancelled.active_steps,
            cancelled.waiting_steps,
            cancelled.timers,
        )
        assert (frozenset({A}), history, None) == (
            cancelled.completed_steps,
            cancelled.execution_history,
            cancelled.error,
        )


class TestScheduleTimer:
    """schedule_timer(instance, step, due, event)."""

    def test_schedules(self) -> None:
        """A waiting step gets a timer with the given due time and event."""
        start = instance(Parked, Status.WAITING, waiting=[Hold])
        assert {Hold: Timer(NOW, "ok")} == engine.schedule_timer(start, Hold, NOW, "ok").timers

    def test_default_event(self) -> None:
        """The event defaults to "timeout"."""
        start = instance(
            Waiting, Status.WAITING, waiting=[Wait], step_configs={Wait: {"seconds": 1}}
        )
        assert {Wait: Timer(NOW, "timeout")} == engine.schedule_timer(start, Wait, NOW).timers

    def test_replaces_an_earlier_timer(self) -> None:
        """A new timer for the same step replaces the old one."""
        start = instance(Parked, Status.WAITING, waiting=[Hold], timers={Hold: Timer(1, "ok")})
        assert {Hold: Timer(NOW, "ok")} == engine.schedule_timer(start, Hold, NOW, "ok").timers

    def test_not_waiting(self) -> None:
        """A step that does not wait cannot be timed."""
        with pytest.raises(
            NotWaiting, match=exact("instance 'i-1' (running) has no waiting step B")
        ):
            engine.schedule_timer(instance(Parked, active=[B]), B, NOW, "ok")

    def test_terminal(self) -> None:
        """A terminal instance cannot be timed."""
        start = instance(Parked, Status.CANCELLED, waiting=[Hold])
        with pytest.raises(NotWaiting):
            engine.schedule_timer(start, Hold, NOW, "ok")

    def test_undeclared_event(self) -> None:
        """A timer's event must be one the step declares."""
        start = instance(Event, Status.WAITING, waiting=[WaitForEvent])
        with pytest.raises(
            UndeclaredEvent, match="step WaitForEvent does not declare event 'timeout'"
        ):
            engine.schedule_timer(start, WaitForEvent, NOW)


class TestWholeRuns:
    """Whole runs, folded by hand."""

    def test_linear(self) -> None:
        """A -> B -> Done completes with all three in the history, in order."""
        final = drive(
            engine.advance(instance(Linear, Status.PENDING)),
            [(A, Ok("ok")), (B, Ok("ok")), (Done, Ok("done"))],
        )
        assert (Status.COMPLETED, [A, B, Done]) == (
            final.status,
            [e.step for e in final.execution_history],
        )

    def test_wait(self) -> None:
        """A Wait parks with its timer; resumed with "timeout" the run completes."""
        started = engine.advance(instance(Waiting, Status.PENDING))
        parked = drive(started, [(A, Ok("ok")), (Wait, Async())])
        assert (Status.WAITING, {Wait: Timer(NOW + 1_500_000_000)}) == (
            parked.status,
            parked.timers,
        )
        resumed = engine.resume_step(parked, Wait, "timeout", now=NOW).instance
        assert {} == resumed.timers
        final = drive(resumed, [(Done, Ok("done"))])
        assert Status.COMPLETED == final.status


# ---------------------------------------------------------------- maps

MPlan = make_step("MPlan", "planned")
MItem = make_step("MItem", "ok", "skip")
MNext = make_step("MNext", "done")
MOther = make_step("MOther", "done")
MAPPED = make_workflow(
    "Mapped",
    MPlan,
    {
        MPlan: {"planned": Map(MItem, items=lambda ctx: ctx.initial["items"], empty="ok")},
        MItem: {"ok": MNext, "skip": MOther},
        MNext: {"done": Done},
        MOther: {"done": Done},
    },
)


def mapped(items: list[Any]) -> Instance:
    """An instance of MAPPED whose map just started over ``items``."""
    start = instance(MAPPED, Status.PENDING, context=Context({"items": items}))
    started = engine.advance(start)
    return engine.apply_result(started, MPlan, Ok("planned"), now=1).instance


class TestMaps:
    def test_activation_computes_the_items(self) -> None:
        """The mapped step is active, with its items and nothing done."""
        instance = mapped(["a", "b"])
        assert frozenset({MItem}) == instance.active_steps
        assert (("a", "b"), 0, 0) == (
            instance.maps[MItem].items,
            instance.maps[MItem].done,
            instance.maps[MItem].done_count,
        )

    def test_an_item_is_folded_alone(self) -> None:
        """One item done: its entry in the history, its bit set, nothing activated yet."""
        applied = engine.apply_item_result(mapped(["a", "b"]), MItem, 1, Ok("ok", {"v": 1}), now=2)
        state = applied.instance.maps[MItem]
        assert ((), True, False) == (applied.activated, state.is_done(1), state.is_done(0))
        assert (MItem, "ok", {"v": 1}, 1) == (
            applied.instance.execution_history[-1].step,
            applied.instance.execution_history[-1].event,
            applied.instance.execution_history[-1].updates,
            applied.instance.execution_history[-1].item,
        )

    def test_the_last_item_completes_the_map(self) -> None:
        """Both items done: results in item order, both successors live, the map gone."""
        first = engine.apply_item_result(mapped(["a", "b"]), MItem, 1, Ok("skip"), now=2)
        last = engine.apply_item_result(first.instance, MItem, 0, Ok("ok", {"v": 0}), now=3)
        instance = last.instance
        assert (MNext, MOther) == last.activated
        assert {"items": [{"v": 0}, {}], "events": ["ok", "skip"]} == instance.context.steps[
            "m_item"
        ]
        assert ({}, True) == (instance.maps, MItem in instance.completed_steps)

    def test_an_item_folded_twice_is_refused(self) -> None:
        """A done item (or one that does not exist) is refused; nothing changes."""
        once = engine.apply_item_result(mapped(["a", "b"]), MItem, 0, Ok("ok"), now=2).instance
        with pytest.raises(NotWaiting, match="item 0 of MItem is done already"):
            engine.apply_item_result(once, MItem, 0, Ok("ok"), now=3)
        with pytest.raises(NotWaiting, match="item 5 of MItem"):
            engine.apply_item_result(once, MItem, 5, Ok("ok"), now=3)

    def test_an_item_cannot_park(self) -> None:
        with pytest.raises(InvalidStepResult, match="cannot park"):
            engine.apply_item_result(mapped(["a"]), MItem, 0, Async(), now=2)

    def test_an_undeclared_event_is_refused(self) -> None:
        with pytest.raises(UndeclaredEvent):
            engine.apply_item_result(mapped(["a"]), MItem, 0, Ok("nope"), now=2)

    def test_an_error_fails_the_instance_naming_the_item(self) -> None:
        applied = engine.apply_item_result(mapped(["a", "b"]), MItem, 1, Error("bad"), now=2)
        assert Failure(MItem, "error", "bad", 1) == applied.instance.error
        assert ({}, frozenset()) == (applied.instance.maps, applied.instance.active_steps)

    def test_an_empty_map_completes_at_once_with_its_empty_event(self) -> None:
        """No items: MNext (the 'ok' edge) activates; MOther is ruled out."""
        instance = mapped([])
        assert frozenset({MNext}) == instance.active_steps
        assert {"items": [], "events": []} == instance.context.steps["m_item"]

    def test_items_that_raise_are_a_map_error(self) -> None:
        started = engine.advance(instance(MAPPED, Status.PENDING))
        with pytest.raises(MapError, match=r"the items of Map\(MItem\) raised KeyError\('items'\)"):
            engine.apply_result(started, MPlan, Ok("planned"), now=1)
