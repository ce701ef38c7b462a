"""The runnable examples of the docs run, as written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(page: str, holding: str) -> list[str]:
    """The Python code blocks of ``docs/<page>`` that contain ``holding``."""
    text = (DOCS / page).read_text()
    return [code for code in BLOCK.findall(text) if holding in code]


@pytest.mark.parametrize(
    ("page", "holding"),
    [
        pytest.param("runners.md", "class Digest(Workflow)", id="runners-map"),
        pytest.param("waiting.md", "class Approval(Workflow)", id="waiting-approval"),
        pytest.param("waiting.md", "class AwaitPayment(Step)", id="waiting-custom"),
        pytest.param("waiting.md", "class Sync(Workflow)", id="waiting-history"),
        pytest.param("observability.md", "otel.instrument(provider)", id="observability-otel"),
        pytest.param("observability.md", "PrometheusReporter(", id="observability-prometheus"),
        pytest.param("storage.md", "await storage.page(", id="storage-page"),
        pytest.param(
            "dashboard.md", "from starlette.routing import Mount", id="dashboard-starlette"
        ),
        pytest.param("dashboard.md", "from fastapi import FastAPI", id="dashboard-fastapi"),
    ],
)
def test_example_runs(page: str, holding: str) -> None:
    """The example is a whole program: it runs to its end, its own asserts included."""
    (code,) = blocks(page, holding)
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs_example"})


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
