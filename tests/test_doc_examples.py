"""Every ```python block of README.md and docs/*.md runs, as written.

The pages' convention for examples, which this module enforces (a block added
to a page runs here, and fails CI when it does not run):

- **A page's ```python blocks, in page order, are one program.** They run one
  after the other in one namespace, in an empty temporary directory. So a
  block is either a whole program, or it builds on the blocks above it: a page
  states its set-up (a workflow, say) in a visible block, and a later block
  uses the names that block defined, as if the page's blocks were pasted into
  one file. A block's own ``assert`` statements are its checks.
- **No top-level await.** A block that awaits does it in ``async def main()``
  and ends with ``anyio.run(main)`` (or ``asyncio.run(main())``), so that the
  page's blocks run as a script, as they do here.
- **The page's module.** The namespace is a module of the page's own
  (``docs_<page>``) put in ``sys.modules`` for the page's run, so that a
  durable storage or an in-process worker finds the page's classes by their
  import path, as a script's are found in ``__main__``.
- **PostgreSQL.** A block that needs PostgreSQL reads its DSN from
  ``os.environ["HEPHAESTUS_DATABASE"]`` (the variable the ``hephaestus``
  command reads too), and the page says so. From the first block that names
  the variable, the page runs on a database of its own, created on the test
  server (``$HEPHAESTUS_TEST_DSN``: see ``postgres_dsn`` in conftest.py) and
  dropped after the page. Without a reachable server the page is skipped at
  that block, saying why (under ``CI=true`` it fails), the blocks above it
  having run.
- **Handlers do not fail quietly.** A telemetry handler that raises is
  detached and reported, never raised into the workflow: a page whose
  handler raises fails here. The handlers a page leaves attached are
  detached after it.
- **What does not run is not ```python.** A signature, an output or a log
  is a ```text block (or a bare fence); fences such as ```py are refused, so
  that no example escapes these tests.

docs/testing.md is the exception: its blocks are the files of a user's project
(``# file: name.py``), which pytest runs in a fresh directory
(``test_the_testing_guide_runs``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hephaestus import telemetry

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
"""A fenced block, in a list item (indented) too."""
DATABASE = "HEPHAESTUS_DATABASE"
"""The environment variable a PostgreSQL example reads its DSN from."""


def pages() -> list[Path]:
    """The pages whose ```python blocks run here: README.md and docs/*.md but testing.md."""
    return [ROOT / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name != "testing.md")]


def examples(page: Path) -> Iterator[tuple[int, str]]:
    """The ```python blocks of ``page``: the line each one's code starts on (from 1), its code."""
    text = page.read_text()
    for fence in FENCE.finditer(text):
        if fence["info"].strip() == "python":
            yield text.count("\n", 0, fence.start("code")) + 1, textwrap.dedent(fence["code"])


def named(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize(
    "page", [pytest.param(p, id=named(p)) for p in pages() if any(examples(p))]
)
def test_every_example_of_the_page_runs(
    page: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's blocks run in page order, in one namespace, to their end: asserts included."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType(f"docs_{page.stem.lower()}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    attached = {handler.id for handler in telemetry.list_handlers()}
    failures: list[Mapping[str, Any]] = []
    telemetry.attach(
        "docs-handler-failures",
        telemetry.HANDLER_FAILURE_EVENT,
        lambda _name, _measurements, metadata, _config: failures.append(metadata),
    )
    database = None
    try:
        for line, code in examples(page):
            if DATABASE in code and database is None:
                database = fresh_database(request)
                monkeypatch.setenv(DATABASE, database)
            # Line numbers are the page's, so a traceback shows the page's own lines.
            exec(
                compile("\n" * (line - 1) + code, str(page), "exec", dont_inherit=True),
                vars(module),
            )
            assert [] == [
                f"handler {failure['handler_id']!r} raised on {failure['event_name']}: "
                f"{failure['kind']}: {failure['reason']}"
                for failure in failures
            ], f"a handler of the block at {named(page)}:{line} raised"
    finally:
        for handler in telemetry.list_handlers():
            if handler.id not in attached:
                telemetry.detach(handler.id)


def fresh_database(request: pytest.FixtureRequest) -> str:
    """The DSN of a new database on the test server, dropped after the test.

    ``postgres_dsn`` skips the test (fails it under ``CI=true``) when the
    server is unreachable; so does a role that may not create a database.
    """
    dsn: str = request.getfixturevalue("postgres_dsn")
    import psycopg  # postgres_dsn made sure it is installed
    from psycopg import sql

    name = f"heph_docs_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reason = f"the examples need a database of their own, and {dsn!r} cannot create one: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL is required)")
        pytest.skip(reason)

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    request.addfinalizer(drop)
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


def test_the_examples_are_found() -> None:
    """Each page's examples are found, and none hides behind a fence other than ```python."""
    found = {named(page): len(list(examples(page))) for page in pages()}
    assert found["README.md"] >= 2
    assert sum(found.values()) >= 25, found
    hidden = [
        f"{named(page)}: ```{fence['info']}"
        for page in [*pages(), DOCS / "testing.md"]
        for fence in FENCE.finditer(page.read_text())
        if fence["info"].strip().lower().startswith("py") and fence["info"].strip() != "python"
    ]
    assert [] == hidden, "write Python examples as ```python blocks, or as ```text"


def test_the_testing_guide_runs(tmp_path: Path) -> None:
    """docs/testing.md's files make a project whose tests pass with the installed plugin alone.

    The blocks that start with ``# file: <name>`` are written as files of a
    fresh directory (no conftest), and pytest runs there as a user's project
    would; the others run as they are.
    """
    tests = 0
    for code in BLOCK.findall((DOCS / "testing.md").read_text()):
        first, _, rest = code.partition("\n")
        if not first.startswith("# file: "):
            exec(compile(code, "docs/testing.md", "exec"), {"__name__": "docs_example"})
            continue
        (tmp_path / first.removeprefix("# file: ")).write_text(rest)
        tests += rest.count("\nasync def test_") + rest.count("\ndef test_")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert tests >= 6
    assert f"{tests} passed" in result.stdout


SHELL = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def test_the_cli_tour_runs(tmp_path: Path) -> None:
    """Each command of docs/cli.md's tour exits 0, in order, on the demo's own database."""
    (tour,) = [code for code in SHELL.findall((DOCS / "cli.md").read_text()) if "demo.db" in code]
    lines = [line for line in tour.splitlines() if line.strip()]
    assert lines[0].startswith("hephaestus demo")
    for line in lines:
        program, *args = shlex.split(line)
        assert "hephaestus" == program
        result = subprocess.run(
            [sys.executable, "-m", "hephaestus", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, f"{line}\n{result.stderr}"
        assert result.stdout
    shown = json.loads(
        result_of(tmp_path, "instances show OrderFlow::order::1003 --context -o json")
    )
    assert {"by": "ops"} == shown["context"]["steps"]["wait_for_event"]


def result_of(folder: Path, command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hephaestus", *shlex.split(command), "--database", "demo.db"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_every_image_the_docs_show_is_there() -> None:
    """Each image a page of the docs links to exists (the dashboard's, made by its tests)."""
    shown = {
        (page.parent / link).resolve()
        for page in DOCS.glob("*.md")
        for link in re.findall(r"\]\((images/[^)]+)\)", page.read_text())
    }
    assert shown, "no image found: the pattern is stale"
    assert [] == sorted(str(path) for path in shown if not path.is_file())
