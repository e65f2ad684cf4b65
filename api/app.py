"""FastAPI app factory: the routers of api/ assembled over the engine (or a store alone).

    app = app_for(engine, auth=Auth.on(engine.store.engine))      # the daemon
    app = create_app(store, submit=monitor.ingest, approvals=...)  # one concern (tests)

Routers: api/incidents.py (incidents, report, plan, approve/reject/reanalyze/close/
escalate), api/knowledge_routes.py (similar cases, case CRUD + import, solutions),
api/rules_routes.py (rules, metric catalog), api/operations.py (healthz, readyz, metrics,
samples, intake, automation, whoami, audit, tokens), api/ingest.py (Prometheus text,
OTLP/HTTP JSON), api/remote_write.py (Prometheus remote-write) and api/alertmanager.py
(Alertmanager's webhook). Every route names its
least role (api/auth.py: viewer < operator < approver < admin); the OpenAPI document
carries it per operation (``x-mendloop-role`` and the bearer security scheme). What needs
the engine answers 503 on a server built without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api import incidents, knowledge_routes, operations, rules_routes
from api.alertmanager import alertmanager_router
from api.auth import Auth, Principal, Role, install, require
from api.deps import Approvals, EngineApi, Services, Submit
from api.ingest import MAX_BODY_BYTES, ingest_router
from api.metrics import ApiMetrics, ChatStatusSource, RequestMetrics
from api.operations import IngestOut, RejectionOut, ingest_response
from api.remote_write import Receiver, remote_write_router
from api.schemas import IncidentSummary
from kernel import __version__
from loop.alertmanager import AlertIntake
from loop.alertstate import AlertState
from loop.sources.remote_write_intake import RemoteWriteReceiver
from loop.store import IncidentStore
from rules.alerts import AlertMap, load_alert_map

ERROR_REF = "#/components/schemas/ErrorOut"
TAGS = [
    {"name": "incidents", "description": "incidents, their timeline, report and actions"},
    {"name": "knowledge", "description": "similar cases, cases, import, solutions"},
    {"name": "rules", "description": "the rules running, validation, reload"},
    {"name": "catalog", "description": "the metric catalog"},
    {"name": "operations", "description": "probes, metrics, automation pause/resume"},
    {
        "name": "ingest",
        "description": "samples in (JSON, Prometheus text, OTLP/HTTP JSON, remote-write) "
        "and Alertmanager's webhook",
    },
    {"name": "security", "description": "the caller, the audit log, API tokens (admin)"},
]
DESCRIPTION = (
    "The REST API of mendloop, a closed-loop AIOps remediation engine. Send "
    "`Authorization: Bearer mlt_...` (`mendloop token create NAME --role ROLE`); each "
    'operation names its least role in `x-mendloop-role`. Errors are `{"detail": ...}`.'
)


def _ingest_role(request: Request) -> Principal:
    """The push endpoints change state (operator); their counters are for viewers."""
    needed = Role.viewer if request.method in ("GET", "HEAD") else Role.operator
    return require(needed)(request)


def create_app(
    store: IncidentStore,
    submit: Submit | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
    units: Mapping[str, str] | None = None,
    approvals: Approvals | None = None,
    auth: Auth | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    engine: EngineApi | None = None,
    web: APIRouter | None = None,
    chat: APIRouter | None = None,
    chat_status: ChatStatusSource | None = None,
    remote_write: Receiver | None = None,
    alerts: AlertIntake | None = None,
) -> FastAPI:
    """The API over ``store``; with ``engine`` (loop.daemon.Engine) also knowledge, rules,
    catalog, automation, what people do (``engine.operations``) and the loop's metrics.
    ``approvals``: approve/reject alone (a server of one concern). ``auth=None``: no
    tokens (every caller is the anonymous admin; the server logs that at start). ``web``:
    the web page's router; ``chat``: the ChatOps router (signed callbacks, their own
    authentication) and ``chat_status`` its counters for /metrics."""
    app = FastAPI(title="mendloop", version=__version__, description=DESCRIPTION, openapi_tags=TAGS)
    metrics = ApiMetrics(store, engine, stats, chat_status)
    people = engine.operations if engine is not None else None
    if engine is not None:
        engine.listeners.append(metrics.on_stage)
    app.state.services = Services(
        store=store,
        engine=engine,
        submit=submit,
        stats=stats,
        approvals=approvals if approvals is not None else people,
        operations=people,
        metrics=metrics,
    )
    install(app, auth, max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    routers: list[tuple[APIRouter, bool]] = []  # (router, its roles come from ingest)
    if submit is not None:  # Prometheus text and OTLP/HTTP JSON pushes (api/ingest.py)
        pushes = ingest_router(submit, units=units, max_body_bytes=max_body_bytes)
        app.include_router(pushes, dependencies=[Depends(_ingest_role)])
        routers.append((pushes, True))
    if remote_write is not None:  # Prometheus remote-write (api/remote_write.py)
        writes = remote_write_router(remote_write, max_body_bytes)
        metrics.export(
            "mendloop_remote_write", "Remote-write requests and samples", "counter",
            remote_write.counters,
        )  # fmt: skip
        app.include_router(writes, dependencies=[Depends(_ingest_role)])
        routers.append((writes, True))
    if alerts is not None:  # Alertmanager's webhook (api/alertmanager.py)
        webhook = alertmanager_router(alerts)
        metrics.export(
            "mendloop_alertmanager_alerts", "Alertmanager alerts by outcome", "outcome",
            alerts.counters,
        )  # fmt: skip
        app.include_router(webhook, dependencies=[Depends(_ingest_role)])
        routers.append((webhook, True))
    if chat is not None:  # signed chat callbacks (api/chatops): their own auth, not tokens
        app.include_router(chat)
    app.include_router(operations.router)
    app.include_router(incidents.router)
    app.include_router(knowledge_routes.router)
    app.include_router(rules_routes.router)
    if web is not None:  # the web page, its event stream and data (api/web.py)
        app.include_router(web)
    routers += [
        (r, False)
        for r in (
            web,
            chat,
            operations.router,
            incidents.router,
            knowledge_routes.router,
            rules_routes.router,
        )
        if r is not None
    ]
    # FastAPI documents replacing app.openapi to extend the schema; mypy sees a method
    app.openapi = lambda: _openapi(app, routers)  # type: ignore[method-assign]
    return app


def app_for(
    engine: EngineApi,
    auth: Auth | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    web: APIRouter | None = None,
    chat: APIRouter | None = None,
    chat_status: ChatStatusSource | None = None,
    submit: Submit | None = None,
    remote_write: Receiver | None = None,
) -> FastAPI:
    """The daemon's whole API over a built engine (``web``, ``chat``: as create_app;
    ``submit``, ``remote_write``: the pushes' ways in when not the engine's own, e.g. a
    worker's forwarding intake, loop/cluster/forward.py and remote_write.py)."""
    return create_app(
        engine.store,
        submit=submit or engine.submit,
        stats=engine.monitor.stats,
        units={name: spec.unit for name, spec in engine.catalog.items()},
        auth=auth,
        max_body_bytes=max_body_bytes,
        engine=engine,
        web=web,
        chat=chat,
        chat_status=chat_status,
        remote_write=remote_write or RemoteWriteReceiver(engine.monitor, took=engine.took),
        alerts=AlertIntake(
            alert_map_of(engine), submit or engine.submit, AlertState(engine.store.engine)
        ),
    )


def alert_map_of(engine: EngineApi) -> AlertMap:
    """The site's alert map (its packs' and its own alerts.yaml, composed and checked by
    site check), or the one file ``MENDLOOP_ALERTS_FILE`` names instead; an alert no
    mapping takes is unmapped, and counted."""
    path = engine.settings.alerts_file
    if path is not None:
        return load_alert_map(path, engine.catalog)
    return AlertMap(list(engine.estate.alerts))


def route_role(route: APIRoute) -> Role | None:
    """The least role a route demands (from its ``require_<role>`` dependency)."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        name = getattr(dependency.call, "__name__", "")
        if name.startswith("require_"):
            return Role(name.removeprefix("require_"))
        pending += dependency.dependencies
    return None


def _roles(routers: list[tuple[APIRouter, bool]]) -> dict[tuple[str, str], Role | None]:
    """(path, method) -> the least role, read from each router's own routes."""
    roles: dict[tuple[str, str], Role | None] = {}
    for router, pushes in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for method in route.methods or ():
                role = route_role(route)
                if pushes:
                    role = Role.viewer if method in ("GET", "HEAD") else Role.operator
                roles[(route.path, method.lower())] = role
    return roles


def _auth_errors(responses: dict[str, Any], role: Role) -> None:
    """401 on every guarded operation; 403 only where a token can be too low (not viewer)."""
    error = {"content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}
    responses.setdefault("401", {"description": "no valid API token", **error})
    if role != Role.viewer:
        responses.setdefault("403", {"description": f"the token's role is below {role}", **error})
    elif "403" in responses:
        del responses["403"]


def _openapi(app: FastAPI, routers: list[tuple[APIRouter, bool]]) -> dict[str, Any]:
    """FastAPI's schema plus who may call what: the bearer scheme and each operation's role."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "mlt_<id>_<secret>"}
    }
    # routes added after create_app (a worker's /v1/cluster) carry their role too
    roles = {
        (route.path, method.lower()): route_role(route)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    roles |= _roles(routers)
    for path, operations_of in schema["paths"].items():
        for method, operation in operations_of.items():
            role = roles.get((path, method))
            if role is None:
                operation["x-mendloop-role"] = "none"
                operation["security"] = []
                continue
            operation["x-mendloop-role"] = role.value
            operation["security"] = [{"bearer": []}]
            text = operation.get("description", "")
            operation["description"] = f"{text}\n\nNeeds role: **{role.value}** or above.".strip()
            _auth_errors(operation["responses"], role)
    app.openapi_schema = schema
    return schema


__all__ = [
    "IncidentSummary",
    "IngestOut",
    "RejectionOut",
    "app_for",
    "create_app",
    "ingest_response",
    "route_role",
]
