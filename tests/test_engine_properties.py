"""Engine invariants over random workflows (hypothesis).

Valid workflows are built as random series-parallel DAGs: sequences,
exclusive branches, static fan-outs converging on a join, routes, and steps
that park. A tiny synchronous driver runs each to its end and checks, at
every fold, the invariants of DESIGN.md. Malformed workflows always raise
WorkflowDefinitionError, never anything else.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hephaestus import (
    Async,
    Context,
    Done,
    Instance,
    Ok,
    Route,
    Status,
    Step,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus.core import engine

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Draw = Callable[[st.SearchStrategy[Any]], Any]


# --------------------------------------------------------------------------- generated steps


def _execute(self: Step, instance: Instance, config: Any, context: Context) -> Any:
    """Every generated step: park if it parks, else take the event chosen for this instance."""
    cls = type(self)
    if cls.parks:  # type: ignore[attr-defined]
        return Async()
    index = context.initial["choices"].get(cls.step_key, 0)
    return Ok(cls.events[index], {"config": config})


def _chooser(key: str, targets: list[type[Step]]) -> Callable[[Context], Any]:
    def choose(context: Context) -> Any:
        picked = [targets[i] for i in sorted(context.initial["routes"][key])]
        return picked[0] if len(picked) == 1 else picked

    return choose


class Builder:
    """Draws a random valid workflow, block by block, from the end (Done) backwards."""

    MAX_STEPS = 24
    MAX_DEPTH = 3

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.transitions: dict[type[Step], dict[str, Any]] = {}
        self.steps: list[type[Step]] = []
        self.choices: dict[str, int] = {}  # step key -> number of events to choose from
        self.routes: dict[str, int] = {}  # step key -> number of route targets
        self.configs: dict[type[Step], Any] = {}  # the config each step runs with

    def new_step(self, events: tuple[str, ...], *, parks: bool = False) -> type[Step]:
        name = f"S{len(self.steps)}"
        step = type(name, (Step,), {"events": events, "execute": _execute, "parks": parks})
        self.steps.append(step)
        if len(events) > 1:
            self.choices[step.step_key] = len(events)
        return step

    def entry(self, step: type[Step]) -> Any:
        """The step, or (step, config) as its targets will name it."""
        if self.draw(st.booleans()):
            config = {"at": step.step_key}
            self.configs[step] = config
            return (step, config)
        return step

    def chain(self, after: Any, depth: int) -> Any:
        spec = after
        for _ in range(self.draw(st.integers(1, 2))):
            spec = self.block(spec, depth)
        return spec

    def block(self, after: Any, depth: int) -> Any:
        kinds = ["sequence", "park"]
        if depth < self.MAX_DEPTH and len(self.steps) < self.MAX_STEPS:
            kinds += ["choice", "fan_out", "route"]
        kind = self.draw(st.sampled_from(kinds))
        if kind == "sequence":
            step = self.new_step(("ok",))
            self.transitions[step] = {"ok": after}
        elif kind == "park":
            events = ("ok", "other")[: self.draw(st.integers(1, 2))]
            step = self.new_step(events, parks=True)
            self.transitions[step] = dict.fromkeys(events, after)
        elif kind == "choice":
            events = tuple(f"e{i}" for i in range(self.draw(st.integers(2, 3))))
            step = self.new_step(events)
            self.transitions[step] = {
                event: after if self.draw(st.booleans()) else self.chain(after, depth + 1)
                for event in events
            }
        elif kind == "fan_out":
            join = self.new_step(("ok",))
            self.transitions[join] = {"ok": after}
            join_spec = self.entry(join)
            step = self.new_step(("split",))
            count = self.draw(st.integers(2, 3))
            direct = self.draw(st.booleans())  # one branch may lead straight to the join
            branches = [join_spec] if direct else []
            branches += [self.chain(join_spec, depth + 1) for _ in range(count - len(branches))]
            self.transitions[step] = {"split": branches}
        else:
            count = self.draw(st.integers(2, 3))
            direct = self.draw(st.booleans())  # one choice may lead straight on
            targets = [after] if direct else []
            targets += [self.chain(after, depth + 1) for _ in range(count - len(targets))]
            step = self.new_step(("pick",))
            classes = [t[0] if isinstance(t, tuple) else t for t in targets]
            self.routes[step.step_key] = len(targets)
            self.transitions[step] = {"pick": Route(_chooser(step.step_key, classes), targets)}
        return self.entry(step)


@st.composite
def valid_runs(draw: Draw) -> tuple[type[Workflow], dict[str, Any], Builder]:
    """A random valid workflow, the initial context of one run, and how it was built."""
    builder = Builder(draw)
    start = builder.chain(Done, 0)
    workflow = type("Generated", (Workflow,), {"start": start, "transitions": builder.transitions})
    initial = {
        "choices": {key: draw(st.integers(0, n - 1)) for key, n in builder.choices.items()},
        "routes": {
            key: draw(st.sets(st.integers(0, n - 1), min_size=1))
            for key, n in builder.routes.items()
        },
    }
    return workflow, initial, builder


# --------------------------------------------------------------------------- the driver


class Run:
    """Drives one instance to its end, checking the invariants after every change."""

    def __init__(self, workflow: type[Workflow], initial: Mapping[str, Any], builder: Builder):
        self.workflow = workflow
        self.initial = initial
        self.builder = builder
        self.now = 0
        self.activated_when: dict[type[Step], frozenset[type[Step]]] = {}
        self.instance = Instance("p-1", workflow, 1, Status.PENDING, Context(dict(initial)))

    def check(self, before: Instance | None = None, activated: tuple[type[Step], ...] = ()) -> None:
        new = self.instance
        assert frozenset() == new.completed_steps & new.active_steps
        assert frozenset() == new.waiting_steps & new.active_steps
        assert frozenset() == new.completed_steps & new.waiting_steps
        if before is not None:
            gained = new.active_steps - before.active_steps
            assert gained == frozenset(activated)
        for step in activated:
            assert step not in self.activated_when, f"{step.__qualname__} activated twice"
            self.activated_when[step] = new.completed_steps

    def fold(self, step: type[Step], applied: engine.Applied, before: Instance) -> None:
        self.instance = applied.instance
        self.check(before, applied.activated)

    def go(self) -> Instance:
        self.instance = engine.advance(self.instance)
        self.check(None, (self.workflow.definition.start,))
        for _ in range(500):
            if self.instance.terminal:
                return self.instance
            if self.instance.active_steps:
                for step in sorted(self.instance.active_steps, key=lambda s: s.__qualname__):
                    assert self.builder.configs.get(step) == self.instance.step_configs.get(step)
                    config = self.instance.step_configs.get(step)
                    result = step().execute(self.instance, config, self.instance.context)
                    self.now += 1
                    before = self.instance
                    self.fold(step, engine.apply_result(before, step, result, now=self.now), before)
            else:
                assert Status.WAITING == self.instance.status
                for step in sorted(self.instance.waiting_steps, key=lambda s: s.__qualname__):
                    index = self.initial["choices"].get(step.step_key, 0)
                    self.now += 1
                    before = self.instance
                    applied = engine.resume_step(before, step, step.events[index], now=self.now)
                    self.fold(step, applied, before)
            before = self.instance
            self.instance = engine.advance(before)
            self.check(before)
        pytest.fail("the run did not end")


class TestValidWorkflows:
    """Any valid workflow of synchronous and parking steps runs to completion, correctly."""

    @PROPERTY
    @given(valid_runs())
    def test_invariants(self, run: tuple[type[Workflow], dict[str, Any], Builder]) -> None:
        """A run completes with Done last; no step runs twice; joins never fire early."""
        workflow, initial, builder = run
        driver = Run(workflow, initial, builder)
        final = driver.go()

        assert Status.COMPLETED == final.status
        history = [entry.step for entry in final.execution_history]
        assert Done is history[-1]
        assert len(history) == len(set(history)), "a step ran twice"
        assert set(history) == set(final.completed_steps)
        assert set(driver.activated_when) == set(final.completed_steps)
        assert (frozenset(), frozenset(), {}, {}) == (
            final.active_steps,
            final.waiting_steps,
            final.timers,
            final.pending_joins,
        )
        predecessors = workflow.predecessors()
        for step, completed_then in driver.activated_when.items():
            live = predecessors[step] & final.completed_steps
            early = sorted(s.__qualname__ for s in live - completed_then)
            assert [] == early, f"{step.__qualname__} fired before {early}"

    @PROPERTY
    @given(valid_runs())
    def test_graph_is_consistent(self, run: tuple[type[Workflow], dict[str, Any], Builder]) -> None:
        """The compiled tables agree with each other and with graph()."""
        workflow, _, builder = run
        d = workflow.definition
        assert set(d.steps) == {*builder.steps, Done}
        for step in d.steps:
            for successor in d.successors[step]:
                assert step in d.predecessors[successor]
        assert {s: len(p) for s, p in d.predecessors.items() if len(p) > 1} == dict(d.join_counts)
        graph = workflow.graph()
        assert {(e.source, e.target) for e in graph.edges} == {
            (s, t) for s in d.steps for t in d.successors[s]
        }
        assert workflow.mermaid().startswith("flowchart TD\n")


# --------------------------------------------------------------------------- malformed workflows

GARBAGE_KEYS = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=4),
    st.booleans(),
    st.just(Step),
    st.just(int),
    st.tuples(st.integers(0, 2)),
)
GARBAGE = st.one_of(
    GARBAGE_KEYS,
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _make_helper(name: str, events: tuple[str, ...] = ("ok",)) -> type[Step]:
    return type(name, (Step,), {"events": events, "execute": _execute, "parks": False})


def _pick_first(context: Context) -> Any:
    return None


def _dict_steps(transitions: dict[Any, Any]) -> list[type[Step]]:
    return [s for s, v in transitions.items() if isinstance(v, dict) and v]


def mutate(draw: Draw, namespace: dict[str, Any], builder: Builder) -> str:
    """Break the workflow in ``namespace`` in one of many ways; returns the way."""
    transitions = namespace["transitions"]
    kind = draw(
        st.sampled_from(
            [
                "start",
                "transitions",
                "key",
                "value",
                "event",
                "target",
                "undeclared",
                "missing_event",
                "cycle",
                "unreachable",
                "leaf",
                "done_transitions",
                "diverge",
                "wait",
                "shared_key",
                "step_attribute",
                "version",
                "unique",
            ]
        )
    )
    if not isinstance(transitions, dict) and kind not in (
        "start",
        "version",
        "unique",
        "shared_key",
        "step_attribute",
    ):
        kind = "start"
    usable = _dict_steps(transitions) if isinstance(transitions, dict) else []
    if not usable and kind in (
        "event",
        "target",
        "undeclared",
        "missing_event",
        "cycle",
        "leaf",
        "diverge",
        "wait",
    ):
        kind = "unreachable" if isinstance(transitions, dict) else "start"
    if kind in ("shared_key", "step_attribute") and len(builder.steps) < 2:
        kind = "version"

    if kind == "start":
        namespace["start"] = draw(
            st.one_of(
                GARBAGE,
                st.tuples(
                    st.sampled_from(builder.steps or [Done]),
                    GARBAGE_KEYS.filter(lambda v: v is not None),
                ),
            )
        )
    elif kind == "transitions":
        namespace["transitions"] = draw(
            st.one_of(
                st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
            )
        )
    elif kind == "key":
        transitions[draw(GARBAGE_KEYS)] = {"ok": Done}
    elif kind == "value":
        source = draw(st.sampled_from(list(transitions)))
        transitions[source] = draw(
            st.one_of(
                st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
            )
        )
    elif kind == "event":
        source = draw(st.sampled_from(usable))
        transitions[source][
            draw(st.one_of(st.just(""), st.integers(), st.none(), st.booleans()))
        ] = Done
    elif kind == "target":
        source = draw(st.sampled_from(usable))
        event = draw(st.sampled_from(list(transitions[source])))
        victim = draw(st.sampled_from(builder.steps or [Done]))
        transitions[source][event] = draw(
            st.one_of(
                st.text(max_size=3),
                st.integers(),
                st.none(),
                st.just([]),
                st.just([[victim]]),
                st.just(Route(_pick_first, [])),
                st.just(Route("choose", [victim])),  # type: ignore[arg-type]
                st.just((victim, 5)),
                st.just([victim, (victim, {"again": True})]),
                st.just({"not": "a target"}),
            )
        )
    elif kind == "undeclared":
        transitions[draw(st.sampled_from(usable))]["never_declared"] = Done
    elif kind == "missing_event":
        # Only a declared event: dropping an undeclared one would undo an earlier break.
        source = draw(st.sampled_from(usable))
        declared = getattr(source, "events", ())
        present = [e for e in transitions[source] if isinstance(declared, tuple) and e in declared]
        if present:
            del transitions[source][draw(st.sampled_from(present))]
        else:
            transitions[_make_helper("Island")] = {"ok": Done}
    elif kind == "cycle":
        source = draw(st.sampled_from(usable))
        transitions[source][draw(st.sampled_from(list(transitions[source])))] = namespace["start"]
    elif kind == "unreachable":
        transitions[_make_helper("Island")] = {"ok": Done}
    elif kind == "leaf":
        source = draw(st.sampled_from(usable))
        transitions[source][draw(st.sampled_from(list(transitions[source])))] = _make_helper("Leaf")
    elif kind == "done_transitions":
        transitions[Done] = {"done": namespace["start"]}
    elif kind == "diverge":
        source = draw(st.sampled_from(usable))
        left, right = _make_helper("Left"), _make_helper("Right")
        transitions[source][draw(st.sampled_from(list(transitions[source])))] = [left, right]
        transitions[left] = {"ok": Done}
        transitions[right] = {"ok": Done}
    elif kind == "wait":
        source = draw(st.sampled_from(usable))
        config = draw(
            st.one_of(
                st.none(),
                st.just({}),
                st.just({"duration": "x"}),
                st.just({"unit": "year", "duration": 1}),
            )
        )
        transitions[source][draw(st.sampled_from(list(transitions[source])))] = (Wait, config)
        transitions[Wait] = {"timeout": Done}
    elif kind == "shared_key":
        first, second = draw(
            st.lists(st.sampled_from(builder.steps), min_size=2, max_size=2, unique=True)
        )
        second.step_key = first.step_key
    elif kind == "step_attribute":
        step = draw(st.sampled_from(builder.steps))
        name, value = draw(
            st.sampled_from(
                [
                    ("events", ()),
                    ("events", ["ok"]),
                    ("events", None),
                    ("events", ("ok", "ok")),
                    ("events", ("ok", 1)),
                    ("step_key", ""),
                    ("step_key", 7),
                    ("retry", 3),
                    ("timeout", 0),
                    ("timeout", "soon"),
                    ("blocking", "yes"),
                    ("execute", Step.execute),
                ]
            )
        )
        setattr(step, name, value)
    elif kind == "version":
        namespace["version"] = draw(
            st.one_of(st.integers(max_value=0), st.text(max_size=2), st.booleans(), st.none())
        )
    else:
        namespace["unique"] = draw(
            st.one_of(
                st.text(max_size=3),
                st.builds(
                    Unique, key=st.sampled_from(["", "Key", "a-b", 5]), scope=st.just("workflow")
                ),
                st.builds(Unique, key=st.just("key"), scope=st.sampled_from(["tenant", "", None])),
            )
        )
    return kind


@st.composite
def malformed(draw: Draw) -> tuple[dict[str, Any], list[str]]:
    """A valid workflow's namespace broken in one to three ways."""
    builder = Builder(draw)
    start = builder.chain(Done, 1)
    namespace: dict[str, Any] = {"start": start, "transitions": builder.transitions}
    ways = [mutate(draw, namespace, builder) for _ in range(draw(st.integers(1, 3)))]
    return namespace, ways


# Pure garbage: anything at all in start and transitions.
_P = _make_helper("P")
_Q = _make_helper("Q", ("ok", "ko"))
POOL = [_P, _Q, Done, Wait, WaitForEvent]
SPECS = st.one_of(
    st.sampled_from(POOL),
    GARBAGE,
    st.tuples(
        st.sampled_from(POOL),
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["timeout", "seconds", "duration", "unit"]),
                st.one_of(st.integers(-1, 3), st.text(max_size=2)),
                max_size=2,
            ),
            GARBAGE,
        ),
    ),
)
TARGETS = st.recursive(
    SPECS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.builds(
            Route,
            choose=st.one_of(st.just(_pick_first), GARBAGE),
            targets=st.lists(inner, max_size=3),
        ),
    ),
    max_leaves=6,
)
EVENTS = st.one_of(st.sampled_from(["ok", "ko", "done", "timeout", "received"]), GARBAGE_KEYS)
TRANSITIONS = st.one_of(
    GARBAGE,
    st.dictionaries(
        st.one_of(st.sampled_from(POOL), GARBAGE_KEYS),
        st.one_of(GARBAGE, st.dictionaries(EVENTS, TARGETS, max_size=3)),
        max_size=5,
    ),
)


class TestMalformedWorkflows:
    """Malformed definitions raise WorkflowDefinitionError, and nothing else."""

    @PROPERTY
    @given(malformed())
    def test_broken_valid_workflows_are_refused(
        self, case: tuple[dict[str, Any], list[str]]
    ) -> None:
        """A valid workflow broken in any way raises WorkflowDefinitionError naming it."""
        namespace, ways = case
        with pytest.raises(WorkflowDefinitionError) as info:
            type("Broken", (Workflow,), namespace)
        error = info.value
        assert "Broken" == error.workflow
        assert error.problems, ways
        assert all(isinstance(p, str) and p.startswith("Broken") for p in error.problems)
        assert str(error).startswith("Broken is not a valid workflow")

    @PROPERTY
    @given(
        start=st.one_of(SPECS, TARGETS),
        transitions=TRANSITIONS,
        version=st.one_of(st.just(1), GARBAGE),
        unique=st.one_of(
            st.none(),
            st.builds(Unique, key=st.text(max_size=3), scope=st.text(max_size=3)),
            GARBAGE,
        ),
    )
    def test_garbage_never_crashes_the_check(
        self, start: Any, transitions: Any, version: Any, unique: Any
    ) -> None:
        """Whatever start and transitions hold, the check refuses them properly or passes."""
        namespace = {
            "start": start,
            "transitions": transitions,
            "version": version,
            "unique": unique,
        }
        problems: tuple[str, ...] = ()
        try:
            workflow = type("Garbage", (Workflow,), namespace)
        except WorkflowDefinitionError as error:
            problems = error.problems
        else:
            assert workflow.definition.start in workflow.definition.steps
            return
        assert problems
        assert all(p.startswith("Garbage") for p in problems)
