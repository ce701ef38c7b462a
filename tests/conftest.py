"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest

# The fixtures of docs/testing.md (the package registers them as a pytest11 entry point,
# which pyproject's addopts turns off here so that coverage sees hephaestus imported).
pytest_plugins = ["hephaestus.testing.plugin"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of the test PostgreSQL, from ``HEPHAESTUS_TEST_DSN`` (default: local ``test``).

    When the server cannot be reached the test is skipped, saying why; under
    ``CI=true`` it fails instead, so that CI never passes without PostgreSQL.
    """
    dsn = os.environ.get("HEPHAESTUS_TEST_DSN", DEFAULT_DSN)
    reason = _unreachable(dsn)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL is required)")
        pytest.skip(reason)
    return dsn


def _unreachable(dsn: str) -> str | None:
    """Why PostgreSQL at ``dsn`` cannot be used, or None when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL is unreachable at HEPHAESTUS_TEST_DSN={dsn!r}: {first_line}"
    return None
