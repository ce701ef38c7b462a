"""The layers of DESIGN.md: imports flow downward only, and the core stays pure."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import hephaestus

PACKAGE = Path(hephaestus.__file__).parent

# What the pure core must not reach: the outer layers, concurrency, clocks, and I/O.
CORE_FORBIDDEN = (
    "hephaestus.runtime",
    "hephaestus.telemetry",
    "hephaestus.steps",
    "hephaestus.distributed",
    "hephaestus.cli",
    "hephaestus.testing",
    "asyncio",
    "anyio",
    "trio",
    "time",
    "threading",
    "concurrent",
    "multiprocessing",
    "subprocess",
    "socket",
    "select",
    "selectors",
    "ssl",
    "io",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "sqlite3",
    "urllib",
    "http",
    "logging",
    "structlog",
    "random",
    "secrets",
    "uuid",
)
TELEMETRY_FORBIDDEN = ("hephaestus.runtime", "hephaestus.distributed", "hephaestus.cli")


def modules_of(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE.parent) -> Iterator[str]:
    """Every module ``path`` imports, relative imports resolved, ``from x import y`` as x.y too."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def violations(path: Path, forbidden: tuple[str, ...], root: Path = PACKAGE.parent) -> list[str]:
    return sorted(
        {
            module
            for module in imports(path, root)
            for bad in forbidden
            if module == bad or module.startswith(f"{bad}.")
        }
    )


def relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


class TestCore:
    """hephaestus/core is pure."""

    @pytest.mark.parametrize("path", modules_of("core"), ids=relative)
    def test_imports(self, path: Path) -> None:
        """The core imports no outer layer, no concurrency, no clock and no I/O module."""
        assert [] == violations(path, CORE_FORBIDDEN)

    @pytest.mark.parametrize("path", modules_of("core"), ids=relative)
    def test_no_await(self, path: Path) -> None:
        """The core never awaits: it is synchronous, Instance in, Instance out."""
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = [
            type(node).__name__
            for node in ast.walk(tree)
            if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith)
        ]
        assert [] == found

    @pytest.mark.parametrize("path", modules_of("core"), ids=relative)
    def test_no_io_builtins(self, path: Path) -> None:
        """The core calls neither open, print nor input."""
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = [
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "print", "input"}
        ]
        assert [] == found


class TestTelemetry:
    """hephaestus/telemetry sees only the core."""

    @pytest.mark.parametrize("path", modules_of("telemetry"), ids=relative)
    def test_imports(self, path: Path) -> None:
        """Telemetry imports nothing from the runtime."""
        assert [] == violations(path, TELEMETRY_FORBIDDEN)


class TestWeb:
    """Nothing imports the dashboard but its entry point, the ``hephaestus web`` command."""

    @pytest.mark.parametrize(
        "path",
        [
            path
            for path in sorted(PACKAGE.rglob("*.py"))
            if "web" not in path.relative_to(PACKAGE).parts[:1]
            and path.relative_to(PACKAGE).as_posix() != "operating/commands.py"
        ],
        ids=relative,
    )
    def test_imports(self, path: Path) -> None:
        """No module outside hephaestus/web imports it."""
        assert [] == violations(path, ("hephaestus.web",))

    def test_the_command_imports_it_only_when_run(self) -> None:
        """The command line imports the dashboard inside the command, not at its start."""
        path = PACKAGE / "operating" / "commands.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [
            node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hephaestus.web")
        ]
        assert [] == top
        assert ["hephaestus.web.serve"] == violations(path, ("hephaestus.web",))[:1]


class TestScanner:
    """The import scanner finds what it must."""

    def test_finds_forbidden_imports(self, tmp_path: Path) -> None:
        """Plain, from and relative imports of a forbidden module are all caught."""
        core = tmp_path / "hephaestus" / "core"
        core.mkdir(parents=True)
        module = core / "bad.py"
        module.write_text(
            "import asyncio\nfrom time import monotonic_ns\nfrom ..runtime import local\n"
            "from hephaestus import telemetry\nfrom . import engine\n",
            encoding="utf-8",
        )
        assert [
            "asyncio",
            "hephaestus.runtime",
            "hephaestus.runtime.local",
            "hephaestus.telemetry",
            "time",
            "time.monotonic_ns",
        ] == violations(module, CORE_FORBIDDEN, tmp_path)

    def test_package_init_resolves_against_itself(self, tmp_path: Path) -> None:
        """In a package's __init__, a single dot is the package itself."""
        package = tmp_path / "hephaestus" / "core"
        package.mkdir(parents=True)
        init = package / "__init__.py"
        init.write_text("from .engine import advance\n", encoding="utf-8")
        assert ["hephaestus.core.engine", "hephaestus.core.engine.advance"] == list(
            imports(init, tmp_path)
        )
