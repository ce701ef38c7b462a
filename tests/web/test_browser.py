"""The dashboard in a real browser: Debian's chromium, driven by Playwright.

Each page is read as users see it, from servers run as users run them (see
``conftest``): ``hephaestus web`` read-only over a database holding an
instance in every status, on SQLite and on PostgreSQL, and the test
application ``web.live_app`` whose runner drives its database while the
dashboard acts on it, read-write. Nothing waits by sleeping: Playwright's
assertions poll until the page shows what they expect (10 s at most). A
console error or an uncaught exception in a page fails its test.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from cli import flows
from cli.conftest import statuses

from .conftest import (
    HTML_EVENT,
    IMG,
    NOTE,
    ODD_ID,
    TAINTED,
    TAINTED_ID,
    Console,
    Extras,
    Hold,
    Scribble,
    Server,
    aside,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

with contextlib.suppress(ImportError):  # without it, the browser fixture skips, saying why
    from playwright.sync_api import expect

COUNTS = {"pending": 1, "running": 1, "waiting": 2, "completed": 1, "failed": 1, "cancelled": 1}
"""How many instances of each status ``flows.populate`` stores."""

NEWEST_FIRST = list(reversed(flows.IDS))
"""Every instance, newest first: ``populate`` starts them in the order of ``IDS``."""

WORKFLOWS = {
    f"{flows.__name__}:{name}" for name in ("Approval", "Breaks", "Crawl", "Quick", "Signoff")
}

TOKEN = re.compile(r'name="token" value="([^"]+)"')


def url_of(server: Server, instance_id: str, query: str = "") -> str:
    """The address of an instance's page (its id quoted)."""
    return server.at("instances/" + urllib.parse.quote(instance_id, safe="")) + query


def rows(page: Page) -> dict[str, str]:
    """The instances table as shown: each row's id and status, in the table's order."""
    pairs = page.locator("#instances tr[data-id]").evaluate_all(
        "rows => rows.map(row => [row.dataset.id, row.dataset.status])"
    )
    return dict(pairs)


def quoted(value: str) -> str:
    """``value`` as a CSS string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def row_of(page: Page, instance_id: str) -> Locator:
    """An instance's row in the instances table."""
    return page.locator(f"#instances tr[data-id={quoted(instance_id)}]")


def node(page: Page, step: str) -> Locator:
    """A step's node in the graph."""
    return page.locator(f"#graph svg g.step[data-step={quoted(step)}]")


def token_of(client: httpx.Client, url: str) -> str:
    """The token of the forms on the page at ``url``."""
    found = TOKEN.search(client.get(url).text)
    assert found is not None, f"{url} has no form"
    return found.group(1)


# ---------------------------------------------------------------------- the pages


def test_overview_counts_the_instances_of_each_status(readonly: Server, page: Page) -> None:
    """The overview has a card per status with its count, and what ended in the last hour."""
    page.goto(readonly.at())
    for status, count in COUNTS.items():
        expect(page.locator(f"a.card[data-status={status}] .count")).to_have_text(str(count))
    expect(page.locator(".card.total .count")).to_have_text("7")
    hour = page.locator("#hour")
    for ended in ("1 completed", "1 failed", "1 cancelled"):
        expect(hour).to_contain_text(ended)
    expect(page.locator("#by-workflow tbody tr")).to_have_count(len(WORKFLOWS))
    expect(page.locator("#mode")).to_have_text("read-only")
    page.locator("a.card[data-status=waiting]").click()
    expect(page).to_have_url(re.compile(r"/instances\?status=waiting$"))
    expect(page.locator("#instances tr[data-id]")).to_have_count(2)
    assert {"signoff-waiting": "waiting", "approval-timer": "waiting"} == rows(page)


def test_instances_page_lists_every_instance_newest_first(readonly: Server, page: Page) -> None:
    """The instances page has a row per instance, newest first, each with its status."""
    page.goto(readonly.at("instances"))
    expect(page.locator("#instances tr[data-id]")).to_have_count(len(flows.IDS))
    assert [(i, flows.STATUSES[i]) for i in NEWEST_FIRST] == list(rows(page).items())
    expect(row_of(page, "crawl-mapping").locator("td.steps")).to_have_text("fetch")


SHOWN = {
    "quick-done": ("#timeline", "completed"),
    "breaks-failed": (
        "#failure",
        "explode failed: exception: RuntimeError: the warehouse is on fire",
    ),
    "approval-timer": (
        "#waiting",
        "wait_for_event waits for approved, rejected, timeout; its timer",
    ),
    "signoff-waiting": ("#waiting", "wait_for_event waits for signed."),
    "approval-cancelled": ("#timeline", "cancelled"),
    "crawl-mapping": ("#active", "Running: fetch (map 2/5)"),
    "approval-pending": ("#timeline", "started"),
}
"""What each instance's page shows of its own: where, and the text."""


def test_each_instance_page_shows_its_status_graph_and_history(
    readonly: Server, page: Page
) -> None:
    """An instance's page, whatever its status, shows it, its graph, its history and its state."""
    for instance_id, status in flows.STATUSES.items():
        page.goto(url_of(readonly, instance_id))
        expect(page.locator("h1 .id")).to_have_text(instance_id)
        expect(page.locator("#status")).to_have_text(status)
        expect(page.locator("#live")).to_have_attribute("data-status", status)
        expect(page.locator("#graph svg g.step").first).to_be_visible()
        expect(page.locator("#timeline tr.record").first).to_have_attribute("data-kind", "started")
        where, text = SHOWN[instance_id]
        expect(page.locator(where)).to_contain_text(text)
        expect(page.locator("#failure")).to_have_count(1 if status == "failed" else 0)


def test_workflows_page_links_each_workflow_to_its_graph(readonly: Server, page: Page) -> None:
    """The workflows page lists each workflow with its instances; its link draws the graph."""
    page.goto(readonly.at("workflows"))
    listed = page.locator("#workflows tbody tr")
    expect(listed).to_have_count(len(WORKFLOWS))
    assert WORKFLOWS == set(listed.evaluate_all("rows => rows.map(r => r.dataset.workflow)"))
    approval = page.locator('#workflows tr[data-workflow="cli.flows:Approval"]')
    for badge in ("1 pending", "1 waiting", "1 cancelled"):
        expect(approval).to_contain_text(badge)
    page.get_by_role("link", name="cli.flows:Crawl", exact=True).click()
    expect(page.locator("h1")).to_have_text("Crawl version 1")
    expect(page.locator("p.path")).to_contain_text("Plan, then Fetch each page, then Summarize.")
    steps = page.locator("#graph svg g.step")
    expect(steps).to_have_count(4)
    assert {"plan", "fetch", "summarize", "done"} == set(
        steps.evaluate_all("nodes => nodes.map(n => n.dataset.step)")
    )
    expect(page.locator("#graph svg g.step[data-state]")).to_have_count(0)
    expect(node(page, "fetch")).to_have_class(re.compile(r"\bmapped\b"))
    page.get_by_role("link", name="Its instances").click()
    expect(page.locator("#instances tr[data-id]")).to_have_count(1)
    assert {"crawl-mapping": "running"} == rows(page)


# ---------------------------------------------------------------------- filters, pages


def test_filtering_by_status_keeps_only_the_instances_in_those_statuses(
    readonly: Server, page: Page
) -> None:
    """Ticking statuses in the filters keeps the rows of those statuses alone."""
    page.goto(readonly.at("instances"))
    filters = page.locator("#filters")
    filters.get_by_label("waiting").check()
    filters.get_by_label("failed").check()
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"\?status=waiting&status=failed&"))
    expect(page.locator("#instances tr[data-id]")).to_have_count(3)
    expected = {
        "signoff-waiting": "waiting",
        "approval-timer": "waiting",
        "breaks-failed": "failed",
    }
    assert expected == rows(page)
    expect(filters.get_by_label("waiting")).to_be_checked()
    expect(filters.get_by_label("running")).not_to_be_checked()


def test_filtering_by_id_prefix_workflow_and_start_time(readonly: Server, page: Page) -> None:
    """An id prefix, a workflow (its import path or class name), a start time keep their rows."""
    page.goto(readonly.at("instances"))
    filters = page.locator("#filters")
    approvals = {"approval-pending", "approval-cancelled", "approval-timer"}
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"Id starts with": "approval-"}, approvals),
        ({"Workflow": "cli.flows:Signoff"}, {"signoff-waiting"}),
        ({"Id starts with": "approval-t", "Workflow": "Approval"}, {"approval-timer"}),
        ({"Started after": "2099-01-01T00:00:00"}, set()),
        ({"Started before": "2099-01-01T00:00:00", "Workflow": "Crawl"}, {"crawl-mapping"}),
    ]
    labels = ("Id starts with", "Workflow", "Started after", "Started before")
    for chosen, expected in cases:
        for label in labels:
            filters.get_by_label(label, exact=True).fill(chosen.get(label, ""))
        filters.get_by_role("button", name="Filter").click()
        expect(page.locator("#instances tr[data-id]")).to_have_count(len(expected))
        if not expected:
            expect(page.locator("#no-match")).to_have_text("No instance matches.")
        assert expected == set(rows(page)), chosen


def test_a_filter_that_cannot_be_used_says_why(
    sqlite_readonly: Server, page: Page, console: Console
) -> None:
    """A workflow filter that names no known workflow is refused, saying what to give instead."""
    console.allow(r"status of 400 .*/instances\?workflow=Nope")
    page.goto(sqlite_readonly.at("instances"))
    page.locator("#filters").get_by_label("Workflow").fill("Nope")
    page.locator("#filters").get_by_role("button", name="Filter").click()
    expect(page.locator("#error")).to_have_text(
        "workflow 'Nope': give its import path (module:Class)"
    )


def page_through(page: Page) -> list[list[str]]:
    """The ids of each page, from the one shown to the last, by the "Next page" link."""
    pages: list[list[str]] = []
    while True:
        expect(page.locator("#instances tr[data-id]").first).to_be_visible()
        pages.append(list(rows(page)))
        following = page.locator("#next-page")
        if not following.count():
            return pages
        href = following.get_attribute("href")
        assert href is not None
        assert "limit=20" in href, "the next page keeps its size"
        following.click()
        page.wait_for_url(urllib.parse.urljoin(page.url, href))
        expect(page.locator("#first-page")).to_be_visible()


def test_pages_of_twenty_show_every_instance_once(extras: Extras, page: Page) -> None:
    """Pages of 20, by "Next page", show every instance once, newest first; "First page" returns."""
    page.goto(extras.server.at("instances"))
    page.locator("#filters").get_by_label("Per page").select_option("20")
    page.locator("#filters").get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]limit=20$"))
    expect(page.locator("#first-page")).to_have_count(0)
    pages = page_through(page)
    seen = [instance_id for shown in pages for instance_id in shown]
    assert [20, 20, len(extras.ids) - 40] == [len(shown) for shown in pages]
    assert len(seen) == len(set(seen)), "an instance is shown twice"
    assert sorted(extras.ids) == sorted(seen)
    assert [f"bulk-{n:02d}" for n in range(39, 19, -1)] == pages[0]
    page.locator("#first-page").click()
    expect(page).to_have_url(re.compile(r"\?limit=20$"))
    expect(page.locator("#instances tr[data-id]")).to_have_count(20)
    assert pages[0] == list(rows(page))
    page.goto(extras.server.at("instances?order=oldest&limit=20"))
    assert list(reversed(seen)) == [i for shown in page_through(page) for i in shown]


def test_paging_a_filter_ends_on_its_last_full_page(extras: Extras, page: Page) -> None:
    """Paging what a filter selects keeps the filter, and a full last page has no "Next page"."""
    page.goto(extras.server.at("instances?id=bulk-&limit=20"))
    pages = page_through(page)
    assert [[f"bulk-{n:02d}" for n in range(39 - 20 * k, 19 - 20 * k, -1)] for k in (0, 1)] == pages
    expect(page.locator("#next-page")).to_have_count(0)
    expect(page.locator("#filters").get_by_label("Id starts with")).to_have_value("bulk-")


# ---------------------------------------------------------------------- the graph


STATES = {
    "crawl-mapping": {
        "plan": "done",
        "fetch": "running",
        "summarize": "not_reached",
        "done": "not_reached",
    },
    "breaks-failed": {"prepare": "done", "explode": "failed", "done": "not_reached"},
    "approval-timer": {"prepare": "done", "wait_for_event": "waiting", "done": "not_reached"},
    "quick-done": {"prepare": "done", "done": "done"},
}


def test_graph_marks_each_step_with_its_state(readonly: Server, page: Page) -> None:
    """An instance's graph marks each step done, running, waiting, failed or not reached."""
    for instance_id, expected in STATES.items():
        page.goto(url_of(readonly, instance_id))
        for step, state in expected.items():
            expect(node(page, step)).to_have_attribute("data-state", state)
            expect(node(page, step)).to_have_class(re.compile(rf"\bstate-{state}\b"))
    page.goto(url_of(readonly, "crawl-mapping"))
    expect(node(page, "fetch").locator("text.map")).to_have_text("map 2/5")


def test_graph_follows_the_instance_when_it_is_resumed_elsewhere(live: Server, page: Page) -> None:
    """An open instance page redraws its graph and status, unreloaded, when another resumes it."""
    page.goto(url_of(live, "follow-signoff"))
    expect(node(page, "wait_for_event")).to_have_attribute("data-state", "waiting")
    page.evaluate("() => { window.__unreloaded = true }")
    with httpx.Client(timeout=10) as client:
        token = token_of(client, url_of(live, "follow-signoff"))
        answer = client.post(
            live.at("actions/resume/follow-signoff"),
            data={"token": token, "step": "wait_for_event", "event": "signed"},
        )
    assert 303 == answer.status_code, answer.text
    expect(node(page, "wait_for_event")).to_have_attribute("data-state", "done")
    expect(node(page, "done")).to_have_attribute("data-state", "done")
    expect(page.locator("#status")).to_have_text("completed")
    expect(page.locator("#timeline tr[data-kind=resumed]")).to_contain_text("signed")
    assert page.evaluate("() => window.__unreloaded") is True


# ---------------------------------------------------------------------- actions


COUNT_SWAPS = """() => {
    window.__swaps = 0;
    document.body.addEventListener("htmx:afterSwap", () => { window.__swaps += 1 });
}"""
"""Counts the swaps of the page's live parts in ``window.__swaps``."""


def test_resuming_a_waiting_instance_from_its_page_completes_it(live: Server, page: Page) -> None:
    """Resuming from the page's form (what is typed there outlives the refreshes) completes it."""
    page.goto(url_of(live, "resume-approval"))
    expect(page.locator("#mode")).to_have_text("read-write")
    form = page.locator('.waiting-step[data-step="wait_for_event"] form.resume')
    form.get_by_label("Event").select_option("approved")
    data = form.get_by_label("Data (a JSON object, optional)")
    page.evaluate(COUNT_SWAPS)
    data.fill('{"by": "ana"}')
    page.wait_for_function("() => window.__swaps >= 2")  # the live part refreshed twice
    expect(data).to_have_value('{"by": "ana"}')
    form.get_by_role("button", name="Resume wait_for_event").click()
    expect(page.locator("#flash")).to_contain_text("wait_for_event resumed with 'approved'")
    expect(page.locator("#status")).to_have_text("completed")
    resumed = page.locator("#timeline tr[data-kind=resumed]")
    expect(resumed).to_have_count(1)
    expect(resumed).to_contain_text("approved")
    expect(page.locator("#timeline tr.record").last).to_have_attribute("data-kind", "completed")
    expect(page.locator("#waiting .waiting-step")).to_have_count(0)
    page.locator("#show-values").click()
    expect(page.locator("#context-values")).to_contain_text('"by": "ana"')
    assert "completed" == aside(statuses, live.db)["resume-approval"]


def select(page: Page, instance_ids: list[str]) -> None:
    """Tick the rows of ``instance_ids`` for the bulk form."""
    for instance_id in instance_ids:
        row_of(page, instance_id).get_by_role("checkbox").check()
    for instance_id in instance_ids:
        expect(row_of(page, instance_id).get_by_role("checkbox")).to_be_checked()


def test_cancelling_selected_instances_asks_first_then_cancels_them(
    live: Server, page: Page
) -> None:
    """The bulk form's "Cancel selected" names the rows ticked, and cancels them once confirmed."""
    chosen = ["pick-approval", "pick-signoff"]
    page.goto(live.at("instances"))
    expect(row_of(page, "quick-done").get_by_role("checkbox")).to_have_count(0)  # ended
    select(page, chosen)
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator("h1")).to_have_text("Cancel 2 instances?")
    assert sorted(chosen) == sorted(page.locator("#to-cancel li").all_inner_texts())
    page.locator("#confirm").click()
    expect(page.locator("#flash")).to_have_text("cancelled 2 instances")
    for instance_id in chosen:
        expect(row_of(page, instance_id)).to_have_attribute("data-status", "cancelled")
    after = aside(statuses, live.db)
    assert dict.fromkeys(chosen, "cancelled") == {i: after[i] for i in chosen}
    assert ("waiting", "running") == (after["approval-timer"], after["crawl-mapping"])


def test_cancelling_every_instance_a_filter_selects_asks_first_with_the_count(
    live: Server, page: Page
) -> None:
    """Cancelling what the filters select (waiting, an id prefix) says how many, then does it."""
    page.goto(live.at("instances"))
    filters = page.locator("#filters")
    filters.get_by_label("waiting").check()
    filters.get_by_label("Id starts with").fill("sweep-")
    filters.get_by_role("button", name="Filter").click()
    swept = {"sweep-approval", "sweep-signoff", "sweep-approval-2"}
    expect(page.locator("#instances tr[data-id]")).to_have_count(len(swept))
    assert dict.fromkeys(swept, "waiting") == rows(page)
    page.get_by_role("button", name="Cancel every unfinished instance matching").click()
    expect(page.locator("h1")).to_have_text("Cancel 3 instances?")
    assert swept == set(page.locator("#to-cancel li").all_inner_texts())
    page.locator("#confirm").click()
    expect(page.locator("#flash")).to_have_text("cancelled 3 instances")
    expect(page).to_have_url(re.compile(r"/ops/instances\?status=waiting&id=sweep-&flash="))
    expect(page.locator("#no-match")).to_be_visible()
    after = aside(statuses, live.db)
    assert dict.fromkeys(swept, "cancelled") == {i: after[i] for i in swept}
    assert ("waiting", "running") == (after["approval-timer"], after["crawl-mapping"])


def test_cancelling_an_instance_from_its_page_asks_first_then_returns_to_it(
    live: Server, page: Page
) -> None:
    """Its page's "Cancel this instance" asks first ("No, go back" leaves it), then cancels it."""
    page.goto(url_of(live, "page-signoff"))
    page.locator("#cancel").click()
    expect(page.locator("h1")).to_have_text("Cancel 1 instance?")
    expect(page.locator("#to-cancel li")).to_have_text(["page-signoff"])
    page.get_by_role("link", name="No, go back").click()
    expect(page).to_have_url(url_of(live, "page-signoff"))
    expect(page.locator("#status")).to_have_text("waiting")
    page.locator("#cancel").click()
    page.locator("#confirm").click()
    expect(page).to_have_url(re.compile(r"/ops/instances/page-signoff\?flash="))
    expect(page.locator("#flash")).to_have_text("cancelled 1 instance")
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("form[method=post]")).to_have_count(0)
    assert "cancelled" == aside(statuses, live.db)["page-signoff"]


def test_read_only_dashboard_offers_no_action(sqlite_readonly: Server, page: Page) -> None:
    """A read-only dashboard has no form to post, no row to tick, no Cancel or Resume button."""
    for url in [sqlite_readonly.at("instances"), *(url_of(sqlite_readonly, i) for i in flows.IDS)]:
        page.goto(url)
        expect(page.locator("#mode")).to_have_text("read-only")
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("form[method=post]")).to_have_count(0)
        expect(page.locator("#instances input[type=checkbox]")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("Cancel|Resume|Send"))).to_have_count(0)


FORGE = """([action, fields]) => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    for (const [name, value] of fields) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.append(input);
    }
    document.body.append(form);
    form.submit();
}"""
"""Posts a form of the test's own from the page."""


def test_read_only_dashboard_refuses_a_forged_post(
    sqlite_readonly: Server, page: Page, console: Console
) -> None:
    """A POST to a read-only dashboard, from a client or a page, is refused (403); none acts."""
    posts = {
        "actions/cancel": {"ids": "approval-timer", "confirmed": "yes", "token": "forged"},
        "actions/resume/approval-timer": {"step": "wait_for_event", "event": "approved"},
        "actions/send/signoff-waiting": {"event": "signed", "token": "forged"},
    }
    with httpx.Client(timeout=10) as client:
        for path, form in posts.items():
            answer = client.post(sqlite_readonly.at(path), data=form)
            assert 403 == answer.status_code, path
            assert "read-only" in answer.text
    console.allow(r"status of 403 .*/actions/cancel\)$")
    page.goto(url_of(sqlite_readonly, "approval-timer"))
    fields = [["ids", "approval-timer"], ["confirmed", "yes"], ["scope", "selected"]]
    with page.expect_navigation() as navigation:
        page.evaluate(FORGE, [sqlite_readonly.at("actions/cancel"), fields])
    assert navigation.value is not None
    assert 403 == navigation.value.status
    expect(page.locator("main h1")).to_have_text("Refused")
    expect(page.locator("#error")).to_contain_text("this dashboard is read-only")
    page.goto(url_of(sqlite_readonly, "approval-timer"))
    expect(page.locator("#status")).to_have_text("waiting")
    assert flows.STATUSES == aside(statuses, sqlite_readonly.db)


def test_read_write_dashboard_refuses_a_post_without_its_token_or_from_another_site(
    sqlite_live: Server,
) -> None:
    """A read-write dashboard refuses a form without its page's token, or from another site."""
    with httpx.Client(timeout=10) as client:
        url = url_of(sqlite_live, "approval-timer")
        token = token_of(client, url)
        resume = sqlite_live.at("actions/resume/approval-timer")
        form = {"step": "wait_for_event", "event": "approved"}
        stale = client.post(resume, data={**form, "token": "stale"})
        assert 403 == stale.status_code
        assert "token is missing or stale" in stale.text
        elsewhere = {"Origin": "http://attacker.example"}
        foreign = client.post(resume, data={**form, "token": token}, headers=elsewhere)
        assert 403 == foreign.status_code
        assert "another site (http://attacker.example)" in foreign.text
    assert "waiting" == aside(statuses, sqlite_live.db)["approval-timer"]


# ---------------------------------------------------------------------- HTML is text


def no_markup_from_values(page: Page) -> None:
    """Nothing the values hold became an element, and none of their scripts ran."""
    expect(page.locator("main script, main img, main b, main i")).to_have_count(0)
    assert page.evaluate("() => window.__pwned") is None


def test_html_in_ids_step_keys_events_and_values_shows_as_text(extras: Extras, page: Page) -> None:
    """Ids, step keys, events, context keys and values that are HTML show as text, never run."""
    page.goto(url_of(extras.server, TAINTED_ID, "?context=values"))
    expect(page).to_have_title(f"{TAINTED_ID} · Hephaestus")
    expect(page.locator("h1 .id")).to_have_text(TAINTED_ID)
    expect(page.locator("#status")).to_have_text("waiting")
    expect(page.locator("#context-values")).to_contain_text(NOTE)
    expect(page.locator("#context-values")).to_contain_text(IMG)
    expect(page.locator("#context")).to_contain_text("<i>key</i>")
    expect(node(page, Scribble.step_key)).to_have_attribute("data-state", "done")
    expect(node(page, Scribble.step_key).locator("text").first).to_have_text(Scribble.step_key)
    expect(node(page, Hold.step_key)).to_have_attribute("data-state", "waiting")
    expect(page.locator("#graph svg")).to_contain_text("<i>noted</i>")
    expect(page.locator("#waiting")).to_contain_text(f"{Hold.step_key} waits for {HTML_EVENT}.")
    expect(page.locator("#timeline")).to_contain_text(Scribble.step_key)
    no_markup_from_values(page)
    page.goto(extras.server.at("instances?id=%3C"))
    expect(page.locator("#instances tr[data-id]")).to_have_count(1)
    expect(page.locator("#instances td.id")).to_have_text(TAINTED_ID)
    no_markup_from_values(page)
    page.goto(extras.server.at("workflows"))
    page.get_by_role("link", name=f"{TAINTED}:Tainted", exact=True).click()
    expect(page.locator("p.path")).to_contain_text("<script>window.__pwned = 6</script><b>HTML")
    expect(page.locator("#graph svg g.step")).to_have_count(3)
    no_markup_from_values(page)


def test_an_id_with_url_characters_links_to_its_own_page(extras: Extras, page: Page) -> None:
    """An id holding ``#``, ``?``, ``%`` or a space links to its page (its links quote it)."""
    page.goto(extras.server.at("instances?id=invoice"))
    page.get_by_role("link", name=ODD_ID, exact=True).click()
    expect(page.locator("h1 .id")).to_have_text(ODD_ID)
    page.locator("#show-values").click()
    expect(page.locator("#context-values")).to_contain_text('"by": "hal"')


# ---------------------------------------------------------------------- screenshots


SCREENSHOTS = {
    "overview": ("", "#overview .cards"),
    "instances": ("instances", "#instances-table"),
    "instance-waiting": ("instances/approval-timer", ".waiting-step form.resume"),
    "instance-running": ("instances/crawl-mapping", "#active"),
    "instance-failed": ("instances/breaks-failed", "#stacktrace"),
    "workflows": ("workflows", "#workflows"),
    "workflow-graph": ("workflows/graph?workflow=cli.flows%3ACrawl&version=1", "#graph svg"),
}
"""Each screenshot of the docs: the page, and what it shows once ready."""


def test_screenshots_of_each_page_for_the_docs(
    fresh_live: Server, page: Page, tmp_path: Path
) -> None:
    """Full-page screenshots of every page at 1280x800 (to $HEPHAESTUS_SCREENSHOTS if set)."""
    folder = Path(os.environ.get("HEPHAESTUS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.goto(fresh_live.at("instances"))
    expect(row_of(page, "approval-pending")).to_have_attribute("data-status", "waiting")
    for name, (path, ready) in SCREENSHOTS.items():
        page.goto(fresh_live.at(path))
        expect(page.locator(ready)).to_be_visible()
        page.screenshot(path=folder / f"dashboard-{name}.png", full_page=True)
    for name in SCREENSHOTS:
        data = (folder / f"dashboard-{name}.png").read_bytes()
        assert b"\x89PNG\r\n\x1a\n" == data[:8], name
        assert len(data) > 10_000, name


# ---------------------------------------------------------------------- found on the way


TICK_AS_IT_LANDS = """instance_id => {
    // In the capture phase, before any handler of the table itself: as if the operator
    // ticked the row while this refresh was on its way.
    const tick = event => {
        if (event.detail.elt.id !== "instances") return;
        document.removeEventListener("htmx:beforeSwap", tick, true);
        document.querySelector(`input[form=bulk][value="${instance_id}"]`).click();
        window.__ticked = true;
    };
    document.addEventListener("htmx:beforeSwap", tick, true);
}"""


def test_a_row_ticked_while_the_table_refreshes_stays_ticked(
    sqlite_live: Server, page: Page
) -> None:
    """A row ticked while a refresh of the table is on its way stays ticked (no swap drops it)."""
    page.goto(sqlite_live.at("instances"))
    box = row_of(page, "approval-timer").get_by_role("checkbox")
    expect(box).not_to_be_checked()
    page.evaluate(TICK_AS_IT_LANDS, "approval-timer")
    page.wait_for_function("() => window.__ticked === true")
    expect(box).to_be_checked()
