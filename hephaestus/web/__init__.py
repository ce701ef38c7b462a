"""The dashboard (extra ``web``): instances, their graphs and histories, live.

``create_app(...)`` gives an ASGI application to mount in a Starlette or
FastAPI app; ``hephaestus web --database ...`` serves it alone on
127.0.0.1. Read-only unless asked; actions go through a runner's API. See
``docs/dashboard.md``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        f"the dashboard needs the web extra ({exc.name} is missing): pip install 'hephaestus[web]'"
    ) from exc

from hephaestus.web.app import create_app

__all__ = ["create_app"]
