"""A workflow's graph drawn as SVG on the server, for the web dashboard.

:func:`svg` takes the plain data of :func:`hephaestus.operating.views.graph`
and returns one ``<svg>`` element: a layered drawing, top to bottom, with no
script. Steps are placed in layers by their longest path from the start step
(edges that close a loop left out), ordered within a layer by their
predecessors' positions, and centred. Colours are presentation attributes, so
the page's stylesheet (``.state-done rect``, ``.edge path``, ...) overrides
them, while the drawing stays readable alone. Every text from the data is
escaped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from typing import Any, Final, Literal, TypeAlias

__all__ = ["svg"]

FONT: Final = "ui-sans-serif, system-ui, sans-serif"
CHAR: Final = 7.5
"""Estimated width of a character of a step's label (13px font)."""
SMALL_CHAR: Final = 6.5
"""Estimated width of a character of an edge's label or a map line (11px font)."""
PAD: Final = 16.0
MIN_WIDTH: Final = 110.0
HEIGHT: Final = 40.0
MAP_HEIGHT: Final = 56.0
"""A node's height when it shows a map line under its label."""
H_GAP: Final = 40.0
V_GAP: Final = 64.0
MARGIN: Final = 20.0
VIRTUAL_WIDTH: Final = 24.0
"""The room an edge takes in a layer it crosses."""
SELF_LOOP: Final = 32.0
"""The room a loop from a step to itself takes on its right, before its label."""
LANE_GAP: Final = 28.0
LANE_STEP: Final = 18.0
CORNER: Final = 8.0
EDGE_COLOUR: Final = "#495057"
INK: Final = "#212529"
MUTED: Final = "#868e96"
"""The text of a step the instance has not reached."""

COLOURS: Final = {
    "done": ("#d3f9d8", "#2b8a3e"),
    "running": ("#d0ebff", "#1971c2"),
    "waiting": ("#fff3bf", "#e67700"),
    "failed": ("#ffe3e3", "#c92a2a"),
    "not_reached": ("#f1f3f5", "#adb5bd"),
    "none": ("#ffffff", "#495057"),
}
"""Each state's (fill, stroke)."""

_Id: TypeAlias = str | tuple[int, int]
"""A node of the layout: a step key, or (edge index, layer) where an edge crosses a layer."""
_Point: TypeAlias = tuple[float, float]
_Bounds: TypeAlias = tuple[float, float, float, float]
"""Left, top, right, bottom."""


@dataclass(frozen=True, slots=True)
class _Edge:
    """The edges from one step to another, merged: their events in the data's order."""

    source: str
    target: str
    events: tuple[str, ...]
    routed: bool


@dataclass(frozen=True, slots=True)
class _Box:
    """A placed node: top-left corner and size."""

    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where everything goes: the boxes, each layer's top and bottom, each node's layer."""

    boxes: Mapping[_Id, _Box]
    rows: Sequence[tuple[float, float]]
    layer: Mapping[str, int]
    width: float


def svg(data: Mapping[str, Any]) -> str:
    """The SVG drawing of a workflow's graph, from the data of ``views.graph``."""
    steps: list[Mapping[str, Any]] = list(data.get("steps", ()))
    keys = [str(step["step"]) for step in steps]
    start = str(data.get("start", keys[0] if keys else ""))
    edges = _merged(data.get("edges", ()), set(keys))
    layer = _layers(start, keys, edges)
    sizes = {key: _size(step) for key, step in zip(keys, steps, strict=True)}
    loops = {
        e.source: SELF_LOOP + len(", ".join(e.events)) * SMALL_CHAR
        for e in edges
        if e.source == e.target
    }
    layout = _place(_order(keys, edges, layer), layer, sizes, loops)
    marker = _marker_id(data)
    parts: list[str] = []
    bounds: _Bounds = (
        MARGIN,
        MARGIN,
        MARGIN + layout.width,
        layout.rows[-1][1] if layout.rows else MARGIN,
    )
    lane = 0
    for index, edge in enumerate(edges):
        drawn, reach = _edge(index, edge, layout, lane, marker)
        lane += _kind(edge, layout) == "back"
        parts.append(drawn)
        bounds = (
            min(bounds[0], reach[0]),
            min(bounds[1], reach[1]),
            max(bounds[2], reach[2]),
            max(bounds[3], reach[3]),
        )
    for key, step in zip(keys, steps, strict=True):
        parts.append(_node(step, layout.boxes[key], start=key == start))
    return _document(data, marker, bounds, parts)


# --------------------------------------------------------------------------- graph


def _merged(raw: Iterable[Mapping[str, Any]], keys: set[str]) -> list[_Edge]:
    """One edge per (source, target), in the data's order; routed when all its edges are."""
    events: dict[tuple[str, str], list[str]] = {}
    routed: dict[tuple[str, str], bool] = {}
    for edge in raw:
        pair = (str(edge["source"]), str(edge["target"]))
        if pair[0] not in keys or pair[1] not in keys:
            continue
        events.setdefault(pair, []).append(str(edge["event"]))
        routed[pair] = routed.get(pair, True) and bool(edge.get("routed", False))
    return [_Edge(s, t, tuple(names), routed[s, t]) for (s, t), names in events.items()]


def _search(start: str, edges: Sequence[_Edge]) -> tuple[set[tuple[str, str]], list[str]]:
    """A depth-first search from the start step, successors in the data's order.

    Returns the back edges (those that close a cycle) and the steps reached,
    each after all its predecessors over the other edges.
    """
    successors: dict[str, list[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, []).append(edge.target)
    back: set[tuple[str, str]] = set()
    finished: list[str] = []
    state = {start: 1}  # 1: on the current path, 2: finished
    path = [start]
    stack = [iter(successors.get(start, ()))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            finished.append(path.pop())
            state[finished[-1]] = 2
        elif state.get(nxt) == 1:
            back.add((path[-1], nxt))
        elif nxt not in state:
            state[nxt] = 1
            path.append(nxt)
            stack.append(iter(successors.get(nxt, ())))
    return back, finished[::-1]


def _layers(start: str, keys: Sequence[str], edges: Sequence[_Edge]) -> dict[str, int]:
    """Each step's layer: its longest path from start, back edges left out; the rest last."""
    if start not in keys:
        return dict.fromkeys(keys, 0)
    back, order = _search(start, edges)
    successors: dict[str, list[str]] = {}
    for e in edges:
        if (e.source, e.target) not in back:
            successors.setdefault(e.source, []).append(e.target)
    layer = dict.fromkeys(order, 0)
    for step in order:
        for target in successors.get(step, ()):
            layer[target] = max(layer[target], layer[step] + 1)
    last = max(layer.values()) + 1
    return {key: layer.get(key, last) for key in keys}


def _order(
    keys: Sequence[str], edges: Sequence[_Edge], layer: Mapping[str, int]
) -> list[list[_Id]]:
    """The nodes of each layer, left to right: by their neighbours' mean position.

    A forward edge that spans several layers gets a node in each layer it
    crosses, so that it takes room there. A sweep down orders each layer by
    its predecessors, ties by definition order; a sweep up by its successors.
    """
    index = {key: i for i, key in enumerate(keys)}
    tie: dict[_Id, tuple[int, int, int]] = {key: (index[key], 0, 0) for key in keys}
    rows: list[list[_Id]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for key in keys:
        rows[layer[key]].append(key)
    above: dict[_Id, list[_Id]] = {}
    below: dict[_Id, list[_Id]] = {}
    for i, e in enumerate(edges):
        if layer[e.target] <= layer[e.source]:
            continue
        chain: list[_Id] = [e.source]
        for level in range(layer[e.source] + 1, layer[e.target]):
            node = (i, level)
            rows[level].append(node)
            tie[node] = (index[e.target], 1, index[e.source])
            chain.append(node)
        chain.append(e.target)
        for upper, lower in pairwise(chain):
            below.setdefault(upper, []).append(lower)
            above.setdefault(lower, []).append(upper)
    for row in rows:
        row.sort(key=tie.__getitem__)
    _sweep(rows, above)
    _sweep(rows[::-1], below)
    return rows


def _sweep(rows: Sequence[list[_Id]], neighbours: Mapping[_Id, list[_Id]]) -> None:
    """Sort each row after the first by its nodes' neighbours' mean position in the row before.

    Ties, and nodes with no neighbour there, keep their place.
    """
    position = {node: float(i) for i, node in enumerate(rows[0])} if rows else {}
    for row in rows[1:]:
        keys = {}
        for i, node in enumerate(row):
            near = [position[n] for n in neighbours.get(node, ()) if n in position]
            keys[node] = (sum(near) / len(near) if near else float(i), i)
        row.sort(key=keys.__getitem__)
        position = {node: float(i) for i, node in enumerate(row)}


# --------------------------------------------------------------------------- placing


def _size(step: Mapping[str, Any]) -> tuple[float, float]:
    """A node's width and height: room for its label, and for its map line if any."""
    width = max(MIN_WIDTH, len(str(step["step"])) * CHAR + 2 * PAD)
    line = _map_line(step)
    if line is None:
        return width, HEIGHT
    return max(width, len(line) * SMALL_CHAR + 2 * PAD), MAP_HEIGHT


def _place(
    ordered: Sequence[Sequence[_Id]],
    layer: Mapping[str, int],
    sizes: Mapping[str, tuple[float, float]],
    room: Mapping[str, float],
) -> _Layout:
    """Boxes for every node: layers top to bottom, each centred, nodes left to right.

    A step that loops on itself has ``room[step]`` more on its right.
    """

    def size(node: _Id) -> tuple[float, float]:
        return sizes[node] if isinstance(node, str) else (VIRTUAL_WIDTH, 0.0)

    def span(node: _Id) -> float:
        return size(node)[0] + (room.get(node, 0.0) if isinstance(node, str) else 0.0)

    widths = [sum(span(n) for n in row) + H_GAP * (len(row) - 1) for row in ordered]
    width = max(widths, default=0.0)
    boxes: dict[_Id, _Box] = {}
    rows: list[tuple[float, float]] = []
    top = MARGIN
    for row, row_width in zip(ordered, widths, strict=True):
        height = max((size(n)[1] for n in row), default=HEIGHT)
        x = MARGIN + (width - row_width) / 2
        for node in row:
            w, h = size(node)
            if isinstance(node, str):
                boxes[node] = _Box(x, top + (height - h) / 2, w, h)
            else:
                boxes[node] = _Box(x, top, w, height)
            x += span(node) + H_GAP
        rows.append((top, top + height))
        top += height + V_GAP
    return _Layout(boxes, rows, layer, width)


# --------------------------------------------------------------------------- edges


def _edge(index: int, edge: _Edge, layout: _Layout, lane: int, marker: str) -> tuple[str, _Bounds]:
    """An edge's group (path and label), and the bounds of what it draws."""
    source, target = layout.boxes[edge.source], layout.boxes[edge.target]
    label = ", ".join(edge.events)
    label_width = len(label) * SMALL_CHAR
    kind = _kind(edge, layout)
    if kind == "self":
        path, (x, y) = _self_loop(source)
        anchor, reach = "start", (x, source.y, x + label_width, source.bottom)
    elif kind == "forward":
        levels = range(layout.layer[edge.source] + 1, layout.layer[edge.target])
        crossed = [layout.boxes[index, level] for level in levels]
        path, (x, y) = _forward(source, crossed, target)
        anchor, reach = "middle", (x - label_width / 2, y, x + label_width / 2, y)
    else:
        below = layout.rows[layout.layer[edge.source]][1]
        above = layout.rows[layout.layer[edge.target]][0]
        x = MARGIN + layout.width + LANE_GAP + lane * LANE_STEP
        path, y, (top, bottom) = _around(source, target, below, above, x, lane)
        anchor, reach = "middle", (x - label_width / 2, top, x + label_width / 2, bottom)
    classes = "edge routed" if edge.routed else "edge"
    dash = ' stroke-dasharray="5 4"' if edge.routed else ""
    drawn = (
        f'<g class="{classes}" data-source="{_e(edge.source)}" data-target="{_e(edge.target)}">'
        f'<path d="{path}" fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.5"{dash}'
        f' marker-end="url(#{marker})"/>'
        f'<text class="edge-label" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"'
        ' dominant-baseline="central" font-size="11" fill="#343a40" stroke="#ffffff"'
        f' stroke-width="4" stroke-linejoin="round" paint-order="stroke">{_e(label)}</text>'
        "</g>"
    )
    return drawn, reach


def _kind(edge: _Edge, layout: _Layout) -> Literal["self", "forward", "back"]:
    """How an edge is drawn: a loop on its step, down to a lower layer, or back up around."""
    if edge.source == edge.target:
        return "self"
    if layout.layer[edge.target] > layout.layer[edge.source]:
        return "forward"
    return "back"


def _forward(source: _Box, crossed: Sequence[_Box], target: _Box) -> tuple[str, _Point]:
    """A downward edge: curves across the gaps, straight through the layers it crosses.

    Returns the path and the middle of its middle gap, where its label goes.
    """
    points = [(source.cx, source.bottom)]
    for box in crossed:
        points += [(box.cx, box.y), (box.cx, box.bottom)]
    points.append((target.cx, target.y))
    d = [f"M{_n(points[0][0])},{_n(points[0][1])}"]
    gaps: list[_Point] = []
    for i, ((x1, y1), (x2, y2)) in enumerate(pairwise(points)):
        if i % 2:
            d.append(f"L{_n(x2)},{_n(y2)}")
            continue
        mid = (y1 + y2) / 2
        d.append(f"C{_n(x1)},{_n(mid)} {_n(x2)},{_n(mid)} {_n(x2)},{_n(y2)}")
        gaps.append(((x1 + x2) / 2, mid))
    return " ".join(d), gaps[(len(gaps) - 1) // 2]


def _around(
    source: _Box, target: _Box, below: float, above: float, lane: float, index: int
) -> tuple[str, float, tuple[float, float]]:
    """An edge back up, around the right of the drawing, its corners rounded.

    It goes down out of the source, right to its lane, up, left, and down
    into the target. Returns the path, the height of its label, and its
    highest and lowest points.
    """
    drop = CORNER + 6 + 4 * (index % 3)
    x1, y1 = source.cx + source.width / 4, below + drop
    x2, y2 = target.cx + target.width / 4, above - drop
    r = CORNER
    d = (
        f"M{_n(x1)},{_n(source.bottom)} V{_n(y1 - r)} Q{_n(x1)},{_n(y1)} {_n(x1 + r)},{_n(y1)}"
        f" H{_n(lane - r)} Q{_n(lane)},{_n(y1)} {_n(lane)},{_n(y1 - r)}"
        f" V{_n(y2 + r)} Q{_n(lane)},{_n(y2)} {_n(lane - r)},{_n(y2)}"
        f" H{_n(x2 + r)} Q{_n(x2)},{_n(y2)} {_n(x2)},{_n(y2 + r)} V{_n(target.y)}"
    )
    return d, (y1 + y2) / 2, (y2, y1)


def _self_loop(box: _Box) -> tuple[str, _Point]:
    """An edge from a step to itself: a small loop on its right.

    Returns the path and where its label starts.
    """
    x, y = box.right, box.cy
    d = (
        f"M{_n(x)},{_n(y - 8)} C{_n(x + 30)},{_n(y - 26)} {_n(x + 30)},{_n(y + 26)}"
        f" {_n(x)},{_n(y + 8)}"
    )
    return d, (x + SELF_LOOP - 4, y)


# --------------------------------------------------------------------------- rendering


def _node(step: Mapping[str, Any], box: _Box, *, start: bool) -> str:
    """A step's group: its box, its label (and map line), and a tooltip."""
    key = str(step["step"])
    state = step.get("state")
    fill, stroke = COLOURS.get(str(state), COLOURS["none"]) if state else COLOURS["none"]
    ink = MUTED if state == "not_reached" else INK
    classes = ["step", f"state-{_e(str(state)) if state is not None else 'none'}"]
    if start:
        classes.append("start")
    if step.get("ends_workflow"):
        classes.append("end")
    if step.get("mapped"):
        classes.append("mapped")
    data_state = "" if state is None else f' data-state="{_e(str(state))}"'
    radius = box.height / 2 if step.get("ends_workflow") else 8.0
    line = _map_line(step)
    label_y = box.cy if line is None else box.y + 20
    parts = [
        f'<g class="{" ".join(classes)}" data-step="{_e(key)}"{data_state}>',
        f"<title>{_e(_tooltip(step))}</title>",
        f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.width)}"'
        f' height="{_n(box.height)}" rx="{_n(radius)}" fill="{fill}" stroke="{stroke}"'
        f' stroke-width="{3 if start else 1.5}"/>',
        f'<text x="{_n(box.cx)}" y="{_n(label_y)}" text-anchor="middle"'
        f' dominant-baseline="central" fill="{ink}">{_e(key)}</text>',
    ]
    if line is not None:
        parts.append(
            f'<text class="map" x="{_n(box.cx)}" y="{_n(box.y + 39)}" text-anchor="middle"'
            f' dominant-baseline="central" font-size="11" fill="#495057">{_e(line)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _map_line(step: Mapping[str, Any]) -> str | None:
    """A mapped step's second line: ``map``, or ``map done/total`` when progress is known."""
    if not step.get("mapped"):
        return None
    progress = step.get("map")
    if not isinstance(progress, Mapping):
        return "map"
    return f"map {progress.get('done', 0)}/{progress.get('total', 0)}"


def _tooltip(step: Mapping[str, Any]) -> str:
    """A step's tooltip: its name, its state, its map's progress."""
    lines = [str(step.get("name", step["step"]))]
    if step.get("state") is not None:
        lines.append(f"state: {step['state']}")
    progress = step.get("map")
    if step.get("mapped") and isinstance(progress, Mapping):
        done, total = progress.get("done", 0), progress.get("total", 0)
        lines.append(f"map: {done} of {total} items done")
    elif step.get("mapped"):
        lines.append("mapped: runs once per item")
    return "\n".join(lines)


def _document(
    data: Mapping[str, Any],
    marker: str,
    bounds: _Bounds,
    parts: Sequence[str],
) -> str:
    """The ``<svg>`` element around the drawn parts, with the arrowhead they share."""
    label = f"Workflow {data.get('workflow', '')}"
    if data.get("instance") is not None:
        label += f", instance {data['instance']}"
    x, y = bounds[0] - MARGIN, bounds[1] - MARGIN
    width, height = bounds[2] + MARGIN - x, bounds[3] + MARGIN - y
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img"'
        f' aria-label="{_e(label)}" width="{_n(width)}" height="{_n(height)}"'
        f' viewBox="{_n(x)} {_n(y)} {_n(width)} {_n(height)}" font-family="{FONT}"'
        ' font-size="13">'
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5"'
        ' markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE_COLOUR}"/></marker></defs>'
        f"{''.join(parts)}</svg>"
    )


def _marker_id(data: Mapping[str, Any]) -> str:
    """An id for the arrowhead that another drawing on the same page does not use."""
    seed = f"{data.get('workflow', '')}\0{data.get('instance')}".encode()
    return f"heph-arrow-{hashlib.sha1(seed, usedforsecurity=False).hexdigest()[:10]}"


def _e(text: str) -> str:
    """Text escaped for XML, as content or as an attribute's value."""
    return escape(text, quote=True)


def _n(value: float) -> str:
    """A coordinate, to a tenth of a pixel, without a needless ``.0``."""
    return f"{value:.1f}".removesuffix(".0")
