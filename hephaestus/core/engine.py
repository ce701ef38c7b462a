"""The engine: pure functions from an instance (and a step's result) to a new instance.

No await, no clock, no I/O: times come in as arguments (``now`` is wall-clock
nanoseconds). A runner needs nothing else from the core:

- :func:`advance` starts a pending instance and completes a finished one;
- :func:`apply_result` folds a step's result (``Ok``, ``Async``, ``Error``)
  into the instance with a single construction;
- :func:`apply_item_result` folds the result of one item of a mapped step;
- :func:`resume_step` completes a waiting step with the event (and data) it
  was given; :func:`send` gives a message to a step that waits for it, or
  keeps it for the first one that parks waiting for it;
- :func:`fail_step`, :func:`cancel`, :func:`schedule_timer` for the rest.

:func:`complete_step`, :func:`activate_transitions` and
:func:`check_completion` are the pieces ``apply_result`` is made of, exposed
for runners that want them separately.

Joins use dead-path elimination. When a step finishes, each of its
successors receives a token from it: live if the step's event led there,
dead otherwise. A step with one predecessor activates on a live token; a join
(several predecessors) waits until every predecessor has sent its token and
activates if any was live. A step that receives only dead tokens never runs
and passes dead tokens on. So a step shared by exclusive branches still runs,
a fan-in waits for all of its live branches, and no step activates twice.

Maps. When a mapped step activates, its items are computed from the context
(``Map.items``) and kept in ``instance.maps``; the runner executes one item at
a time or many, and folds each with :func:`apply_item_result`. The step is
one node of the graph: it completes when its last item does, sending each
successor one token, live if any item's event led there. An empty list
completes it at once with the map's ``empty`` event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import attrs

from hephaestus._show import shown
from hephaestus.exceptions import (
    InvalidStepResult,
    MapError,
    NotWaiting,
    RouteError,
    UndeclaredEvent,
)

from .instance import Context, ExecutionEntry, Failure, Instance, MapState, Message, Status, Timer
from .step import Async, Error, Ok, Result, Step
from .workflow import Definition, Edge, Map

__all__ = [
    "Applied",
    "activate_transitions",
    "advance",
    "apply_item_result",
    "apply_result",
    "cancel",
    "check_completion",
    "check_result",
    "complete_step",
    "fail_step",
    "resume_step",
    "schedule_timer",
    "send",
]

_StepT = type[Step]
_T = TypeVar("_T")
_EMPTY: frozenset[_StepT] = frozenset()
_RUNNING = Status.RUNNING
_WAITING = Status.WAITING
_COMPLETED = Status.COMPLETED
_NO_EDGES: Mapping[str, Edge] = {}
_new = object.__new__
_set_state = object.__setattr__


_ONE: dict[_StepT, frozenset[_StepT]] = {}


def _one(step: _StepT) -> frozenset[_StepT]:
    """``frozenset((step,))``, made once per step class: the fast path allocates no set."""
    single = _ONE[step] = frozenset((step,))
    return single


def _build(cls: type[_T], state: dict[str, Any]) -> _T:
    """A frozen attrs object (of a dict-backed class) from its complete field dict.

    The engine's hot path builds an instance per step; filling the object's
    ``__dict__`` at once costs a third of the generated ``__init__``, which
    stores the fields one by one. The result is an ordinary frozen object.
    """
    obj: _T = _new(cls)
    _set_state(obj, "__dict__", state)
    return obj


class Applied(NamedTuple):
    """What folding a result produced: the new instance, where the event led, what activated.

    ``targets`` are the steps the step's event led to (a route's choice);
    ``activated`` the steps that became active (a join may wait for other
    branches; dead-path elimination may activate a join further down).
    Both are empty for ``Async``, ``Error`` and a step that ends the workflow.
    """

    instance: Instance
    targets: tuple[_StepT, ...]
    activated: tuple[_StepT, ...]


def _applied(fields: tuple[Instance, tuple[_StepT, ...], tuple[_StepT, ...]]) -> Applied:
    """An ``Applied`` without the generated ``__new__`` (a Python call) of named tuples."""
    return _new_tuple(Applied, fields)


_new_tuple = tuple.__new__


def _status(active: frozenset[_StepT], waiting: frozenset[_StepT]) -> Status:
    if active:
        return _RUNNING
    if waiting:
        return _WAITING
    return _COMPLETED


def advance(instance: Instance) -> Instance:
    """Start a pending instance, settle a running one with nothing active; else return it as is."""
    status = instance.status
    if status is Status.PENDING:
        d = instance.workflow.definition
        start = d.start
        configs = instance.step_configs
        if d.start_config is not None:
            configs = {**configs, start: d.start_config}
        return Instance(
            instance.id,
            instance.workflow,
            instance.workflow_version,
            _RUNNING,
            instance.context,
            start,
            configs,
            frozenset((start,)),
            instance.completed_steps,
            instance.waiting_steps,
            instance.runtime_metadata,
            instance.execution_history,
            instance.telemetry_metadata,
            instance.started_at,
            instance.started_monotonic,
            instance.timers,
            instance.pending_joins,
            instance.error,
            instance.maps,
            instance.messages,
        )
    if status is _RUNNING and not instance.active_steps:
        return check_completion(instance)
    return instance


def check_completion(instance: Instance) -> Instance:
    """A running instance with nothing active: completed if nothing waits, else waiting."""
    if instance.status is not _RUNNING or instance.active_steps:
        return instance
    return attrs.evolve(instance, status=_status(_EMPTY, instance.waiting_steps))


def _edge(d: Definition, step: _StepT, event: object) -> Edge | None:
    """The edge ``(step, event)``: None for a step that ends the workflow; raise if undeclared."""
    by_event = d.edges.get(step)
    if by_event is not None:
        # A non-string event (perhaps unhashable: a list) is simply not declared.
        edge = by_event.get(event) if isinstance(event, str) else None
        if edge is not None:
            return edge
    elif event in d.events.get(step, ()):
        return None
    raise UndeclaredEvent(step.__qualname__, event, d.events.get(step, ()))


def _complete(
    instance: Instance,
    step: _StepT,
    event: str,
    updates: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    now: int,
) -> tuple[Context, Mapping[str, Any], tuple[ExecutionEntry, ...]]:
    """The context, runtime metadata and history after ``step`` completed with ``event``."""
    context = instance.context
    if updates is not None:
        if type(updates) is not dict and not isinstance(updates, Mapping):
            raise InvalidStepResult(
                f"step {step.__qualname__} returned updates that are not a dict: {updates!r}"
            )
        steps = dict(context.steps)
        steps[step.step_key] = updates
        context = Context(context.initial, steps)
    runtime = instance.runtime_metadata
    if metadata:
        if type(metadata) is not dict and not isinstance(metadata, Mapping):
            raise InvalidStepResult(
                f"step {step.__qualname__} returned metadata that is not a dict: {metadata!r}"
            )
        runtime = {**runtime, **metadata}
    history = (*instance.execution_history, ExecutionEntry(step, event, now, updates))
    return context, runtime, history


def _route(edge: Edge, step: _StepT, context: Context) -> tuple[_StepT, ...]:
    route = edge.route
    assert route is not None
    chosen = route.choose(context)
    try:
        picked = (chosen,) if isinstance(chosen, type) else tuple(dict.fromkeys(chosen))
    except TypeError:  # None, a number, a list holding a dict: not a step nor a list of steps
        raise RouteError(
            f"the route after {step.__qualname__} chose {chosen!r}, "
            "which is not a step or a list of steps"
        ) from None
    if not picked:
        raise RouteError(f"the route after {step.__qualname__} chose no step")
    for target in picked:
        if target not in edge.configs:
            names = ", ".join(t.__qualname__ for t in edge.targets)
            raise RouteError(
                f"the route after {step.__qualname__} chose {target!r}, "
                f"which is not one of its targets ({names})"
            )
    return picked


def _activate(
    d: Definition,
    instance: Instance,
    step: _StepT,
    edge: Edge | None,
    context: Context,
    active: frozenset[_StepT],
) -> tuple[
    tuple[_StepT, ...],
    tuple[_StepT, ...],
    frozenset[_StepT],
    Mapping[_StepT, Any],
    Mapping[_StepT, tuple[int, bool]],
]:
    """Send ``step``'s tokens: returns targets, activated, active, configs, pending joins."""
    configs = instance.step_configs
    joins = instance.pending_joins
    if edge is None:
        return (), (), active, configs, joins
    if edge.route is None:
        targets = edge.targets
        dead = edge.dead
    else:
        targets = _route(edge, step, context)
        dead = tuple(s for s in d.successors[step] if s not in targets)
    join_counts = d.join_counts
    edge_configs = edge.configs

    # The fast path: every target has one predecessor and nothing is ruled out.
    if edge.simple:
        if edge.given_configs:
            configs = {**configs, **edge.given_configs}
        return (
            targets,
            targets,
            active | edge.target_set if active else edge.target_set,
            configs,
            joins,
        )

    if not dead:  # only live tokens: joins count them, nothing dies
        activated = []
        counted: dict[_StepT, tuple[int, bool]] | None = None
        for t in targets:
            if edge_configs.get(t) is not None:
                configs = {**configs, t: edge_configs[t]}
            needed = join_counts.get(t)
            if needed is not None:
                if counted is None:
                    counted = dict(joins)
                arrived = counted.pop(t, (0, False))[0] + 1
                if arrived < needed:
                    counted[t] = (arrived, True)
                    continue
            activated.append(t)
        if counted is not None:
            joins = counted
        if len(activated) > 1:
            activated.sort(key=d.order.__getitem__)
        return targets, tuple(activated), active | frozenset(activated), configs, joins

    joins = dict(joins)
    activated = []
    tokens: list[tuple[_StepT, bool]] = [(t, True) for t in targets]
    tokens += [(t, False) for t in dead]
    while tokens:
        target, live = tokens.pop()
        if live and (edge_configs.get(target) is not None or target in configs):
            configs = {**configs, target: edge_configs.get(target)}
        needed = join_counts.get(target)
        if needed is not None:
            arrived, any_live = joins.pop(target, (0, False))
            arrived += 1
            live = any_live or live
            if arrived < needed:
                joins[target] = (arrived, live)
                continue
        if live:
            activated.append(target)
        else:
            tokens.extend((s, False) for s in d.successors[target])
    activated.sort(key=d.order.__getitem__)
    return targets, tuple(activated), active | frozenset(activated), configs, joins


def _fold_ok(
    instance: Instance,
    step: _StepT,
    event: str,
    updates: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    now: int,
    waiting: frozenset[_StepT],
    timers: Mapping[_StepT, Timer],
) -> Applied:
    """Complete ``step``, send its tokens and settle the status, in one construction."""
    d = instance.workflow.definition
    edge = _edge(d, step, event)
    context, runtime, history = _complete(instance, step, event, updates, metadata, now)
    active = instance.active_steps
    if step in active:
        active = _EMPTY if len(active) == 1 else active - {step}
    targets, activated, active, configs, joins = _activate(d, instance, step, edge, context, active)
    applied = Applied(
        Instance(
            instance.id,
            instance.workflow,
            instance.workflow_version,
            _status(active, waiting),
            context,
            activated[-1] if activated else instance.current_step,
            configs,
            active,
            instance.completed_steps | {step},
            waiting,
            runtime,
            history,
            instance.telemetry_metadata,
            instance.started_at,
            instance.started_monotonic,
            timers,
            joins,
            instance.error,
            instance.maps,
            instance.messages,
        ),
        targets,
        activated,
    )
    if d.maps and not d.maps.keys().isdisjoint(activated):
        return _start_maps(applied, now)
    return applied


def _items(spec: Map, context: Context) -> tuple[Any, ...]:
    """The items of a map, computed from ``context``; ``MapError`` when they cannot be."""
    name = f"Map({spec.step.__qualname__})"
    try:
        raw = spec.items(context)
    except Exception as exc:
        raise MapError(f"the items of {name} raised {shown(exc, 300)}") from exc
    if isinstance(raw, (str, bytes, bytearray, Mapping)) or not isinstance(raw, Iterable):
        raise MapError(f"the items of {name} must be a list, got: {shown(raw, 200)}")
    try:
        return tuple(raw)
    except Exception as exc:  # a generator that raises
        raise MapError(f"the items of {name} raised {shown(exc, 300)}") from exc


def _start_maps(applied: Applied, now: int) -> Applied:
    """Compute the items of the mapped steps that just activated; complete the empty ones."""
    instance, targets, activated = applied
    d = instance.workflow.definition
    maps = dict(instance.maps)
    empty = []
    for step in activated:
        spec = d.maps.get(step)
        if spec is not None:
            items = _items(spec, instance.context)
            maps[step] = MapState(items)
            if not items:
                empty.append(step)
    instance = attrs.evolve(instance, maps=maps)
    if not empty:
        return Applied(instance, targets, activated)
    still = [s for s in activated if s not in empty]
    for step in empty:
        finished = _finish_map(instance, step, now)
        instance = finished.instance
        still.extend(finished.activated)
    return Applied(instance, targets, tuple(dict.fromkeys(still)))


def _finish_map(instance: Instance, step: _StepT, now: int) -> Applied:
    """Every item of ``step`` is done: it completes, and sends its successors their tokens.

    The items' results are gathered from the history in item order: their
    updates (``{}`` for none) under ``"items"``, their events under
    ``"events"``. A successor's token is live if any item's event led to
    it; an empty map's tokens follow its ``empty`` event.
    """
    d = instance.workflow.definition
    state = instance.maps[step]
    count = len(state.items)
    updates: list[Any] = [None] * count
    events: list[str] = [""] * count
    if count:
        for entry in instance.execution_history:
            if entry.step is step and entry.item is not None:
                updates[entry.item] = {} if entry.updates is None else entry.updates
                events[entry.item] = entry.event
        taken = tuple(dict.fromkeys(events))
    else:
        taken = (d.maps[step].empty,)  # type: ignore[assignment]  # resolved by the checks
    by_event = d.edges[step]
    targets: dict[_StepT, None] = {}
    configs: dict[_StepT, Any] = {}
    for event in taken:
        edge = by_event[event]
        for target in edge.targets:
            targets.setdefault(target)
            configs.setdefault(target, edge.configs.get(target))
    ordered = tuple(sorted(targets, key=d.order.__getitem__))
    dead = tuple(s for s in d.successors[step] if s not in targets)
    merged = Edge(ordered, configs, None, dead)
    steps = dict(instance.context.steps)
    steps[step.step_key] = {"items": updates, "events": events}
    context = Context(instance.context.initial, steps)
    active = _without(instance.active_steps, step)
    maps = {s: m for s, m in instance.maps.items() if s is not step}
    _, activated, active, configs_after, joins = _activate(
        d, instance, step, merged, context, active
    )
    finished = attrs.evolve(
        instance,
        status=_status(active, instance.waiting_steps),
        context=context,
        current_step=activated[-1] if activated else instance.current_step,
        step_configs=configs_after,
        active_steps=active,
        completed_steps=_with(instance.completed_steps, step),
        pending_joins=joins,
        maps=maps,
    )
    applied = Applied(finished, ordered, activated)
    if d.maps and not d.maps.keys().isdisjoint(activated):
        return _start_maps(applied, now)
    return applied


def apply_item_result(
    instance: Instance, step: _StepT, index: int, result: Result, *, now: int
) -> Applied:
    """Fold the result of item ``index`` of the active mapped ``step``.

    ``Ok``: the item completes (an ``ExecutionEntry`` with ``item=index``
    keeps its event and updates; its metadata merges into
    ``runtime_metadata``); when it is the last one, the step completes
    and its successors receive their tokens (``Applied.activated``).
    ``Error``: the instance fails, blaming the step and the item.
    ``Async``: refused (an item cannot park), like a value that is no
    result, with :class:`InvalidStepResult`; an undeclared event raises
    :class:`UndeclaredEvent`. :class:`NotWaiting` if the step is not an
    active map or the item is done already. The instance is then unchanged.
    """
    state = instance.maps.get(step)
    if state is None or step not in instance.active_steps or instance.terminal:
        raise NotWaiting(
            f"instance {instance.id!r} ({instance.status}) has no active map of {step.__qualname__}"
        )
    if not 0 <= index < len(state.items) or state.done >> index & 1:
        raise NotWaiting(
            f"instance {instance.id!r}: item {index!r} of {step.__qualname__} "
            f"is done already or does not exist ({len(state.items)} items)"
        )
    kind = type(result)
    if kind is Error:
        error: Error = result  # type: ignore[assignment]
        return Applied(fail_step(instance, step, "error", error.reason, item=index), (), ())
    if kind is not Ok:
        shown = "Async(): a mapped step's items cannot park" if kind is Async else repr(result)
        raise InvalidStepResult(
            f"item {index} of step {step.__qualname__} returned {shown}, which is not Ok or Error"[
                :2000
            ]
        )
    ok: Ok = result  # type: ignore[assignment]
    d = instance.workflow.definition
    edge = _edge(d, step, ok.event)
    updates, metadata = ok.updates, ok.metadata
    for name, value in (("updates", updates), ("metadata", metadata)):
        if value is not None and type(value) is not dict and not isinstance(value, Mapping):
            raise InvalidStepResult(
                f"item {index} of step {step.__qualname__} returned {name} "
                f"that are not a dict: {value!r}"[:2000]
            )
    state = MapState(state.items, state.done | 1 << index)
    maps = dict(instance.maps)
    maps[step] = state
    fields = instance.__dict__.copy()
    fields["maps"] = maps
    if metadata:
        fields["runtime_metadata"] = {**instance.runtime_metadata, **metadata}
    fields["execution_history"] = (
        *instance.execution_history,
        ExecutionEntry(step, ok.event, now, updates, index),
    )
    folded = _build(Instance, fields)
    if state.done_count < len(state.items):
        return Applied(folded, () if edge is None else edge.targets, ())
    finished = _finish_map(folded, step, now)
    return Applied(finished.instance, () if edge is None else edge.targets, finished.activated)


def check_result(instance: Instance, step: _StepT, result: object) -> None:
    """Raise if ``result`` cannot be folded: not a result, an undeclared event, non-dict updates.

    Runners call it right after ``execute`` to tell a step that succeeded from
    one that returned something wrong; ``apply_result`` checks the same.
    """
    kind = type(result)
    if kind is Ok:
        ok: Ok = result  # type: ignore[assignment]
        _edge(instance.workflow.definition, step, ok.event)
        for name, value in (("updates", ok.updates), ("metadata", ok.metadata)):
            if value is not None and type(value) is not dict and not isinstance(value, Mapping):
                raise InvalidStepResult(
                    f"step {step.__qualname__} returned {name} that are not a dict: {value!r}"
                )
    elif kind is not Async and kind is not Error:
        raise InvalidStepResult(
            f"step {step.__qualname__} returned {result!r}, which is not Ok, Async or Error"
        )


def apply_result(instance: Instance, step: _StepT, result: Result, *, now: int) -> Applied:
    """Fold the result of an active ``step`` into the instance.

    ``Ok``: the step completes (its updates land in ``context.steps``, its
    metadata in ``runtime_metadata``, an ``ExecutionEntry`` is appended), its
    transitions activate, and an instance with nothing left completes.
    ``Async``: the step parks (with its timer, if it declares one).
    ``Error``: the instance fails. Raises :class:`UndeclaredEvent` for an
    event the step does not declare, :class:`InvalidStepResult` for a value
    that is no result, :class:`RouteError` when a route chooses a step it does
    not name; the instance is then unchanged and the runner fails the step.
    """
    kind = type(result)
    if kind is Ok:
        ok: Ok = result  # type: ignore[assignment]
        # The fast path, inlined: a static edge to steps with one predecessor,
        # plain dict updates, no metadata. Same outcome as _fold_ok, fewer calls.
        # (An event that is not a plain str, perhaps unhashable, takes the checked path.)
        edge = (
            instance.workflow.definition.edges.get(step, _NO_EDGES).get(ok.event)
            if type(ok.event) is str
            else None
        )
        updates = ok.updates
        if (
            edge is not None
            and edge.simple
            and not ok.metadata
            and (updates is None or type(updates) is dict)
        ):
            state = instance.__dict__.copy()
            if updates is not None:
                context = instance.context
                steps = dict(context.steps)
                steps[step.step_key] = updates
                state["context"] = Context(context.initial, steps)
            active = instance.active_steps
            if len(active) == 1 and step in active:
                state["active_steps"] = edge.target_set
            else:
                state["active_steps"] = (active - {step}) | edge.target_set
            if edge.given_configs:
                state["step_configs"] = {**instance.step_configs, **edge.given_configs}
            targets = edge.targets
            state["status"] = _RUNNING
            state["current_step"] = targets[-1]
            state["completed_steps"] = _with(instance.completed_steps, step)
            state["execution_history"] = (
                *instance.execution_history,
                ExecutionEntry(step, ok.event, now, updates),
            )
            return _applied((_build(Instance, state), targets, targets))
        return _fold_ok(
            instance,
            step,
            ok.event,
            ok.updates,
            ok.metadata,
            now,
            instance.waiting_steps,
            instance.timers,
        )
    if kind is Async:
        return _parked(instance, step, now)
    if kind is Error:
        error: Error = result  # type: ignore[assignment]
        return Applied(fail_step(instance, step, "error", error.reason), (), ())
    raise InvalidStepResult(
        f"step {step.__qualname__} returned {result!r}, which is not Ok, Async or Error"
    )


def _without(steps: frozenset[_StepT], step: _StepT) -> frozenset[_StepT]:
    """``steps - {step}``, sharing the empty set: parked instances stay small."""
    if len(steps) == 1 and step in steps:
        return _EMPTY
    return steps - _one_set(step)


def _with(steps: frozenset[_StepT], step: _StepT) -> frozenset[_StepT]:
    """``steps | {step}``, sharing the one-step sets."""
    return _one_set(step) if not steps else steps | _one_set(step)


def _one_set(step: _StepT) -> frozenset[_StepT]:
    return _ONE.get(step) or _one(step)


def _park(instance: Instance, step: _StepT, now: int) -> Instance:
    active = _without(instance.active_steps, step)
    waiting = _with(instance.waiting_steps, step)
    state = instance.__dict__.copy()
    delay = step.timer(instance.step_configs.get(step))
    if delay is not None:
        timer = Timer(now + int(delay * 1_000_000_000), "timeout")
        state["timers"] = {**instance.timers, step: timer}
    state["status"] = _status(active, waiting)
    state["active_steps"] = active
    state["waiting_steps"] = waiting
    return _build(Instance, state)


def resume_step(
    instance: Instance,
    step: _StepT,
    event: str,
    *,
    now: int,
    data: Mapping[str, Any] | None = None,
) -> Applied:
    """A waiting ``step`` completes with ``event``; its transitions activate.

    ``data`` becomes the step's output, where its own ``Ok(event, data)``
    would have put it: ``context.steps[step.step_key]``. Raises
    :class:`NotWaiting` if the step does not wait, :class:`UndeclaredEvent`
    if it does not declare ``event``; the instance is then unchanged.
    """
    if step not in instance.waiting_steps or instance.terminal:
        raise NotWaiting(
            f"instance {instance.id!r} ({instance.status}) has no waiting step {step.__qualname__}"
        )
    d = instance.workflow.definition
    declared = step.declared_events(instance.step_configs.get(step))
    if event not in declared or event not in d.events.get(step, ()):
        raise UndeclaredEvent(step.__qualname__, event, declared)
    waiting = _without(instance.waiting_steps, step)
    timers = instance.timers
    if step in timers:
        timers = {s: t for s, t in timers.items() if s is not step}
    return _fold_ok(instance, step, event, data, None, now, waiting, timers)


def send(
    instance: Instance, event: str, data: Mapping[str, Any] | None = None, *, now: int
) -> tuple[Applied, _StepT | None]:
    """A message: taken at once by a step waiting for ``event``, else kept until one parks.

    Returns the instance after it (``Applied``) and the step that took it
    (None: kept in ``instance.messages``, in arrival order). Of several
    steps waiting for the event, the first in definition order takes it.
    Raises :class:`NotWaiting` for an ended instance and
    :class:`UndeclaredEvent` when no step of the workflow declares
    ``event``; the instance is then unchanged.
    """
    if instance.terminal:
        raise NotWaiting(
            f"instance {instance.id!r} has ended ({instance.status}): "
            f"no step would ever take a message"
        )
    d = instance.workflow.definition
    if not any(event in events for events in d.events.values()):
        every = dict.fromkeys(e for events in d.events.values() for e in events)
        raise UndeclaredEvent(instance.workflow.__qualname__, event, tuple(every), workflow=True)
    message = Message(event, data, now)
    queued = attrs.evolve(instance, messages=(*instance.messages, message))
    for step in sorted(instance.waiting_steps, key=d.order.__getitem__):
        if event in step.declared_events(instance.step_configs.get(step)):
            return _take(queued, step, message, now), step
    return Applied(queued, (), ()), None


def _parked(instance: Instance, step: _StepT, now: int) -> Applied:
    """``step`` parks; it takes at once the first message kept for one of its events."""
    parked = _park(instance, step, now)
    if parked.messages:
        declared = step.declared_events(parked.step_configs.get(step))
        for message in parked.messages:
            if message.event in declared:
                return _take(parked, step, message, now)
    return Applied(parked, (), ())


def _take(instance: Instance, step: _StepT, message: Message, now: int) -> Applied:
    """The waiting ``step`` takes ``message``: it resumes with its event and data."""
    rest = tuple(m for m in instance.messages if m is not message)
    return resume_step(
        attrs.evolve(instance, messages=rest), step, message.event, now=now, data=message.data
    )


def complete_step(
    instance: Instance,
    step: _StepT,
    event: str,
    updates: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    now: int,
) -> Instance:
    """Mark an active or waiting ``step`` completed with ``event``; activate nothing.

    Its updates land in ``context.steps[step.step_key]``, its metadata in
    ``runtime_metadata``, and an ``ExecutionEntry`` is appended.
    """
    if step not in instance.active_steps and step not in instance.waiting_steps:
        raise NotWaiting(
            f"instance {instance.id!r}: step {step.__qualname__} is neither active nor waiting"
        )
    _edge(instance.workflow.definition, step, event)
    context, runtime, history = _complete(instance, step, event, updates, metadata, now)
    timers = instance.timers
    if step in timers:
        timers = {s: t for s, t in timers.items() if s is not step}
    return attrs.evolve(
        instance,
        context=context,
        runtime_metadata=runtime,
        execution_history=history,
        active_steps=instance.active_steps - {step},
        waiting_steps=instance.waiting_steps - {step},
        completed_steps=instance.completed_steps | {step},
        timers=timers,
    )


def activate_transitions(instance: Instance, step: _StepT, event: str) -> Applied:
    """Send the tokens of a completed ``step`` that returned ``event``; the status is unchanged."""
    d = instance.workflow.definition
    edge = _edge(d, step, event)
    targets, activated, active, configs, joins = _activate(
        d, instance, step, edge, instance.context, instance.active_steps
    )
    new = attrs.evolve(
        instance,
        current_step=activated[-1] if activated else instance.current_step,
        step_configs=configs,
        active_steps=active,
        pending_joins=joins,
    )
    return Applied(new, targets, activated)


def fail_step(
    instance: Instance, step: _StepT, kind: str, reason: object, *, item: int | None = None
) -> Instance:
    """The instance fails because of ``step`` (its item ``item``, if mapped).

    Nothing stays active, waiting, timed or mapped.
    """
    return attrs.evolve(
        instance,
        status=Status.FAILED,
        active_steps=_EMPTY,
        waiting_steps=_EMPTY,
        timers={},
        maps={},
        error=Failure(step, kind, reason, item),
    )


def cancel(instance: Instance) -> Instance:
    """The instance is cancelled: nothing stays active, waiting, timed or mapped."""
    return attrs.evolve(
        instance,
        status=Status.CANCELLED,
        active_steps=_EMPTY,
        waiting_steps=_EMPTY,
        timers={},
        maps={},
    )


def schedule_timer(instance: Instance, step: _StepT, due: int, event: str = "timeout") -> Instance:
    """The waiting ``step`` resumes itself with ``event`` at ``due`` (wall-clock ns)."""
    if step not in instance.waiting_steps or instance.terminal:
        raise NotWaiting(
            f"instance {instance.id!r} ({instance.status}) has no waiting step {step.__qualname__}"
        )
    declared = step.declared_events(instance.step_configs.get(step))
    if event not in declared:
        raise UndeclaredEvent(step.__qualname__, event, declared)
    return attrs.evolve(instance, timers={**instance.timers, step: Timer(due, event)})
