"""Storages: the ``Storage`` protocol and its backends."""

from hephaestus.runtime.storage.base import Storage as Storage
from hephaestus.runtime.storage.memory import MemoryStorage as MemoryStorage

__all__ = ["MemoryStorage", "Storage"]
