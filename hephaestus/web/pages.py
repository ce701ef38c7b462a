"""The dashboard's pages, and the live fragments they refresh themselves with.

Each page reads what it shows from the storage's indexed queries: the
instances page one ``Storage.page``, the overview ``Storage.count`` and
``Storage.ended``, an instance page ``get`` and ``history``. Every value is
shown through the templates' escaping; the graph is an SVG drawn here
(``drawing``), its text escaped there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import markupsafe
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hephaestus._show import text_of
from hephaestus.core.instance import Instance, Status
from hephaestus.core.workflow import Workflow
from hephaestus.exceptions import StorageError
from hephaestus.operating import catalog, views
from hephaestus.runtime.ids import check_id
from hephaestus.runtime.storage import codec
from hephaestus.web import drawing
from hephaestus.web.state import dashboard_of

__all__ = [
    "HANDLERS",
    "Filters",
    "instance",
    "instance_live",
    "instances",
    "instances_live",
    "overview",
    "overview_live",
    "workflow",
    "workflows",
]

STATUSES: Final = tuple(status.value for status in Status)
PAGE_SIZES: Final = (20, 50, 100, 500)
HISTORY_SHOWN: Final = 500
"""The newest history records an instance page shows (all of them on request)."""
HOUR_SLOTS: Final = 60
"""The overview's last hour, in slots of a minute."""


class BadFilter(ValueError):
    """A filter of the instances page that cannot be used; its text names it."""


# ---------------------------------------------------------------------- overview


async def overview(request: Request) -> Response:
    """Instances by status and workflow; what ended in the last hour."""
    return dashboard_of(request).render(request, "overview.html", await _overview(request))


async def overview_live(request: Request) -> Response:
    """The overview's live part."""
    return dashboard_of(request).render(request, "_overview.html", await _overview(request))


async def _overview(request: Request) -> dict[str, Any]:
    storage = dashboard_of(request).storage
    counts = await storage.count(by=("status", "workflow"))
    now = time.time()
    slot_now = int(now // 60) * 60
    first = slot_now - (HOUR_SLOTS - 1) * 60
    ended = await storage.ended(since=datetime.fromtimestamp(first, UTC), every=60)
    by_status = dict.fromkeys(STATUSES, 0)
    by_workflow: dict[str, dict[str, int]] = {}
    for (status, path), n in counts.items():
        by_status[status] = by_status.get(status, 0) + n
        by_workflow.setdefault(path, dict.fromkeys(STATUSES, 0))[status] += n
    slots: list[dict[str, Any]] = []
    for n in range(HOUR_SLOTS):
        slot = first + 60 * n
        ends = {status: ended.get((slot, status), 0) for status in _ENDED}
        at = datetime.fromtimestamp(slot, UTC).strftime("%H:%M")
        slots.append({"at": at, "total": sum(ends.values()), **ends})
    totals = {status: sum(slot[status] for slot in slots) for status in _ENDED}
    return {
        "by_status": by_status,
        "total": sum(by_status.values()),
        "by_workflow": sorted(by_workflow.items()),
        "slots": slots,
        "hour": totals,
        "tallest": max([1, *(slot["total"] for slot in slots)]),
        "now": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }


_ENDED: Final = ("completed", "failed", "cancelled")


# ---------------------------------------------------------------------- instances


class Filters:
    """The instances page's filters, from its query: what it selects, and how to say it again."""

    def __init__(self, query: Mapping[str, Any], workflows: list[type[Workflow]]) -> None:
        self.query = query
        self.statuses = [s for s in _all(query, "status") if s]
        for status in self.statuses:
            if status not in STATUSES:
                raise BadFilter(f"status {status!r} is not a status: one of {', '.join(STATUSES)}")
        self.workflow = (query.get("workflow") or "").strip()
        self.version = (query.get("version") or "").strip()
        self.id_prefix = (query.get("id") or "").strip()
        self.started_after = (query.get("started_after") or "").strip()
        self.started_before = (query.get("started_before") or "").strip()
        self.oldest_first = query.get("order") == "oldest"
        self.limit = _int(query.get("limit") or "50", "limit")
        if self.limit not in PAGE_SIZES:
            raise BadFilter(f"limit must be one of {', '.join(map(str, PAGE_SIZES))}")
        self.after = query.get("after") or None
        self._workflows = workflows

    def selection(self) -> dict[str, Any]:
        """``Storage.page``'s filters (without the page's size and cursor)."""
        chosen: dict[str, Any] = {}
        if self.statuses:
            chosen["status_in"] = self.statuses
        if self.workflow:
            chosen["workflow"] = self._path(self.workflow)
        if self.version:
            chosen["workflow_version"] = _int(self.version, "version")
        if self.id_prefix:
            chosen["id_prefix"] = self.id_prefix
        if self.started_after:
            chosen["started_after"] = _moment(self.started_after, "started after")
        if self.started_before:
            chosen["started_before"] = _moment(self.started_before, "started before")
        return chosen

    def arguments(self) -> dict[str, Any]:
        """All of ``Storage.page``'s arguments."""
        return {
            **self.selection(),
            "newest_first": not self.oldest_first,
            "limit": self.limit,
            "after": self.after,
        }

    def kept(self, **changes: Any) -> dict[str, Any]:
        """The query that selects the same, with ``changes`` (None drops a key)."""
        query: dict[str, Any] = {
            "status": self.statuses,
            "workflow": self.workflow,
            "version": self.version,
            "id": self.id_prefix,
            "started_after": self.started_after,
            "started_before": self.started_before,
            "order": "oldest" if self.oldest_first else "",
            "limit": "" if self.limit == 50 else str(self.limit),
            "after": self.after or "",
        }
        query.update(changes)
        return {key: value for key, value in query.items() if value not in (None, "", [])}

    def _path(self, text: str) -> str:
        if ":" in text:
            return text
        paths = sorted({codec.import_path(w) for w in self._workflows if w.__qualname__ == text})
        if len(paths) == 1:
            return paths[0]
        if not paths:
            raise BadFilter(f"workflow {text!r}: give its import path (module:Class)")
        raise BadFilter(f"workflow {text!r} is ambiguous: one of {', '.join(paths)}")


def _all(query: Mapping[str, Any], key: str) -> list[str]:
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        return [str(value) for value in getlist(key)]
    value = query.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadFilter(f"{name} must be a whole number, got: {text!r}") from None


def _moment(text: str, name: str) -> datetime:
    """A time from the page's form (UTC when it has no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name} must be a time such as 2026-11-25T14:00, got: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def instances(request: Request) -> Response:
    """The instances, filtered, a page at a time, newest first."""
    context = await _instances(request)
    return dashboard_of(request).render(
        request, "instances.html", context, status_code=400 if context["error"] else 200
    )


async def instances_live(request: Request) -> Response:
    """The instances table alone."""
    context = await _instances(request)
    return dashboard_of(request).render(
        request, "_instances.html", context, status_code=400 if context["error"] else 200
    )


async def _instances(request: Request) -> dict[str, Any]:
    dashboard = dashboard_of(request)
    rows: list[dict[str, Any]] = []
    after = None
    error = None
    try:
        filters = Filters(request.query_params, dashboard.workflows)
        try:
            page = await dashboard.storage.page(**filters.arguments())
        except (TypeError, ValueError) as exc:
            raise BadFilter(str(exc)) from None
        rows = [_row(instance) for instance in page.instances]
        after = page.next
    except BadFilter as exc:
        error = str(exc)
        filters = Filters({}, dashboard.workflows)
    return {
        "filters": filters,
        "rows": rows,
        "next": after,
        "error": error,
        "statuses": STATUSES,
        "sizes": PAGE_SIZES,
        "known": sorted({codec.import_path(w) for w in dashboard.workflows}),
    }


def _row(instance: Instance) -> dict[str, Any]:
    row = views.summary(instance)
    row["name"] = instance.workflow.__qualname__
    row["started"] = views.short(row["started_at"])
    row["steps"] = ", ".join(row["active_steps"] + row["waiting_steps"])
    row["terminal"] = instance.terminal
    return row


# ---------------------------------------------------------------------- an instance


async def instance(request: Request) -> Response:
    """One instance: where it is, its graph, its history, what it waits for, its failure."""
    context = await _instance(request, history_all=request.query_params.get("history") == "all")
    context["show_values"] = request.query_params.get("context") == "values"
    if context["show_values"]:
        context["values"] = json.dumps(
            context["detail"]["context"], indent=2, ensure_ascii=False, default=str
        )
    return dashboard_of(request).render(request, "instance.html", context)


async def instance_live(request: Request) -> Response:
    """The live part of an instance page; the waiting steps' forms when they changed."""
    context = await _instance(request, history_all=request.query_params.get("history") == "all")
    context["waiting_changed"] = request.query_params.get("waiting") != context["waiting_key"]
    return dashboard_of(request).render(request, "_instance.html", context)


async def _instance(request: Request, *, history_all: bool) -> dict[str, Any]:
    dashboard = dashboard_of(request)
    instance_id = request.path_params["instance_id"]
    try:
        check_id(instance_id)
    except (TypeError, ValueError) as exc:
        raise HTTPException(404, str(exc)) from None
    storage = dashboard.storage
    found = await storage.get(instance_id)
    if found is None:
        raise HTTPException(404, f"no instance {instance_id!r}")
    records = await storage.history(instance_id)
    detail = views.detail(found, records, context=True, now=time.time_ns())
    keys = {part: list(detail["context"][part]) for part in ("initial", "steps")}
    definition = found.workflow.definition
    sendable = list(dict.fromkeys(e for events in definition.events.values() for e in events))
    shown = records if history_all else records[-HISTORY_SHOWN:]
    return {
        "instance": found,
        "detail": detail,
        "keys": keys,
        "started": views.short(detail["started_at"]),
        "updated": views.short(detail["updated_at"]),
        "ended": views.short(detail["ended_at"]),
        "graph": _drawn(views.graph(found.workflow, found)),
        "records": [_record(rec) for rec in shown],
        "hidden": len(records) - len(shown),
        "history_all": history_all,
        "sendable": sendable,
        "waiting_key": _waiting_key(found),
        "terminal": found.terminal,
        "path": codec.import_path(found.workflow),
    }


def _waiting_key(instance: Instance) -> str:
    """What the waiting steps' forms depend on: when it changes, the forms are drawn again."""
    steps = ",".join(sorted(step.step_key for step in instance.waiting_steps))
    return f"{instance.status.value}:{steps}"


def _record(rec: Any) -> dict[str, Any]:
    row = views.record(rec)
    details = dict(row["details"] or {})
    stacktrace = details.pop("stacktrace", None)
    row["time"] = (row["at"] or "")[11:23]
    row["date"] = (row["at"] or "")[:10]
    if isinstance(details.get("due"), int):  # a timer's due time, wall-clock ns
        details["due"] = views.iso(details["due"])
    row["details_text"] = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
        for key, value in details.items()
    )
    row["stacktrace"] = stacktrace
    return row


# ---------------------------------------------------------------------- workflows


async def workflows(request: Request) -> Response:
    """Every workflow and version: the application's and those the database holds."""
    dashboard = dashboard_of(request)
    counts = await dashboard.storage.count(by=("workflow", "workflow_version", "status"))
    rows = catalog.rows(dashboard.workflows, counts)
    for row in rows:
        row["total"] = sum(row["instances"].values())
        row["name"] = row["workflow"].rpartition(":")[2] or row["workflow"]
    return dashboard.render(request, "workflows.html", {"rows": rows})


async def workflow(request: Request) -> Response:
    """One workflow version's graph."""
    dashboard = dashboard_of(request)
    path = request.query_params.get("workflow", "")
    version_text = request.query_params.get("version", "")
    try:
        version = int(version_text)
    except ValueError:
        raise HTTPException(400, f"version must be a whole number, got: {version_text!r}") from None
    found = next(
        (w for w in dashboard.workflows if codec.import_path(w) == path and w.version == version),
        None,
    ) or catalog.stored(path, version)
    if found is None:
        raise HTTPException(404, f"no workflow {path!r} version {version} can be imported here")
    data = views.graph(found)
    return dashboard.render(
        request,
        "workflow.html",
        {
            "data": data,
            "name": found.__qualname__,
            "graph": _drawn(data),
            "mermaid": views.mermaid(found),
            "doc": (found.__doc__ or "").strip(),
        },
    )


def _drawn(data: Mapping[str, Any]) -> markupsafe.Markup:
    """The graph's SVG, as markup: ``drawing`` escaped every text of it."""
    return markupsafe.Markup(drawing.svg(data))


# ---------------------------------------------------------------------- errors


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return dashboard_of(request).render(
        request, "error.html", {"status": exc.status_code, "message": exc.detail}, exc.status_code
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    message = f"the storage cannot be read: {text_of(exc)}"
    return dashboard_of(request).render(
        request, "error.html", {"status": 503, "message": message}, 503
    )


HANDLERS: Final = {HTTPException: _http_error, StorageError: _unavailable}
