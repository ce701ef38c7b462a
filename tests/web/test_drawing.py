"""The SVG drawing of a workflow's graph: layout, states, edges, escaping.

Inputs are the data of ``views.graph``, from real workflows (``cli.flows``
and a few defined here) or written by hand where a workflow cannot say it:
definitions refuse cycles and unreachable steps, yet the drawing copes with
both. Drawings are read back with ``xml.etree.ElementTree``.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import copy
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

from cli import flows

from hephaestus import Context, Done, Instance, Ok, Route, Status, Step, Workflow
from hephaestus.core.instance import Failure, MapState
from hephaestus.operating import views
from hephaestus.web.drawing import svg

NS = {"svg": "http://www.w3.org/2000/svg"}
SCRIPT = "<script>alert(1)</script>"


# --------------------------------------------------------------------------- workflows


def make_step(name: str, *events: str) -> type[Step]:
    """A step class named ``name`` that declares ``events`` and returns the first."""

    def execute(self: Step, instance: Any, config: Any, context: Any) -> Ok:
        return Ok(events[0])

    return type(name, (Step,), {"execute": execute, "events": events})


Split = make_step("Split", "split")
Left = make_step("Left", "ok")
Right = make_step("Right", "ok")
Join = make_step("Join", "joined")
Check = make_step("Check", "ok")
Fix = make_step("Fix", "fixed")
Ship = make_step("Ship", "shipped")


def choose_fix(context: Any) -> type[Step]:
    return Fix


class FanOut(Workflow):
    """Split into Left and Right, joined by Join."""

    start = Split
    transitions = {
        Split: {"split": [Left, Right]},
        Left: {"ok": Join},
        Right: {"ok": Join},
        Join: {"joined": Done},
    }


class Skip(Workflow):
    """Check, then a route to Fix (then Ship) or straight to Ship."""

    start = Check
    transitions = {
        Check: {"ok": Route(choose_fix, [Fix, Ship])},
        Fix: {"fixed": Ship},
        Ship: {"shipped": Done},
    }


def looped() -> dict[str, Any]:
    """FanOut's data with a loop added by hand: Join can send the work back to Split."""
    data = views.graph(FanOut)
    data["steps"][3]["events"].append("again")
    data["edges"].append({"source": "join", "event": "again", "target": "split", "routed": True})
    return data


def crawling() -> Instance:
    """A Crawl whose Plan is done and whose Fetch map is at 2 of 5 items."""
    return Instance(
        "crawl-mapping",
        flows.Crawl,
        1,
        Status.RUNNING,
        Context({}),
        started_at=time.time_ns(),
        completed_steps=frozenset({flows.Plan}),
        active_steps=frozenset({flows.Fetch}),
        maps={flows.Fetch: MapState(tuple(f"page-{n}" for n in range(5)), done=0b11)},
    )


# --------------------------------------------------------------------------- reading


def parse(data: dict[str, Any]) -> ET.Element:
    """The drawing of ``data``, parsed (which fails unless it is well-formed XML)."""
    return ET.fromstring(svg(data))


def steps(root: ET.Element) -> dict[str, ET.Element]:
    """Each step's group, by its step key."""
    return {g.attrib["data-step"]: g for g in root.iterfind(".//svg:g[@data-step]", NS)}


def edges(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    """Each edge's group, by (source, target)."""
    found = root.findall(".//svg:g[@data-source]", NS)
    drawn = {(g.attrib["data-source"], g.attrib["data-target"]): g for g in found}
    assert len(found) == len(drawn), "one group per (source, target)"
    return drawn


def rect(group: ET.Element) -> ET.Element:
    found = group.find("svg:rect", NS)
    assert found is not None
    return found


def top(group: ET.Element) -> float:
    return float(rect(group).attrib["y"])


def bottom(group: ET.Element) -> float:
    return top(group) + float(rect(group).attrib["height"])


def centre(group: ET.Element) -> float:
    return float(rect(group).attrib["x"]) + float(rect(group).attrib["width"]) / 2


def texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iterfind("svg:text", NS)]


def label(edge: ET.Element) -> str:
    found = edge.find("svg:text[@class='edge-label']", NS)
    assert found is not None
    return found.text or ""


def path(edge: ET.Element) -> ET.Element:
    found = edge.find("svg:path", NS)
    assert found is not None
    return found


def tooltip(group: ET.Element) -> str:
    found = group.find("svg:title", NS)
    assert found is not None
    return found.text or ""


# --------------------------------------------------------------------------- the element


def test_the_drawing_is_one_svg_element_sized_by_its_layout() -> None:
    root = parse(views.graph(flows.Approval))
    assert "{http://www.w3.org/2000/svg}svg" == root.tag
    assert "graph" == root.attrib["class"]
    assert "img" == root.attrib["role"]
    assert "cli.flows:Approval" in root.attrib["aria-label"]
    x, y, width, height = (float(v) for v in root.attrib["viewBox"].split())
    assert (width, height) == (float(root.attrib["width"]), float(root.attrib["height"]))
    for group in steps(root).values():
        assert x <= float(rect(group).attrib["x"])
        assert centre(group) < x + width
        assert y <= top(group)
        assert bottom(group) <= y + height


def test_the_aria_label_names_the_instance_too() -> None:
    root = parse(views.graph(flows.Crawl, crawling()))
    assert "Workflow cli.flows:Crawl, instance crawl-mapping" == root.attrib["aria-label"]


def test_one_group_per_step_in_definition_order() -> None:
    root = parse(views.graph(flows.Approval))
    assert ["prepare", "wait_for_event", "done"] == list(steps(root))


def test_the_same_data_gives_the_same_drawing() -> None:
    assert svg(looped()) == svg(looped())
    assert svg(views.graph(flows.Crawl, crawling())) == svg(views.graph(flows.Crawl, crawling()))


def test_two_drawings_have_their_own_arrowhead() -> None:
    ids = set()
    for data in (views.graph(flows.Approval), views.graph(flows.Crawl, crawling())):
        root = parse(data)
        markers = root.findall("svg:defs/svg:marker", NS)
        assert 1 == len(markers)
        marker = markers[0].attrib["id"]
        for edge in edges(root).values():
            assert f"url(#{marker})" == path(edge).attrib["marker-end"]
        ids.add(marker)
    assert 2 == len(ids)


def test_an_empty_graph_still_draws() -> None:
    root = parse({"workflow": "x:Empty", "instance": None, "steps": [], "edges": []})
    assert {} == steps(root)


# --------------------------------------------------------------------------- layout


def test_a_step_below_its_predecessor() -> None:
    root = parse(views.graph(flows.Crawl))
    drawn = steps(root)
    for (source, target), _ in edges(root).items():
        assert bottom(drawn[source]) < top(drawn[target])


def test_a_chain_is_one_column() -> None:
    drawn = steps(parse(views.graph(flows.Crawl)))
    assert 1 == len({centre(group) for group in drawn.values()})


def test_a_fan_out_puts_its_branches_side_by_side_above_their_join() -> None:
    drawn = steps(parse(views.graph(FanOut)))
    left, right = drawn["left"], drawn["right"]
    assert top(left) == top(right)
    assert centre(left) < centre(right), "ties keep the definition order"
    assert bottom(drawn["split"]) < top(left)
    assert bottom(left) < top(drawn["join"]) < top(drawn["done"])
    assert centre(left) < centre(drawn["join"]) < centre(right), "each layer is centred"


def test_a_step_sits_under_its_predecessors_rather_than_in_definition_order() -> None:
    """Layer two is defined x then y, but y follows a (on the left) and x follows b."""
    keys = ["s", "a", "b", "x", "y", "z"]
    pairs = [("s", "a"), ("s", "b"), ("a", "y"), ("b", "x"), ("x", "z"), ("y", "z")]
    data = {
        "workflow": "x:Crossed",
        "instance": None,
        "start": "s",
        "steps": [{"step": k, "name": k.upper(), "events": ["ok"]} for k in keys],
        "edges": [{"source": s, "event": "ok", "target": t, "routed": False} for s, t in pairs],
    }
    drawn = steps(parse(data))
    assert centre(drawn["a"]) < centre(drawn["b"])
    assert centre(drawn["y"]) < centre(drawn["x"])


def test_a_step_sits_at_its_longest_path_from_start() -> None:
    drawn = steps(parse(views.graph(Skip)))
    assert top(drawn["check"]) < top(drawn["fix"]) < top(drawn["ship"]) < top(drawn["done"])


def test_an_edge_over_several_layers_goes_beside_the_steps_between() -> None:
    root = parse(views.graph(Skip))
    d = path(edges(root)["check", "ship"]).attrib["d"]
    fix = steps(root)["fix"]
    # It runs straight down through Fix's layer, beside Fix rather than through it.
    lines = [part for part in d.split() if part.startswith("L")]
    assert 1 == len(lines)
    x = float(lines[0][1:].split(",")[0])
    left = float(rect(fix).attrib["x"])
    assert not left <= x <= left + float(rect(fix).attrib["width"])


def test_a_back_edge_does_not_break_the_layers() -> None:
    root = parse(looped())
    drawn = steps(root)
    assert top(drawn["split"]) < top(drawn["left"]) < top(drawn["join"]) < top(drawn["done"])
    back = edges(root)["join", "split"]
    assert "again" == label(back)
    assert "5 4" == path(back).attrib["stroke-dasharray"], "routed: dashed"
    # Around the right of the drawing: further right than any step.
    xs = [float(n.split(",")[0].lstrip("MVHQ")) for n in path(back).attrib["d"].split() if "," in n]
    right = max(float(rect(g).attrib["x"]) + float(rect(g).attrib["width"]) for g in drawn.values())
    assert max(xs) > right


def test_a_step_looping_on_itself_gets_a_loop_on_its_right() -> None:
    data = views.graph(flows.Quick)
    data["edges"].append({"source": "prepare", "event": "retry", "target": "prepare"})
    root = parse(data)
    loop = edges(root)["prepare", "prepare"]
    prepare = rect(steps(root)["prepare"])
    start = path(loop).attrib["d"].split()[0]
    assert float(start[1:].split(",")[0]) == float(prepare.attrib["x"]) + float(
        prepare.attrib["width"]
    )
    assert "retry" == label(loop)


def test_steps_unreachable_from_start_go_last() -> None:
    data = views.graph(flows.Quick)
    data["steps"].insert(0, {"step": "stray", "name": "Stray", "events": ["ok"]})
    data["edges"].append({"source": "stray", "event": "ok", "target": "prepare"})
    root = parse(data)
    drawn = steps(root)
    assert bottom(drawn["done"]) < top(drawn["stray"])
    assert ("stray", "prepare") in edges(root)


def test_a_node_is_wide_enough_for_its_label() -> None:
    data = views.graph(flows.Quick)
    data["steps"][0]["step"] = "a_rather_long_step_key_indeed"
    data["start"] = data["edges"][0]["source"] = "a_rather_long_step_key_indeed"
    drawn = steps(parse(data))
    assert float(rect(drawn["done"]).attrib["width"]) >= 100
    assert float(rect(drawn["a_rather_long_step_key_indeed"]).attrib["width"]) >= 29 * 7


# --------------------------------------------------------------------------- steps


def test_without_an_instance_steps_have_no_state() -> None:
    for group in steps(parse(views.graph(flows.Approval))).values():
        assert "data-state" not in group.attrib
        assert "state-none" in group.attrib["class"].split()
        assert "#ffffff" == rect(group).attrib["fill"]


def test_each_step_is_marked_by_its_state_in_the_instance() -> None:
    root = parse(views.graph(flows.Crawl, crawling()))
    states = {key: group.attrib["data-state"] for key, group in steps(root).items()}
    assert {
        "plan": "done",
        "fetch": "running",
        "summarize": "not_reached",
        "done": "not_reached",
    } == states
    fetch = steps(root)["fetch"]
    assert {"step", "state-running", "mapped"} <= set(fetch.attrib["class"].split())
    assert ("#d0ebff", "#1971c2") == (rect(fetch).attrib["fill"], rect(fetch).attrib["stroke"])


def test_a_failed_step_is_red() -> None:
    instance = Instance(
        "breaks-failed",
        flows.Breaks,
        1,
        Status.FAILED,
        Context({}),
        completed_steps=frozenset({flows.Prepare}),
        error=Failure(flows.Explode, "exception", "the warehouse is on fire"),
    )
    explode = steps(parse(views.graph(flows.Breaks, instance)))["explode"]
    assert "failed" == explode.attrib["data-state"]
    assert ("#ffe3e3", "#c92a2a") == (rect(explode).attrib["fill"], rect(explode).attrib["stroke"])


def test_a_step_is_labelled_by_its_key_and_titled_by_its_name() -> None:
    wait = steps(parse(views.graph(flows.Approval)))["wait_for_event"]
    assert ["wait_for_event"] == texts(wait)
    assert "WaitForEvent" == tooltip(wait)


def test_a_mapped_step_shows_its_progress() -> None:
    fetch = steps(parse(views.graph(flows.Crawl, crawling())))["fetch"]
    assert ["fetch", "map 2/5"] == texts(fetch)
    assert "Fetch\nstate: running\nmap: 2 of 5 items done" == tooltip(fetch)
    assert float(rect(fetch).attrib["height"]) > 40


def test_a_mapped_step_without_an_instance_just_says_map() -> None:
    fetch = steps(parse(views.graph(flows.Crawl)))["fetch"]
    assert ["fetch", "map"] == texts(fetch)


def test_the_start_step_is_marked_and_done_ends() -> None:
    drawn = steps(parse(views.graph(flows.Approval)))
    assert "start" in drawn["prepare"].attrib["class"].split()
    assert "start" not in drawn["wait_for_event"].attrib["class"].split()
    assert float(rect(drawn["prepare"]).attrib["stroke-width"]) > float(
        rect(drawn["wait_for_event"]).attrib["stroke-width"]
    )
    assert "end" in drawn["done"].attrib["class"].split()
    assert "end" not in drawn["prepare"].attrib["class"].split()


# --------------------------------------------------------------------------- edges


def test_edges_between_the_same_steps_are_one_path_with_their_events() -> None:
    drawn = edges(parse(views.graph(flows.Approval)))
    assert [("prepare", "wait_for_event"), ("wait_for_event", "done")] == list(drawn)
    assert "approved, rejected, timeout" == label(drawn["wait_for_event", "done"])
    assert "prepared" == label(drawn["prepare", "wait_for_event"])


def test_a_fan_out_draws_an_edge_to_each_branch() -> None:
    drawn = edges(parse(views.graph(FanOut)))
    assert "split" == label(drawn["split", "left"]) == label(drawn["split", "right"])


def test_a_forward_edge_goes_from_the_bottom_of_its_source_to_the_top_of_its_target() -> None:
    root = parse(views.graph(flows.Approval))
    drawn = steps(root)
    d = path(edges(root)["prepare", "wait_for_event"]).attrib["d"]
    first, last = d.split()[0], d.split()[-1]
    assert (centre(drawn["prepare"]), bottom(drawn["prepare"])) == tuple(
        float(v) for v in first[1:].split(",")
    )
    assert (centre(drawn["wait_for_event"]), top(drawn["wait_for_event"])) == tuple(
        float(v) for v in last.split(",")
    )


def test_routed_edges_are_dashed_and_static_ones_are_not() -> None:
    drawn = edges(parse(views.graph(Skip)))
    assert "5 4" == path(drawn["check", "fix"]).attrib["stroke-dasharray"]
    assert "routed" in drawn["check", "ship"].attrib["class"].split()
    assert "stroke-dasharray" not in path(drawn["fix", "ship"]).attrib
    assert "edge" == drawn["fix", "ship"].attrib["class"]


def test_edge_labels_are_haloed() -> None:
    edge = edges(parse(views.graph(flows.Approval)))["prepare", "wait_for_event"]
    text = edge.find("svg:text", NS)
    assert text is not None
    assert "stroke" == text.attrib["paint-order"]


# --------------------------------------------------------------------------- safety


def hostile() -> dict[str, Any]:
    """Data whose every text is markup or quotes."""
    key = f'{SCRIPT}"quotes"'
    return {
        "workflow": f'evil:{SCRIPT}"',
        "workflow_version": 1,
        "instance": f"'{SCRIPT}'",
        "start": key,
        "steps": [
            {
                "step": key,
                "name": f"<b>{SCRIPT}</b>",
                "events": [SCRIPT],
                "mapped": True,
                "ends_workflow": False,
                "state": 'running" onload="alert(1)',
                "map": {"done": SCRIPT, "total": '"5"'},
            },
            {"step": "done", "name": "Done", "events": [], "ends_workflow": True},
        ],
        "edges": [
            {"source": key, "event": SCRIPT, "target": "done", "routed": False},
            {"source": key, "event": '"quotes"&', "target": "done", "routed": False},
        ],
    }


def test_text_from_the_data_is_escaped() -> None:
    text = svg(hostile())
    assert "<script" not in text
    assert "<b>" not in text
    assert '" onload="' not in text


def test_escaped_text_round_trips() -> None:
    root = ET.fromstring(svg(hostile()))
    key = f'{SCRIPT}"quotes"'
    assert f"Workflow evil:{SCRIPT}\", instance '{SCRIPT}'" == root.attrib["aria-label"]
    drawn = steps(root)
    assert [key, "done"] == list(drawn)
    assert [key, f'map {SCRIPT}/"5"'] == texts(drawn[key])
    assert 'running" onload="alert(1)' == drawn[key].attrib["data-state"]
    assert tooltip(drawn[key]).startswith(f"<b>{SCRIPT}</b>\n")
    edge = edges(root)[key, "done"]
    assert key == edge.attrib["data-source"]
    assert f'{SCRIPT}, "quotes"&' == label(edge)
    # No element came from the data: only the drawing's own.
    tags = {element.tag.split("}")[1] for element in root.iter()}
    assert {"svg", "defs", "marker", "path", "g", "title", "rect", "text"} == tags


def test_the_data_is_not_changed() -> None:
    data = looped()
    kept = copy.deepcopy(data)
    svg(data)
    assert kept == data


def test_the_drawing_needs_no_workflow_class() -> None:
    """The drawing reads plain data: it works on a copy that went through JSON."""
    data = json.loads(json.dumps(views.graph(flows.Crawl, crawling())))
    assert svg(views.graph(flows.Crawl, crawling())) == svg(data)


def test_an_edge_to_a_step_the_data_does_not_hold_is_left_out() -> None:
    data = views.graph(flows.Quick)
    data["edges"].append({"source": "prepare", "event": "lost", "target": "nowhere"})
    assert [("prepare", "done")] == list(edges(parse(data)))
