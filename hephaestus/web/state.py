"""What every page and action of the dashboard shares: where to read, how to act, how to draw."""

from __future__ import annotations

import collections
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

import attrs
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from hephaestus.core.workflow import Workflow
from hephaestus.runtime.storage.base import Storage

if TYPE_CHECKING:
    from hephaestus.runtime.runner import Runner

__all__ = ["HEADERS", "Acting", "Dashboard", "dashboard_of", "href"]

Acting = Callable[[], AbstractAsyncContextManager["Runner"]]
"""Gives the runner an action goes through, for the time of the action."""

HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
"""The headers of every page: nothing kept in caches, framed only by the host application."""

_FLASHES: Final = 256
"""How many notices wait for the page after an action, at most (the oldest go first)."""


@attrs.define
class Dashboard:
    """What every page needs: where to read, how to act, how to draw pages."""

    storage_of: Callable[[], Storage]
    acting: Acting | None
    workflows: list[type[Workflow]]
    read_only: bool
    refresh: float
    title: str
    templates: Jinja2Templates
    token: str = attrs.field(factory=lambda: secrets.token_urlsafe(32))
    flashes: collections.OrderedDict[str, tuple[str, str]] = attrs.field(
        factory=collections.OrderedDict
    )

    @property
    def storage(self) -> Storage:
        """The storage the pages read."""
        return self.storage_of()

    def flash(self, kind: str, text: str) -> str:
        """Keep a notice for the next page; its key goes in that page's address."""
        key = secrets.token_urlsafe(8)
        self.flashes[key] = (kind, text)
        while len(self.flashes) > _FLASHES:
            self.flashes.popitem(last=False)
        return key

    def render(
        self, request: Request, name: str, context: Mapping[str, Any], status_code: int = 200
    ) -> Response:
        """A page or a fragment from its template."""
        flash = self.flashes.pop(request.query_params.get("flash", ""), None)
        base = {
            "dashboard": self,
            "flash": flash,
            "href": lambda route, query=None, **params: href(request, route, query, **params),
        }
        response = self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status_code
        )
        response.headers.update(HEADERS)
        return response

    def redirect(
        self, request: Request, route: str, query: Mapping[str, Any] | None = None, **params: Any
    ) -> Response:
        """See the page ``route`` (after a POST)."""
        return RedirectResponse(href(request, route, query, **params), status_code=303)


def href(
    request: Request, route: str, query: Mapping[str, Any] | None = None, **params: Any
) -> str:
    """The path of ``route`` under the application's mount point, with ``query``."""
    router: Any = request.app
    quoted = {key: urllib.parse.quote(str(value), safe="/") for key, value in params.items()}
    path = str(request.scope.get("root_path", "")) + str(router.url_path_for(route, **quoted))
    pairs = [
        (key, value)
        for key, values in (query or {}).items()
        for value in (values if isinstance(values, list | tuple) else [values])
        if value not in (None, "")
    ]
    return path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard serving ``request``."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard
