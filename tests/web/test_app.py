"""The dashboard's application over HTTP, in this process: its pages, its rules, its actions.

A ``LocalRunner`` on memory storage holds an instance in every status
(``cli.flows.populate``); the application is called through httpx's ASGI
transport. What a browser does with the pages is in ``test_browser.py``.
"""

from __future__ import annotations

import contextlib
import html
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import structlog
from cli import flows
from cli.conftest import child_env

from hephaestus import Context, Done, LocalRunner, MemoryStorage, Ok, Step, Workflow
from hephaestus.core.instance import Instance
from hephaestus.web import create_app

GUARD = 10.0
FLOWS = [flows.Quick, flows.Breaks, flows.Approval, flows.Signoff, flows.Crawl]


@pytest.fixture
async def storage() -> MemoryStorage:
    """Memory storage holding an instance in every status (``flows.populate``)."""
    storage = MemoryStorage()
    with anyio.fail_after(GUARD):
        await flows.populate(storage)
    return storage


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash")


@pytest.fixture
async def reader(storage: MemoryStorage) -> AsyncIterator[httpx.AsyncClient]:
    """The read-only dashboard of ``storage``."""
    async with client(create_app(storage=storage, workflows=FLOWS)) as http:
        yield http


@contextlib.asynccontextmanager
async def writing(
    storage: MemoryStorage,
) -> AsyncIterator[tuple[LocalRunner, httpx.AsyncClient]]:
    """A runner on ``storage`` (it goes on with what is unfinished: ``approval-pending``
    parks as waiting), and the read-write dashboard acting through it."""
    async with LocalRunner(storage, name="web-tests") as runner:
        await flows.stored(storage, "approval-pending", lambda i: i.status.value == "waiting")
        app = create_app(runner=runner, workflows=FLOWS, read_only=False)
        async with client(app) as http:
            yield runner, http


async def token_of(http: httpx.AsyncClient, path: str) -> str:
    """The form token of the page at ``path``."""
    page = await http.get(path)
    found = re.search(r'name="token" value="([^"]+)"', page.text)
    assert found is not None, "the page has no form"
    return found[1]


async def notice_after(http: httpx.AsyncClient, response: httpx.Response) -> str:
    """The notice of the page an action redirected to."""
    assert 303 == response.status_code, response.text
    page = await http.get(response.headers["location"])
    found = re.search(r'<p class="flash (\w+)" role="status" id="flash">(.*?)</p>', page.text, re.S)
    assert found is not None, page.text
    return f"{found[1]}: {found[2]}"


class TestCreateApp:
    def test_needs_something_to_read(self) -> None:
        """Without a storage or a runner there is nothing to show."""
        with pytest.raises(TypeError, match="needs a storage to read"):
            create_app()

    def test_read_write_needs_a_runner(self) -> None:
        """Actions go through a runner's API: read-write without one is refused."""
        with pytest.raises(TypeError, match="read_only=False needs a runner"):
            create_app(storage=MemoryStorage(), read_only=False)

    @pytest.mark.parametrize("refresh", [0, -1.0, float("nan"), True, "2"])
    def test_refresh_is_a_number_of_seconds(self, refresh: Any) -> None:
        """A refresh period that is not a positive number is refused, naming it."""
        with pytest.raises(ValueError, match="refresh must be a number of seconds > 0"):
            create_app(storage=MemoryStorage(), refresh=refresh)

    def test_workflows_are_workflow_classes(self) -> None:
        """A workflow that is not a Workflow class is refused, naming it."""
        with pytest.raises(TypeError, match="workflows must be Workflow classes, got: 'Quick'"):
            create_app(storage=MemoryStorage(), workflows=["Quick"])  # type: ignore[list-item]

    def test_a_runner_without_storage_needs_one_given(self) -> None:
        """A runner with no storage of its own needs the storage the pages read."""
        with pytest.raises(TypeError, match="has no storage"):
            create_app(runner=object())  # type: ignore[arg-type]


class TestPages:
    async def test_overview_counts_by_status_and_workflow(self, reader: httpx.AsyncClient) -> None:
        """The overview counts instances by status, and by workflow and status."""
        page = await reader.get("/")
        assert 200 == page.status_code
        cards = dict(
            re.findall(r'data-status="(\w+)">\s*<span class="count">(\d+)</span>', page.text)
        )
        assert {
            "pending": "1",
            "running": "1",
            "waiting": "2",
            "completed": "1",
            "failed": "1",
            "cancelled": "1",
        } == cards
        assert "cli.flows:Approval" in page.text

    async def test_overview_counts_what_ended_in_the_last_hour(
        self, reader: httpx.AsyncClient
    ) -> None:
        """The last hour's ends: one completed, one failed, one cancelled."""
        page = await reader.get("/live/overview")
        hour = re.search(r'<p class="hour" id="hour">(.*?)</p>', page.text, re.S)
        assert hour is not None
        text = " ".join(re.sub(r"<[^>]+>", "", hour[1]).split())
        assert text.startswith("1 completed · 1 failed · 1 cancelled")

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            pytest.param("status=waiting", {"approval-timer", "signoff-waiting"}, id="status"),
            pytest.param(
                "status=failed&status=cancelled",
                {"breaks-failed", "approval-cancelled"},
                id="statuses",
            ),
            pytest.param(
                "id=approval",
                {"approval-timer", "approval-cancelled", "approval-pending"},
                id="id-prefix",
            ),
            pytest.param("workflow=Crawl", {"crawl-mapping"}, id="class-name"),
            pytest.param("workflow=cli.flows:Quick&version=1", {"quick-done"}, id="path"),
            pytest.param("started_after=2999-01-01T00:00", set(), id="none-after"),
        ],
    )
    async def test_instances_filtered(
        self, reader: httpx.AsyncClient, query: str, expected: set[str]
    ) -> None:
        """The instances page shows what its filters select."""
        page = await reader.get(f"/instances?{query}")
        assert 200 == page.status_code
        assert expected == set(re.findall(r'<tr data-id="([^"]+)"', page.text))

    async def test_instances_page_after_page(self, reader: httpx.AsyncClient) -> None:
        """The next page's link goes on where the page ended; no instance twice, none missed."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            for n in range(45):
                await runner.run(flows.Quick, {}, id=f"q{n:02d}", timeout=GUARD)
        async with client(create_app(storage=storage)) as http:
            seen: list[str] = []
            path: str | None = "/instances?limit=20"
            while path is not None:
                page = await http.get(path)
                seen += re.findall(r'<tr data-id="([^"]+)"', page.text)
                found = re.search(r'href="([^"]+)" id="next-page"', page.text)
                path = None if found is None else found[1].replace("&amp;", "&")
        assert [f"q{n:02d}" for n in reversed(range(45))] == seen

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            pytest.param("status=lost", "status &#39;lost&#39; is not a status", id="status"),
            pytest.param("limit=7", "limit must be one of 20, 50, 100, 500", id="limit"),
            pytest.param("version=one", "version must be a whole number", id="version"),
            pytest.param(
                "workflow=Nope", "workflow &#39;Nope&#39;: give its import path", id="workflow"
            ),
            pytest.param("started_before=yesterday", "started before must be a time", id="time"),
            pytest.param("after=garbage", "after must be a cursor", id="cursor"),
        ],
    )
    async def test_a_wrong_filter_is_named(
        self, reader: httpx.AsyncClient, query: str, message: str
    ) -> None:
        """A filter that cannot be used gives a 400 page naming it."""
        page = await reader.get(f"/instances?{query}")
        assert 400 == page.status_code
        assert message in page.text
        table = page.text.split('<div id="instances"')[1].split(">")[0]
        assert "hx-get" not in table  # no refresh that would show every instance

    async def test_an_instance_page(self, reader: httpx.AsyncClient) -> None:
        """A failed instance's page: header, graph marks, failure with its stacktrace, history."""
        page = await reader.get("/instances/breaks-failed")
        assert 200 == page.status_code
        assert 'id="status">failed<' in page.text
        assert 'data-step="explode" data-state="failed"' in page.text
        assert 'data-step="prepare" data-state="done"' in page.text
        assert "RuntimeError" in page.text
        assert "the warehouse is on fire" in page.text
        assert 'id="stacktrace"' in page.text
        assert 'data-kind="failed"' in page.text
        assert "hx-get" not in page.text.split('id="live"')[1].split(">")[0]  # ended: not live

    async def test_a_running_map_shows_its_progress(self, reader: httpx.AsyncClient) -> None:
        """A map in flight shows its items done out of all."""
        page = await reader.get("/instances/crawl-mapping")
        assert 'data-step="fetch" data-state="running"' in page.text
        assert "map 2/5" in page.text

    async def test_context_keys_then_values_on_request(self, reader: httpx.AsyncClient) -> None:
        """The page shows the context's keys; its values only when asked."""
        page = await reader.get("/instances/approval-timer")
        assert "<code>by</code>" in page.text
        assert "<code>amount</code>" in page.text
        assert 'id="context-values"' not in page.text
        page = await reader.get("/instances/approval-timer?context=values")
        assert "&#34;amount&#34;: 30" in page.text

    async def test_an_unknown_instance_is_not_found(self, reader: httpx.AsyncClient) -> None:
        """An id no instance has gives a 404 page naming it."""
        page = await reader.get("/instances/nobody")
        assert 404 == page.status_code
        assert "no instance &#39;nobody&#39;" in page.text

    async def test_workflows_and_a_graph(self, reader: httpx.AsyncClient) -> None:
        """The workflows page lists each workflow and version; a graph page draws one."""
        page = await reader.get("/workflows")
        for workflow in FLOWS:
            assert f'data-workflow="cli.flows:{workflow.__qualname__}"' in page.text
        page = await reader.get("/workflows/graph?workflow=cli.flows:Crawl&version=1")
        assert 200 == page.status_code
        assert 'data-step="fetch"' in page.text
        assert "flowchart" in page.text
        page = await reader.get("/workflows/graph?workflow=cli.flows:Crawl&version=7")
        assert 404 == page.status_code

    async def test_the_live_fragment_sends_the_waiting_forms_when_they_change(
        self, storage: MemoryStorage
    ) -> None:
        """The live part adds the waiting forms only when the waiting steps changed."""
        async with writing(storage) as (_, writer):
            page = await writer.get("/instances/signoff-waiting")
            key = re.search(r'id="waiting-key" name="waiting" value="([^"]*)"', page.text)
            assert key is not None
            same = await writer.get("/live/instance/signoff-waiting", params={"waiting": key[1]})
            assert "hx-swap-oob" not in same.text
            other = await writer.get("/live/instance/signoff-waiting", params={"waiting": "x"})
            assert 'hx-swap-oob="true"' in other.text
            assert "Resume wait_for_event" in other.text


class Marked(Step):
    """A step whose key is markup."""

    step_key = "<script>alert('key')</script>"
    events = ("<b>went</b>",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("<b>went</b>", {"echo": context.initial["note"]})


class Markup(Workflow):
    start = Marked
    transitions = {Marked: {"<b>went</b>": Done}}


class TestEscaping:
    async def test_markup_in_ids_keys_events_and_values_shows_as_text(self) -> None:
        """An id, a step key, an event and a context value holding HTML are escaped everywhere."""
        storage = MemoryStorage()
        note = "<script>alert('value')</script><img src=x onerror=alert(1)>"
        async with LocalRunner(storage) as runner:
            await runner.run(Markup, {"note": note}, id="<i>id</i>", timeout=GUARD)
        async with client(create_app(storage=storage, workflows=[Markup])) as http:
            pages = [
                await http.get("/instances"),
                await http.get("/instances/%3Ci%3Eid%3C/i%3E?context=values"),
                await http.get("/workflows"),
            ]
        for page in pages:
            assert 200 == page.status_code
            for raw in ("<script>alert", "<img src=x", "<b>went", "<i>id"):
                assert raw not in page.text
        assert "&lt;i&gt;id&lt;/i&gt;" in pages[0].text
        detail = pages[1].text
        assert "&lt;script&gt;alert(&#39;key&#39;)&lt;/script&gt;" in detail  # key, in the SVG
        assert "&lt;img src=x onerror=alert(1)&gt;" in detail  # the value


class TestIds:
    @pytest.mark.parametrize("instance_id", ["order/live", "a/b/resume", "x?y#z %", "cancel"])
    async def test_any_id_has_its_own_page(self, instance_id: str) -> None:
        """An id holding slashes, the name of a route or URL characters reaches its own page."""
        storage = MemoryStorage()
        async with LocalRunner(storage) as runner:
            await runner.run(flows.Quick, {}, id=instance_id, timeout=GUARD)
        async with client(create_app(storage=storage)) as http:
            listing = await http.get("/instances")
            link = re.search(r'<td class="id"><a href="([^"]+)">', listing.text)
            assert link is not None
            page = await http.get(link[1].replace("&amp;", "&"))
        assert 200 == page.status_code
        assert f'<span class="id">{html.escape(instance_id)}</span>' in page.text


class TestReadOnly:
    async def test_no_action_is_offered(self, reader: httpx.AsyncClient) -> None:
        """A read-only dashboard has no form to post, no box to tick."""
        for path in ("/instances", "/instances/approval-timer", "/instances/crawl-mapping"):
            page = await reader.get(path)
            assert 'method="post"' not in page.text
            assert 'type="checkbox" form="bulk"' not in page.text
        assert 'id="mode">read-only<' in page.text

    @pytest.mark.parametrize(
        ("path", "form"),
        [
            pytest.param(
                "/actions/cancel", {"ids": "approval-timer", "confirmed": "yes"}, id="cancel"
            ),
            pytest.param("/actions/resume/approval-timer", {"event": "approved"}, id="resume"),
            pytest.param("/actions/send/approval-timer", {"event": "approved"}, id="send"),
        ],
    )
    async def test_a_forged_post_is_refused(
        self, storage: MemoryStorage, reader: httpx.AsyncClient, path: str, form: dict[str, str]
    ) -> None:
        """A POST to a read-only dashboard is refused (403) and changes nothing."""
        response = await reader.post(path, data=form)
        assert 403 == response.status_code
        assert "read-only" in response.text
        assert "waiting" == (await storage.get("approval-timer")).status.value  # type: ignore[union-attr]


class TestActions:
    async def test_a_post_without_the_token_is_refused(self, storage: MemoryStorage) -> None:
        """Without the form's token (a request forged elsewhere), nothing is done."""
        async with writing(storage) as (runner, writer):
            form = {"ids": "approval-timer", "confirmed": "yes", "token": "guess"}
            response = await writer.post("/actions/cancel", data=form)
            assert 403 == response.status_code
            assert "token is missing or stale" in response.text
            assert "waiting" == (await runner.get("approval-timer")).status.value

    async def test_a_post_from_another_site_is_refused(self, storage: MemoryStorage) -> None:
        """A POST whose origin is another site is refused, even with the token."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances")
            form = {"ids": "approval-timer", "confirmed": "yes", "token": token}
            response = await writer.post(
                "/actions/cancel", data=form, headers={"Origin": "http://evil.example"}
            )
            assert 403 == response.status_code
            assert "another site (http://evil.example)" in response.text
            assert "waiting" == (await runner.get("approval-timer")).status.value

    async def test_cancel_asks_first_then_cancels_and_logs(self, storage: MemoryStorage) -> None:
        """Cancelling a selection shows what it will cancel; confirmed, it cancels and logs."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances")
            form = {
                "token": token,
                "scope": "selected",
                "ids": ["approval-timer", "signoff-waiting"],
            }
            asked = await writer.post("/actions/cancel", data=form)
            assert 200 == asked.status_code
            assert "Cancel 2 instances?" in asked.text
            assert "waiting" == (await runner.get("approval-timer")).status.value
            with structlog.testing.capture_logs() as logs:
                done = await writer.post("/actions/cancel", data={**form, "confirmed": "yes"})
            assert "notice: cancelled 2 instances" == await notice_after(writer, done)
            for instance_id in ("approval-timer", "signoff-waiting"):
                assert "cancelled" == (await runner.get(instance_id)).status.value
            cancelled = [e["instance_id"] for e in logs if e["event"] == "instance cancelled"]
            assert ["approval-timer", "signoff-waiting"] == cancelled

    async def test_cancel_by_filter_takes_only_unfinished_instances(
        self, storage: MemoryStorage
    ) -> None:
        """Cancelling by filter cancels the unfinished instances it selects, after asking."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances")
            form = {"token": token, "scope": "matching", "id": "approval"}
            asked = await writer.post("/actions/cancel", data=form)
            assert "Cancel 2 instances?" in asked.text  # approval-cancelled has ended already
            done = await writer.post("/actions/cancel", data={**form, "confirmed": "yes"})
            assert "notice: cancelled 2 instances" == await notice_after(writer, done)
            for instance_id in ("approval-timer", "approval-pending"):
                assert "cancelled" == (await runner.get(instance_id)).status.value
            assert "completed" == (await runner.get("quick-done")).status.value

    async def test_resume_with_data_completes_the_instance(self, storage: MemoryStorage) -> None:
        """Resuming from the page gives the step its event and data; the instance goes on."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances/approval-timer")
            form = {
                "token": token,
                "step": "wait_for_event",
                "event": "approved",
                "data": '{"by": "ana"}',
            }
            done = await writer.post("/actions/resume/approval-timer", data=form)
            notice = await notice_after(writer, done)
            assert notice.startswith("notice: wait_for_event resumed with &#39;approved&#39;")
            with anyio.fail_after(GUARD):
                instance = await runner.wait("approval-timer")
            assert "completed" == instance.status.value
            assert {"by": "ana"} == instance.context.steps["wait_for_event"]

    @pytest.mark.parametrize(
        ("form", "message"),
        [
            pytest.param({"event": "approved", "data": "{by: ana}"}, "not valid JSON", id="json"),
            pytest.param(
                {"event": "approved", "data": "[1]"}, "must be a JSON object", id="not-an-object"
            ),
            pytest.param({"event": "shipped"}, "shipped", id="undeclared"),
            pytest.param(
                {"event": "approved", "step": "prepare"},
                "step Prepare is not waiting",
                id="not-waiting",
            ),
        ],
    )
    async def test_a_refused_resume_changes_nothing_and_says_why(
        self,
        storage: MemoryStorage,
        form: dict[str, str],
        message: str,
    ) -> None:
        """A resume the runner refuses shows the refusal; the instance is unchanged."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances/approval-timer")
            done = await writer.post(
                "/actions/resume/approval-timer", data={"token": token, **form}
            )
            notice = await notice_after(writer, done)
            assert notice.startswith("error: ")
            assert message in notice
            assert "waiting" == (await runner.get("approval-timer")).status.value

    async def test_send_keeps_a_message_for_a_step_to_come(self, storage: MemoryStorage) -> None:
        """A message no step waits for yet is kept with the instance."""
        async with writing(storage) as (runner, writer):
            token = await token_of(writer, "/instances/crawl-mapping")
            form = {"token": token, "event": "summarized", "data": '{"pages": 0}'}
            done = await writer.post("/actions/send/crawl-mapping", data=form)
            notice = await notice_after(writer, done)
            assert "notice: &#39;summarized&#39; kept until a step waits for it" == notice
            assert ["summarized"] == [m.event for m in (await runner.get("crawl-mapping")).messages]


class TestCommand:
    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hephaestus", "web", *args],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=30,
            check=False,
        )

    def test_a_missing_database_is_one_line(self, tmp_path: Any) -> None:
        """A database that is not there: one line on stderr, exit code 1, nothing created."""
        missing = tmp_path / "missing.db"
        result = self.run("--database", str(missing), "--port", "0")
        assert 1 == result.returncode
        assert [f"hephaestus web: no SQLite database at {str(missing)!r}"] == (
            result.stderr.splitlines()
        )
        assert not missing.exists()

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            pytest.param(
                ("--refresh", "0"), "--refresh must be a number of seconds > 0", id="refresh"
            ),
            pytest.param(("--port", "70000"), "--port must be from 0 to 65535", id="port"),
        ],
    )
    def test_a_wrong_option_is_a_usage_error(self, args: tuple[str, ...], message: str) -> None:
        """A wrong option: one line naming it, exit code 2."""
        result = self.run("--database", "x.db", *args)
        assert 2 == result.returncode
        assert message in result.stderr
        assert 1 == len(result.stderr.splitlines())
