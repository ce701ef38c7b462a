"""What every runner checks of a ``start`` before anything changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from hephaestus._show import shown
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.ids import instance_id
from hephaestus.telemetry import _registry, names

_start_slot = _registry._slot(names.START_HOOK)

__all__ = ["Start", "check_start"]


class Start(NamedTuple):
    """A checked ``start``: the concrete workflow, the new id, the context and metadata."""

    workflow: type[Workflow]
    id: str
    context: dict[str, Any]
    telemetry_metadata: dict[str, Any]


def check_start(
    workflow: object,
    context: object,
    id: object,
    version: object,
    telemetry_metadata: object,
) -> Start:
    """The checked arguments of ``start``; ``TypeError`` or ``ValueError`` naming the culprit.

    The hooks of :data:`~hephaestus.telemetry.names.START_HOOK` add their
    entries to the telemetry metadata, once the arguments are known good.
    """
    if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
        raise TypeError(f"start needs a Workflow subclass, got: {shown(workflow)}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise TypeError(f"version must be an int or None, got: {shown(version)}")
    concrete = workflow.resolve(version)
    if type(context) is not dict and not isinstance(context, Mapping):
        raise TypeError(f"the context must be a dict, got: {shown(context)}")
    if telemetry_metadata is not None and not isinstance(telemetry_metadata, Mapping):
        raise TypeError(
            f"telemetry_metadata must be a dict or None, got: {shown(telemetry_metadata)}"
        )
    for key in context:  # a plain loop: no generator on the hot path
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"the context's keys must be strings, got: {shown(key)}")
    iid = instance_id(concrete, id)
    metadata = dict(telemetry_metadata) if telemetry_metadata else {}
    if _start_slot[0]:
        for added in _registry._hooked(names.START_HOOK, concrete, metadata):
            if added:
                for key, value in added.items():
                    metadata.setdefault(key, value)
    return Start(concrete, iid, dict(context), metadata)
