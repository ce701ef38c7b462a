"""Schema migrations of the durable storages, as numbered SQL files per backend.

``sqlite/0001_instances.sql`` is version 1 of the SQLite schema, and so on.
A storage records the version it reached in ``heph_schema_version`` (one row)
and, on first use, applies the files above it in order, each in its own
transaction. Files are never edited once released: a change is a new file.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["migrations"]


def migrations(backend: str) -> list[tuple[int, str]]:
    """``(version, sql)`` for each migration of ``backend`` ("sqlite" or "postgres"), in order."""
    folder = resources.files(__package__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"the {backend} migrations are not numbered 1..n: {versions}")
    return found
