"""What every runner checks of a ``start`` before anything changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from hephaestus._show import shown
from hephaestus.core.workflow import Workflow
from hephaestus.runtime.ids import instance_id

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
    """The checked arguments of ``start``; ``TypeError`` or ``ValueError`` naming the culprit."""
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
    return Start(
        concrete,
        instance_id(concrete, id),
        dict(context),
        dict(telemetry_metadata) if telemetry_metadata else {},
    )
