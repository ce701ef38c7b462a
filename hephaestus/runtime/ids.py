"""Instance ids: business keys (``Unique``) and generated ids."""

from __future__ import annotations

import re
import secrets
import uuid

from hephaestus.core.workflow import Workflow

__all__ = ["instance_id"]

_SIMPLE = re.compile(r"[a-z0-9]+")
_UUID = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")


def instance_id(workflow: type[Workflow], value: str | None) -> str:
    """The id of a new instance of ``workflow``.

    With a business key (``workflow.unique``), ``value`` is required and must
    be ``[a-z0-9]+`` or a lowercase UUID; the id is ``key::value``, plus a
    random ``::suffix`` for scope ``"none"``. Without one, ``value`` is the id
    as given, or a random uuid4 hex when it is None.
    """
    unique = workflow.unique
    if unique is None:
        if value is None:
            return uuid.uuid4().hex
        if not isinstance(value, str) or not value:
            raise ValueError(f"an instance id must be a non-empty string, got: {value!r}")
        return value
    if value is None:
        raise ValueError(
            f"{workflow.__qualname__} has the business key {unique.key!r}: "
            f"start(..., id=value) needs the value"
        )
    if not isinstance(value, str) or not (_SIMPLE.fullmatch(value) or _UUID.fullmatch(value)):
        raise ValueError(
            f"the {unique.key!r} value of {workflow.__qualname__} must be [a-z0-9]+ "
            f"or a lowercase UUID, got: {value!r}"
        )
    if unique.scope == "none":
        return f"{unique.key}::{value}::{secrets.token_hex(4)}"
    return f"{unique.key}::{value}"
