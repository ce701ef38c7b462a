"""Fixtures of the crash tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """A fresh schema for one test (the storage creates it), dropped afterwards."""
    import psycopg

    schema = f"heph_crash_{uuid.uuid4().hex[:8]}"
    yield postgres_dsn, schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
