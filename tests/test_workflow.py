"""Workflow definitions: every check of DESIGN.md, the graph, and the compiled tables."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
from typing import Any

import pytest

from hephaestus import (
    Done,
    Ok,
    Retry,
    Route,
    Step,
    Unique,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus.core.workflow import Graph, GraphEdge

_OMIT: Any = object()


def make_step(name: str, *events: str, **attributes: Any) -> type[Step]:
    """A step class named ``name`` that declares ``events`` and returns the first."""

    def execute(self: Step, instance: Any, config: Any, context: Any) -> Ok:
        return Ok(events[0])

    namespace: dict[str, Any] = {"execute": execute, **attributes}
    if events:
        namespace["events"] = events
    return type(name, (Step,), namespace)


def define(start: Any = _OMIT, transitions: Any = _OMIT, **attributes: Any) -> type[Workflow]:
    """A workflow class named ``Flow``; an argument left out is not set at all."""
    namespace = dict(attributes)
    if start is not _OMIT:
        namespace["start"] = start
    if transitions is not _OMIT:
        namespace["transitions"] = transitions
    return type("Flow", (Workflow,), namespace)


def problems(start: Any = _OMIT, transitions: Any = _OMIT, **attributes: Any) -> tuple[str, ...]:
    """The problems the definition check reports for ``Flow``."""
    with pytest.raises(WorkflowDefinitionError) as info:
        define(start, transitions, **attributes)
    assert "Flow" == info.value.workflow
    return info.value.problems


A = make_step("A", "ok")
B = make_step("B", "ok")
C = make_step("C", "ok")
D = make_step("D", "ok")


def pick_b(context: Any) -> type[Step]:
    return B


class TestShape:
    """The workflow's own attributes: start, transitions, version, unique."""

    def test_start_missing(self) -> None:
        """A workflow with transitions but no start is refused."""
        assert ("Flow.start is missing: set it to the first step",) == problems(
            transitions={A: {"ok": Done}}
        )

    def test_start_not_a_step(self) -> None:
        """A start that is not a step class names the value it got."""
        assert ("Flow.start must be a Step subclass or (Step, config), got: 'A'",) == problems(
            "A", {A: {"ok": Done}}
        )

    def test_start_bad_config(self) -> None:
        """A start given as (step, config) needs a dict or None as config."""
        assert ("Flow.start: the config of A must be a dict or None, got: 3",) == problems(
            (A, 3), {A: {"ok": Done}}
        )

    def test_transitions_not_a_dict(self) -> None:
        """Transitions that are not a dict are refused, and what they were is shown."""
        found = problems(A, [A, Done])
        assert found[0].startswith("Flow.transitions must be a dict of Step -> {event: target}")
        assert "got: [" in found[0]

    def test_key_not_a_step(self) -> None:
        """Every key of transitions must be a step class."""
        found = problems(A, {A: {"ok": Done}, "B": {"ok": Done}})
        assert ("Flow.transitions: every key must be a Step subclass, got: 'B'",) == found

    def test_value_not_a_dict(self) -> None:
        """What a step maps to must be a dict of event -> target."""
        found = problems(A, {A: {"ok": B}, B: [Done]})
        assert found[0].startswith("Flow.transitions[B] must be a dict of event -> target, got: [")

    def test_event_not_a_string(self) -> None:
        """Events in transitions are non-empty strings."""
        found = problems(A, {A: {"ok": Done, 1: Done}})
        assert ("Flow.transitions[A]: every event must be a non-empty string, got: 1",) == found

    @pytest.mark.parametrize("version", [0, -1, "1", 1.5, True, None])
    def test_bad_version(self, version: Any) -> None:
        """The version is an int >= 1."""
        assert (f"Flow.version must be an int >= 1, got: {version!r}",) == problems(
            A, {A: {"ok": Done}}, version=version
        )

    def test_unique_not_a_unique(self) -> None:
        """unique is a Unique or None."""
        assert ("Flow.unique must be a Unique or None, got: 'orderid'",) == problems(
            A, {A: {"ok": Done}}, unique="orderid"
        )

    @pytest.mark.parametrize("key", ["", "Order", "order-id", 5])
    def test_unique_bad_key(self, key: Any) -> None:
        """A business key name is lowercase letters, digits or underscores."""
        assert (
            f"Flow.unique.key must be lowercase letters, digits or '_', got: {key!r}",
        ) == problems(A, {A: {"ok": Done}}, unique=Unique(key=key))

    def test_unique_bad_scope(self) -> None:
        """A business key scope is workflow, version, global or none."""
        assert (
            "Flow.unique.scope must be 'workflow', 'version', 'global' or 'none', got: 'tenant'",
        ) == problems(A, {A: {"ok": Done}}, unique=Unique("order_id", "tenant"))  # type: ignore[arg-type]


class TestTargets:
    """What a transition may lead to."""

    def test_string(self) -> None:
        """A string is not a target."""
        assert (
            "Flow.transitions[A]['ok'] must be a Step subclass, (Step, config), a Map, "
            "a list of them or a Route, got: 'Done'",
        ) == problems(A, {A: {"ok": "Done"}})

    def test_nested_list(self) -> None:
        """A fan-out list holds steps, not lists."""
        found = problems(A, {A: {"ok": [[B, C]]}})
        assert 1 == len(found)
        assert found[0].startswith(
            "Flow.transitions[A]['ok'] must be a Step subclass, (Step, config) or a Map, "
            "got: [<class"
        )

    def test_empty_list(self) -> None:
        """A fan-out list names at least one step."""
        assert (
            "Flow.transitions[A]['ok']: a fan-out list must name at least one step, got []",
        ) == problems(A, {A: {"ok": []}})

    def test_empty_route(self) -> None:
        """A Route names the steps it may choose."""
        assert (
            "Flow.transitions[A]['ok']: a Route must name the steps it may choose, got none",
        ) == problems(A, {A: {"ok": Route(pick_b, [])}})

    def test_chooser_not_callable(self) -> None:
        """A Route's chooser is callable."""
        assert ("Flow.transitions[A]['ok']: Route.choose must be callable, got: 'B'",) == problems(
            A, {A: {"ok": Route("B", [B])}, B: {"ok": Done}}
        )  # type: ignore[arg-type]

    def test_bad_config_type(self) -> None:
        """A target's config is a dict or None."""
        assert (
            "Flow.transitions[A]['ok']: the config of B must be a dict or None, got: ['x']",
        ) == problems(A, {A: {"ok": (B, ["x"])}})

    def test_step_named_twice_in_fan_out(self) -> None:
        """A fan-out names each step once."""
        assert ("Flow.transitions[A]['ok']: step B is named twice",) == problems(
            A, {A: {"ok": [B, (B, {"n": 1})]}}
        )


class TestStepDeclarations:
    """The class-level declarations of the steps a workflow uses."""

    def test_no_events(self) -> None:
        """A step without events is reported once."""
        E = make_step("E")
        assert (
            "Flow: step E: events must be a non-empty tuple of strings, got: None",
        ) == problems(A, {A: {"ok": E}, E: {"ok": Done}})

    @pytest.mark.parametrize(
        ("events", "shown"),
        [((), "()"), (["ok"], "['ok']"), (("ok", 3), "('ok', 3)"), (("ok", ""), "('ok', '')")],
        ids=["empty", "not-a-tuple", "not-a-string", "empty-string"],
    )
    def test_malformed_events(self, events: Any, shown: str) -> None:
        """Events are a non-empty tuple of non-empty strings."""
        E = make_step("E", events=events)
        assert (
            f"Flow: step E: events must be a non-empty tuple of strings, got: {shown}",
        ) == problems(A, {A: {"ok": E}, E: {"ok": Done}})

    def test_repeated_events(self) -> None:
        """Events do not repeat."""
        E = make_step("E", "ok", "ok")
        assert ("Flow: step E: events must not repeat, got: ('ok', 'ok')",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    @pytest.mark.parametrize("key", ["", 7, None])
    def test_bad_step_key(self, key: Any) -> None:
        """A step key is a non-empty string."""
        E = make_step("E", "ok", step_key=key)
        assert (f"Flow: step E: step_key must be a non-empty string, got: {key!r}",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    def test_execute_not_defined(self) -> None:
        """A step defines execute."""
        E = type("E", (Step,), {"events": ("ok",)})
        assert ("Flow: step E: execute is not defined",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    def test_bad_retry(self) -> None:
        """retry is a Retry or None."""
        E = make_step("E", "ok", retry=3)
        assert ("Flow: step E: retry must be a Retry or None, got: 3",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    @pytest.mark.parametrize("timeout", [0, -1.5, "5", True, float("nan"), float("inf"), 1e300])
    def test_bad_timeout(self, timeout: Any) -> None:
        """timeout is a finite number of seconds > 0, at most 100 years."""
        E = make_step("E", "ok", timeout=timeout)
        assert (
            "Flow: step E: timeout must be a finite number of seconds > 0 and at most 100 years "
            f"(3155760000), got: {timeout!r}",
        ) == problems(A, {A: {"ok": E}, E: {"ok": Done}})

    def test_bad_blocking(self) -> None:
        """blocking is a bool."""
        E = make_step("E", "ok", blocking="yes")
        assert ("Flow: step E: blocking must be a bool, got: 'yes'",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    def test_bad_spread(self) -> None:
        """spread is a bool."""
        E = make_step("E", "ok", spread=1)
        assert ("Flow: step E: spread must be a bool, got: 1",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    def test_declared_events_raises(self) -> None:
        """A declared_events hook that raises is reported, not raised."""

        def declared_events(cls: type[Step], config: Any) -> tuple[str, ...]:
            raise KeyError("mode")

        E = make_step("E", "ok", declared_events=classmethod(declared_events))
        assert ("Flow: E.declared_events(None) raised KeyError('mode')",) == problems(
            A, {A: {"ok": E}, E: {"ok": Done}}
        )

    def test_declared_events_returns_garbage(self) -> None:
        """A declared_events hook must return a tuple of strings."""

        def declared_events(cls: type[Step], config: Any) -> Any:
            return ["ok"]

        E = make_step("E", "ok", declared_events=classmethod(declared_events))
        assert (
            "Flow: E.declared_events(None) must return a tuple of strings, got: ['ok']",
        ) == problems(A, {A: {"ok": E}, E: {"ok": Done}})


class TestGraphRules:
    """Rules 1 to 6 of DESIGN.md."""

    def test_cycle(self) -> None:
        """A cycle is reported with the steps on it."""
        E = make_step("E", "ok", "again")
        assert ("Flow: cycle B -> E -> B",) == problems(
            A, {A: {"ok": B}, B: {"ok": E}, E: {"ok": Done, "again": B}}
        )

    def test_self_loop(self) -> None:
        """A step that leads to itself is a cycle."""
        E = make_step("E", "ok", "again")
        assert ("Flow: cycle E -> E",) == problems(E, {E: {"ok": Done, "again": E}})

    def test_unreachable(self) -> None:
        """A step no path from start reaches is reported as unreachable."""
        assert ("Flow: step B is unreachable from start step A",) == problems(
            A, {A: {"ok": Done}, B: {"ok": Done}}
        )

    def test_leaf_not_done(self) -> None:
        """Every path ends with Done."""
        assert (
            "Flow: step B is a leaf but not Done: give it transitions that lead to Done",
        ) == problems(A, {A: {"ok": B}})

    def test_done_with_transitions(self) -> None:
        """A step that ends the workflow has no transitions."""
        Finish = type("Finish", (Done,), {})
        assert ("Flow: step Finish ends the workflow (Done) but has transitions",) == problems(
            A, {A: {"ok": Finish}, Finish: {"done": B}, B: {"ok": Done}}
        )

    def test_fan_out_never_converges(self) -> None:
        """The branches of a static fan-out meet on a common step before Done."""
        assert (
            "Flow: the fan-out of A on 'ok' (B, C) never converges on a common step before Done",
        ) == problems(A, {A: {"ok": [B, C]}, B: {"ok": Done}, C: {"ok": Done}})

    def test_shared_step_key(self) -> None:
        """Two steps may not share a step key."""
        Charge = make_step("Charge", "ok", step_key="pay")
        Pay = make_step("Pay", "ok")
        assert (
            "Flow: steps Charge and Pay share the step key 'pay'; set step_key on one of them",
        ) == problems(A, {A: {"ok": Charge}, Charge: {"ok": Pay}, Pay: {"ok": Done}})

    def test_declared_event_without_transition(self) -> None:
        """Every event a step declares has a transition."""
        E = make_step("E", "ok", "ko")
        assert ("Flow.transitions[E]: event 'ko' declared by E has no transition",) == problems(
            E, {E: {"ok": Done}}
        )

    def test_transition_on_undeclared_event(self) -> None:
        """Every transition's event is declared by its step."""
        E = make_step("E", "charged", "declined")
        assert (
            "Flow.transitions[E]: event 'refunded' is not declared in E.events "
            "('charged', 'declined')",
        ) == problems(E, {E: {"charged": Done, "declined": Done, "refunded": Done}})

    def test_wait_without_config(self) -> None:
        """Wait needs a config saying how long."""
        found = problems(A, {A: {"ok": Wait}, Wait: {"timeout": Done}})
        assert 1 == len(found)
        assert found[0].startswith("Flow: step Wait cannot run with config None: Wait needs")

    def test_wait_bad_config(self) -> None:
        """A Wait config the step cannot run with is reported with the step's reason."""
        assert (
            "Flow: step Wait cannot run with config {'duration': 'x'}: "
            "Wait duration must be a number, got: 'x'",
        ) == problems(A, {A: {"ok": (Wait, {"duration": "x"})}, Wait: {"timeout": Done}})

    def test_wait_for_event_timeout_transition_required_with_timeout(self) -> None:
        """WaitForEvent configured with a timeout needs a "timeout" transition."""
        assert (
            "Flow.transitions[WaitForEvent]: event 'timeout' declared by WaitForEvent "
            "has no transition",
        ) == problems(
            A, {A: {"ok": (WaitForEvent, {"timeout": 5})}, WaitForEvent: {"received": Done}}
        )

    def test_wait_for_event_timeout_transition_refused_without_timeout(self) -> None:
        """WaitForEvent without a timeout may not have a "timeout" transition."""
        assert (
            "Flow.transitions[WaitForEvent]: event 'timeout' is not declared in "
            "WaitForEvent.events ('received')",
        ) == problems(
            A, {A: {"ok": WaitForEvent}, WaitForEvent: {"received": Done, "timeout": Done}}
        )

    def test_wait_for_event_bad_timeout(self) -> None:
        """A WaitForEvent timeout is a number of seconds."""
        found = problems(
            A,
            {A: {"ok": (WaitForEvent, {"timeout": "soon"})}, WaitForEvent: {"received": Done}},
        )
        assert found[0].startswith("Flow: step WaitForEvent cannot run with config")
        assert "got: 'soon'" in found[0]

    def test_wait_for_event_with_and_without_timeout(self) -> None:
        """WaitForEvent is valid with "received" alone, and with "timeout" when it has one."""
        plain = define(A, {A: {"ok": WaitForEvent}, WaitForEvent: {"received": Done}})
        timed = define(
            A,
            {
                A: {"ok": (WaitForEvent, {"timeout": 5})},
                WaitForEvent: {"received": Done, "timeout": Done},
            },
        )
        assert ("received",) == plain.definition.events[WaitForEvent]
        assert ("received", "timeout") == timed.definition.events[WaitForEvent]


class TestProblems:
    """How problems are reported."""

    def test_every_problem_is_listed(self) -> None:
        """A workflow with three problems lists all three, one per line."""
        with pytest.raises(WorkflowDefinitionError) as info:
            define(A, {A: {"ok": Done, "ko": Done}, B: {"ok": Done}}, version=0)
        error = info.value
        assert [
            "Flow.version must be an int >= 1, got: 0",
            "Flow: step B is unreachable from start step A",
            "Flow.transitions[A]: event 'ko' is not declared in A.events ('ok')",
        ] == list(error.problems)
        assert str(error).startswith("Flow is not a valid workflow (3 problems):\n  - ")
        assert all(f"  - {p}" in str(error) for p in error.problems)

    def test_one_problem(self) -> None:
        """One problem is said in the singular."""
        with pytest.raises(WorkflowDefinitionError, match=r"\(1 problem\):"):
            define(A, {A: {"ok": Done}}, version=0)

    def test_problems_is_a_tuple_of_strings(self) -> None:
        """problems is a tuple of strings."""
        found = problems(A, {A: {"ok": Done}}, version=0)
        assert isinstance(found, tuple)
        assert all(isinstance(p, str) for p in found)

    def test_abstract_workflow_is_not_checked(self) -> None:
        """A workflow with neither start nor transitions is abstract: no check, no definition."""
        Base = define(version=2)
        assert not hasattr(Base, "definition")

    def test_subclass_of_abstract_workflow_is_checked(self) -> None:
        """A subclass that sets start and transitions is checked, with inherited attributes."""
        Base = define(version=0)
        with pytest.raises(WorkflowDefinitionError, match="version must be an int"):
            type("Flow", (Base,), {"start": A, "transitions": {A: {"ok": Done}}})

    def test_is_a_type_error(self) -> None:
        """A definition error is a TypeError: the class is malformed."""
        with pytest.raises(TypeError):
            define(A, {})


# ------------------------------------------------------------------ a valid workflow

ValidateOrder = make_step("ValidateOrder", "valid", "invalid")
Prepare = make_step("Prepare", "ready")
Charge = make_step("Charge", "charged")
Reserve = make_step("Reserve", "reserved")
Ship = make_step("Ship", "shipped")
Reject = make_step("Reject", "rejected")

OrderFlow = type(
    "OrderFlow",
    (Workflow,),
    {
        "start": ValidateOrder,
        "transitions": {
            ValidateOrder: {"valid": Prepare, "invalid": Reject},
            Prepare: {"ready": [Charge, Reserve]},
            Charge: {"charged": Ship},
            Reserve: {"reserved": Ship},
            Ship: {"shipped": (Wait, {"duration": 2, "unit": "second"})},
            Wait: {"timeout": Done},
            Reject: {"rejected": Done},
        },
    },
)


def choose_fast(context: Any) -> type[Step]:
    return B


RoutedFlow = type(
    "RoutedFlow",
    (Workflow,),
    {
        "start": (A, {"limit": 3}),
        "transitions": {
            A: {"ok": Route(choose_fast, [B, (C, {"slow": True})])},
            B: {"ok": Done},
            C: {"ok": Done},
        },
        "version": 2,
        "unique": Unique("order_id", scope="version"),
    },
)


class TestGraph:
    """graph(), mermaid() and predecessors() of a valid workflow."""

    def test_graph(self) -> None:
        """The graph holds the start, the steps in definition order, and every edge."""
        wait_config = {"duration": 2, "unit": "second"}
        assert (
            Graph(
                start=ValidateOrder,
                steps=(ValidateOrder, Prepare, Reject, Charge, Reserve, Ship, Wait, Done),
                edges=(
                    GraphEdge(ValidateOrder, "valid", Prepare, None, False),
                    GraphEdge(ValidateOrder, "invalid", Reject, None, False),
                    GraphEdge(Prepare, "ready", Charge, None, False),
                    GraphEdge(Prepare, "ready", Reserve, None, False),
                    GraphEdge(Charge, "charged", Ship, None, False),
                    GraphEdge(Reserve, "reserved", Ship, None, False),
                    GraphEdge(Ship, "shipped", Wait, wait_config, False),
                    GraphEdge(Wait, "timeout", Done, None, False),
                    GraphEdge(Reject, "rejected", Done, None, False),
                ),
            )
            == OrderFlow.graph()
        )

    def test_graph_marks_routes(self) -> None:
        """Edges a route decides are marked routed, with their configs."""
        assert (
            GraphEdge(A, "ok", B, None, True),
            GraphEdge(A, "ok", C, {"slow": True}, True),
            GraphEdge(B, "ok", Done, None, False),
            GraphEdge(C, "ok", Done, None, False),
        ) == RoutedFlow.graph().edges

    def test_mermaid(self) -> None:
        """mermaid() renders a flowchart: Done as a circle, routes as dotted arrows."""
        assert (
            "flowchart TD\n"
            '    a["A"]\n'
            '    b["B"]\n'
            '    c["C"]\n'
            '    done(("Done"))\n'
            "    a -.->|ok| b\n"
            "    a -.->|ok| c\n"
            "    b -->|ok| done\n"
            "    c -->|ok| done\n"
        ) == RoutedFlow.mermaid()

    def test_predecessors(self) -> None:
        """predecessors() maps each step to the steps with an edge to it."""
        assert {
            ValidateOrder: frozenset(),
            Prepare: frozenset({ValidateOrder}),
            Reject: frozenset({ValidateOrder}),
            Charge: frozenset({Prepare}),
            Reserve: frozenset({Prepare}),
            Ship: frozenset({Charge, Reserve}),
            Wait: frozenset({Ship}),
            Done: frozenset({Wait, Reject}),
        } == dict(OrderFlow.predecessors())

    def test_routed_predecessors(self) -> None:
        """Every step a route may choose counts its source as a predecessor."""
        assert frozenset({A}) == RoutedFlow.predecessors()[C]


class TestDefinition:
    """The tables compiled once, at class creation, for the engine."""

    def test_header(self) -> None:
        """The definition keeps the name, the start and its config."""
        d = RoutedFlow.definition
        assert ("RoutedFlow", A, {"limit": 3}) == (d.name, d.start, d.start_config)
        assert (2, Unique("order_id", "version")) == (RoutedFlow.version, RoutedFlow.unique)

    def test_join_counts(self) -> None:
        """Only steps with several predecessors are joins, counted by predecessor."""
        assert {Ship: 2, Done: 2} == dict(OrderFlow.definition.join_counts)

    def test_successors(self) -> None:
        """Successors list each step once, in the order of the transitions."""
        successors = OrderFlow.definition.successors
        assert (Prepare, Reject) == successors[ValidateOrder]
        assert (Charge, Reserve) == successors[Prepare]
        assert () == successors[Done]

    def test_static_edges_know_what_they_rule_out(self) -> None:
        """A static edge's dead steps are the source's successors it does not lead to."""
        edges = OrderFlow.definition.edges
        valid = edges[ValidateOrder]["valid"]
        assert ((Prepare,), {Prepare: None}, None, (Reject,)) == (
            valid.targets,
            dict(valid.configs),
            valid.route,
            valid.dead,
        )
        assert (Prepare,) == edges[ValidateOrder]["invalid"].dead
        assert () == edges[Prepare]["ready"].dead

    def test_route_edges_rule_out_at_run_time(self) -> None:
        """A route's edge names every step it may choose and rules out nothing in advance."""
        edge = RoutedFlow.definition.edges[A]["ok"]
        assert (B, C) == edge.targets
        assert {B: None, C: {"slow": True}} == dict(edge.configs)
        assert () == edge.dead
        assert edge.route is not None

    def test_events_by_key_and_order(self) -> None:
        """Events, step keys and definition order are tabled per step."""
        d = OrderFlow.definition
        assert ("valid", "invalid") == d.events[ValidateOrder]
        assert ("timeout",) == d.events[Wait]
        assert Charge is d.by_key["charge"]
        assert Done is d.by_key["done"]
        assert list(range(8)) == [d.order[s] for s in d.steps]

    def test_done_has_no_edges(self) -> None:
        """A step that ends the workflow has no entry in the edges."""
        assert Done not in OrderFlow.definition.edges

    def test_subclass_recompiles(self) -> None:
        """A subclass of a workflow gets its own definition."""
        Sub = type("SubFlow", (OrderFlow,), {"version": 3})
        assert "SubFlow" == Sub.definition.name
        assert "OrderFlow" == OrderFlow.definition.name


class TestRetryDeclared:
    """Step declarations a valid workflow accepts."""

    def test_valid_declarations(self) -> None:
        """retry, timeout and blocking declared correctly pass the check."""
        E = make_step("E", "ok", retry=Retry(max_attempts=2), timeout=2, blocking=True)
        assert E in define(E, {E: {"ok": Done}}).definition.steps


def flow_version(version: int) -> type[Workflow]:
    return type(
        f"OrderFlowV{version}",
        (Workflow,),
        {
            "start": A,
            "transitions": {A: {"ok": Done}},
            "version": version,
        },
    )


V1 = flow_version(1)
V2 = flow_version(2)
V3 = flow_version(3)


def family(**attributes: Any) -> type[Workflow]:
    return type("Orders", (Workflow,), attributes)


class TestVersions:
    """Workflow families (versions = {n: Workflow}) and resolve()."""

    def test_resolve_highest_by_default(self) -> None:
        """A family resolves to its highest version when none is asked for."""
        assert V3 is family(versions={1: V1, 3: V3, 2: V2}).resolve()

    def test_resolve_current_version(self) -> None:
        """current_version picks the default version."""
        assert V2 is family(versions={1: V1, 2: V2, 3: V3}, current_version=2).resolve()

    def test_resolve_given_version(self) -> None:
        """An explicit version wins over the default."""
        assert V1 is family(versions={1: V1, 2: V2}, current_version=2).resolve(1)

    def test_resolve_unknown_version(self) -> None:
        """A version the family lacks raises ValueError naming the versions it has."""
        with pytest.raises(ValueError, match=re.escape("Orders has no version 4; it has [1, 2]")):
            family(versions={1: V1, 2: V2}).resolve(4)

    def test_plain_workflow_is_its_only_version(self) -> None:
        """A plain workflow resolves to itself, with or without its own version."""
        assert (V2, V2) == (V2.resolve(), V2.resolve(2))

    def test_plain_workflow_other_version(self) -> None:
        """A plain workflow asked for another version raises ValueError."""
        with pytest.raises(ValueError, match=r"^OrderFlowV2 is version 2, not 1; "):
            V2.resolve(1)

    def test_abstract_workflow_cannot_resolve(self) -> None:
        """An abstract workflow cannot run."""
        with pytest.raises(
            WorkflowDefinitionError, match="Base is abstract: it sets no start step"
        ):
            type("Base", (Workflow,), {}).resolve()

    @pytest.mark.parametrize("versions", [{}, [V1], None])
    def test_versions_not_a_dict(self, versions: Any) -> None:
        """versions is a non-empty dict."""
        with pytest.raises(WorkflowDefinitionError) as info:
            family(versions=versions)
        assert (
            "Orders.versions must be a non-empty dict of int -> Workflow",
        ) == info.value.problems

    def test_version_not_a_workflow(self) -> None:
        """Each version is a concrete workflow."""
        Abstract = type("Abstract", (Workflow,), {})
        with pytest.raises(WorkflowDefinitionError) as info:
            family(versions={1: "OrderFlowV1", 2: Abstract})
        assert (
            "Orders.versions[1] must be a concrete Workflow, got: 'OrderFlowV1'",
            f"Orders.versions[2] must be a concrete Workflow, got: {Abstract!r}",
        ) == info.value.problems

    def test_version_number_mismatch(self) -> None:
        """Each workflow sits under its own version number."""
        with pytest.raises(WorkflowDefinitionError) as info:
            family(versions={1: V1, 3: V2})
        assert ("Orders.versions[3] is OrderFlowV2, whose version is 2",) == info.value.problems

    def test_current_version_not_a_version(self) -> None:
        """current_version is one of the versions."""
        with pytest.raises(WorkflowDefinitionError) as info:
            family(versions={1: V1}, current_version=2)
        assert ("Orders.current_version 2 is not one of its versions",) == info.value.problems
