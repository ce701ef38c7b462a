"""``hephaestus workflows ...``, run as operators run it: in a process of its own.

``workflows list`` lists the workflows of ``--app`` (here ``cli.flows``) and
those the database's instances name, with their instances by status;
``workflows graph`` draws one, without any database.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import pytest

from .conftest import (
    FLOWS,
    LONG_PATH,
    Db,
    fails,
    hephaestus,
    lines_of,
    parsed,
    store_under_long_path,
    succeeds,
    widest,
)

STEPS = {
    "Approval": ["prepare", "wait_for_event", "done"],
    "Breaks": ["prepare", "explode", "done"],
    "Crawl": ["plan", "fetch", "summarize", "done"],
    "Quick": ["prepare", "done"],
    "Signoff": ["prepare", "wait_for_event", "done"],
}
"""The steps of each workflow of ``cli.flows``, in their order."""

INSTANCES = {
    "Approval": {"pending": 1, "waiting": 1, "cancelled": 1},
    "Breaks": {"failed": 1},
    "Crawl": {"running": 1},
    "Quick": {"completed": 1},
    "Signoff": {"waiting": 1},
}
"""How many instances of each workflow the test databases hold, by status."""


class TestWorkflowsList:
    def test_lists_the_app_s_workflows_with_their_instances(self, sqlite_shared: Db) -> None:
        """A table of each workflow, its version, its number of steps and its instances by
        status (in the order of an instance's life); in 80 columns."""
        out = succeeds(hephaestus("workflows", "list", "--app", FLOWS, db=sqlite_shared))
        header, *rows = out.splitlines()
        assert ["WORKFLOW", "VERSION", "STEPS", "INSTANCES"] == header.split()
        expected = [
            f"{FLOWS}:Approval 1 3 1 pending, 1 waiting, 1 cancelled",
            f"{FLOWS}:Breaks 1 3 1 failed",
            f"{FLOWS}:Crawl 1 4 1 running",
            f"{FLOWS}:Quick 1 2 1 completed",
            f"{FLOWS}:Signoff 1 3 1 waiting",
        ]
        assert expected == [" ".join(row.split()) for row in rows]
        assert widest(out) <= 80

    def test_json_has_the_steps_and_the_counts(self, shared: Db) -> None:
        """-o json: each workflow version, its steps by key, its instances by status (in the
        order of an instance's life, whatever the backend)."""
        listing = parsed(hephaestus("workflows", "list", "--app", FLOWS, "-o", "json", db=shared))
        assert ["workflows"] == list(listing)
        expected = [
            {
                "workflow": f"{FLOWS}:{name}",
                "workflow_version": 1,
                "steps": STEPS[name],
                "instances": INSTANCES[name],
            }
            for name in sorted(STEPS)
        ]
        assert expected == listing["workflows"]
        approval = listing["workflows"][0]["instances"]
        assert ["pending", "waiting", "cancelled"] == list(approval)  # in the order of a life

    def test_the_database_names_workflows_too(self, sqlite_shared: Db) -> None:
        """Without --app, the workflows are those of the database's instances (-o jsonl: one a
        line), with their steps when they can be imported."""
        rows = lines_of(hephaestus("workflows", "list", "-o", "jsonl", db=sqlite_shared))
        assert [f"{FLOWS}:{name}" for name in sorted(STEPS)] == [row["workflow"] for row in rows]
        assert [STEPS[name] for name in sorted(STEPS)] == [row["steps"] for row in rows]

    def test_a_long_import_path_gives_way(self, fresh_sqlite: Db) -> None:
        """A long import path is cut to fit 80 columns; its version and its instances stay; a
        workflow that cannot be imported has no steps shown."""
        store_under_long_path(fresh_sqlite, "quick-done")
        out = succeeds(hephaestus("workflows", "list", db=fresh_sqlite))
        [row] = [line.split() for line in out.splitlines() if line.startswith("billing.")]
        assert LONG_PATH.startswith(row[0].removesuffix("…"))
        assert ["1", "1", "completed"] == row[1:]
        assert widest(out) <= 80

    def test_without_a_database_the_definitions_alone(self) -> None:
        """Without a database, the workflows of --app, with no instance."""
        out = succeeds(hephaestus("workflows", "list", "--app", FLOWS))
        rows = [row.split() for row in out.splitlines()[1:]]
        assert [f"{FLOWS}:{name}" for name in sorted(STEPS)] == [row[0] for row in rows]
        assert {"none"} == {row[-1] for row in rows}

    def test_an_app_that_does_not_import(self) -> None:
        """An --app module that cannot be imported: one line saying why; exit 2."""
        line = fails(hephaestus("workflows", "list", "--app", "no_such_module"), 2)
        assert "--app no_such_module: ModuleNotFoundError" in line


class TestWorkflowsGraph:
    def test_draws_the_steps_and_where_they_lead(self) -> None:
        """By class name (with --app): each step, the start marked, its events and their
        targets; in 80 columns."""
        out = succeeds(hephaestus("workflows", "graph", "Approval", "--app", FLOWS))
        title, header, *rows = out.splitlines()
        assert f"{FLOWS}:Approval v1" == title
        assert ["STEP", "LEADS", "TO"] == header.split()
        expected = [
            "prepare (start) prepared -> wait_for_event",
            "wait_for_event approved -> done; rejected -> done; timeout -> done",
            "done (ends the workflow)",
        ]
        assert expected == [" ".join(row.split()) for row in rows]
        assert widest(out) <= 80

    def test_mermaid_by_import_path(self) -> None:
        """By import path, -o mermaid: the flowchart, a mapped step drawn as such, no states."""
        out = succeeds(hephaestus("workflows", "graph", f"{FLOWS}:Crawl", "-o", "mermaid"))
        lines = out.splitlines()
        assert "flowchart TD" == lines[0]
        assert '    fetch[["Fetch (map)"]]' in lines
        assert "    plan -->|planned| fetch" in lines
        assert "classDef" not in out

    def test_json_has_steps_and_edges(self) -> None:
        """-o json: the graph's steps and edges, with no instance and no states."""
        graph = parsed(hephaestus("workflows", "graph", f"{FLOWS}:Crawl", "-o", "json"))
        assert {"workflow", "workflow_version", "instance", "start", "steps", "edges"} == set(graph)
        assert (None, "plan") == (graph["instance"], graph["start"])
        fetch = graph["steps"][1]
        assert {
            "step": "fetch",
            "name": "Fetch",
            "events": ["fetched"],
            "mapped": True,
            "ends_workflow": False,
        } == fetch
        assert STEPS["Crawl"] == [step["step"] for step in graph["steps"]]
        assert 3 == len(graph["edges"])

    @pytest.mark.parametrize("name", ["Nowhere", f"{FLOWS}:Nowhere"])
    def test_an_unknown_workflow(self, name: str) -> None:
        """A workflow that is not there, by name or by path: one line saying so; exit 1."""
        line = fails(hephaestus("workflows", "graph", name, "--app", FLOWS), 1)
        assert f"{name!r}" in line

    def test_a_class_that_is_not_a_workflow(self) -> None:
        """An import path of something else than a workflow is a usage error; exit 2."""
        line = fails(hephaestus("workflows", "graph", f"{FLOWS}:Prepare"), 2)
        assert f"'{FLOWS}:Prepare' is not a Workflow class" in line
