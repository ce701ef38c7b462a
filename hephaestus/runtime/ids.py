"""Instance ids: checked ids, business keys (``Unique``) and generated ids."""

from __future__ import annotations

import re
import secrets
import uuid

from hephaestus._show import shown
from hephaestus.core.workflow import Workflow

__all__ = ["MAX_ID_LENGTH", "check_id", "instance_id"]

MAX_ID_LENGTH = 255
"""The longest instance id, in characters."""

_SIMPLE = re.compile(r"[a-z0-9]+")
_UUID = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")


def check_id(value: object) -> str:
    """``value`` if it can be an instance id; ``ValueError`` (``TypeError``) naming it otherwise.

    An id is a non-empty string of at most 255 characters that every storage
    can keep as text: valid Unicode (no lone surrogate, which ``json.loads``
    of a request body can produce) and no NUL character.
    """
    if type(value) is not str:  # most ids are exact str: one test on the common path
        if not isinstance(value, str):
            raise TypeError(f"an instance id must be a string, got: {shown(value)}")
        value = str(value)
    if not 0 < len(value) <= MAX_ID_LENGTH:
        raise ValueError(
            f"an instance id must have 1 to {MAX_ID_LENGTH} characters, got {len(value)}: "
            f"{shown(value)}"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"an instance id must be valid Unicode text, got: {shown(value)}"
            ) from None
    if "\x00" in value:
        raise ValueError(f"an instance id must not hold a NUL character, got: {shown(value)}")
    return value


def instance_id(workflow: type[Workflow], value: object) -> str:
    """The id of a new instance of ``workflow``.

    With a business key (``workflow.unique``), ``value`` is required and must
    be ``[a-z0-9]+`` or a lowercase UUID; the id says among which instances
    it is unique: ``key::value`` for scope ``"global"``,
    ``Workflow::key::value`` for ``"workflow"`` (the family's name for a
    version of a family), ``Workflow::vN::key::value`` for ``"version"``,
    and ``key::value::suffix`` (random) for ``"none"``. Without a business
    key, ``value`` is the id as given (see :func:`check_id`), or a random
    uuid4 hex when it is None.
    """
    unique = workflow.unique
    if unique is None:
        return uuid.uuid4().hex if value is None else check_id(value)
    if value is None:
        raise ValueError(
            f"{workflow.__qualname__} has the business key {unique.key!r}: "
            f"start(..., id=value) needs the value"
        )
    if not isinstance(value, str) or not (_SIMPLE.fullmatch(value) or _UUID.fullmatch(value)):
        raise ValueError(
            f"the {unique.key!r} value of {workflow.__qualname__} must be [a-z0-9]+ "
            f"or a lowercase UUID, got: {shown(value)}"
        )
    key = f"{unique.key}::{value}"
    scope = unique.scope
    if scope == "none":
        return f"{key}::{secrets.token_hex(4)}"
    if scope == "global":
        return key
    name = (workflow.family or workflow).__qualname__
    if scope == "version":
        return check_id(f"{name}::v{workflow.version}::{key}")
    return check_id(f"{name}::{key}")
