"""The workflows an operator can see: those imported by the application, those in a database.

A workflow is known by its import path and version. The command line and
the dashboard list those the application imported (``--app``, or the
``workflows`` given to ``create_app``) beside those the database holds
instances of, and draw any of them that can be imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hephaestus.core.instance import Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import HephaestusError
from hephaestus.runtime.storage import codec

__all__ = ["concrete", "imported", "row", "rows", "stored"]


def imported() -> list[type[Workflow]]:
    """Every concrete workflow class imported so far (outside Hephaestus), each version."""
    found: list[type[Workflow]] = []
    todo = list(Workflow.__subclasses__())
    seen: set[type[Workflow]] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        if "definition" in cls.__dict__ and not cls.__module__.startswith("hephaestus."):
            found.append(cls)
    return found


def concrete(workflows: Iterable[type[Workflow]]) -> list[type[Workflow]]:
    """The concrete classes of ``workflows``: a family gives each of its versions."""
    found: dict[type[Workflow], None] = {}
    for workflow in workflows:
        if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
            raise TypeError(f"workflows must be Workflow classes, got: {workflow!r}")
        versions = workflow.__dict__.get("versions")
        for cls in versions.values() if versions else (workflow.resolve(),):
            found[cls] = None
    return list(found)


def row(workflow: type[Workflow]) -> dict[str, Any]:
    """A workflow as ``workflows list`` shows it, before its instances are counted."""
    return {
        "workflow": codec.import_path(workflow),
        "workflow_version": workflow.version,
        "steps": [step.step_key for step in workflow.definition.steps],
        "instances": {},
    }


def stored(path: str, version: int) -> type[Workflow] | None:
    """The workflow a database keeps as ``path`` and ``version``, if it can be imported."""
    try:
        found = codec.resolve(path)
    except Exception:
        return None
    if isinstance(found, type) and issubclass(found, Workflow):
        try:
            return found.resolve(version)
        except (ValueError, HephaestusError):
            return None
    return None


def rows(
    workflows: Iterable[type[Workflow]], counts: Mapping[tuple[Any, ...], int] | None
) -> list[dict[str, Any]]:
    """Each workflow and version, known or stored, with its instances per status.

    ``counts`` is ``Storage.count(by=("workflow", "workflow_version",
    "status"))`` (None: no database). A stored workflow that cannot be
    imported has ``steps`` None.
    """
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for workflow in workflows:
        found[(codec.import_path(workflow), workflow.version)] = row(workflow)
    life = {status.value: n for n, status in enumerate(Status)}  # the same order on any backend
    for (path, version, status), n in sorted((counts or {}).items(), key=lambda c: life[c[0][2]]):
        entry = found.get((path, version))
        if entry is None:
            known = stored(path, version)
            entry = found[(path, version)] = (
                row(known)
                if known is not None
                else {"workflow": path, "workflow_version": version, "steps": None}
            )
            entry["instances"] = {}
        entry["instances"][status] = n
    return [found[key] for key in sorted(found)]
