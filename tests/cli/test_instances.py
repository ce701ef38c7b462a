"""``hephaestus instances ...``, run as operators run it: in a process of its own.

Every command runs against a SQLite file and a PostgreSQL schema holding an
instance in every status (``flows.populate``), in text and in JSON. What
only presents what was read (another text view, JSON lines) or refuses a
command line is checked on SQLite alone: the same code does it whichever
backend was read. Errors are one line on standard error, never a traceback,
with exit code 1 (it could not be done) or 2 (the command line is wrong).
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import inspect
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from hephaestus import Context, Done, Instance, LocalRunner, Record, Status, WaitForEvent
from hephaestus.cli import main

from . import flows
from .conftest import (
    FLOWS,
    GUARD,
    LONG_PATH,
    ROOT,
    Db,
    child_env,
    command,
    drop_schema,
    fails,
    fresh_schema,
    hephaestus,
    lines_of,
    parsed,
    statuses,
    store_under_long_path,
    succeeds,
    widest,
)

NEWEST_FIRST = list(reversed(flows.IDS))
"""Every instance, newest first: ``populate`` starts them in the order of ``IDS``."""

SUMMARY = {
    "id",
    "workflow",
    "workflow_version",
    "status",
    "started_at",
    "active_steps",
    "waiting_steps",
}
DETAIL = SUMMARY | {
    "updated_at",
    "ended_at",
    "duration",
    "current_step",
    "messages",
    "error",
    "context",
}
RECORD = {"kind", "at", "step", "item", "attempt", "event", "duration", "details"}
UNFINISHED = ("pending", "running", "waiting")
UNANSWERED = "postgresql://postgres@127.0.0.1:1/test"
"""A DSN no server answers at (port 1)."""


def ids(listing: dict[str, Any]) -> list[str]:
    """The ids of a JSON listing, in its order."""
    return [row["id"] for row in listing["instances"]]


def raise_line() -> str:
    """Where ``Explode`` raises, as a traceback names it: ``File "...", line N``."""
    source, first = inspect.getsourcelines(flows.Explode.execute)
    offset = next(n for n, line in enumerate(source) if "raise" in line)
    return f'File "{flows.__file__}", line {first + offset}'


class TestDatabaseOption:
    def test_no_database_is_a_usage_error(self) -> None:
        """Without --database nor $HEPHAESTUS_DATABASE, the command says to give one; exit 2."""
        line = fails(hephaestus("instances", "list"), 2)
        assert "give --database" in line
        assert "HEPHAESTUS_DATABASE" in line

    def test_the_environment_names_the_default_database(self, sqlite_shared: Db) -> None:
        """$HEPHAESTUS_DATABASE is the database when --database is not given."""
        result = hephaestus(
            "instances", "list", "-o", "json", env={"HEPHAESTUS_DATABASE": sqlite_shared.target}
        )
        assert NEWEST_FIRST == ids(parsed(result))

    def test_a_missing_sqlite_file_is_not_created(self, tmp_path: Path) -> None:
        """A SQLite path where there is no file is refused, and nothing is created; exit 1."""
        missing = tmp_path / "typo.db"
        line = fails(hephaestus("instances", "list", "--database", str(missing)), 1)
        assert f"hephaestus instances list: no SQLite database at {str(missing)!r}" == line
        assert [] == list(tmp_path.iterdir())

    @pytest.mark.parametrize("content", [b"", b"not a database\n"], ids=["empty", "text"])
    def test_a_file_without_hephaestus_tables_is_left_alone(
        self, tmp_path: Path, content: bytes
    ) -> None:
        """A file that is not a Hephaestus database is refused, and left as it was; exit 1."""
        other = tmp_path / "other.db"
        other.write_bytes(content)
        line = fails(hephaestus("instances", "count", "--database", str(other)), 1)
        assert repr(str(other)) in line
        assert content == other.read_bytes()
        assert [other] == list(tmp_path.iterdir())

    def test_a_dsn_that_does_not_answer(self) -> None:
        """A PostgreSQL server that does not answer: one line saying so; exit 1."""
        line = fails(hephaestus("instances", "list", "--database", UNANSWERED), 1)
        assert line.startswith("hephaestus instances list: cannot connect to PostgreSQL")
        assert "port=1" in line

    def test_a_schema_without_tables(self, postgres_dsn: str) -> None:
        """A PostgreSQL schema without Hephaestus's tables is refused, and not created; exit 1."""
        import psycopg

        schema = fresh_schema()
        try:
            result = hephaestus("instances", "list", "--database", postgres_dsn, "--schema", schema)
            line = fails(result, 1)
            with psycopg.connect(postgres_dsn) as conn:
                created = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
                ).fetchone()
        finally:
            drop_schema(postgres_dsn, schema)
        assert "no Hephaestus tables in PostgreSQL" in line
        assert f"schema={schema}" in line
        assert created is None


class TestInstanceIds:
    @pytest.mark.parametrize(
        "arguments", [["cancel", ""], ["resume", "", "approved"]], ids=["cancel", "resume"]
    )
    def test_an_id_no_instance_can_have(self, sqlite_shared: Db, arguments: list[str]) -> None:
        """An id no runner accepts (empty) is a usage error, before anything is opened; exit 2."""
        result = hephaestus("instances", *arguments, db=sqlite_shared)
        assert "an instance id must have 1 to 255 characters, got 0: ''" in fails(result, 2)


LEAVES = [
    ("instances", "list"),
    ("instances", "count"),
    ("instances", "show"),
    ("instances", "history"),
    ("instances", "cancel"),
    ("instances", "resume"),
    ("instances", "send"),
    ("instances", "graph"),
    ("workflows", "list"),
    ("workflows", "graph"),
]


class TestHelp:
    # Help is argparse's alone: read in this process, it says what the command's process would.
    @pytest.mark.parametrize("leaf", LEAVES, ids=" ".join)
    def test_every_command_shows_an_example(
        self, leaf: tuple[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each command's --help ends with an example of its use."""
        with pytest.raises(SystemExit) as exited:
            main([*leaf, "--help"])
        assert 0 == exited.value.code
        shown = capsys.readouterr().out
        assert "example:" in shown
        assert f"hephaestus {' '.join(leaf)} " in shown.split("example:")[1]


class TestList:
    def test_lists_a_page_of_instances_newest_first(self, shared: Db) -> None:
        """A table of the newest instances, each with its status and workflow, then how to see
        the next page; in 80 columns."""
        out = succeeds(hephaestus("instances", "list", "--limit", "6", db=shared))
        header, *rows, more = out.splitlines()
        assert ["ID", "STATUS", "WORKFLOW", "STARTED", "(UTC)", "AT"] == header.split()
        cells = [row.split() for row in rows]
        assert NEWEST_FIRST[:6] == [cell[0] for cell in cells]
        assert [flows.STATUSES[i] for i in NEWEST_FIRST[:6]] == [cell[1] for cell in cells]
        assert ["Approval", "v1"] == cells[0][2:4]
        assert re.fullmatch(r"more: add --after '.+\|breaks-failed'", more)
        assert widest(out) <= 80

    def test_a_long_id_is_cut_last(self, fresh_sqlite: Db) -> None:
        """A long id beside many active steps: every column stays, in 80 columns, the status
        whole, the id cut last; the next page's option is whole, on one line."""
        long_id = "Approval::order::0f8fad5b-d9cb-469f-a165-70867728950e"
        steps = frozenset({flows.Prepare, WaitForEvent, Done})
        running = Instance(
            long_id, flows.Approval, 1, Status.RUNNING, Context({}), active_steps=steps,
            started_at=time.time_ns(),
        )  # fmt: skip

        async def put() -> None:
            async with fresh_sqlite.storage() as storage:
                await storage.put(running, [Record("started", running.started_at)])

        anyio.run(put)
        out = succeeds(hephaestus("instances", "list", "--limit", "1", db=fresh_sqlite))
        header, row, more = out.splitlines()
        assert ["ID", "STATUS", "WORKFLOW", "STARTED"] == header.split()[:4]
        assert "AT" == header.split()[-1]
        assert [long_id[:39] + "…", "running"] == row.split()[:2]
        assert widest(f"{header}\n{row}") <= 80
        assert re.fullmatch(rf"more: add --after '[0-9.]+\|{long_id}'", more)  # whole, to copy

    def test_json_pages_hold_summaries(self, shared: Db) -> None:
        """-o json: the page's instances as summaries, and the next page's cursor (none here)."""
        listing = parsed(hephaestus("instances", "list", "-o", "json", db=shared))
        assert {"instances", "next"} == set(listing)
        assert None is listing["next"]
        for row in listing["instances"]:
            assert SUMMARY == set(row)
        by_id = {row["id"]: row for row in listing["instances"]}
        assert flows.STATUSES == {i: row["status"] for i, row in by_id.items()}
        timer = by_id["approval-timer"]
        assert f"{FLOWS}:Approval" == timer["workflow"]
        assert ["wait_for_event"] == timer["waiting_steps"]
        assert ["fetch"] == by_id["crawl-mapping"]["active_steps"]

    def test_filters_by_status(self, shared: Db) -> None:
        """--status takes several statuses, separated by commas."""
        listing = parsed(
            hephaestus("instances", "list", "--status", "failed,waiting", "-o", "json", db=shared)
        )
        assert ["signoff-waiting", "approval-timer", "breaks-failed"] == ids(listing)

    def test_filters_by_workflow(self, shared: Db) -> None:
        """--workflow takes the import path the instances are stored under."""
        result = hephaestus(
            "instances", "list", "--workflow", f"{FLOWS}:Approval", "-o", "json", db=shared
        )
        expected = ["approval-pending", "approval-cancelled", "approval-timer"]
        assert expected == ids(parsed(result))

    def test_filters_by_id_prefix(self, shared: Db) -> None:
        """--id-prefix keeps the ids that start with it."""
        result = hephaestus(
            "instances", "list", "--id-prefix", "approval-", "-o", "json", db=shared
        )
        assert ["approval-pending", "approval-cancelled", "approval-timer"] == ids(parsed(result))

    def test_filters_by_age(self, shared: Db) -> None:
        """An age counts back from now: every instance here started within the hour."""
        within = hephaestus("instances", "list", "--started-after", "1h", "-o", "json", db=shared)
        assert NEWEST_FIRST == ids(parsed(within))

    def test_says_when_nothing_matches(self, sqlite_shared: Db) -> None:
        """A filter that matches nothing says so."""
        before = hephaestus("instances", "list", "--started-before", "1h", db=sqlite_shared)
        assert "no instance matches\n" == succeeds(before)

    def test_pages_follow_their_cursor(self, shared: Db) -> None:
        """--limit cuts pages; --after a page's cursor gives the next page, with no overlap."""
        first = parsed(hephaestus("instances", "list", "--limit", "4", "-o", "json", db=shared))
        assert NEWEST_FIRST[:4] == ids(first)
        after = ["--after", first["next"]]
        result = hephaestus("instances", "list", "--limit", "4", *after, "-o", "json", db=shared)
        last = parsed(result)
        assert NEWEST_FIRST[4:] == ids(last)
        assert last["next"] is None

    def test_all_pages_oldest_first_as_json_lines(self, shared: Db) -> None:
        """--all -o jsonl: every matching instance, one JSON summary a line, whatever --limit;
        --oldest-first turns the order around."""
        result = hephaestus(
            "instances", "list", "--all", "--limit", "1", "--oldest-first", "-o", "jsonl",
            db=shared,
        )  # fmt: skip
        rows = lines_of(result)
        assert list(flows.IDS) == [row["id"] for row in rows]
        assert all(SUMMARY == set(row) for row in rows)

    @pytest.mark.parametrize(
        ("option", "value", "says"),
        [
            ("--status", "failed,bogus", "--status 'bogus' is not a status"),
            ("--started-after", "yesterday", "--started-after 'yesterday' is neither"),
            ("--started-before", "99999999999d", "--started-before '99999999999d' is neither"),
            ("--workflow", "Approval", "--workflow 'Approval': give its import path"),
            ("--after", "not-a-cursor", "cursor"),
        ],
    )
    def test_a_bad_filter_is_a_usage_error(
        self, sqlite_shared: Db, option: str, value: str, says: str
    ) -> None:
        """A filter that means nothing: one line saying what is wrong with it; exit 2."""
        line = fails(hephaestus("instances", "list", option, value, db=sqlite_shared), 2)
        assert line.startswith("hephaestus instances list: ")
        assert says in line


class TestCount:
    def test_counts_by_status_and_workflow(self, sqlite_shared: Db) -> None:
        """A table of the groups, each with its count, then the total, in 80 columns."""
        out = succeeds(
            hephaestus("instances", "count", "--by", "status,workflow", db=sqlite_shared)
        )
        rows = [line.split() for line in out.splitlines()]
        assert ["STATUS", "WORKFLOW", "COUNT"] == rows[0]
        assert ["waiting", f"{FLOWS}:Signoff", "1"] in rows
        assert ["total", "7"] == rows[-1]
        assert widest(out) <= 80

    def test_a_long_workflow_path_gives_way(self, fresh_sqlite: Db) -> None:
        """A workflow's long import path is cut to fit 80 columns; the counts are never cut."""
        store_under_long_path(fresh_sqlite, "quick-done")
        out = succeeds(hephaestus("instances", "count", "--by", "status,workflow", db=fresh_sqlite))
        rows = [line.split() for line in out.splitlines()]
        assert ["STATUS", "WORKFLOW", "COUNT"] == rows[0]
        [(status, cut, count)] = [row for row in rows if row[1].startswith("billing.")]
        assert ("completed", "1") == (status, count)
        assert LONG_PATH.startswith(cut.removesuffix("…"))
        assert ["total", "7"] == rows[-1]
        assert widest(out) <= 80

    def test_json_has_the_groups_and_the_total(self, shared: Db) -> None:
        """-o json: the fields grouped by, one object per group with its count, the total."""
        counted = parsed(
            hephaestus("instances", "count", "--by", "status", "-o", "json", db=shared)
        )
        assert {"by", "counts", "total"} == set(counted)
        assert ["status"] == counted["by"]
        expected = [
            {"status": "cancelled", "count": 1},
            {"status": "completed", "count": 1},
            {"status": "failed", "count": 1},
            {"status": "pending", "count": 1},
            {"status": "running", "count": 1},
            {"status": "waiting", "count": 2},
        ]
        assert expected == counted["counts"]
        assert 7 == counted["total"]

    def test_json_lines_are_the_groups(self, sqlite_shared: Db) -> None:
        """-o jsonl: one group a line."""
        groups = lines_of(
            hephaestus(
                "instances", "count", "--by", "workflow,status", "-o", "jsonl", db=sqlite_shared
            )
        )
        assert {"workflow": f"{FLOWS}:Approval", "status": "waiting", "count": 1} in groups
        assert 7 == len(groups)

    def test_an_unknown_field_is_a_usage_error(self, sqlite_shared: Db) -> None:
        """--by a field that cannot be grouped by names the ones that can; exit 2."""
        line = fails(hephaestus("instances", "count", "--by", "bogus", db=sqlite_shared), 2)
        assert "'bogus'" in line
        assert "status, workflow, workflow_version" in line


class TestShow:
    def test_a_failure_shows_its_reason_and_stacktrace(self, sqlite_shared: Db) -> None:
        """A failed instance: the failing step, the exception, where the step raised it."""
        out = succeeds(hephaestus("instances", "show", "breaks-failed", db=sqlite_shared))
        assert "failed in explode (exception): RuntimeError: the warehouse is on fire" in out
        assert raise_line() in out

    def test_json_detail_of_a_failure(self, shared: Db) -> None:
        """-o json: the detail's fields; its error has the failure and the stacktrace."""
        detail = parsed(hephaestus("instances", "show", "breaks-failed", "-o", "json", db=shared))
        assert DETAIL == set(detail)
        error = detail["error"]
        assert {"step", "item", "kind", "reason", "stacktrace"} == set(error)
        assert ("explode", None, "exception") == (error["step"], error["item"], error["kind"])
        assert "RuntimeError: the warehouse is on fire" == error["reason"]
        assert raise_line() in error["stacktrace"]
        assert detail["ended_at"] is not None
        assert {"initial": ["by"], "steps": ["prepare"]} == detail["context"]  # keys only

    def test_a_waiting_step_shows_its_events_and_timer(self, sqlite_shared: Db) -> None:
        """A waiting instance: the waiting step, the events it accepts, when its timer fires."""
        out = succeeds(hephaestus("instances", "show", "approval-timer", db=sqlite_shared))
        assert widest(out) <= 80
        [row] = [line for line in out.splitlines() if line.startswith("wait_for_event")]
        assert "approved, rejected, timeout" in row
        due = re.search(r"timeout at (\S+ \S+)", row)
        assert due is not None
        in_two_days = datetime.now(UTC) + timedelta(days=2)
        fired = datetime.fromisoformat(due[1]).replace(tzinfo=UTC)
        assert in_two_days - timedelta(minutes=10) < fired <= in_two_days

    def test_json_detail_of_a_waiting_step(self, shared: Db) -> None:
        """-o json: the waiting step, its events and its timer; no end, no error; with
        --context, the context's values."""
        result = hephaestus(
            "instances", "show", "approval-timer", "--context", "-o", "json", db=shared
        )
        detail = parsed(result)
        [waiting] = detail["waiting_steps"]
        assert "wait_for_event" == waiting["step"]
        assert ["approved", "rejected", "timeout"] == waiting["events"]
        assert "timeout" == waiting["timer"]["event"]
        due = datetime.fromisoformat(waiting["timer"]["due"])
        started = datetime.fromisoformat(detail["started_at"])
        assert timedelta(days=2) < due - started < timedelta(days=2, minutes=1)
        assert (None, None) == (detail["ended_at"], detail["error"])
        context = {"initial": {"by": "cy", "amount": 30}, "steps": {"prepare": {"by": "cy"}}}
        assert context == detail["context"]

    def test_a_map_in_flight_shows_its_progress(self, shared: Db) -> None:
        """A running map: the mapped step and how many of its items are done."""
        out = succeeds(hephaestus("instances", "show", "crawl-mapping", db=shared))
        assert widest(out) <= 80
        [row] = [line for line in out.splitlines() if line.startswith("fetch ")]
        assert "2/5 items done" in row

    def test_an_unknown_id(self, sqlite_shared: Db) -> None:
        """An id no instance has: one line naming it; exit 1."""
        line = fails(hephaestus("instances", "show", "nobody", db=sqlite_shared), 1)
        assert "hephaestus instances show: no workflow instance has id 'nobody'" == line


class TestHistory:
    def test_text_has_a_line_per_record(self, sqlite_shared: Db) -> None:
        """Each record on a line of its own: when, what, which step, its attempt."""
        out = succeeds(hephaestus("instances", "history", "breaks-failed", db=sqlite_shared))
        kinds = [line.split()[1] for line in out.splitlines()]
        assert ["started", "step_completed", "step_failed", "failed"] == kinds
        assert "explode" in out.splitlines()[2]

    def test_json_holds_the_records(self, shared: Db) -> None:
        """-o json: the instance's id and its records, oldest first."""
        history = parsed(hephaestus("instances", "history", "quick-done", "-o", "json", db=shared))
        assert {"id", "records"} == set(history)
        assert "quick-done" == history["id"]
        assert all(RECORD == set(record) for record in history["records"])
        kinds = [record["kind"] for record in history["records"]]
        assert ["started", "step_completed", "step_completed", "completed"] == kinds

    def test_json_lines_are_the_records(self, sqlite_shared: Db) -> None:
        """-o jsonl: one record a line; a failed attempt's keeps its stacktrace."""
        records = lines_of(
            hephaestus("instances", "history", "breaks-failed", "-o", "jsonl", db=sqlite_shared)
        )
        [failed] = [record for record in records if record["kind"] == "step_failed"]
        assert raise_line() in failed["details"]["stacktrace"]

    def test_follow_on_an_ended_instance_returns_at_once(self, sqlite_shared: Db) -> None:
        """--follow on an instance that has ended prints its history and returns."""
        result = hephaestus(
            "instances", "history", "approval-cancelled", "--follow", db=sqlite_shared
        )
        assert "cancelled" == succeeds(result).splitlines()[-1].split()[1]

    @pytest.mark.parametrize(
        ("options", "says"),
        [
            (["-o", "json"], "--follow prints records as they come: use -o text or -o jsonl"),
            (["--interval", "nan"], "--interval must be a number of seconds > 0, got: nan"),
        ],
        ids=["json", "nan"],
    )
    def test_follow_options_that_cannot_work(
        self, sqlite_shared: Db, options: list[str], says: str
    ) -> None:
        """--follow with -o json (a single document) or an interval that is no number of
        seconds is refused; exit 2."""
        result = hephaestus(
            "instances", "history", "approval-timer", "--follow", *options, db=sqlite_shared
        )
        assert f"hephaestus instances history: {says}" == fails(result, 2)

    async def test_follow_prints_records_until_the_instance_ends(self, fresh: Db) -> None:
        """--follow on a waiting instance prints new records as they come, and returns once it
        ends."""
        follow = command(
            "instances", "history", "approval-timer", "--follow", "--interval", "0.05",
            "-o", "jsonl", db=fresh,
        )  # fmt: skip
        kinds: list[str] = []
        with anyio.fail_after(GUARD):
            async with await anyio.open_process(follow, env=child_env(), cwd=ROOT) as process:
                assert process.stdout is not None
                out = BufferedByteReceiveStream(process.stdout)
                while "timer_armed" not in kinds:  # the history so far is printed
                    kinds.append(json.loads(await out.receive_until(b"\n", 1 << 16))["kind"])
                async with fresh.storage() as storage, LocalRunner(storage) as runner:
                    await runner.resume("approval-timer", "approved")
                    assert Status.COMPLETED == (await runner.wait("approval-timer")).status
                    history = [record.kind for record in await runner.history("approval-timer")]
                rest = b""
                async for chunk in out.receive_stream:  # what is left, until the process ends
                    rest += chunk
                kinds += [json.loads(line)["kind"] for line in (out.buffer + rest).splitlines()]
                code = await process.wait()
                assert process.stderr is not None
                errors = b"".join([chunk async for chunk in process.stderr])
        assert 0 == code, errors
        assert history == kinds  # each record once, in order, up to the end
        assert ["resumed", "step_completed", "completed"] == kinds[-3:]


class TestGraph:
    def test_marks_each_step_by_its_state(self, sqlite_shared: Db) -> None:
        """Each step marked: done, failed, not reached; the start named; in 80 columns."""
        out = succeeds(hephaestus("instances", "graph", "breaks-failed", db=sqlite_shared))
        assert out.startswith(f"{FLOWS}:Breaks v1, instance breaks-failed\n")
        rows = [line.split() for line in out.splitlines()[2:]]
        expected = [
            ["✓", "prepare", "(start)", "done"],
            ["✗", "explode", "failed"],
            ["·", "done", "not", "reached"],
        ]
        assert expected == [row[: len(marks)] for row, marks in zip(rows, expected, strict=True)]
        assert widest(out) <= 80

    def test_a_map_in_flight_is_running_with_its_progress(self, sqlite_shared: Db) -> None:
        """A running map is marked running, with how many of its items are done."""
        out = succeeds(hephaestus("instances", "graph", "crawl-mapping", db=sqlite_shared))
        [fetch] = [line for line in out.splitlines() if "fetch (map)" in line]
        assert ["▶", "fetch", "(map)", "running", "2/5"] == fetch.split()[:5]
        assert widest(out) <= 80

    def test_json_marks_states(self, shared: Db) -> None:
        """-o json: the graph's steps with their state (and a map's progress), its edges."""
        graph = parsed(hephaestus("instances", "graph", "crawl-mapping", "-o", "json", db=shared))
        assert {"workflow", "workflow_version", "instance", "start", "steps", "edges"} == set(graph)
        assert ("crawl-mapping", "plan") == (graph["instance"], graph["start"])
        states = {node["step"]: (node["state"], node["map"]) for node in graph["steps"]}
        assert {
            "plan": ("done", None),
            "fetch": ("running", {"done": 2, "total": 5}),
            "summarize": ("not_reached", None),
            "done": ("not_reached", None),
        } == states
        assert {"source": "plan", "event": "planned", "target": "fetch", "routed": False} in graph[
            "edges"
        ]

    def test_mermaid_classes_steps_by_state(self, sqlite_shared: Db) -> None:
        """-o mermaid: the flowchart, its steps classed by their state."""
        out = succeeds(
            hephaestus("instances", "graph", "approval-timer", "-o", "mermaid", db=sqlite_shared)
        )
        assert out.startswith("flowchart")
        assert "    class prepare done" in out.splitlines()
        assert "    class wait_for_event waiting" in out.splitlines()
        assert {"done", "waiting", "not_reached"} == set(re.findall(r"classDef (\w+)", out))


class TestCancel:
    def test_by_id(self, fresh: Db) -> None:
        """Cancelling by id cancels the instance, and says so."""
        out = succeeds(hephaestus("instances", "cancel", "approval-timer", db=fresh))
        assert "approval-timer: cancelled\n" == out
        assert {**flows.STATUSES, "approval-timer": "cancelled"} == statuses(fresh)

    def test_reports_what_it_did_not_change(self, fresh_sqlite: Db) -> None:
        """An instance that has ended stays as it is; an unknown id is an error; exit 1."""
        result = hephaestus(
            "instances", "cancel", "signoff-waiting", "quick-done", "nobody", "-o", "json",
            db=fresh_sqlite,
        )  # fmt: skip
        assert "hephaestus instances cancel: no workflow instance has id 'nobody'" == fails(
            result, 1
        )
        assert {
            "cancelled": ["signoff-waiting"],
            "unchanged": [{"id": "quick-done", "status": "completed"}],
            "not_found": ["nobody"],
        } == json.loads(result.stdout)

    def test_by_filter_asks_first(self, fresh_sqlite: Db) -> None:
        """A cancel by filter asks for a confirmation; without a yes, nothing is cancelled."""
        result = hephaestus(
            "instances", "cancel", "--status", "waiting", db=fresh_sqlite, input="n\n"
        )
        assert "not confirmed: nothing cancelled" in fails(result, 1)
        assert "cancel 2 instance(s) of " in result.stderr
        assert flows.STATUSES == statuses(fresh_sqlite)

    def test_by_filter_once_confirmed(self, fresh_sqlite: Db) -> None:
        """A yes to the question cancels every unfinished instance the filters match."""
        result = hephaestus(
            "instances", "cancel", "--id-prefix", "approval-", "-o", "json",
            db=fresh_sqlite, input="y\n",
        )  # fmt: skip
        report = parsed(result)
        assert ["approval-pending", "approval-timer"] == sorted(report["cancelled"])
        assert ([], []) == (report["unchanged"], report["not_found"])
        cancelled = {"approval-pending": "cancelled", "approval-timer": "cancelled"}
        assert {**flows.STATUSES, **cancelled} == statuses(fresh_sqlite)

    def test_yes_skips_the_question(self, fresh: Db) -> None:
        """--yes cancels without asking: every pending, running and waiting instance by default."""
        result = hephaestus(
            "instances", "cancel", "--started-after", "1h", "--yes", "-o", "json", db=fresh
        )
        unfinished = [i for i, status in flows.STATUSES.items() if status in UNFINISHED]
        assert sorted(unfinished) == sorted(parsed(result)["cancelled"])
        ended = {i: s for i, s in flows.STATUSES.items() if s not in UNFINISHED}
        assert {**ended, **dict.fromkeys(unfinished, "cancelled")} == statuses(fresh)

    def test_a_filter_that_matches_nothing(self, sqlite_shared: Db) -> None:
        """When no unfinished instance matches, nothing is cancelled and the report is empty."""
        result = hephaestus(
            "instances", "cancel", "--id-prefix", "nobody", "-o", "json", db=sqlite_shared
        )
        assert {"cancelled": [], "unchanged": [], "not_found": []} == parsed(result)
        assert "no unfinished instance matches: nothing to cancel\n" == result.stderr

    def test_ended_statuses_cannot_be_chosen(self, sqlite_shared: Db) -> None:
        """--status completed: only unfinished instances can be cancelled; exit 2."""
        result = hephaestus("instances", "cancel", "--status", "completed", db=sqlite_shared)
        assert "only unfinished instances can be cancelled" in fails(result, 2)

    def test_ids_or_filters(self, sqlite_shared: Db) -> None:
        """Ids and filters together are refused; exit 2."""
        result = hephaestus(
            "instances", "cancel", "quick-done", "--status", "waiting", db=sqlite_shared
        )
        assert "give instance ids or filters, not both" in fails(result, 2)


class TestResume:
    def test_the_data_becomes_the_step_s_output(self, fresh: Db) -> None:
        """The waiting step takes the event and --data as its output; the instance goes on."""
        result = hephaestus(
            "instances", "resume", "approval-timer", "approved", "--data", '{"by": "ana"}',
            "-o", "json", db=fresh,
        )  # fmt: skip
        expected = {"id": "approval-timer", "step": "wait_for_event", "event": "approved"}
        assert {**expected, "status": "running"} == parsed(result)
        shown = hephaestus(
            "instances", "show", "approval-timer", "--context", "-o", "json", db=fresh
        )
        detail = parsed(shown)
        assert {"by": "ana"} == detail["context"]["steps"]["wait_for_event"]
        assert ([], ["done"]) == (
            detail["waiting_steps"],
            [step["step"] for step in detail["active_steps"]],
        )

    def test_text_says_what_comes_next(self, fresh_sqlite: Db) -> None:
        """In text, the step resumed, the event, and that the next runner goes on with it."""
        result = hephaestus("instances", "resume", "signoff-waiting", "signed", db=fresh_sqlite)
        out = succeeds(result)
        said = " ".join(out.split())
        assert said.startswith("signoff-waiting: wait_for_event resumed with 'signed'; now running")

    @pytest.mark.parametrize("data", ["[1]", "{bad"])
    def test_data_must_be_a_json_object(self, sqlite_shared: Db, data: str) -> None:
        """--data that is not a JSON object is a usage error; exit 2."""
        result = hephaestus(
            "instances", "resume", "approval-timer", "approved", "--data", data, db=sqlite_shared
        )
        assert "--data" in fails(result, 2)

    def test_an_instance_that_does_not_wait(self, fresh_sqlite: Db) -> None:
        """Resuming an instance that is not waiting is refused with its status; exit 1."""
        result = hephaestus("instances", "resume", "quick-done", "approved", db=fresh_sqlite)
        line = fails(result, 1)
        assert "hephaestus instances resume: NotWaiting: instance 'quick-done' is completed" in line

    def test_an_event_the_step_does_not_declare(self, fresh_sqlite: Db) -> None:
        """An event the waiting step does not declare is refused, naming those it does; exit 1."""
        result = hephaestus("instances", "resume", "signoff-waiting", "approved", db=fresh_sqlite)
        assert "it declares 'signed'" in fails(result, 1)


class TestSend:
    def test_a_waiting_step_takes_the_event(self, fresh: Db) -> None:
        """Sent to an instance whose step waits for it, the event is taken at once."""
        result = hephaestus(
            "instances", "send", "signoff-waiting", "signed", "--data", '{"by": "ana"}',
            "-o", "json", db=fresh,
        )  # fmt: skip
        assert {"id": "signoff-waiting", "event": "signed", "delivery": "taken"} == parsed(result)

    def test_an_event_no_step_waits_for_is_kept(self, fresh_sqlite: Db) -> None:
        """Sent to an instance that does not wait for it yet, the event is kept for later."""
        result = hephaestus("instances", "send", "approval-pending", "approved", db=fresh_sqlite)
        assert "approval-pending: 'approved' kept until a step waits for it\n" == succeeds(result)
        shown = hephaestus("instances", "show", "approval-pending", db=fresh_sqlite)
        [kept] = [line for line in succeeds(shown).splitlines() if line.startswith("approved")]
        assert 3 == len(kept.split())  # the event, when it was sent (date, time), no data

    def test_an_ended_instance_takes_nothing(self, fresh_sqlite: Db) -> None:
        """An instance that has ended is sent nothing; exit 1."""
        result = hephaestus("instances", "send", "breaks-failed", "approved", db=fresh_sqlite)
        assert "instance 'breaks-failed' has ended (failed)" in fails(result, 1)


class TestHeldStorage:
    async def test_an_action_is_refused_while_a_local_runner_holds_it(self, fresh: Db) -> None:
        """While a LocalRunner drives the storage, an action is refused, saying who holds it and
        where to act instead; exit 1; the instance is unchanged."""
        run = partial(hephaestus, "instances", "cancel", "approval-timer", db=fresh)
        async with fresh.storage() as storage, LocalRunner(storage, name="shop") as runner:
            result = await anyio.to_thread.run_sync(run)
            line = fails(result, 1)
            assert "is held by" in line
            assert f"pid {os.getpid()} " in line
            assert "act through that runner's API in its process (runner.cancel," in line
            assert Status.WAITING == (await runner.get("approval-timer")).status

    async def test_reading_is_not(self, fresh: Db) -> None:
        """While a LocalRunner drives the storage, reading commands work."""
        run = partial(hephaestus, "instances", "show", "approval-timer", "-o", "json", db=fresh)
        async with fresh.storage() as storage, LocalRunner(storage, name="shop"):
            result = await anyio.to_thread.run_sync(run)
        assert "waiting" == parsed(result)["status"]


class TestDistributedSchema:
    """On a schema of the distributed runner, actions go through a DistributedRunner."""

    @pytest.fixture
    def distributed(self, postgres_dsn: str) -> Iterator[Db]:
        """A schema the distributed runner migrated, with two instances started and no worker
        (they stay pending)."""
        pytest.importorskip("procrastinate")
        from hephaestus.distributed import DistributedRunner

        schema = fresh_schema()

        async def build() -> None:
            async with DistributedRunner(postgres_dsn, schema=schema) as runner:
                for instance_id in ("dist-1", "dist-2"):
                    await runner.start(flows.Signoff, {"by": "gil"}, id=instance_id)

        try:
            anyio.run(build)
            yield Db("postgres", postgres_dsn, schema)
        finally:
            drop_schema(postgres_dsn, schema)

    def test_cancel(self, distributed: Db) -> None:
        """An instance no worker drove yet is cancelled from the command line."""
        result = hephaestus("instances", "cancel", "dist-1", "-o", "json", db=distributed)
        assert {"cancelled": ["dist-1"], "unchanged": [], "not_found": []} == parsed(result)
        assert {"dist-1": "cancelled", "dist-2": "pending"} == statuses(distributed)

    def test_send(self, distributed: Db) -> None:
        """An event is sent to the instance's inbox, for the worker that drives it."""
        result = hephaestus("instances", "send", "dist-2", "signed", "-o", "json", db=distributed)
        assert {"id": "dist-2", "event": "signed", "delivery": "sent"} == parsed(result)
