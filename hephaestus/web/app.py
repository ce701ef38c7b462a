"""The dashboard's ASGI application: ``create_app``, its routes.

Reads go to a storage (``Storage.page``, ``count``, ``ended``, ``get`` and
``history``); actions go through a runner's API, so that every rule the
runners keep (one runner per storage, checked events and data) holds here
too. Read-only unless asked: then every POST is refused (``actions``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from hephaestus.core.workflow import Workflow
from hephaestus.operating import catalog, views
from hephaestus.runtime.storage.base import Storage
from hephaestus.web import actions, pages
from hephaestus.web.state import Acting, Dashboard

if TYPE_CHECKING:
    from hephaestus.runtime.runner import Runner

__all__ = ["build", "create_app"]


def create_app(
    *,
    runner: Runner | None = None,
    storage: Storage | None = None,
    workflows: Iterable[type[Workflow]] = (),
    read_only: bool = True,
    refresh: float = 2.0,
    title: str = "Hephaestus",
) -> Starlette:
    """The dashboard as an ASGI application, to mount in a Starlette or FastAPI app.

    ``storage`` is what the pages read (default: the runner's); ``runner``
    is what actions go through, and is needed only with ``read_only=False``.
    ``workflows`` are the application's workflow classes (a family gives
    each version): the workflows page draws them beside those the database
    holds instances of. Live parts of the pages refresh every ``refresh``
    seconds. The dashboard has no authentication of its own: mount it behind
    the host application's, or a proxy's (``docs/dashboard.md``).
    """
    if runner is None and storage is None:
        raise TypeError("create_app needs a storage to read, or a runner whose storage it reads")
    if storage is None and not _has_storage(runner):
        raise TypeError(f"{runner!r} has no storage: give create_app(storage=...)")

    def storage_of() -> Storage:
        found: Storage = storage if storage is not None else runner.storage  # type: ignore[union-attr]
        return found

    acting = None if runner is None else _through(runner)
    return build(
        storage_of,
        acting,
        workflows=workflows,
        read_only=read_only,
        refresh=refresh,
        title=title,
    )


def _has_storage(runner: object) -> bool:
    """Whether ``runner`` has a storage (without reading it: it may not be open yet)."""
    return hasattr(type(runner), "storage") or "storage" in getattr(runner, "__dict__", {})


def _through(runner: Runner) -> Acting:
    @contextlib.asynccontextmanager
    async def acting() -> AsyncIterator[Runner]:
        yield runner

    return acting


def build(
    storage_of: Callable[[], Storage],
    acting: Acting | None,
    *,
    workflows: Iterable[type[Workflow]] = (),
    read_only: bool = True,
    refresh: float = 2.0,
    title: str = "Hephaestus",
) -> Starlette:
    """The application; ``acting`` gives the runner of each action (``hephaestus web``)."""
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not refresh > 0:
        raise ValueError(f"refresh must be a number of seconds > 0, got: {refresh!r}")
    if not read_only and acting is None:
        raise TypeError("read_only=False needs a runner: every action goes through its API")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("hephaestus.web", "templates"),
        autoescape=True,  # every value is escaped, in HTML and in SVG alike
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["short"] = views.short
    dashboard = Dashboard(
        storage_of,
        acting,
        catalog.concrete(workflows),
        bool(read_only),
        float(refresh),
        title,
        Jinja2Templates(env=environment),
    )
    static = StaticFiles(directory=str(resources.files("hephaestus.web") / "static"))
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/live/overview", pages.overview_live, name="overview_live"),
        Route("/instances", pages.instances, name="instances"),
        Route("/live/instances", pages.instances_live, name="instances_live"),
        Route("/actions/cancel", actions.cancel, methods=["POST"], name="cancel"),
        Route(
            "/actions/resume/{instance_id:path}", actions.resume, methods=["POST"], name="resume"
        ),
        Route("/actions/send/{instance_id:path}", actions.send, methods=["POST"], name="send"),
        Route("/live/instance/{instance_id:path}", pages.instance_live, name="instance_live"),
        Route("/instances/{instance_id:path}", pages.instance, name="instance"),
        Route("/workflows", pages.workflows, name="workflows"),
        Route("/workflows/graph", pages.workflow, name="workflow"),
        Mount("/static", static, name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=pages.HANDLERS)
    app.state.dashboard = dashboard
    return app
