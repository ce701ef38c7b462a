"""docs/reference/ documents every public name, from the docstrings, and is up to date."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import re
import sys
import types
from pathlib import Path

import pytest

import hephaestus

GENERATOR = Path(__file__).parent.parent / "docs" / "reference.py"


def load() -> types.ModuleType:
    """docs/reference.py, imported (it is a script, not a module of a package)."""
    spec = importlib.util.spec_from_file_location("docs_reference", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


reference = load()
PAGES: Path = reference.OUT
PUBLIC = [name for name, _ in reference.MODULES]

KNOWN_MISSING: set[str] = set()
"""Public names known to lack a docstring, in files this test's author could not edit.

Each is ``module.name`` or ``module.Class.member``, as the failure lists it.
Empty it as the docstrings are written: the test fails on a name listed here
that has a docstring now.
"""

HEADING = re.compile(r"^## `([^`]+)`$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def made() -> dict[str, str]:
    """The pages as the generator makes them now."""
    pages: dict[str, str] = reference.pages()
    return pages


def committed(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def test_the_pages_are_up_to_date(made: dict[str, str]) -> None:
    """The committed pages are exactly what the generator makes from the code now."""
    present = {path.name for path in PAGES.glob("*.md")}
    stale = sorted(
        {name for name, text in made.items() if name not in present or committed(name) != text}
        | (present - set(made))
    )
    if not stale:
        return
    shown: list[str] = []
    for name in stale[:3]:
        old = committed(name).splitlines() if name in present else []
        new = made.get(name, "").splitlines()
        diff = difflib.unified_diff(old, new, f"committed {name}", f"made {name}", lineterm="")
        shown += list(diff)[:30]
    pytest.fail(
        f"docs/reference/ is out of date ({', '.join(stale)}): a docstring, a signature "
        f"or an __all__ changed. Run: {reference.COMMAND}\n" + "\n".join(shown),
        pytrace=False,
    )


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_public_name_has_an_entry(module_name: str) -> None:
    """Each name of the module's __all__ has its section on the module's committed page."""
    module = importlib.import_module(module_name)
    page = f"{module_name}.md"
    assert (PAGES / page).is_file(), f"no docs/reference/{page}: run {reference.COMMAND}"
    entries = HEADING.findall(committed(page))
    assert [] == sorted(set(module.__all__) - set(entries)), f"run {reference.COMMAND}"
    assert sorted(set(module.__all__)) == sorted(entries)


def test_every_public_name_has_a_docstring() -> None:
    """Every public name has a docstring: its own, or an attribute docstring for data.

    A method without one may lean on the base method it overrides or the
    protocol method it implements (the page says which).
    """
    missing = reference.missing_docstrings()
    assert [] == sorted(set(missing) - KNOWN_MISSING), (
        "public names without a docstring (write one, then run " + reference.COMMAND + ")"
    )
    assert [] == sorted(KNOWN_MISSING - set(missing)), (
        "these have a docstring now: take them out of KNOWN_MISSING"
    )


def test_every_module_is_public_or_internal() -> None:
    """Each module of the package is public (a page) or internal with a reason: no gaps."""
    modules = {
        found.name
        for found in pkgutil.walk_packages(hephaestus.__path__, "hephaestus.")
        if not any(part.startswith("_") for part in found.name.split(".")[1:])
        or found.name == "hephaestus.__main__"
    } | {"hephaestus"}
    listed = set(PUBLIC) | set(reference.INTERNAL)
    assert [] == sorted(modules - listed), "add them to MODULES or INTERNAL in docs/reference.py"
    assert [] == sorted(listed - modules), "no such module: take them out of docs/reference.py"
    assert [] == sorted(set(PUBLIC) & set(reference.INTERNAL))


def test_the_pages_link_to_what_exists(made: dict[str, str]) -> None:
    """Every link between the pages leads to a page and a heading that exist."""
    anchors = {
        name: {reference.slug(heading) for heading in re.findall(r"^#+ (.+)$", text, re.M)}
        for name, text in made.items()
    }
    broken = []
    for name, text in made.items():
        for target in LINK.findall(text):
            page, _, anchor = target.partition("#")
            page = page or name
            if page not in anchors or (anchor and anchor not in anchors[page]):
                broken.append(f"{name}: {target}")
    assert [] == broken
    assert len(anchors) == len(made)
    for name, text in made.items():
        headings = re.findall(r"^#+ (.+)$", text, re.M)
        slugs = [reference.slug(heading) for heading in headings]
        assert sorted(set(slugs)) == sorted(slugs), f"{name}: two headings share an anchor"


def test_the_pages_hold_no_runnable_python(made: dict[str, str]) -> None:
    """Examples and signatures are text blocks (docs/ python blocks are run); no address."""
    for name, text in made.items():
        assert "```python" not in text, name
        assert not re.search(r" at 0x[0-9a-fA-F]+", text), name
        assert text.count("```") % 2 == 0, name


def test_the_index_lists_every_page(made: dict[str, str]) -> None:
    """The index links to each module's page, in the reference's order."""
    linked = re.findall(r"^\| \[`[^`]+`\]\(([^)]+)\)", made["index.md"], re.M)
    assert [f"{name}.md" for name in PUBLIC] == linked
    assert sorted(["index.md", *linked]) == sorted(made)


class TestDocstringsAsMarkdown:
    """How a docstring becomes Markdown."""

    def test_a_literal_block_is_a_text_block(self) -> None:
        """A paragraph ending in ``::`` ends in ``:``, and its indented block is fenced."""
        doc = "Attach it::\n\n    telemetry.attach(x)\n    more()\n\nThen ``detach``."
        assert (
            "Attach it:\n\n```text\ntelemetry.attach(x)\nmore()\n```\n\nThen `detach`."
            == reference.markdown(doc)
        )

    def test_a_doctest_is_a_text_block(self) -> None:
        """A ``>>>`` paragraph is fenced too."""
        assert "Add:\n\n```text\n>>> 1 + 1\n2\n```" == reference.markdown("Add:\n\n>>> 1 + 1\n2")

    def test_a_markdown_fence_is_a_text_block(self) -> None:
        """A fence in a docstring stays a fence, as text whatever its language."""
        assert "Use it:\n\n```text\nrun()\n```\n\nDone." == reference.markdown(
            "Use it:\n\n```python\nrun()\n```\n\nDone."
        )

    def test_roles_and_angle_brackets(self) -> None:
        """Roles become code; ``<`` outside code cannot open an HTML tag."""
        assert "See `Clock`, a &lt;b> and `<b>`." == reference.markdown(
            "See :class:`~Clock`, a <b> and ``<b>``."
        )

    def test_a_fence_outlasts_backticks_inside(self) -> None:
        """A block holding a fence is fenced with more backticks."""
        assert "````text\n```python\n````" == reference.fence("```python")


class TestValues:
    """Defaults and constants are written the same on every machine."""

    def test_no_address_and_sorted_sets(self) -> None:
        """An object's repr loses its address; a set is sorted."""
        assert "<object object>" == reference.shown(object())
        assert "frozenset({'a', 'b', 'c'})" == reference.shown(frozenset("cab"))
        assert "{'x': (1,)}" == reference.shown({"x": (1,)})

    def test_a_signature_too_long_for_a_line(self) -> None:
        """A long signature is written one parameter a line, keyword-only after ``*``."""

        def f(first_parameter: int, *, second_parameter: str = "a" * 60) -> None: ...

        assert (
            "def f(\n    first_parameter: int,\n    *,\n"
            f"    second_parameter: str = '{'a' * 60}',\n) -> None"
        ) == reference.signature("def f", f)
