"""The web page: a live incident board, incident pages and a region view (docs/WEB.md).

    hub = EventHub()
    engine.listeners.append(hub.publish)
    app = create_app(engine.store, ..., web=engine_web_router(engine, hub))

Served by the API itself: ``/ui/`` is one static HTML page with one vanilla JS file and one
CSS file (api/static/, no build step, nothing from a CDN); the data comes from the REST API
and from these endpoints:

    GET  /v1/events?ticket=..&last_id=..   Server-Sent Events: stage moves (api/events.py)
    POST /v1/events/ticket                 a 60 s single-use ticket to open the stream
    GET  /v1/web/me                        who the token is (name, role), is auth on
    GET  /v1/targets/{target}/series?names=a,b   the monitor's window of those series
    GET  /v1/web/sqi[?target=]             the SQI of every monitored target
    GET  /v1/web/regions                   province > city > district > station area with
                                           each area's complaint rate, hot areas marked

Every data endpoint needs a viewer token (the static files hold no data); approving goes
through the REST API's own approver-only endpoint, similar cases come from its
``GET /v1/incidents/{id}/similar``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from api.auth import Principal, Role, Viewer, bearer, require
from api.events import EventHub, StreamClosed, StreamTickets, TooManyClients
from kernel.domain import Domain
from loop.monitor import Monitor
from loop.sqi import SQIResult
from rules.catalog import Catalog

if TYPE_CHECKING:
    from api.deps import EngineApi

log = logging.getLogger("mendloop.web")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMPLAINTS = "cs_complaints_per_h"
HOT_FACTOR = 1.5
MAX_SERIES = 20
AreaPath = tuple[str, str, str, str]


# -- the region rule (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class AreaRate:
    """One monitored station area judged against its region."""

    path: AreaPath
    rate: float  # complaints per hour: the sum over the area's targets
    region: tuple[str, ...]  # what it is compared with: a city, a province, or () = all
    regional_mean: float | None  # None: no other monitored area to compare with
    ratio: float | None
    hot: bool


def judge_areas(rates: Mapping[AreaPath, float], factor: float = HOT_FACTOR) -> list[AreaRate]:
    """Each monitored area against its *regional mean*: the mean complaint rate of the
    monitored station areas of its city (itself included); when the city has no other
    monitored area, of its province; when the province has none either, of all of them.
    An area is hot when its rate exceeds ``factor`` x that mean (the paper: 1.5x). With a
    single monitored area there is nothing to compare with: never hot.

    >>> [a.hot for a in judge_areas({("P", "C", "D", "a"): 30.0, ("P", "C", "D", "b"): 6.0})]
    [True, False]
    """
    judged = []
    for path, rate in sorted(rates.items()):
        region: tuple[str, ...] = ()
        peers = list(rates.values())
        for depth in (2, 1):  # city, then province
            inside = [r for p, r in rates.items() if p[:depth] == path[:depth]]
            if len(inside) >= 2:
                region, peers = path[:depth], inside
                break
        if len(peers) < 2:
            judged.append(AreaRate(path, rate, region, None, None, False))
            continue
        mean = sum(peers) / len(peers)
        ratio = rate / mean if mean > 0 else None
        judged.append(
            AreaRate(path, rate, region, mean, ratio, ratio is not None and ratio > factor)
        )
    return judged


def area_rates(
    placement: Mapping[str, tuple[str, ...]], latest: Mapping[str, float]
) -> tuple[dict[AreaPath, float], dict[AreaPath, list[str]]]:
    """Complaint rate per station area (sum of its monitored targets' latest values), and
    which targets made it. Targets without a station area are left out."""
    rates: dict[AreaPath, float] = {}
    members: dict[AreaPath, list[str]] = {}
    for target, value in sorted(latest.items()):
        path = placement.get(target)
        if path is None or len(path) != 4:
            continue
        key: AreaPath = (path[0], path[1], path[2], path[3])
        rates[key] = rates.get(key, 0.0) + value
        members.setdefault(key, []).append(target)
    return rates, members


def region_tree(
    domain: Domain, latest: Mapping[str, float], factor: float = HOT_FACTOR
) -> dict[str, Any]:
    """The whole province > city > district > station area tree, every area with its rate
    and verdict when monitored, for the page."""
    rates, members = area_rates(domain.targets, latest)
    verdicts = {a.path: a for a in judge_areas(rates, factor)}
    provinces = []
    for province, cities in domain.regions.items():
        city_nodes = []
        for city, districts in cities.items():
            district_nodes = []
            for district, areas in districts.items():
                area_nodes = []
                for area in areas:
                    verdict = verdicts.get((province, city, district, area))
                    node: dict[str, Any] = {"name": area, "monitored": verdict is not None}
                    if verdict is not None:
                        node |= {
                            "rate": verdict.rate,
                            "targets": members[verdict.path],
                            "region": " > ".join(verdict.region) or "all monitored areas",
                            "regional_mean": verdict.regional_mean,
                            "ratio": verdict.ratio,
                            "hot": verdict.hot,
                        }
                    area_nodes.append(node)
                district_nodes.append(_node(district, area_nodes, "areas"))
            city_nodes.append(_node(city, district_nodes, "districts"))
        provinces.append(_node(province, city_nodes, "cities"))
    placed = set(domain.targets)
    return {
        "series": COMPLAINTS,
        "factor": factor,
        "rule": "hot: complaint rate > factor x the mean of the monitored station areas of "
        "its city (itself included); of its province when the city has no other; of all "
        "monitored areas when the province has none either",
        "provinces": provinces,
        "unplaced": sorted(t for t in latest if t not in placed),
        "hot": [" > ".join(a.path) for a in verdicts.values() if a.hot],
    }


def _node(name: str, children: list[dict[str, Any]], key: str) -> dict[str, Any]:
    hot = any(c.get("hot") for c in children)
    return {"name": name, key: children, "hot": hot}


# -- series for the charts ------------------------------------------------------------


def thin(ts: np.ndarray, values: np.ndarray, max_points: int) -> list[list[float]]:
    """At most ``max_points`` evenly spaced points, always keeping the newest."""
    n = len(ts)
    if n > max_points:
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
        ts, values = ts[idx], values[idx]
    return [[float(t), float(v)] for t, v in zip(ts, values, strict=True)]


def sqi_json(target: str, result: SQIResult | None) -> dict[str, Any]:
    if result is None:
        return {"target": target, "sqi": None, "alert": False, "roles": {}, "dragging": []}
    return {
        "target": target,
        "sqi": round(result.sqi, 2),
        "alert": result.alert,
        "roles": {k: round(v, 2) for k, v in result.roles.items()},
        "dragging": [asdict(d) for d in result.dragging[:5]],
    }


# -- the router -----------------------------------------------------------------------


def stream_principal(request: Request, tickets: StreamTickets) -> Principal:
    """The stream's caller: a ticket (EventSource sends no headers) or a Bearer token
    (curl); anonymous admin when authentication is off."""
    if getattr(request.app.state, "auth", None) is None or bearer(request):
        return require(Role.viewer)(request)
    ticket = request.query_params.get("ticket", "")
    who = tickets.redeem(ticket) if ticket else None
    if who is None:
        raise HTTPException(
            status_code=401,
            detail="a valid stream ticket is needed (POST /v1/events/ticket with your token)",
        )
    request.state.principal = who
    return who


def web_router(
    hub: EventHub,
    monitor: Monitor,
    catalog: Catalog,
    sqi: Callable[[str], SQIResult | None],
    *,
    domain: Domain | None = None,
    tickets: StreamTickets | None = None,
    keepalive_s: float = 15.0,
    stream_max_s: float = 600.0,
) -> APIRouter:
    """The page and its endpoints over the engine's parts (each passed explicitly, so a
    test can serve the page over a real monitor without the whole engine)."""
    router = APIRouter()
    tickets = tickets or StreamTickets()
    regions = domain or Domain.load()

    @router.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @router.get("/ui/", include_in_schema=False)
    def page() -> FileResponse:
        return _static("index.html")

    @router.get("/ui/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in PAGES:
            raise HTTPException(status_code=404, detail="no such file")
        return _static(name)

    @router.get("/v1/web/me", tags=["web"])
    def me(request: Request, who: Viewer) -> dict[str, Any]:
        """Who the page's token is: the page shows approve buttons to approvers only."""
        auth_on = getattr(request.app.state, "auth", None) is not None
        return {"name": who.name, "role": who.role.value, "auth": auth_on}

    @router.post("/v1/events/ticket", tags=["web"])
    def ticket(who: Viewer) -> dict[str, Any]:
        """A signed, single-use permission to open the event stream within its lifetime."""
        return {"ticket": tickets.issue(who), "expires_in": tickets.ttl_s}

    def stream_caller(request: Request) -> Principal:
        return stream_principal(request, tickets)

    stream_caller.__name__ = "require_viewer"  # what OpenAPI shows (api/app.py route_role)

    @router.get("/v1/events", tags=["web"], response_class=StreamingResponse)
    async def events(
        request: Request,
        last_id: Annotated[int | None, Query(ge=0)] = None,
        # a local dependency cannot be named in a (postponed) annotation: a default it is
        who: Principal = Depends(stream_caller),  # noqa: B008
    ) -> StreamingResponse:
        """Stage moves as Server-Sent Events (``event: stage``; ``resync`` means events were
        lost: reload). A comment line every ``keepalive_s``; the stream ends after
        ``stream_max_s`` so a revoked token cannot keep watching (the page reconnects)."""
        after = last_id
        header = request.headers.get("last-event-id", "")
        if after is None and header.isdigit():
            after = int(header)
        if after is None:
            after = hub.last_id
        if hub.closed or hub.clients >= hub.max_clients:
            raise HTTPException(status_code=503, detail="no more event streams now; retry later")
        log.info("event stream opened for %s", who.name)

        async def frames() -> AsyncIterator[str]:
            # subscribed only once the response runs: a request dropped before that
            # leaves nothing behind, and the replay from ``after`` loses nothing meanwhile
            loop = asyncio.get_running_loop()
            ends = loop.time() + stream_max_s
            try:
                async with hub.subscribe(after=after) as sub:
                    yield f'retry: 2000\nevent: hello\ndata: {{"last_id": {after}}}\n\n'
                    while loop.time() < ends:
                        event = await sub.get(timeout=min(keepalive_s, ends - loop.time()))
                        yield event.sse() if event is not None else ": keep-alive\n\n"
                    yield 'event: bye\ndata: {"reason": "stream lifetime reached"}\n\n'
            except (StreamClosed, TooManyClients):
                yield 'event: bye\ndata: {"reason": "server busy or shutting down"}\n\n'

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/v1/targets/{target}/series", tags=["web"])
    def series(
        target: str,
        _: Viewer,
        names: Annotated[str, Query(min_length=1, description="comma-separated series")],
        points: Annotated[int, Query(ge=2, le=2000)] = 300,
    ) -> dict[str, Any]:
        """The monitor's sliding window of each series (oldest first, thinned to
        ``points``), with its unit and thresholds for the chart. Names that are not catalog
        series (e.g. a verification's ``sqi`` check) are listed under ``unknown``."""
        wanted = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
        unknown = [n for n in wanted if n not in catalog]
        known = [n for n in wanted if n in catalog]
        if not known or len(wanted) > MAX_SERIES:
            raise HTTPException(
                status_code=422,
                detail=f"1-{MAX_SERIES} catalog series, comma-separated; unknown: "
                f"{', '.join(unknown) or '-'}",
            )
        out = []
        for name in known:
            spec = catalog[name]
            ts, values = monitor.window(target, name)
            out.append(
                {
                    "name": name,
                    "unit": spec.unit,
                    "warn": spec.warn,
                    "crit": spec.crit,
                    "bad": spec.bad,
                    "points": thin(ts, values, points),
                }
            )
        return {"target": target, "series": out, "unknown": unknown}

    @router.get("/v1/web/sqi", tags=["web"])
    def sqi_all(_: Viewer, target: str | None = None) -> list[dict[str, Any]]:
        """SQI per monitored target (40/30/20/10 weights; alert below 80)."""
        targets = [target] if target else monitor.targets()
        return [sqi_json(t, sqi(t)) for t in sorted(targets)]

    @router.get("/v1/web/regions", tags=["web"])
    def region_view(_: Viewer) -> dict[str, Any]:
        """Complaint rate per station area from the monitor, hot areas marked."""
        latest = {}
        for target in monitor.targets():
            point = monitor.latest(target, COMPLAINTS)
            if point is not None:
                latest[target] = point[1]
        return region_tree(regions, latest)

    return router


def _static(name: str) -> FileResponse:
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if name == "index.html":
        headers |= {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
    return FileResponse(STATIC / name, media_type=PAGES[name], headers=headers)


def engine_web_router(engine: EngineApi, hub: EventHub, **options: Any) -> APIRouter:
    """web_router over a running Engine's monitor, analyzer and catalog."""
    options.setdefault("domain", engine.domain)  # the site's regions and targets
    return web_router(hub, engine.monitor, engine.catalog, engine.analyzer.sqi, **options)


__all__ = ["EventHub", "engine_web_router", "judge_areas", "region_tree", "web_router"]
