"""Writes docs/reference/: one Markdown page per public module, made from its docstrings.

Run it after changing a docstring, a signature or a module's ``__all__``::

    .venv/bin/python docs/reference.py           # rewrites docs/reference/*.md
    .venv/bin/python docs/reference.py --check   # exits 1 when the pages are stale

tests/test_reference.py fails until the committed pages equal what this script
writes, until every name of every public module's ``__all__`` has its entry,
and until every public name has a docstring.

What a page holds, in a stable order (a module's names in ``__all__``'s
isort-style order, a class's members alphabetically):

- the module's docstring, then a table of its names;
- a class: its constructor's signature, bases, docstring, enum members and
  class attributes, then each public method and property (its signature and
  docstring; a method without one refers to the base method it overrides or
  the protocol method it implements);
- a function: its signature and docstring;
- a constant or a type alias: its annotation and value (from the source,
  or its repr when short), and its attribute docstring (the string literal
  under the assignment), read from the module that defines it.

A class or function that several public modules export is documented once,
on the page of the module that defines it (or, when that module is not
public, of the first public module below that exports it); the others link
there. Signatures and docstring examples are ``text`` blocks, never
``python`` ones (the ``python`` blocks of docs/ are run by the tests).
Nothing depends on the machine: no memory address, no set in hash order.
The optional extras (otel, prometheus, web, distributed) must be installed.
"""

from __future__ import annotations

import ast
import enum
import functools
import importlib
import inspect
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ForwardRef, Generic

import attrs

OUT = Path(__file__).parent / "reference"
"""The folder of the pages; it holds nothing else (a page no module makes is deleted)."""

COMMAND = ".venv/bin/python docs/reference.py"
"""How to rewrite the pages (what the tests tell to run)."""

MODULES: tuple[tuple[str, str], ...] = (
    ("hephaestus", "steps, workflows, runners, storages and exceptions: what users import"),
    ("hephaestus.exceptions", "every exception Hephaestus raises"),
    ("hephaestus.telemetry", "the 11 events, their handlers, the log handler"),
    ("hephaestus.telemetry.metrics", "the metrics the reporters derive from the events"),
    ("hephaestus.telemetry.otel", "OpenTelemetry traces (extra `otel`)"),
    ("hephaestus.telemetry.otel_metrics", "OpenTelemetry metrics (extra `otel`)"),
    ("hephaestus.telemetry.prometheus", "Prometheus metrics (extra `prometheus`)"),
    ("hephaestus.testing", "testing workflows: a virtual clock, captured events, helpers"),
    ("hephaestus.runtime.clock", "the clock a runner reads"),
    ("hephaestus.runtime.storage", "the storages"),
    ("hephaestus.runtime.storage.base", "the `Storage` protocol, for storage authors"),
    ("hephaestus.runtime.storage.memory", "`MemoryStorage`"),
    ("hephaestus.runtime.storage.sqlite", "`SQLiteStorage`"),
    ("hephaestus.runtime.storage.postgres", "`PostgresStorage` (extra `postgres`)"),
    ("hephaestus.runtime.steering", "steering stored instances while no runner runs them"),
    ("hephaestus.runtime.holding", "the hold a runner takes on a durable storage"),
    ("hephaestus.distributed", "runners and workers sharing PostgreSQL (extra `distributed`)"),
    ("hephaestus.web", "the dashboard (extra `web`)"),
    ("hephaestus.core.engine", "the pure engine, for runner authors"),
)
"""The public modules, in the reference's order, each with what it is for.

Every other module of the package is in ``INTERNAL``, with the reason it has
no page (tests/test_reference.py checks that each module is in one of the two).
"""

_SHARED = "its public names are re-exported, and documented, by {}"

INTERNAL: dict[str, str] = {
    "hephaestus.__main__": "`python -m hephaestus`, the command of docs/cli.md",
    "hephaestus.cli": "the `hephaestus` command (docs/cli.md)",
    "hephaestus.demo": "the demo of `hephaestus demo`",
    "hephaestus.core": "a package with no names of its own",
    "hephaestus.core.durations": "the check of the durations users give, internal",
    "hephaestus.core.history": _SHARED.format("`hephaestus`"),
    "hephaestus.core.instance": _SHARED.format("`hephaestus`"),
    "hephaestus.core.step": _SHARED.format("`hephaestus`"),
    "hephaestus.core.workflow": _SHARED.format("`hephaestus`"),
    "hephaestus.distributed.driving": "the worker's driver, internal",
    "hephaestus.distributed.runner": _SHARED.format("`hephaestus.distributed`"),
    "hephaestus.distributed.spreading": "the jobs of spread steps, internal",
    "hephaestus.distributed.worker": _SHARED.format("`hephaestus.distributed`"),
    "hephaestus.operating": "the operations of the command and the dashboard, internal",
    "hephaestus.operating.catalog": "the operations of the command and the dashboard, internal",
    "hephaestus.operating.commands": "the operations of the command and the dashboard, internal",
    "hephaestus.operating.database": "the operations of the command and the dashboard, internal",
    "hephaestus.operating.text": "the operations of the command and the dashboard, internal",
    "hephaestus.operating.views": "the operations of the command and the dashboard, internal",
    "hephaestus.runtime": "a package with no names of its own",
    "hephaestus.runtime.endings": "the runners' shared checks and helpers, internal",
    "hephaestus.runtime.ids": "the runners' shared checks and helpers, internal",
    "hephaestus.runtime.inputs": "the runners' shared checks and helpers, internal",
    "hephaestus.runtime.local": _SHARED.format("`hephaestus`"),
    "hephaestus.runtime.runner": _SHARED.format("`hephaestus`"),
    "hephaestus.runtime.storage.codec": "the durable storages' encoding, internal",
    "hephaestus.runtime.storage.migrations": "the SQL migrations, no Python names",
    "hephaestus.runtime.timers": "the runners' shared checks and helpers, internal",
    "hephaestus.runtime.waiting": "the runners' shared checks and helpers, internal",
    "hephaestus.steps": _SHARED.format("`hephaestus`"),
    "hephaestus.steps.builtin": _SHARED.format("`hephaestus`"),
    "hephaestus.telemetry.events": _SHARED.format("`hephaestus.telemetry`"),
    "hephaestus.telemetry.log_handler": _SHARED.format("`hephaestus.telemetry`"),
    "hephaestus.telemetry.names": _SHARED.format("`hephaestus.telemetry`"),
    "hephaestus.testing.clock": _SHARED.format("`hephaestus.testing`"),
    "hephaestus.testing.events": _SHARED.format("`hephaestus.testing`"),
    "hephaestus.testing.helpers": _SHARED.format("`hephaestus.testing`"),
    "hephaestus.testing.plugin": "the pytest plugin: its fixtures are in docs/testing.md",
    "hephaestus.web.actions": "the dashboard's inner parts; `create_app` is its entry",
    "hephaestus.web.app": _SHARED.format("`hephaestus.web`"),
    "hephaestus.web.drawing": "the dashboard's inner parts; `create_app` is its entry",
    "hephaestus.web.pages": "the dashboard's inner parts; `create_app` is its entry",
    "hephaestus.web.serve": "the dashboard's inner parts; `create_app` is its entry",
    "hephaestus.web.state": "the dashboard's inner parts; `create_app` is its entry",
}
"""The modules without a page, each with the reason (modules named ``_...`` are private)."""

WIDTH = 88
"""A signature longer than this is written one parameter a line."""

SHORT = 100
"""A constant's value is written out when its text is at most this long."""

_FOREIGN = ("builtins", "typing", "typing_extensions", "enum", "abc", "collections.abc")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`~?([^`]+)`")
_CODE = re.compile(r"(``.+?``|`[^`]+`)", re.DOTALL)


# What the pages document ------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """An assignment of a name (module level or in a class body): its annotation, its
    value, both as written, and its attribute docstring (the string literal under it)."""

    annotation: str | None
    value: str | None
    doc: str | None
    reference: bool  # the value is another name (``names.STEP_SCOPE_HOOK``)


_UNSET = object()
"""The value of a class attribute that is only annotated."""


@dataclass(frozen=True)
class Member:
    """A public method, property, class attribute or enum member of a documented class."""

    name: str
    kind: str  # "method", "property", "attribute" or "member"
    value: Any
    owner: type
    source: Assignment | None  # its assignment in the owner's body, if any

    @property
    def doc(self) -> str | None:
        """Its docstring: a function's or property's own, else an attribute docstring."""
        if self.kind in {"method", "property"}:
            return own_doc(self.value)
        return self.source.doc if self.source else None


@dataclass(frozen=True)
class Home:
    """Where a class, function or module is documented: its page and its anchor there."""

    module: str
    name: str

    def link(self, page: str, text: str | None = None) -> str:
        """A Markdown link to the entry, from ``page``."""
        target = f"#{slug(self.name)}"
        if page != self.module:
            target = f"{self.module}.md{target}"
        return f"[`{text or self.module + '.' + self.name}`]({target})"


def public_modules() -> dict[str, types.ModuleType]:
    """The public modules, imported, by name, in the reference's order."""
    return {name: importlib.import_module(name) for name, _ in MODULES}


def exported(module: types.ModuleType) -> list[str]:
    """The names of ``module.__all__``, in isort-style order: constants, classes, functions."""
    return sorted(module.__all__, key=lambda name: (_case(name), name))


def _case(name: str) -> int:
    if name.isupper() and len(name) > 1:
        return 0
    return 1 if name[:1].isupper() else 2


def documented(value: Any, name: str) -> bool:
    """Whether ``value``, exported as ``name``, gets an entry of its own (else it is data).

    A class, function or module of Hephaestus exported under its own name is
    documented; anything else (a constant, a type alias, ``collections.abc``'s
    ``Hashable`` under another name) is data.
    """
    if isinstance(value, types.ModuleType):
        return value.__name__.startswith("hephaestus")
    if not (inspect.isclass(value) or inspect.isroutine(value)):
        return False
    module = getattr(value, "__module__", "") or ""
    return module.startswith("hephaestus") and getattr(value, "__name__", None) == name


def homes(modules: dict[str, types.ModuleType]) -> dict[int, Home]:
    """Where each documented object is documented, by ``id``."""
    found: dict[int, Home] = {}
    for module_name, module in modules.items():  # the defining module, when public
        for name in module.__all__:
            value = getattr(module, name)
            if documented(value, name) and _defined_in(value) == module_name:
                found[id(value)] = Home(module_name, name)
    for module_name, module in modules.items():  # else the first public module exporting it
        for name in exported(module):
            value = getattr(module, name)
            if documented(value, name):
                found.setdefault(id(value), Home(module_name, name))
    return found


def _defined_in(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    return str(value.__module__)


def members(cls: type, known: dict[int, Home]) -> list[Member]:
    """The public members of ``cls`` the page lists, sorted by name.

    Those ``cls`` defines or annotates, and those of its bases that have no
    entry of their own (a private base's); not those of builtin bases, nor
    those of a base documented elsewhere (the page links to it). Fields
    (attrs' attributes, a named tuple's items) are left out: the
    constructor's signature shows them.
    """
    fields = _fields(cls)
    found: dict[str, Member] = {}
    for owner in cls.__mro__:
        if owner is not cls and (owner.__module__ in _FOREIGN or id(owner) in known):
            continue
        body = class_body(owner)
        names = [*vars(owner), *(name for name in body if name not in vars(owner))]
        for name in names:
            if name.startswith("_") or name in found or name in fields:
                continue
            value = vars(owner).get(name, _UNSET)
            kind = _kind_of(owner, value)
            if kind is not None:
                found[name] = Member(name, kind, value, owner, body.get(name))
    return [found[name] for name in sorted(found)]


def _fields(cls: type) -> set[str]:
    names = set(getattr(cls, "_fields", ()))
    if attrs.has(cls):
        names.update(field.name for field in attrs.fields(cls))
    return names


def _kind_of(owner: type, value: Any) -> str | None:
    if isinstance(value, property):
        return "property"
    if type(value).__name__ in {"member_descriptor", "_tuplegetter", "getset_descriptor"}:
        return None  # a slot or a named tuple's field
    if isinstance(owner, enum.EnumMeta) and isinstance(value, owner):
        return "member"
    if isinstance(value, classmethod | staticmethod):
        python = isinstance(value.__func__, types.FunctionType)
        return "method" if python else "attribute"  # staticmethod(time.time_ns): data
    if isinstance(value, types.FunctionType):
        return "method"
    return "attribute"


@functools.cache
def class_body(cls: type) -> dict[str, Assignment]:
    """The assignments and annotations of the body of ``cls``, by name, from its source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[0], ast.ClassDef):
        return {}
    return _assignments(tree.body[0].body, source)


def _assignments(body: list[ast.stmt], source: str) -> dict[str, Assignment]:
    found: dict[str, Assignment] = {}
    for index, statement in enumerate(body):
        name, annotation = _target(statement)
        if name is None:
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        doc = None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = inspect.cleandoc(following.value.value)
        value = getattr(statement, "value", None)
        found[name] = Assignment(
            ast.get_source_segment(source, annotation) if annotation else None,
            ast.get_source_segment(source, value) if value is not None else None,
            doc,
            isinstance(value, ast.Name | ast.Attribute),
        )
    return found


def function_of(member: Member) -> Any:
    """The function behind a method or a property (its getter)."""
    value = member.value
    if isinstance(value, property):
        return value.fget
    return getattr(value, "__func__", value)


def own_doc(value: Any) -> str | None:
    """The docstring ``value`` has itself (not one it inherits), cleaned; None if none."""
    if isinstance(value, type):
        doc = vars(value).get("__doc__")
    elif isinstance(value, property):
        doc = value.__doc__ or (value.fget.__doc__ if value.fget else None)
    else:
        doc = getattr(getattr(value, "__func__", value), "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)


def protocols(known: dict[int, Home], modules: dict[str, types.ModuleType]) -> list[type]:
    """The documented protocols, in the reference's order."""
    found: list[type] = []
    for module in modules.values():
        for name in exported(module):
            value = getattr(module, name)
            if (
                inspect.isclass(value)
                and getattr(value, "_is_protocol", False)
                and id(value) in known
                and value not in found
            ):
                found.append(value)
    return found


def stand_in(
    cls: type, member: Member, known: dict[int, Home], protos: list[type]
) -> tuple[type, str] | None:
    """What documents a member without a docstring: ``(base, "Overrides")``, the documented
    base whose member it overrides, or ``(protocol, "Implements")``, the documented protocol
    whose member it implements (a class that has every member of a protocol implements it)."""
    for base in cls.__mro__[1:]:
        if id(base) in known and _member_doc(base, member.name):
            return base, "Overrides"
    for proto in protos:
        names = [name for name in vars(proto) if not name.startswith("_")]
        if (
            proto not in cls.__mro__
            and member.name in names
            and _member_doc(proto, member.name)
            and all(hasattr(cls, name) for name in names)
        ):
            return proto, "Implements"
    return None


def _member_doc(owner: type, name: str) -> str | None:
    if name not in vars(owner) and name not in class_body(owner):
        return None
    value = vars(owner).get(name, _UNSET)
    kind = _kind_of(owner, value)
    return Member(name, kind or "attribute", value, owner, class_body(owner).get(name)).doc


# Data: constants and type aliases, read from the source ------------------------------------


@functools.cache
def assignment(module_name: str, name: str, depth: int = 0) -> Assignment | None:
    """The top-level assignment of ``name`` in ``module_name``, following its imports."""
    module = importlib.import_module(module_name)
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    local = _assignments(tree.body, source)
    if name in local:
        return local[name]
    for statement in tree.body:
        if not isinstance(statement, ast.ImportFrom) or depth >= 5:
            continue
        for alias in statement.names:
            if (alias.asname or alias.name) == name:
                base = _absolute(module, statement)
                if base is not None and not _is_module(f"{base}.{alias.name}"):
                    return assignment(base, alias.name, depth + 1)
    return None


def _absolute(module: types.ModuleType, statement: ast.ImportFrom) -> str | None:
    if not statement.level:
        return statement.module
    package = module.__name__ if hasattr(module, "__path__") else module.__package__ or ""
    parts = package.split(".")
    if statement.level > 1:
        parts = parts[: 1 - statement.level]
    return ".".join([*parts, *([statement.module] if statement.module else [])])


def _is_module(name: str) -> bool:
    return name in sys.modules and isinstance(sys.modules[name], types.ModuleType)


def _target(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.annotation
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        if isinstance(target, ast.Name):
            return target.id, None
    return None, None


def in_module_doc(module: types.ModuleType, name: str) -> bool:
    """Whether the module's docstring names ``name`` as code (``NAME`` or :data:`NAME`)."""
    doc = module.__doc__ or ""
    return f"``{name}``" in doc or f"`{name}`" in doc


# Missing docstrings ---------------------------------------------------------------------


def missing_docstrings() -> list[str]:
    """The public names without a docstring, as ``module.name`` or ``module.Class.member``.

    A class, function or module needs its own; a constant or type alias an
    attribute docstring, or its name in its module's docstring; a method or
    property its own, or that of the base method it overrides or of the
    protocol method it implements.
    """
    modules = public_modules()
    known = homes(modules)
    protos = protocols(known, modules)
    missing: list[str] = []
    for module_name, module in modules.items():
        if not (module.__doc__ or "").strip():
            missing.append(module_name)
        for name in exported(module):
            value = getattr(module, name)
            if not documented(value, name):
                found = assignment(module_name, name)
                if not (found and found.doc) and not in_module_doc(module, name):
                    missing.append(f"{module_name}.{name}")
                continue
            if known[id(value)] != Home(module_name, name):
                continue  # checked on its own page
            if isinstance(value, types.ModuleType):
                continue  # a module with a page of its own
            if own_doc(value) is None:
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(value):
                for member in members(value, known):
                    if member.kind not in {"method", "property"} or own_doc(member.value):
                        continue
                    if stand_in(value, member, known, protos) is None:
                        missing.append(f"{module_name}.{name}.{member.name}")
    return missing


# Text -----------------------------------------------------------------------------------


def slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def shown(value: Any) -> str:
    """A value as the pages write it: like ``repr``, with no address and sets sorted."""
    if value is attrs.NOTHING:
        return "<factory>"  # attrs' default of a field with a factory
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, type) or inspect.isroutine(value):
        return str(getattr(value, "__qualname__", getattr(value, "__name__", repr(value))))
    if isinstance(value, types.ModuleType):
        return value.__name__
    if isinstance(value, set | frozenset):
        items = sorted(shown(item) for item in value)
        if not items:
            return f"{type(value).__name__}()"
        inner = "{" + ", ".join(items) + "}"
        return inner if type(value) is set else f"{type(value).__name__}({inner})"
    if type(value) is tuple:
        items = [shown(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if type(value) is list:
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if type(value) is dict:
        return "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    return _ADDRESS.sub("", repr(value))


def annotation_of(annotation: Any) -> str:
    """An annotation as written (a string annotation without its quotes)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, ForwardRef):
        return annotation.__forward_arg__
    return _ADDRESS.sub("", inspect.formatannotation(annotation))


def signature(head: str, function: Any, *, returns: bool = True) -> str:
    """``head`` and the parameters and return annotation of ``function``.

    One line when it fits in ``WIDTH``, else one parameter a line. A class's
    signature goes without ``returns`` (its ``__init__``'s ``-> None``).
    """
    try:
        found = inspect.signature(function, follow_wrapped=True)
    except (TypeError, ValueError):
        return f"{head}(...)"
    parameters = list(found.parameters.values())
    texts: list[str] = []
    star = False
    for index, parameter in enumerate(parameters):
        kind = parameter.kind
        if kind is parameter.KEYWORD_ONLY and not star:
            texts.append("*")
            star = True
        text = parameter.name
        if kind is parameter.VAR_POSITIONAL:
            text, star = f"*{text}", True
        elif kind is parameter.VAR_KEYWORD:
            text = f"**{text}"
        if parameter.annotation is not parameter.empty:
            text += f": {annotation_of(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            separator = " = " if parameter.annotation is not parameter.empty else "="
            text += separator + shown(parameter.default)
        texts.append(text)
        following = parameters[index + 1] if index + 1 < len(parameters) else None
        if kind is parameter.POSITIONAL_ONLY and (
            following is None or following.kind is not parameter.POSITIONAL_ONLY
        ):
            texts.append("/")
    arrow = ""
    if returns and found.return_annotation is not found.empty:
        arrow = f" -> {annotation_of(found.return_annotation)}"
    line = f"{head}({', '.join(texts)}){arrow}"
    if len(line) <= WIDTH or not texts:
        return line
    inner = "".join(f"    {text},\n" for text in texts)
    return f"{head}(\n{inner}){arrow}"


def markdown(doc: str) -> str:
    """A docstring as Markdown: reST literal blocks (after ``::``), doctests and Markdown
    fences (whatever their language) as ``text`` blocks; inline code and roles as Markdown
    code; ``<`` escaped in prose."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    prose: list[str] = []
    literal = False  # the paragraph before ended with "::"
    index = 0
    while index < len(lines):
        line = lines[index]
        indent = _indent(line)
        block: list[str] = []
        if literal and indent > 0:  # the literal block: until a line indented less
            while index < len(lines) and (
                not lines[index].strip() or _indent(lines[index]) >= indent
            ):
                block.append(lines[index])
                index += 1
        elif not prose and line.lstrip().startswith(">>>"):  # a doctest: until a blank line
            while index < len(lines) and lines[index].strip():
                block.append(lines[index])
                index += 1
        elif line.lstrip().startswith(("```", "~~~")):  # a Markdown fence: to its end
            marks = line.strip()[:3]
            index += 1
            while index < len(lines) and not lines[index].strip().startswith(marks):
                block.append(lines[index])
                index += 1
            index += 1
            block = block or [""]
            if prose:
                out += [inline("\n".join(prose)), ""]
                prose.clear()
        if block:
            while len(block) > 1 and not block[-1].strip():
                block.pop()
            out += [fence("\n".join(_dedent(block))), ""]
            literal = False
            continue
        index += 1
        if not line.strip():
            if prose:
                out += [inline("\n".join(prose)), ""]
                prose.clear()
            continue
        literal = False
        text = line.rstrip()
        following = lines[index] if index < len(lines) else ""
        if text.endswith("::") and not following.strip():
            literal = True
            text = text[:-3] + ":" if text.endswith(" ::") else text[:-1]
            if not text.strip(" :"):
                continue  # a "::" alone
        prose.append(text)
    if prose:
        out.append(inline("\n".join(prose)))
    return "\n".join(out).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dedent(block: list[str]) -> list[str]:
    margin = min((_indent(line) for line in block if line.strip()), default=0)
    return [line[margin:] for line in block]


def inline(text: str) -> str:
    """reST inline markup as Markdown: ``code`` and roles to `code`; ``<`` escaped
    outside code; a line that would read as a heading escaped."""
    text = _ROLE.sub(r"``\1``", text)
    parts = _CODE.split(text)
    for index, part in enumerate(parts):
        if index % 2:
            code = part[2:-2] if part.startswith("``") else part[1:-1]
            code = code.replace("\n", " ")
            parts[index] = f"`` {code} ``" if "`" in code else f"`{code}`"
        else:
            parts[index] = part.replace("<", "&lt;")
    return re.sub(r"(?m)^(\s*)#", r"\1\\#", "".join(parts))


def fence(code: str) -> str:
    """``code`` in a ``text`` block (a fence longer than any run of backticks inside)."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}text\n{code}\n{marks}"


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line, for a table cell."""
    if not doc:
        return ""
    first = inspect.cleandoc(doc).split("\n\n")[0]
    if first.endswith("::"):
        first = first[:-1]
    return inline(" ".join(first.split())).replace("|", "\\|")


# Pages ----------------------------------------------------------------------------------


class Page:
    """The page of one public module."""

    def __init__(
        self,
        name: str,
        modules: dict[str, types.ModuleType],
        known: dict[int, Home],
        protos: list[type],
    ) -> None:
        self.name = name
        self.module = modules[name]
        self.known = known
        self.protos = protos

    def text(self) -> str:
        """The page's Markdown."""
        lines = [
            f"<!-- Made by docs/reference.py from the docstrings; do not edit: run {COMMAND}. -->",
            "",
            f"# `{self.name}`",
            "",
            "[The reference](index.md): every public module of Hephaestus.",
            "",
        ]
        if self.module.__doc__:
            lines += [markdown(self.module.__doc__), ""]
        lines += ["| Name | Kind | Summary |", "| --- | --- | --- |"]
        for name in exported(self.module):
            kind, doc = self.kind(name), self.doc(name)
            lines.append(f"| [`{name}`](#{slug(name)}) | {kind} | {summary(doc)} |")
        lines.append("")
        for name in exported(self.module):
            lines += self.entry(name)
        return "\n".join(lines).rstrip() + "\n"

    def kind(self, name: str) -> str:
        """What ``name`` is: a class, protocol, exception, enum, function, module, constant..."""
        value = getattr(self.module, name)
        if not documented(value, name):
            found = assignment(self.name, name)
            alias = found is not None and found.annotation in {"TypeAlias", "typing.TypeAlias"}
            return "type alias" if alias or _is_alias(value) else "constant"
        if isinstance(value, types.ModuleType):
            return "module"
        if inspect.isclass(value):
            if getattr(value, "_is_protocol", False):
                return "protocol"
            if issubclass(value, BaseException):
                return "exception"
            return "enum" if issubclass(value, enum.Enum) else "class"
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
            return "async function"
        return "function"

    def doc(self, name: str) -> str | None:
        """The docstring of ``name`` (an attribute docstring for data)."""
        value = getattr(self.module, name)
        if documented(value, name):
            return own_doc(value) if not isinstance(value, types.ModuleType) else value.__doc__
        found = assignment(self.name, name)
        return found.doc if found else None

    def entry(self, name: str) -> list[str]:
        """The section of ``name``."""
        value = getattr(self.module, name)
        lines = [f"## `{name}`", ""]
        if not documented(value, name):
            return lines + self.data(name, value)
        home = self.known[id(value)]
        if isinstance(value, types.ModuleType):
            link = f"[`{value.__name__}`]({value.__name__}.md)"
            return [*lines, f"The module {link}: {summary(value.__doc__)}", ""]
        if home != Home(self.name, name):
            return [*lines, f"Documented as {home.link(self.name)}: {summary(self.doc(name))}", ""]
        if inspect.isclass(value):
            return lines + self.cls(name, value)
        lines.append(fence(signature(_def(value, name), value)))
        lines.append("")
        doc = own_doc(value)
        if doc:
            lines += [markdown(doc), ""]
        return lines

    def data(self, name: str, value: Any) -> list[str]:
        """The section of a constant or type alias."""
        found = assignment(self.name, name)
        lines = [fence(assigned(name, value, found)), ""]
        if found and found.doc:
            lines += [markdown(found.doc), ""]
        elif in_module_doc(self.module, name):
            lines += ["Described in the module's docstring, above.", ""]
        return lines

    def cls(self, name: str, cls: type) -> list[str]:
        """The section of a class, and of its members."""
        lines = [fence(self.class_signature(name, cls)), ""]
        bases = [base for base in cls.__bases__ if base not in {object, Generic}]
        if bases:
            lines += ["Bases: " + ", ".join(self.base(base) for base in bases) + ".", ""]
        doc = own_doc(cls)
        if doc:
            lines += [markdown(doc), ""]
        listed = members(cls, self.known)
        enum_members = [member for member in listed if member.kind == "member"]
        if enum_members:
            rows = [f"{member.name} = {shown(member.value.value)}" for member in enum_members]
            lines += ["Members:", "", fence("\n".join(rows)), ""]
        plain = [member for member in listed if member.kind == "attribute" and not member.doc]
        if plain:
            rows = [assigned(member.name, member.value, member.source) for member in plain]
            lines += ["Class attributes:", "", fence("\n".join(rows)), ""]
        for member in listed:
            if member.kind in {"method", "property"}:
                lines += self.member(name, cls, member)
            elif member.kind == "attribute" and member.doc:
                text = assigned(member.name, member.value, member.source)
                lines += [f"### `{name}.{member.name}`", "", fence(text), ""]
                lines += [markdown(member.doc), ""]
        return lines

    def class_signature(self, name: str, cls: type) -> str:
        """``class Name(parameters)``, the parameters of its constructor when it has one."""
        if getattr(cls, "_is_protocol", False) or issubclass(cls, enum.Enum):
            return f"class {name}"
        constructs = any(
            "__init__" in vars(owner) or "__new__" in vars(owner)
            for owner in cls.__mro__
            if owner.__module__ not in _FOREIGN
        )
        if not constructs:
            return f"class {name}"
        return signature(f"class {name}", cls, returns=False)

    def base(self, base: type) -> str:
        """A base class: a link when the reference documents it."""
        home = self.known.get(id(base))
        if home is not None:
            return home.link(self.name, base.__name__)
        if base.__module__ in _FOREIGN:
            return f"`{base.__qualname__}`"
        return f"`{base.__module__}.{base.__qualname__}`"

    def member(self, name: str, cls: type, member: Member) -> list[str]:
        """The section of a method or property."""
        function = function_of(member)
        if member.kind == "property":
            head = signature(f"@property\ndef {member.name}", function) if function else None
        else:
            decorator = ""
            if isinstance(member.value, classmethod):
                decorator = "@classmethod\n"
            elif isinstance(member.value, staticmethod):
                decorator = "@staticmethod\n"
            head = signature(decorator + _def(function, member.name), function)
        lines = [f"### `{name}.{member.name}`", ""]
        if head:
            lines += [fence(head), ""]
        doc = own_doc(member.value)
        if doc:
            return [*lines, markdown(doc), ""]
        found = stand_in(cls, member, self.known, self.protos)
        if found is not None:
            other, verb = found
            home = self.known[id(other)]
            target = Home(home.module, f"{home.name}.{member.name}")
            text = f"{home.name}.{member.name}"
            return [*lines, f"{verb} {target.link(self.name, text)}.", ""]
        return lines


def _def(function: Any, name: str) -> str:
    asynchronous = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    return f"{'async def' if asynchronous else 'def'} {name}"


def _is_alias(value: Any) -> bool:
    return isinstance(value, types.GenericAlias) or type(value).__module__ in {
        "typing",
        "collections.abc",
        "abc",
    }


def assigned(name: str, value: Any, found: Assignment | None) -> str:
    """``name: annotation = value`` (no value when only annotated).

    The value as written when it is one short line and not a mere reference
    to another name (a mutable value may have changed since: a registry
    filled by subclasses); else the value's repr when it is a short, immutable
    literal; else ``...``.
    """
    head = f"{name}: {found.annotation}" if found and found.annotation else name
    if value is _UNSET:
        return head
    source = found.value if found else None
    written = source is not None and "\n" not in source and len(source) <= SHORT
    if written and not (found and found.reference and _frozen(value)):
        return f"{head} = {source}"
    text = shown(value)
    if _frozen(value) and len(text) <= SHORT:
        return f"{head} = {text}"
    return f"{head} = {source if written else '...'}"


def _frozen(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return True
    return type(value) in {tuple, frozenset} and all(_frozen(item) for item in value)


def index(modules: dict[str, types.ModuleType]) -> str:
    """The index page: every public module, what it is for, and its number of names."""
    lines = [
        f"<!-- Made by docs/reference.py from the docstrings; do not edit: run {COMMAND}. -->",
        "",
        "# Reference",
        "",
        "Every public name of Hephaestus's public modules: the names of each module's",
        "`__all__`, their signatures and docstrings. A page per module; a class or function",
        "that several modules export is documented on one page, and the others link to it.",
        "The guides (docs/*.md) say how the pieces fit together.",
        "",
        "| Module | For | Names |",
        "| --- | --- | --- |",
    ]
    for name, purpose in MODULES:
        count = len(modules[name].__all__)
        lines.append(f"| [`{name}`]({name}.md) | {purpose} | {count} |")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """Every page, by file name: ``index.md`` and ``<module>.md`` for each public module."""
    modules = public_modules()
    known = homes(modules)
    protos = protocols(known, modules)
    made = {"index.md": index(modules)}
    for name in modules:
        made[f"{name}.md"] = Page(name, modules, known, protos).text()
    return made


def stale(folder: Path = OUT) -> list[str]:
    """The pages of ``folder`` that differ from ``pages()``, are missing or are extra."""
    made = pages()
    present = {path.name for path in folder.glob("*.md")} if folder.is_dir() else set()
    differ = [
        name
        for name, text in made.items()
        if name not in present or (folder / name).read_text(encoding="utf-8") != text
    ]
    return sorted(differ + sorted(present - set(made)))


def write(folder: Path = OUT) -> list[str]:
    """Writes the pages into ``folder`` and deletes its other pages; the names changed."""
    changed = stale(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = pages()
    for name, text in made.items():
        (folder / name).write_text(text, encoding="utf-8")
    for path in folder.glob("*.md"):
        if path.name not in made:
            path.unlink()
    return changed


def main(arguments: list[str]) -> int:
    """``docs/reference.py [--check]``."""
    if arguments == ["--check"]:
        changed = stale()
        for name in changed:
            print(f"stale: docs/reference/{name}")
        if changed:
            print(f"run: {COMMAND}")
        return 1 if changed else 0
    if arguments:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    changed = write()
    total = sum(path.stat().st_size for path in OUT.glob("*.md"))
    print(f"docs/reference/: {len(pages())} pages, {total} bytes; {len(changed)} changed")
    missing = missing_docstrings()
    if missing:
        print("without a docstring: " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
