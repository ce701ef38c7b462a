"""The dashboard's actions: cancel (one, a selection, or every instance a filter selects),
resume a waiting step, send a message.

Each goes through the runner's API (``Dashboard.acting``), is logged on
``hephaestus.web`` with the client's address, and ends on a page that says
what happened: a refusal of the runner (the instance has ended, the event is
not declared, the storage is held by another runner...) is shown there, in
its own words. A POST is refused (403) on a read-only dashboard, without the
form's token, or from another site.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, Final

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hephaestus._show import text_of
from hephaestus.exceptions import HephaestusError, InstanceNotFound
from hephaestus.operating.database import delivery, follows
from hephaestus.runtime.ids import check_id
from hephaestus.web.pages import BadFilter, Filters
from hephaestus.web.state import Dashboard, dashboard_of

__all__ = ["cancel", "resume", "send"]

_log = structlog.get_logger("hephaestus.web")

_UNFINISHED: Final = ("pending", "running", "waiting")
_SHOWN: Final = 50
"""How many of the instances to cancel the confirmation names."""


async def _form(request: Request) -> tuple[Dashboard, FormData]:
    """The action's form, once the request may act; 403 otherwise."""
    dashboard = dashboard_of(request)
    if dashboard.read_only or dashboard.acting is None:
        raise HTTPException(403, "this dashboard is read-only: it takes no action")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            raise HTTPException(403, f"an action from another site ({origin}) is refused")
    form = await request.form()
    token = form.get("token")
    if not isinstance(token, str) or not secrets.compare_digest(token, dashboard.token):
        raise HTTPException(403, "the form's token is missing or stale: reload the page")
    return dashboard, form


def _client(request: Request) -> str:
    return "unknown" if request.client is None else f"{request.client.host}:{request.client.port}"


def _data(form: FormData) -> dict[str, Any] | None:
    text = str(form.get("data") or "").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFilter(f"the data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadFilter(f"the data must be a JSON object ({{...}}), got: {text}")
    return data


# ---------------------------------------------------------------------- cancel


async def cancel(request: Request) -> Response:
    """Cancel the instances chosen, after a confirmation page."""
    dashboard, form = await _form(request)
    back = form.get("back")
    try:
        if form.get("scope") == "matching":
            filters = Filters(form, dashboard.workflows)
            ids = await _matching(dashboard, filters)
            query = filters.kept(after=None)
        else:
            ids = list(dict.fromkeys(str(value) for value in form.getlist("ids")))
            for instance_id in ids:
                check_id(instance_id)
            query = {} if back == "instance" else Filters(form, dashboard.workflows).kept()
    except (BadFilter, TypeError, ValueError) as exc:
        key = dashboard.flash("error", text_of(exc) if not isinstance(exc, BadFilter) else str(exc))
        return dashboard.redirect(request, "instances", {"flash": key})
    if back == "instance" and len(ids) == 1:
        where: tuple[str, dict[str, Any]] = ("instance", {"instance_id": ids[0]})
    else:
        where = ("instances", {})
    if not ids:
        nothing = (
            "no unfinished instance matches: nothing to cancel"
            if form.get("scope") == "matching"
            else "no instance selected: nothing to cancel"
        )
        key = dashboard.flash("notice", nothing)
        return dashboard.redirect(request, where[0], {**query, "flash": key}, **where[1])
    if form.get("confirmed") != "yes":
        return dashboard.render(
            request,
            "confirm.html",
            {
                "ids": ids[:_SHOWN],
                "count": len(ids),
                "fields": [
                    (key, str(value))
                    for key, value in form.multi_items()
                    if key not in ("token", "confirmed")
                ],
                "back": (where[0], where[1], query),
            },
        )
    report = await _cancel(request, dashboard, ids)
    key = dashboard.flash(*report)
    return dashboard.redirect(request, where[0], {**query, "flash": key}, **where[1])


async def _matching(dashboard: Dashboard, filters: Filters) -> list[str]:
    """The unfinished instances the filters select, oldest first."""
    chosen = filters.selection()
    statuses = chosen.get("status_in") or list(_UNFINISHED)
    chosen["status_in"] = [status for status in statuses if status in _UNFINISHED]
    if not chosen["status_in"]:
        return []
    ids: list[str] = []
    after = None
    while True:
        page = await dashboard.storage.page(**chosen, newest_first=False, limit=1000, after=after)
        ids.extend(instance.id for instance in page.instances)
        if page.next is None:
            return ids
        after = page.next


async def _cancel(request: Request, dashboard: Dashboard, ids: list[str]) -> tuple[str, str]:
    """Cancel each instance through the runner: a notice of what changed, or the refusal."""
    assert dashboard.acting is not None
    cancelled: list[str] = []
    unchanged: list[str] = []
    missing: list[str] = []
    try:
        async with dashboard.acting() as runner:
            for instance_id in ids:
                try:
                    before = await runner.get(instance_id)
                    after = await runner.cancel(instance_id)
                except InstanceNotFound:
                    missing.append(instance_id)
                    continue
                if before.terminal:
                    unchanged.append(f"{instance_id} ({after.status})")
                    continue
                cancelled.append(instance_id)
                _log.info("instance cancelled", instance_id=instance_id, client=_client(request))
    except (HephaestusError, OSError) as exc:
        done = f" after cancelling {len(cancelled)}" if cancelled else ""
        _log.warning("cancel refused", reason=text_of(exc), client=_client(request))
        return "error", f"cancel refused{done}: {text_of(exc)}"
    parts = [f"cancelled {len(cancelled)} instance{'s' * (len(cancelled) != 1)}"]
    if unchanged:
        parts.append(f"already ended, unchanged: {', '.join(unchanged[:10])}")
    if missing:
        parts.append(f"not found: {', '.join(missing[:10])}")
    return ("notice" if not missing else "error"), "; ".join(parts)


# ---------------------------------------------------------------------- resume, send


async def resume(request: Request) -> Response:
    """Give a waiting step its event, with data."""
    dashboard, form = await _form(request)
    instance_id = request.path_params["instance_id"]
    step = str(form.get("step") or "") or None
    event = str(form.get("event") or "")

    async def act(runner: Any, data: Mapping[str, Any] | None) -> str:
        await runner.resume(instance_id, event, data, step=step)
        after = await runner.get(instance_id)
        return (
            f"{step or 'the waiting step'} resumed with {event!r}; {follows(runner, after.status)}"
        )

    return await _act(request, dashboard, form, instance_id, "resumed", event, act)


async def send(request: Request) -> Response:
    """Send a message: taken by a step waiting for it, or kept until one parks."""
    dashboard, form = await _form(request)
    instance_id = request.path_params["instance_id"]
    event = str(form.get("event") or "")

    async def act(runner: Any, data: Mapping[str, Any] | None) -> str:
        before = await runner.get(instance_id)
        await runner.send(instance_id, event, data)
        after = await runner.get(instance_id)
        delivered = delivery(runner, len(before.messages), len(after.messages))
        if delivered == "sent":
            return f"{event!r} sent: a worker of the distributed runner delivers it"
        if delivered == "kept":
            return f"{event!r} kept until a step waits for it"
        return f"{event!r} taken by the waiting step; {follows(runner, after.status)}"

    return await _act(request, dashboard, form, instance_id, "message sent", event, act)


async def _act(
    request: Request,
    dashboard: Dashboard,
    form: FormData,
    instance_id: str,
    what: str,
    event: str,
    act: Any,
) -> Response:
    """Run ``act(runner, data)``; back to the instance's page with its notice or the refusal."""
    assert dashboard.acting is not None
    try:
        check_id(instance_id)
    except (TypeError, ValueError) as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        data = _data(form)
        async with dashboard.acting() as runner:
            notice = await act(runner, data)
    except BadFilter as exc:
        key = dashboard.flash("error", str(exc))
    except (HephaestusError, TypeError, ValueError, OSError) as exc:
        _log.warning(
            f"{what}: refused", instance_id=instance_id, event_name=event, reason=text_of(exc)
        )
        key = dashboard.flash("error", text_of(exc))
    else:
        _log.info(
            what,
            instance_id=instance_id,
            event_name=event,
            data_keys=sorted(data or ()),
            client=_client(request),
        )
        key = dashboard.flash("notice", notice)
    return dashboard.redirect(request, "instance", {"flash": key}, instance_id=instance_id)
