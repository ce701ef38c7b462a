"""What the dashboard's browser tests share: chromium, the servers, the databases they serve.

The browser is Debian's chromium (``/usr/bin/chromium``), driven by
Playwright's sync API and never downloaded: without it (or without the
``playwright`` module) the tests are skipped, saying why, and under
``CI=true`` they fail instead. One browser serves the session; each test has
a context and a page of its own, whose console errors and page errors fail
the test (``page``; a test that provokes one on purpose allows it with
``console.allow``).

The servers are processes of their own, as users run them, with ``tests/``
on their ``PYTHONPATH``; the fixture reads their first line (the address)
and stops them afterwards:

- ``readonly``: ``hephaestus web`` (read-only) over each backend's database
  holding one instance in every status (``cli.flows.populate``), shared by
  the tests that only read;
- ``extras``: ``hephaestus web`` (read-only) over a SQLite database holding
  many pending instances (pagination) and instances whose texts are HTML
  (``Tainted``, ``TAINTED_ID``, ``ODD_ID``);
- ``live`` (and ``sqlite_live``): ``web.live_app`` (a ``LocalRunner`` drives
  the database; the dashboard read-write at ``/ops/``) over each backend's
  database holding, besides an instance in every status, instances of each
  test that acts (``ACTING``), so that the tests share it;
- ``fresh_live``: the same over a SQLite database built for the test alone.

A test names its server fixtures before ``page``, so that its page closes
before its server stops (a page polling a stopped server logs errors).

While Playwright's sync API runs, the main thread has a running event loop
(Playwright's, between two calls): ``anyio.run`` fails there. What reads or
builds a database therefore runs in a thread of its own (:func:`aside`), and
the tests that use the browser run after every other test of the session
(``pytest_collection_modifyitems``), so that no async test meets that loop.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import attrs
import pytest
from cli import flows
from cli.conftest import (
    BACKENDS,
    FLOWS,
    GUARD,
    ROOT,
    Db,
    child_env,
    drop_schema,
    fresh_schema,
)

from hephaestus import (
    Context,
    Done,
    Instance,
    LocalRunner,
    Ok,
    Record,
    SQLiteStorage,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus.runtime.storage.codec import import_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 10_000
"""How long a test waits for the page to show something (Playwright polls), in ms."""
VIEWPORT = {"width": 1280, "height": 800}
READ_ONLY_REFRESH = "0.5"
"""How often the read-only servers' pages refresh their live parts, in seconds."""

T = TypeVar("T")


def aside(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a thread of its own: this one may hold Playwright's running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result(timeout=GUARD)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use the browser last: after them, the main thread keeps a running loop."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


# ---------------------------------------------------------------------- HTML in every text

NOTE = "<script>window.__pwned = 1</script><b>bold</b>"
"""An initial context value: the page shows it as text."""
IMG = "<img src=x onerror=window.__pwned=2>"
TAINTED_ID = "<img src=x onerror=window.__pwned=3>"
"""An instance id that is HTML (ids may hold any character but NUL)."""
ODD_ID = "invoice #7?copy=1 100%"
"""An instance id with the characters a URL gives a meaning to: ``#``, ``?``, ``%``, a space."""
HTML_EVENT = "<b>go</b>"


class Scribble(Step):
    """Writes HTML into the context."""

    step_key = "<script>window.__pwned=4</script>"
    events = ("<i>noted</i>",)

    async def execute(self, instance: Instance, config: Any, context: Context) -> Ok:
        return Ok("<i>noted</i>", {"echo": IMG})


class Hold(WaitForEvent):
    """Waits under a step key that is HTML."""

    step_key = "<img src=y onerror=window.__pwned=5>"


class Tainted(Workflow):
    """Holds <script>window.__pwned = 6</script><b>HTML</b> in every text a page shows."""

    start = Scribble
    transitions = {
        Scribble: {"<i>noted</i>": (Hold, {"events": (HTML_EVENT,)})},
        Hold: {HTML_EVENT: Done},
    }


TAINTED = import_path(Tainted).partition(":")[0]
"""The name the extras database keeps ``Tainted`` under (``web.conftest``): the server
imports it with ``--app``, from ``tests/`` (``child_env``) or the working directory."""

PAGED = 40
"""How many pending instances (``bulk-00``...) the extras database holds besides the others:
two full pages of 20."""


async def _extras(path: Path) -> list[str]:
    """The extras database: the tainted instances, then ``PAGED`` pending ones; all their ids."""
    async with SQLiteStorage(path) as storage:
        async with LocalRunner(storage, name="web-tests") as runner:
            await runner.start(Tainted, {"note": NOTE, "<i>key</i>": IMG}, id=TAINTED_ID)
            await flows.stored(storage, TAINTED_ID, lambda i: i.status is Status.WAITING)
            await runner.run(flows.Quick, {"by": "hal"}, id=ODD_ID, timeout=GUARD)
        # Stored after the runner left: a runner would drive them.
        first = time.time_ns()
        for n in range(PAGED):
            pending = Instance(
                f"bulk-{n:02d}",
                flows.Quick,
                flows.Quick.version,
                Status.PENDING,
                Context({"by": "gus"}),
                started_at=first + n,
            )
            await storage.put(pending, [Record("started", pending.started_at)])
        return [instance.id for instance in await storage.query()]


# ---------------------------------------------------------------------- the browser


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the dashboard's browser tests are required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, for the whole session."""
    if not CHROMIUM.exists():
        _unavailable("Debian's chromium is not installed: apt-get install chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[test]'")
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@attrs.define(slots=False)  # Playwright keeps its wrapper of a bound handler on the instance
class Console:
    """The console errors and page errors of a test's page; those not allowed fail it."""

    seen: list[str] = attrs.field(factory=list)
    allowed: list[str] = attrs.field(factory=list)

    def allow(self, pattern: str) -> None:
        """An error the test provokes on purpose (a regular expression its text matches)."""
        self.allowed.append(pattern)

    def message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console error: {message.text} ({message.location.get('url')})")

    def error(self, error: Error) -> None:
        self.seen.append(f"page error: {error}")

    def unexpected(self) -> list[str]:
        return [s for s in self.seen if not any(re.search(p, s) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    """What the test's page logs as errors."""
    return Console()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A page in a context of its own, 1280x800; the test fails on a console or page error."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    opened.on("console", console.message)
    opened.on("pageerror", console.error)
    try:
        yield opened
        errors = console.unexpected()  # before closing: what the page said while the test ran
    finally:
        context.close()
    assert [] == errors


# ---------------------------------------------------------------------- servers


@attrs.frozen
class Server:
    """A dashboard being served: its address (ending with ``/``) and its database."""

    url: str
    db: Db

    def at(self, path: str = "") -> str:
        """The address of ``path`` (relative to the dashboard's root)."""
        return self.url + path.lstrip("/")


@contextlib.contextmanager
def serving(args: list[str], db: Db, folder: Path, address: str) -> Iterator[Server]:
    """Run ``python ARGS``; its first line gives the address (regex ``address``); stop it after."""
    log = folder / f"server-{time.monotonic_ns()}.log"
    with log.open("w+", encoding="utf-8") as errors:
        process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            encoding="utf-8",
            env=child_env(),
            cwd=ROOT,
        )
        try:
            stdout = process.stdout
            assert stdout is not None
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
            reader.start()
            reader.join(GUARD)
            found = re.search(address, lines[0]) if lines else None
            if found is None:
                errors.seek(0)
                pytest.fail(f"{args} did not say where it serves: {lines} {errors.read()}")
            yield Server(found.group(1), db)
        finally:
            process.terminate()
            try:
                process.wait(GUARD)
            except subprocess.TimeoutExpired:  # pragma: no cover - it ignored SIGTERM
                process.kill()
                process.wait(GUARD)
            if process.stdout is not None:
                process.stdout.close()


def read_only_server(db: Db, folder: Path, *apps: str) -> contextlib.AbstractContextManager[Server]:
    """``hephaestus web`` over ``db``, read-only, importing ``apps``."""
    modules = [option for app in apps for option in ("--app", app)]
    args = ["-m", "hephaestus", "web", *db.options, "--port", "0"]
    args += ["--refresh", READ_ONLY_REFRESH, *modules]
    return serving(args, db, folder, r" at (http://\S+/) \(read-only\)")


ACTING: dict[str, type[Workflow]] = {
    "follow-signoff": flows.Signoff,
    "resume-approval": flows.Approval,
    "pick-approval": flows.Approval,
    "pick-signoff": flows.Signoff,
    "sweep-approval": flows.Approval,
    "sweep-signoff": flows.Signoff,
    "sweep-approval-2": flows.Approval,
    "page-signoff": flows.Signoff,
}
"""The instances the live dashboards' tests act on, each its own (ids by test), beside
``populate``'s: stored pending, the live application's runner parks each as waiting."""


async def _fill(db: Db, more: dict[str, type[Workflow]]) -> None:
    """``populate`` the database, then store the instances ``more`` names, pending."""
    async with db.storage() as storage:
        await flows.populate(storage)
        for instance_id, workflow in more.items():
            pending = Instance(
                instance_id,
                workflow,
                workflow.version,
                Status.PENDING,
                Context({"by": "gil"}),
                started_at=time.time_ns(),
            )
            await storage.put(pending, [Record("started", pending.started_at)])


async def _parked(db: Db, instance_ids: list[str]) -> None:
    """Once the instances ``instance_ids`` wait (a runner drives the database)."""
    async with db.storage() as storage:
        for instance_id in instance_ids:
            await flows.stored(storage, instance_id, lambda i: i.status is Status.WAITING)


@contextlib.contextmanager
def populated(
    request: pytest.FixtureRequest,
    backend: str,
    folder: Path,
    more: dict[str, type[Workflow]] | None = None,
) -> Iterator[Db]:
    """A database of ``backend``: an instance in every status, and ``more``; dropped after."""
    if backend == "sqlite":
        db = Db("sqlite", str(folder / "hephaestus.db"))
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        db = Db("postgres", dsn, fresh_schema())
    try:
        aside(anyio.run, _fill, db, more or {})
        yield db
    finally:
        if db.schema is not None:
            drop_schema(db.target, db.schema)


def _readonly(request: pytest.FixtureRequest, backend: str, folder: Path) -> Iterator[Server]:
    with populated(request, backend, folder) as db, read_only_server(db, folder, FLOWS) as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_readonly(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``hephaestus web``, read-only, over a SQLite database no test changes."""
    yield from _readonly(request, "sqlite", tmp_path_factory.mktemp("readonly"))


@pytest.fixture(scope="session")
def postgres_readonly(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``hephaestus web``, read-only, over a PostgreSQL schema no test changes."""
    yield from _readonly(request, "postgres", tmp_path_factory.mktemp("readonly"))


@pytest.fixture(scope="session", params=BACKENDS)
def readonly(request: pytest.FixtureRequest) -> Server:
    """Each backend's read-only dashboard, an instance in every status: for the reading tests."""
    server: Server = request.getfixturevalue(f"{request.param}_readonly")
    return server


@attrs.frozen
class Extras:
    """The extras database's read-only dashboard, and the ids of every instance it holds."""

    server: Server
    ids: list[str]


@pytest.fixture(scope="session")
def extras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Extras]:
    """A read-only dashboard over ``PAGED`` pending instances and the tainted ones (SQLite)."""
    folder = tmp_path_factory.mktemp("extras")
    path = folder / "hephaestus.db"
    ids = aside(anyio.run, _extras, path)
    db = Db("sqlite", str(path))
    with read_only_server(db, folder, FLOWS, TAINTED) as server:
        yield Extras(server, ids)


@contextlib.contextmanager
def live_app(
    request: pytest.FixtureRequest,
    backend: str,
    folder: Path,
    more: dict[str, type[Workflow]] | None = None,
) -> Iterator[Server]:
    """``web.live_app`` over a database of ``backend`` (with ``more``), once ``more`` waits."""
    with populated(request, backend, folder, more) as db:
        args = ["-m", "web.live_app", *db.options]
        with serving(args, db, folder, r"^ready (http://\S+/)$") as server:
            aside(anyio.run, _parked, db, list(more or ()))
            yield server


def _live(request: pytest.FixtureRequest, backend: str, folder: Path) -> Iterator[Server]:
    with live_app(request, backend, folder, ACTING) as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The read-write dashboard over SQLite, for the tests that act on an instance of their own
    (``ACTING``), or that change nothing."""
    yield from _live(request, "sqlite", tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session")
def postgres_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The read-write dashboard over PostgreSQL, for the tests that act on their own instances."""
    yield from _live(request, "postgres", tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session", params=BACKENDS)
def live(request: pytest.FixtureRequest) -> Server:
    """Each backend's read-write dashboard, a runner driving its database; each test that acts
    there acts on instances of its own (``ACTING``)."""
    server: Server = request.getfixturevalue(f"{request.param}_live")
    return server


@pytest.fixture
def fresh_live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """The read-write dashboard over a SQLite database built for this test alone."""
    with live_app(request, "sqlite", tmp_path) as server:
        yield server
