"""Storages: the ``Storage`` protocol and its backends."""

from hephaestus.runtime.storage.base import Storage as Storage
from hephaestus.runtime.storage.memory import MemoryStorage as MemoryStorage
from hephaestus.runtime.storage.sqlite import SQLiteStorage as SQLiteStorage

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage"]
