"""The runnable examples of the docs run, as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(page: str, holding: str) -> list[str]:
    """The Python code blocks of ``docs/<page>`` that contain ``holding``."""
    text = (DOCS / page).read_text()
    return [code for code in BLOCK.findall(text) if holding in code]


@pytest.mark.parametrize(
    ("page", "holding"),
    [
        pytest.param("runners.md", "class Digest(Workflow)", id="runners-map"),
        pytest.param("waiting.md", "class Approval(Workflow)", id="waiting-approval"),
        pytest.param("waiting.md", "class AwaitPayment(Step)", id="waiting-custom"),
        pytest.param("waiting.md", "class Sync(Workflow)", id="waiting-history"),
        pytest.param("observability.md", "otel.instrument(provider)", id="observability-otel"),
        pytest.param("observability.md", "PrometheusReporter(", id="observability-prometheus"),
        pytest.param("storage.md", "await storage.page(", id="storage-page"),
    ],
)
def test_example_runs(page: str, holding: str) -> None:
    """The example is a whole program: it runs to its end, its own asserts included."""
    (code,) = blocks(page, holding)
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs_example"})
