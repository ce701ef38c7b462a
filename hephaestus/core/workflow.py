"""Workflows: a start step and transitions, checked and compiled when the class is created.

A transition maps ``(step, event)`` to a target: a step class, ``(step,
config)``, ``Map(step, items)`` (the step runs once per item of a list
computed from the context when the transition fires), a list of those (a
static fan-out), or ``Route(choose, targets)`` (``choose(context)`` picks one
of the targets, or a list of them, at run time). Every check of the design
runs at class creation; a malformed workflow raises
:class:`~hephaestus.exceptions.WorkflowDefinitionError` listing every problem.
The compiled tables (edges, successors, predecessors, join counts, maps)
are what the engine reads: nothing is resolved by scanning at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeAlias

import attrs

from hephaestus.exceptions import WorkflowDefinitionError

from .durations import seconds
from .instance import Context
from .step import Config, Retry, Step

__all__ = [
    "Definition",
    "Edge",
    "Graph",
    "GraphEdge",
    "Map",
    "Route",
    "Target",
    "Unique",
    "Workflow",
]

Chooser: TypeAlias = Callable[[Context], type[Step] | Sequence[type[Step]]]
ItemsOf: TypeAlias = Callable[[Context], Iterable[Any]]

_ITEM_KEYS = ("item", "index")


@attrs.frozen(eq=False)
class Map:
    """Run ``step`` once per item of ``items(context)``, computed when the transition fires.

    Each item is a full execution of the step (its retries, timeout,
    telemetry and history entry), whose config is ``config`` plus
    ``"item"`` (the item) and ``"index"`` (its position). The step's
    successors wait for every item, as a join waits for its branches; each
    item's event sends its token, so a successor runs if any item's event
    led to it. They find the items' updates in item order in
    ``context.steps[step_key]["items"]`` (and their events in
    ``["events"]``). An empty list completes the map at once as if it had
    returned ``empty`` (default: the step's only event; required when it
    declares several). At most ``max_concurrency`` items execute at once
    (None: all of them).
    """

    step: type[Step]
    items: ItemsOf = attrs.field(kw_only=True)
    config: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    max_concurrency: int | None = attrs.field(default=None, kw_only=True)
    empty: str | None = attrs.field(default=None, kw_only=True)

    def __repr__(self) -> str:
        name = getattr(self.step, "__qualname__", repr(self.step))
        return f"Map({name})"


StartSpec: TypeAlias = type[Step] | tuple[type[Step], Config]
StepSpec: TypeAlias = StartSpec | Map


@attrs.frozen
class Route:
    """A run-time choice: ``choose(context)`` returns one of ``targets`` (or a list of them).

    ``targets`` names every step the route may choose, each a step class or
    ``(step, config)``; the steps it does not choose are ruled out, so joins
    downstream do not wait for them.
    """

    choose: Chooser
    targets: Sequence[StepSpec] = attrs.field(converter=tuple)


Target: TypeAlias = StepSpec | list[StepSpec] | Route
"""What a transition leads to."""

UniqueScope: TypeAlias = Literal["workflow", "version", "global", "none"]


@attrs.frozen
class Unique:
    """A business key: instance ids become ``f"{key}::{value}"``.

    ``scope`` says among which instances an active id must be unique:
    ``"workflow"`` (this workflow), ``"version"`` (this workflow version),
    ``"global"`` (all workflows), or ``"none"`` (a random suffix makes every
    id unique).
    """

    key: str
    scope: UniqueScope = "workflow"


@attrs.frozen
class Edge:
    """One compiled transition ``(source, event)``.

    ``targets`` are the steps it leads to (for a route: every step the route
    may choose); ``configs`` their configs; ``dead`` the successors of the
    source that this edge rules out (static edges only; a route computes it
    when it chooses).
    """

    targets: tuple[type[Step], ...]
    configs: Mapping[type[Step], Config]
    route: Route | None
    dead: tuple[type[Step], ...]
    simple: bool = False
    """Static, rules nothing out, and leads to no join: the engine's fast path."""
    target_set: frozenset[type[Step]] = frozenset()
    given_configs: Mapping[type[Step], Mapping[str, Any]] = attrs.field(factory=dict)
    """The targets' configs that are not None."""


@attrs.frozen
class GraphEdge:
    """An edge of the graph: ``source --event--> target``; ``routed`` when a route decides."""

    source: type[Step]
    event: str
    target: type[Step]
    config: Config
    routed: bool


@attrs.frozen
class Graph:
    """A workflow's graph: its start, its steps in definition order, and its edges."""

    start: type[Step]
    steps: tuple[type[Step], ...]
    edges: tuple[GraphEdge, ...]


@attrs.frozen
class Definition:
    """A workflow compiled at class creation; the engine reads only this."""

    name: str
    start: type[Step]
    start_config: Config
    steps: tuple[type[Step], ...]
    edges: Mapping[type[Step], Mapping[str, Edge]]
    successors: Mapping[type[Step], tuple[type[Step], ...]]
    predecessors: Mapping[type[Step], frozenset[type[Step]]]
    join_counts: Mapping[type[Step], int]
    events: Mapping[type[Step], tuple[str, ...]]
    by_key: Mapping[str, type[Step]]
    order: Mapping[type[Step], int]
    maps: Mapping[type[Step], Map] = attrs.field(factory=dict)
    """The mapped steps, each with its ``Map`` (``empty`` resolved)."""


class Workflow:
    """Base class of every workflow.

    Subclasses set ``start`` (a step class or ``(step, config)``) and
    ``transitions`` (``{Step: {event: target}}``); optionally ``version``
    (an int >= 1, default 1) and ``unique`` (a :class:`Unique`). A subclass
    that sets neither ``start`` nor ``transitions`` is abstract: it is not
    checked and cannot run.
    """

    start: ClassVar[StartSpec]
    transitions: ClassVar[Mapping[type[Step], Mapping[str, Target]]]
    version: ClassVar[int] = 1
    unique: ClassVar[Unique | None] = None
    definition: ClassVar[Definition]

    versions: ClassVar[Mapping[int, type[Workflow]]] = {}
    current_version: ClassVar[int | None] = None
    family: ClassVar[type[Workflow] | None] = None
    """The family whose ``versions`` list this class (set by the family); None for most."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "versions" in cls.__dict__:
            _check_versions(cls)
            return
        if not hasattr(cls, "start") and not hasattr(cls, "transitions"):
            return
        cls.definition = _compile(cls)

    @classmethod
    def resolve(cls, version: int | None = None) -> type[Workflow]:
        """The concrete workflow to run for ``version``.

        A workflow family (a class with ``versions = {1: FlowV1, 2: FlowV2}``)
        gives the class of that version, or of ``current_version`` (default:
        the highest) when ``version`` is None. A plain workflow is its own
        only version. Raises ``ValueError`` for a version that does not exist.
        """
        versions = cls.__dict__.get("versions")
        if versions:
            wanted = version if version is not None else cls.current_version or max(versions)
            if wanted not in versions:
                raise ValueError(
                    f"{cls.__qualname__} has no version {wanted!r}; it has {sorted(versions)}"
                )
            found: type[Workflow] = versions[wanted]
            return found
        if "definition" not in cls.__dict__:
            raise WorkflowDefinitionError(
                cls.__qualname__, [f"{cls.__qualname__} is abstract: it sets no start step"]
            )
        if version is not None and version != cls.version:
            raise ValueError(
                f"{cls.__qualname__} is version {cls.version}, not {version!r}; "
                f"declare the versions of a workflow family with versions = {{n: Workflow}}"
            )
        return cls

    @classmethod
    def graph(cls) -> Graph:
        """The workflow's graph: start, steps and edges (routes marked)."""
        d = cls.definition
        edges = [
            GraphEdge(source, event, target, edge.configs.get(target), edge.route is not None)
            for source, by_event in d.edges.items()
            for event, edge in by_event.items()
            for target in edge.targets
        ]
        return Graph(d.start, d.steps, tuple(edges))

    @classmethod
    def mermaid(cls) -> str:
        """The graph as a Mermaid flowchart.

        Dotted arrows for routes, a circle for Done, a double-sided box for a
        mapped step.
        """
        graph = cls.graph()
        maps = cls.definition.maps
        lines = ["flowchart TD"]
        for step in graph.steps:
            name = step.__qualname__
            if step.ends_workflow:
                shape = f'(("{name}"))'
            elif step in maps:
                shape = f'[["{name} (map)"]]'
            else:
                shape = f'["{name}"]'
            lines.append(f"    {step.step_key}{shape}")
        for e in graph.edges:
            arrow = "-.->" if e.routed else "-->"
            lines.append(f"    {e.source.step_key} {arrow}|{e.event}| {e.target.step_key}")
        return "\n".join(lines) + "\n"

    @classmethod
    def predecessors(cls) -> Mapping[type[Step], frozenset[type[Step]]]:
        """For each step, the steps with an edge (static or routed) leading to it."""
        return cls.definition.predecessors


# --------------------------------------------------------------------------- checks


def _is_step(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Step) and value is not Step


class _Checker:
    """Collects every problem of one workflow class, then compiles it if there are none."""

    def __init__(self, workflow: type[Workflow]) -> None:
        self.workflow = workflow
        self.wf = workflow.__qualname__
        self.problems: list[str] = []
        self.configs: dict[type[Step], list[Config]] = {}
        self.order: dict[type[Step], int] = {}
        self.mentioned: set[tuple[type[Step], str]] = set()  # (step, event) pairs written
        self.bad_events: set[type[Step]] = set()  # steps whose events are reported already
        self.plain: set[type[Step]] = set()  # steps targeted (or started) without a Map
        self.mapped: dict[type[Step], list[Map]] = {}  # steps targeted by a Map, and the Maps

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def note(self, step: type[Step], config: Config) -> None:
        self.order.setdefault(step, len(self.order))
        self.configs.setdefault(step, []).append(config)

    def spec(
        self, value: object, where: str, *, maps: bool = True
    ) -> tuple[type[Step], Config] | None:
        """A step class, ``(step, config)`` or (where ``maps``) a ``Map``; else a problem."""
        if isinstance(value, Map) and maps:
            return self.map(value, where)
        if _is_step(value):
            self.plain.add(value)  # type: ignore[arg-type]
            return value, None  # type: ignore[return-value]
        if isinstance(value, tuple) and len(value) == 2 and _is_step(value[0]):
            config = value[1]
            if config is not None and not isinstance(config, Mapping):
                self.problem(
                    f"{where}: the config of {value[0].__qualname__} must be a dict or None, "
                    f"got: {config!r}"
                )
                return None
            self.plain.add(value[0])
            return value[0], config
        wanted = (
            "a Step subclass, (Step, config) or a Map"
            if maps
            else "a Step subclass or (Step, config)"
        )
        self.problem(f"{where} must be {wanted}, got: {value!r}")
        return None

    def map(self, value: Map, where: str) -> tuple[type[Step], Config] | None:
        """A ``Map`` target: its step and config, with every problem of its options noted."""
        step = value.step
        if not _is_step(step):
            self.problem(f"{where}: Map needs a Step subclass, got: {step!r}")
            return None
        name = f"Map({step.__qualname__})"
        if not callable(value.items):
            self.problem(
                f"{where}: {name}.items must be callable (context -> list), got: {value.items!r}"
            )
        cap = value.max_concurrency
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            self.problem(
                f"{where}: {name}.max_concurrency must be an int >= 1 or None, got: {cap!r}"
            )
        config = value.config
        if config is not None and not isinstance(config, Mapping):
            self.problem(f"{where}: {name}.config must be a dict or None, got: {config!r}")
        elif config is not None and any(key in config for key in _ITEM_KEYS):
            self.problem(
                f"{where}: {name}.config must not set 'item' or 'index': "
                f"each item's config gets them"
            )
        if value.empty is not None and not isinstance(value.empty, str):
            self.problem(f"{where}: {name}.empty must be an event name, got: {value.empty!r}")
        if getattr(step, "ends_workflow", False):
            self.problem(f"{where}: {step.__qualname__} ends the workflow and cannot be mapped")
        self.mapped.setdefault(step, []).append(value)
        # The step stays in the graph whatever its options: only their problems are reported.
        return step, config if isinstance(config, Mapping) else None

    def target(self, value: object, where: str) -> Edge | None:
        """A compiled edge (without ``dead``, filled in later) or None with a problem noted."""
        route: Route | None = None
        if isinstance(value, Route):
            route = value
            if not callable(value.choose):
                self.problem(f"{where}: Route.choose must be callable, got: {value.choose!r}")
            raw: Sequence[object] = value.targets
            if not raw:
                self.problem(f"{where}: a Route must name the steps it may choose, got none")
                return None
        elif isinstance(value, list):
            raw = value
            if not raw:
                self.problem(f"{where}: a fan-out list must name at least one step, got []")
                return None
        elif _is_step(value) or isinstance(value, (tuple, Map)):
            raw = [value]
        else:
            self.problem(
                f"{where} must be a Step subclass, (Step, config), a Map, a list of them "
                f"or a Route, got: {value!r}"
            )
            return None
        targets: list[type[Step]] = []
        configs: dict[type[Step], Config] = {}
        for item in raw:
            spec = self.spec(item, where)
            if spec is None:
                continue
            step, config = spec
            if step in configs:
                self.problem(f"{where}: step {step.__qualname__} is named twice")
                continue
            targets.append(step)
            configs[step] = config
        if len(targets) != len(raw):
            return None
        return Edge(tuple(targets), configs, route, ())

    def step(self, step: type[Step]) -> None:
        """The class-level declarations of one step."""
        where = f"{self.wf}: step {step.__qualname__}"
        events = getattr(step, "events", None)
        if (
            not isinstance(events, tuple)
            or not events
            or not all(isinstance(e, str) and e for e in events)
        ):
            self.problem(f"{where}: events must be a non-empty tuple of strings, got: {events!r}")
            self.bad_events.add(step)
        elif len(set(events)) != len(events):
            self.problem(f"{where}: events must not repeat, got: {events!r}")
        key = getattr(step, "step_key", None)
        if not isinstance(key, str) or not key:
            self.problem(f"{where}: step_key must be a non-empty string, got: {key!r}")
        if step.execute is Step.execute:
            self.problem(f"{where}: execute is not defined")
        if step.retry is not None and not isinstance(step.retry, Retry):
            self.problem(f"{where}: retry must be a Retry or None, got: {step.retry!r}")
        if step.timeout is not None:
            try:
                seconds(step.timeout, "timeout", positive=True)
            except ValueError as exc:
                self.problem(f"{where}: {exc}")
        if not isinstance(step.blocking, bool):
            self.problem(f"{where}: blocking must be a bool, got: {step.blocking!r}")
        if not isinstance(step.spread, bool):
            self.problem(f"{where}: spread must be a bool, got: {step.spread!r}")

    def declared(self, step: type[Step]) -> tuple[str, ...]:
        """The events ``step`` may return in this workflow: the union over its configs."""
        seen: dict[str, None] = {}
        for config in self.configs.get(step, [None]):
            try:
                step.check_config(config)
            except Exception as exc:  # a user hook: report it as a problem, never raise it
                self.problem(
                    f"{self.wf}: step {step.__qualname__} cannot run with config {config!r}: {exc}"
                )
            if step in self.bad_events:
                continue  # its events are reported once, by step(); nothing to derive from them
            try:
                events = step.declared_events(config)
            except Exception as exc:
                self.problem(
                    f"{self.wf}: {step.__qualname__}.declared_events({config!r}) raised {exc!r}"
                )
                self.bad_events.add(step)
                continue
            if not isinstance(events, tuple) or not all(isinstance(e, str) for e in events):
                self.problem(
                    f"{self.wf}: {step.__qualname__}.declared_events({config!r}) must return "
                    f"a tuple of strings, got: {events!r}"
                )
                self.bad_events.add(step)
                continue
            seen.update(dict.fromkeys(events))
        return tuple(seen)


def _compile(workflow: type[Workflow]) -> Definition:
    c = _Checker(workflow)
    wf = c.wf

    # -- shape: start, transitions, version, unique
    start_spec = None
    if not hasattr(workflow, "start"):
        c.problem(f"{wf}.start is missing: set it to the first step")
    else:
        start_spec = c.spec(workflow.start, f"{wf}.start", maps=False)
    if start_spec is not None:
        c.note(*start_spec)
    version = workflow.version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        c.problem(f"{wf}.version must be an int >= 1, got: {version!r}")
    unique = workflow.unique
    if unique is not None:
        _check_unique(c, unique)

    raw = getattr(workflow, "transitions", {})
    edges: dict[type[Step], dict[str, Edge]] = {}
    if not isinstance(raw, Mapping):
        c.problem(f"{wf}.transitions must be a dict of Step -> {{event: target}}, got: {raw!r}")
        raw = {}
    for source, by_event in raw.items():
        if not _is_step(source):
            c.problem(f"{wf}.transitions: every key must be a Step subclass, got: {source!r}")
            continue
        where = f"{wf}.transitions[{source.__qualname__}]"
        c.order.setdefault(source, len(c.order))
        if not isinstance(by_event, Mapping):
            c.problem(f"{where} must be a dict of event -> target, got: {by_event!r}")
            continue
        compiled: dict[str, Edge] = {}
        for event, target in by_event.items():
            if not isinstance(event, str) or not event:
                c.problem(f"{where}: every event must be a non-empty string, got: {event!r}")
                continue
            c.mentioned.add((source, event))
            edge = c.target(target, f"{where}[{event!r}]")
            if edge is None:
                continue
            for step in edge.targets:
                c.note(step, edge.configs[step])
            compiled[event] = edge
        edges[source] = compiled

    steps = tuple(sorted(c.order, key=c.order.__getitem__))
    for step in steps:
        c.step(step)

    successors: dict[type[Step], tuple[type[Step], ...]] = {}
    for step in steps:
        seen: dict[type[Step], None] = {}
        for edge in edges.get(step, {}).values():
            seen.update(dict.fromkeys(edge.targets))
        successors[step] = tuple(seen)
    predecessors: dict[type[Step], set[type[Step]]] = {step: set() for step in steps}
    for step, nexts in successors.items():
        for nxt in nexts:
            predecessors[nxt].add(step)

    start = start_spec[0] if start_spec is not None else None
    _check_graph(c, start, steps, edges, successors)

    events: dict[type[Step], tuple[str, ...]] = {}
    for step in steps:
        events[step] = c.declared(step)
        if step not in c.bad_events:
            _check_events(c, step, events[step], edges)

    maps = _check_maps(c, events)

    by_key: dict[str, type[Step]] = {}
    for step in steps:
        key = getattr(step, "step_key", None)
        if not isinstance(key, str):
            continue
        if key in by_key:
            c.problem(
                f"{wf}: steps {by_key[key].__qualname__} and {step.__qualname__} "
                f"share the step key {key!r}; set step_key on one of them"
            )
        else:
            by_key[key] = step

    if c.problems or start_spec is None or start is None:
        raise WorkflowDefinitionError(wf, c.problems or [f"{wf}.start is missing"])

    join_counts = {step: len(preds) for step, preds in predecessors.items() if len(preds) > 1}
    final_edges = {
        source: {
            event: _finish_edge(edge, successors[source], join_counts, maps)
            for event, edge in by_event.items()
        }
        for source, by_event in edges.items()
    }
    return Definition(
        name=wf,
        start=start,
        start_config=start_spec[1],
        steps=steps,
        edges=final_edges,
        successors=successors,
        predecessors={step: frozenset(preds) for step, preds in predecessors.items()},
        join_counts=join_counts,
        events=events,
        by_key=by_key,
        order={step: i for i, step in enumerate(steps)},
        maps=maps,
    )


def _finish_edge(
    edge: Edge,
    successors: tuple[type[Step], ...],
    join_counts: Mapping[type[Step], int],
    maps: Mapping[type[Step], Map],
) -> Edge:
    """Fill in what the engine precomputes per edge: the steps it rules out, its fast path."""
    dead = () if edge.route is not None else tuple(s for s in successors if s not in edge.configs)
    return attrs.evolve(
        edge,
        dead=dead,
        simple=edge.route is None
        and not dead
        and not any(t in join_counts or t in maps for t in edge.targets),
        target_set=frozenset(edge.targets),
        given_configs={t: c for t, c in edge.configs.items() if c is not None},
    )


def _check_versions(family: type[Workflow]) -> None:
    """A workflow family: ``versions`` maps each version number to a workflow of that version."""
    name = family.__qualname__
    problems = []
    versions = family.__dict__["versions"]
    if not isinstance(versions, Mapping) or not versions:
        problems.append(f"{name}.versions must be a non-empty dict of int -> Workflow")
    else:
        for number, workflow in versions.items():
            if not (
                isinstance(workflow, type)
                and issubclass(workflow, Workflow)
                and "definition" in workflow.__dict__
            ):
                problems.append(
                    f"{name}.versions[{number!r}] must be a concrete Workflow, got: {workflow!r}"
                )
            elif workflow.version != number:
                problems.append(
                    f"{name}.versions[{number!r}] is {workflow.__qualname__}, "
                    f"whose version is {workflow.version}"
                )
        current = family.current_version
        if current is not None and current not in versions:
            problems.append(f"{name}.current_version {current!r} is not one of its versions")
    if problems:
        raise WorkflowDefinitionError(name, problems)
    for workflow in versions.values():
        if workflow.__dict__.get("family") is None:
            workflow.family = family


def _check_maps(c: _Checker, events: Mapping[type[Step], tuple[str, ...]]) -> dict[type[Step], Map]:
    """Each mapped step is mapped by one ``Map`` alone, whose ``empty`` names one of its events."""
    maps: dict[type[Step], Map] = {}
    for step, found in c.mapped.items():
        name = step.__qualname__
        if step in c.plain:
            c.problem(
                f"{c.wf}: step {name} is the target of a Map and of a plain transition; "
                f"a step runs either once or once per item"
            )
            continue
        if any(other is not found[0] for other in found):
            c.problem(
                f"{c.wf}: step {name} is mapped by {len(found)} different Maps; "
                f"give every transition to it the same Map object"
            )
            continue
        spec = found[0]
        declared = events.get(step, ())
        empty = spec.empty
        if empty is None:
            if len(declared) != 1:
                c.problem(
                    f"{c.wf}: Map({name}) must say with empty=... which of its events "
                    f"({', '.join(map(repr, declared))}) an empty list of items takes"
                )
                continue
            empty = declared[0]
        elif empty not in declared:
            c.problem(
                f"{c.wf}: Map({name}).empty is {empty!r}, which {name} does not declare "
                f"({', '.join(map(repr, declared))})"
            )
            continue
        maps[step] = attrs.evolve(spec, empty=empty)
    return maps


def _check_unique(c: _Checker, unique: object) -> None:
    if not isinstance(unique, Unique):
        c.problem(f"{c.wf}.unique must be a Unique or None, got: {unique!r}")
        return
    key = unique.key
    if (
        not isinstance(key, str)
        or not key
        or not key.replace("_", "").isalnum()
        or key != key.lower()
    ):
        c.problem(f"{c.wf}.unique.key must be lowercase letters, digits or '_', got: {key!r}")
    if unique.scope not in ("workflow", "version", "global", "none"):
        c.problem(
            f"{c.wf}.unique.scope must be 'workflow', 'version', 'global' or 'none', "
            f"got: {unique.scope!r}"
        )


def _check_graph(
    c: _Checker,
    start: type[Step] | None,
    steps: tuple[type[Step], ...],
    edges: Mapping[type[Step], Mapping[str, Edge]],
    successors: Mapping[type[Step], tuple[type[Step], ...]],
) -> None:
    """Rules 1 to 4: acyclic, reachable from start, leaves are Done, fan-outs converge."""
    wf = c.wf
    # 1. acyclic: an iterative depth-first search reporting each cycle once.
    state: dict[type[Step], int] = {}  # 1: on the current path, 2: finished
    cyclic = False
    for root in steps:
        if root in state:
            continue
        path: list[type[Step]] = [root]
        state[root] = 1
        stack = [iter(successors[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                state[path.pop()] = 2
                continue
            if state.get(nxt) == 1:
                # Each back edge is met once: each cycle through it is reported once.
                cycle = [*path[path.index(nxt) :], nxt]
                cyclic = True
                c.problem(f"{wf}: cycle {' -> '.join(s.__qualname__ for s in cycle)}")
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))

    # 2. reachable from start
    if start is not None:
        reachable = _descendants(start, successors)
        for step in steps:
            if step not in reachable:
                c.problem(
                    f"{wf}: step {step.__qualname__} is unreachable from start step "
                    f"{start.__qualname__}"
                )

    # 3. every leaf is Done, and Done is a leaf
    for step in steps:
        if getattr(step, "ends_workflow", False):
            if edges.get(step):
                c.problem(
                    f"{wf}: step {step.__qualname__} ends the workflow (Done) but has transitions"
                )
        elif step not in edges:
            c.problem(
                f"{wf}: step {step.__qualname__} is a leaf but not Done: "
                f"give it transitions that lead to Done"
            )

    # 4. the branches of a static fan-out converge before Done
    if cyclic:
        return  # descendants are meaningless in a cyclic graph
    for source, by_event in edges.items():
        for event, edge in by_event.items():
            if edge.route is not None or len(edge.targets) < 2:
                continue
            common: set[type[Step]] | None = None
            for branch in edge.targets:
                below = {s for s in _descendants(branch, successors) if not s.ends_workflow}
                common = below if common is None else common & below
            if not common:
                names = ", ".join(s.__qualname__ for s in edge.targets)
                c.problem(
                    f"{wf}: the fan-out of {source.__qualname__} on {event!r} ({names}) "
                    f"never converges on a common step before Done"
                )


def _descendants(
    root: type[Step], successors: Mapping[type[Step], tuple[type[Step], ...]]
) -> set[type[Step]]:
    seen = {root}
    todo = [root]
    while todo:
        for nxt in successors.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _check_events(
    c: _Checker,
    step: type[Step],
    declared: Iterable[str],
    edges: Mapping[type[Step], Mapping[str, Edge]],
) -> None:
    """Rule 6: every declared event has a transition; every transition's event is declared."""
    by_event = edges.get(step)
    if by_event is None:  # a leaf: rule 3 speaks for it
        return
    declared = tuple(declared)
    where = f"{c.wf}.transitions[{step.__qualname__}]"
    for event in declared:
        if (step, event) not in c.mentioned:
            c.problem(f"{where}: event {event!r} declared by {step.__qualname__} has no transition")
    for event in by_event:
        if event not in declared:
            shown = ", ".join(repr(e) for e in declared)
            c.problem(
                f"{where}: event {event!r} is not declared in {step.__qualname__}.events ({shown})"
            )
