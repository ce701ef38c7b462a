"""The pytest plugin, loaded by its entry point from the installed package alone.

The project's own runs turn the entry point off (``-p no:hephaestus`` in pyproject's
addopts; tests/conftest.py loads the plugin instead, for coverage), so this test
proves it another way: it builds a wheel of this tree, installs it (not editable)
in a fresh virtual environment, and runs that environment's pytest on a test file
that asks for ``heph_clock`` and ``heph_runner`` with no conftest.py and no
``pytest_plugins`` anywhere near it.

The fresh environment installs nothing from an index: what ``hephaestus[testing]``
needs (its dependencies and the ``testing`` extra's, recursively) is linked in from
this environment's site-packages, one distribution at a time, and nothing else is,
so neither the editable hephaestus of this tree nor any other plugin is seen there.
Only the wheel's build backend (pyproject's ``build-system.requires``) may come from
the configured index, as it does for ``pip install -e .``; where this environment
already has a setuptools that builds wheels, it is built here without an index.

It takes a few seconds (a wheel build and three interpreters), most of them pip's.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
NAME = canonicalize_name(PROJECT["name"])
PIP = [sys.executable, "-m", "pip"]  # this environment's pip, which installs into the fresh one

# Generous bounds, so that a hung pip or pytest fails the test instead of the CI run.
BUILD_TIMEOUT = 300
RUN_TIMEOUT = 120

INNER_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

INNER_TEST = '''\
"""A user's test: the plugin's fixtures, with no conftest.py and no pytest_plugins."""

from pathlib import Path

import hephaestus
from hephaestus import Done, Ok, Status, Step, Wait, Workflow

SITE_PACKAGES = Path({site_packages!r})


class Begin(Step):
    events = ("begun",)

    async def execute(self, instance, config, context):
        return Ok("begun")


class TwoDays(Workflow):
    start = Begin
    transitions = {{
        Begin: {{"begun": (Wait, {{"duration": 2, "unit": "days"}})}},
        Wait: {{"timeout": Done}},
    }}


async def test_two_days_pass_on_the_virtual_clock(heph_clock, heph_runner, request):
    plugin = request.config.pluginmanager.get_plugin("hephaestus")  # the entry point's name
    assert plugin is not None
    assert "hephaestus.testing.plugin" == plugin.__name__
    assert Path(plugin.__file__).is_relative_to(SITE_PACKAGES)
    assert Path(hephaestus.__file__).is_relative_to(SITE_PACKAGES)

    instance = await heph_runner.run(TwoDays, {{}})

    assert Status.COMPLETED == instance.status
    assert heph_clock.elapsed >= 2 * 24 * 3600
'''

PROBE = """\
import importlib.metadata, json, sys, sysconfig
import hephaestus
dist = importlib.metadata.distribution("hephaestus")
print(json.dumps({
    "purelib": sysconfig.get_path("purelib"),
    "sys_path": sys.path,
    "module": hephaestus.__file__,
    "dist_files": str(dist.locate_file("")),
    "direct_url": dist.read_text("direct_url.json"),
    "pytest11": [[ep.name, ep.value] for ep in dist.entry_points.select(group="pytest11")],
}))
"""


def test_the_installed_package_alone_registers_the_pytest_plugin(tmp_path: Path) -> None:
    """A fresh venv with the wheel installed runs a plugin-fixture test by the entry point."""
    env = _clean_environment()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env)
    python = venv / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env
        ).strip()
    )

    # What hephaestus[testing] needs, from this environment, and nothing more.
    deps = tmp_path / "deps"
    _link_distributions(_needed(_own_requirements(["testing"])), deps)
    (purelib / "_hephaestus_test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")

    wheel = _build_wheel(tmp_path, env)
    _run([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], env=env)

    probe = json.loads(_run([str(python), "-P", "-c", PROBE], env=env, cwd=tmp_path))
    assert str(purelib) == probe["purelib"]
    assert Path(probe["module"]).is_relative_to(purelib), probe
    assert Path(probe["dist_files"]) == purelib, probe
    assert not json.loads(probe["direct_url"]).get("dir_info", {}).get("editable"), probe
    assert [["hephaestus", "hephaestus.testing.plugin"]] == probe["pytest11"]
    ours = {str(ROOT)} | {path for path in sys.path if path.endswith("site-packages")}
    assert not ours & set(probe["sys_path"]), probe["sys_path"]

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INNER_INI, encoding="utf-8")
    (suite / "test_user_workflow.py").write_text(
        INNER_TEST.format(site_packages=str(purelib)), encoding="utf-8"
    )
    result = subprocess.run(
        [str(python), "-P", "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert 0 == result.returncode, output
    assert "1 passed" in output, output
    assert not list(suite.rglob("conftest.py"))


def _clean_environment() -> dict[str, str]:
    """This process's environment less what would steer the child interpreters or pytest."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "PYTEST_", "COV_CORE_", "COVERAGE_", "VIRTUAL_ENV"))
    }
    # An index that cannot be reached is given up on at once, for the next one configured
    # (a local one, on a machine without the network); pip never asks anything.
    env.update(
        PIP_RETRIES="1",
        PIP_DEFAULT_TIMEOUT="30",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def _run(command: list[str], *, env: Mapping[str, str], cwd: Path | None = None) -> str:
    """Run ``command``; its standard output, or a failed test that shows all it printed."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert 0 == result.returncode, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _build_wheel(tmp_path: Path, env: Mapping[str, str]) -> Path:
    """A wheel of this tree, built from a copy (the build writes build/ and *.egg-info)."""
    source = tmp_path / "source"
    source.mkdir()
    for path in ROOT.iterdir():
        if path.is_file() and (
            path.name in {"pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in"}
            or path.name.startswith(("README", "LICENSE"))
        ):
            shutil.copy2(path, source / path.name)
    shutil.copytree(
        ROOT / "hephaestus",
        source / "hephaestus",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = tmp_path / "wheels"
    isolation = ["--no-build-isolation"] if _builds_wheels_here() else []
    _run([*PIP, "wheel", "--no-deps", *isolation, "--wheel-dir", str(wheels), str(source)], env=env)
    [wheel] = wheels.glob("hephaestus-*.whl")
    return wheel


def _builds_wheels_here() -> bool:
    """Whether this environment has the build backend, so no index is needed for it."""
    build_system = PYPROJECT["build-system"]
    if build_system.get("build-backend") != "setuptools.build_meta":
        return False
    for text in build_system["requires"]:
        requirement = Requirement(text)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    # setuptools builds wheels by itself from 70.1 on; before, with the `wheel` package.
    if Version(importlib.metadata.version("setuptools")) >= Version("70.1"):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _own_requirements(extras: Iterable[str]) -> list[Requirement]:
    """The project's dependencies and those of ``extras`` (its own extras expanded)."""
    requirements: list[Requirement] = []
    texts = list(PROJECT["dependencies"])
    for extra in extras:
        texts += PROJECT["optional-dependencies"][extra]
    for text in texts:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == NAME:
            requirements += _own_requirements(requirement.extras)
        elif requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            requirements.append(requirement)
    return requirements


def _needed(requirements: Iterable[Requirement]) -> dict[str, importlib.metadata.Distribution]:
    """The distributions of this environment that ``requirements`` need, recursively."""
    needed: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        assert NAME != name, f"a dependency needs {NAME} itself: {requirement}"
        for extra in ["", *sorted(requirement.extras)]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            if name not in needed:
                needed[name] = importlib.metadata.distribution(requirement.name)
            for text in needed[name].requires or []:
                sub = Requirement(text)
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    return needed


def _link_distributions(dists: Mapping[str, importlib.metadata.Distribution], into: Path) -> None:
    """Symlink each distribution's top-level files and folders (its dist-info too) into ``into``."""
    into.mkdir()
    for name, dist in dists.items():
        assert dist.files is not None, f"{name} lists no files (no RECORD)"
        base = Path(dist.locate_file(""))
        for top in {file.parts[0] for file in dist.files}:
            if top in {"..", "__pycache__"} or (into / top).is_symlink():
                continue
            (into / top).symlink_to(base / top)
