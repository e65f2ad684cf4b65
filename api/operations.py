"""Running the service: probes, metrics, intake, automation pause/resume, audit and tokens.

GET  /healthz            alive (no token: for probes)
GET  /readyz             Neo4j, SQL, rules, the loop: 200, or 503 naming what failed
GET  /metrics            Prometheus text (viewer; Prometheus sends the token as bearer)
POST /v1/samples         JSON samples (operator)        GET /v1/intake (viewer)
GET  /v1/automation      viewer; POST /v1/automation/pause | resume (operator)
GET  /v1/whoami          the caller's name and role (viewer)
GET  /v1/audit, /v1/tokens   admin
"""

from __future__ import annotations

import concurrent.futures
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.auth import Admin, AuditEntry, Auth, Operator, TokenInfo, Viewer, note_audit
from api.deps import Services, Svc
from api.ingest import busy, push_status
from api.metrics import CONTENT_TYPE, LoopProbe
from api.schemas import CheckOut, HealthOut, PauseIn, ReadyOut, ResumeIn, WhoAmI, errors
from kernel import __version__
from kernel.approval import AutomationStatus
from kernel.errors import Overloaded
from loop.monitor import IngestResult

router = APIRouter()
OPS: list[str | Enum] = ["operations"]  # FastAPI's tag type
NEO4J_CHECK_S = 3.0
_checks = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")


# -- probes -------------------------------------------------------------------------------


@router.get("/healthz", response_model=HealthOut, tags=OPS)
def healthz(svc: Svc) -> HealthOut:
    """The process answers (liveness). No token needed."""
    return HealthOut(status="ok", version=__version__, intake=svc.submit is not None)


def _sql(svc: Services) -> CheckOut:
    try:
        with svc.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready; its class says which
        return CheckOut(ok=False, detail=f"SQL unreachable ({type(exc).__name__})")
    return CheckOut(ok=True, detail=svc.store.engine.dialect.name)


def _neo4j(svc: Services) -> CheckOut:
    engine = svc.need_engine()
    future = _checks.submit(engine.graph.schema_version)
    try:
        version = future.result(timeout=NEO4J_CHECK_S)
    except concurrent.futures.TimeoutError:
        return CheckOut(ok=False, detail=f"Neo4j did not answer within {NEO4J_CHECK_S:g} s")
    except Exception as exc:
        return CheckOut(ok=False, detail=f"Neo4j unreachable ({type(exc).__name__})")
    return CheckOut(ok=True, detail=f"schema version {version}")


def _rules(svc: Services) -> CheckOut:
    engine = svc.need_engine()
    if errors := engine.upkeep.errors:
        return CheckOut(
            ok=False, detail=f"last reload refused ({len(errors)} error(s), first: {errors[0]})"
        )
    active = len(engine.analyzer.active_rules)
    return CheckOut(ok=active > 0, detail=f"{active} rule(s) active")


def _loop(svc: Services) -> CheckOut:
    ok, detail = LoopProbe(svc.need_engine()).status()  # what fails in the loop, since when
    return CheckOut(ok=ok, detail=detail)


@router.get(
    "/readyz",
    response_model=ReadyOut,
    tags=OPS,
    responses={503: {"model": ReadyOut, "description": "a check failed (named in checks)"}},
)
def readyz(svc: Svc) -> Any:
    """Ready to serve: SQL reachable and, with the engine, Neo4j reachable, rules loaded
    without errors and the loop running. 503 names the failing check(s). No token needed."""
    checks = {"sql": _sql(svc)}
    if svc.engine is not None:
        checks |= {"neo4j": _neo4j(svc), "rules": _rules(svc), "loop": _loop(svc)}
    ready = all(c.ok for c in checks.values())
    body = ReadyOut(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    tags=OPS,
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(401, 403),
    },
)
def metrics(svc: Svc, who: Viewer) -> Response:
    """The engine's Prometheus metrics (text format 0.0.4): stage latencies, queue depths,
    incidents by state, executions by outcome, API requests, intake counters."""
    if svc.metrics is None:
        raise HTTPException(503, "metrics are off on this server")
    return Response(svc.metrics.exposition(), media_type=CONTENT_TYPE)


# -- intake -------------------------------------------------------------------------------


class RejectionOut(BaseModel):
    index: int
    error: str
    reason: str


class IngestOut(BaseModel):
    accepted: int
    stale: int
    late: int
    duplicate: int
    rejected: list[RejectionOut]


def ingest_response(result: IngestResult) -> JSONResponse:
    """The answer to any push: 413 for a batch refused whole, 422 when nothing was usable.

    The body is ``IngestOut``, built as plain data: a flood of refusals costs one dict per
    rejection, not one model each."""
    body = {
        "accepted": result.accepted,
        "stale": result.stale,
        "late": result.late,
        "duplicate": result.duplicate,
        "rejected": [
            {"index": r.index, "error": r.error, "reason": r.reason} for r in result.rejected
        ],
    }
    status = push_status(
        any(r.reason == "oversized_batch" for r in result.rejected),
        bool(result.rejected),
        bool(result.accepted or result.stale),
    )
    return JSONResponse(body, status_code=status)


@router.post(
    "/v1/samples",
    response_model=IngestOut,
    tags=["ingest"],
    responses=errors(401, 403, 413, 422, 503) | {429: {"description": "intake busy: Retry-After"}},
)
def post_samples(svc: Svc, who: Operator, payload: Annotated[Any, Body()]) -> Any:
    """``{"samples": [...]}`` or a bare list; each bad sample is rejected with its index and
    reason and the rest taken (422 only when nothing was). New series count against the
    calling token's own limits as well as the server's."""
    if svc.submit is None:
        raise HTTPException(503, "this server does not take samples")
    batch = payload.get("samples") if isinstance(payload, dict) else payload
    if not isinstance(batch, list):
        raise HTTPException(422, 'expected {"samples": [...]} or a JSON list of samples')
    try:
        result = svc.submit(batch, owner=who.token_id)
    except Overloaded as exc:
        raise busy(exc) from exc
    return ingest_response(result)


@router.get("/v1/intake", tags=["ingest"], responses=errors(401, 403, 503))
def intake(svc: Svc, who: Viewer) -> dict[str, Any]:
    """What the monitor took and everything it did not, counted by reason."""
    if svc.stats is None:
        raise HTTPException(503, "this server does not take samples")
    return svc.stats()


# -- automation ---------------------------------------------------------------------------


def _automation(svc: Services) -> AutomationStatus:
    return svc.need_operations().automation()


@router.get(
    "/v1/automation", response_model=AutomationStatus, tags=OPS, responses=errors(401, 403, 503)
)
def automation(svc: Svc, who: Viewer) -> AutomationStatus:
    """Whether automatic fixes may run: paused everywhere and/or on some targets."""
    return _automation(svc)


@router.post(
    "/v1/automation/pause",
    response_model=AutomationStatus,
    tags=OPS,
    responses=errors(401, 403, 422, 503),
)
def pause(
    request: Request, svc: Svc, who: Operator, body: PauseIn | None = None
) -> AutomationStatus:
    """Pause automatic fixes everywhere (no target) or on one target: fixes that would run
    on their own wait for an approval instead; approved ones still run."""
    body = body or PauseIn()
    where = body.target or "everywhere"
    note_audit(request, f"pause automation {where} as {who.name}: {body.reason}"[:2000])
    return svc.need_operations().pause(body.target, by=who.name, reason=body.reason)


@router.post(
    "/v1/automation/resume",
    response_model=AutomationStatus,
    tags=OPS,
    responses=errors(401, 403, 404, 422, 503),
)
def resume(
    request: Request, svc: Svc, who: Operator, body: ResumeIn | None = None
) -> AutomationStatus:
    """Lift the global pause (no target) or one target's; 404 when there is none.
    Lifting the global pause leaves per-target pauses in place."""
    body = body or ResumeIn()
    where = f"on {body.target}" if body.target else "everywhere"
    note_audit(request, f"resume automation {where} as {who.name}")
    now = _automation(svc)
    paused = (
        now.paused if body.target is None else any(p.target == body.target for p in now.targets)
    )
    if not paused:
        raise HTTPException(404, f"automation is not paused {where}")
    return svc.need_operations().resume(body.target, by=who.name)


# -- who, audit, tokens -------------------------------------------------------------------


@router.get("/v1/whoami", response_model=WhoAmI, tags=["security"], responses=errors(401))
def whoami(who: Viewer) -> WhoAmI:
    """The caller as the API sees it (name and role of the token)."""
    return WhoAmI(name=who.name, role=who.role.value, via=who.via)


def _auth(request: Request) -> Auth:
    auth: Auth | None = request.app.state.auth
    if auth is None:
        raise HTTPException(
            503, "authentication is off (MENDLOOP_API_AUTH=false): no tokens, no audit log"
        )
    return auth


@router.get(
    "/v1/audit",
    response_model=list[AuditEntry],
    tags=["security"],
    responses=errors(401, 403, 503),
)
def audit(
    request: Request,
    who: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str | None, Query(max_length=100)] = None,
) -> list[AuditEntry]:
    """Who changed what, newest first: every mutating call, refused or not."""
    return _auth(request).audit.entries(limit=limit, actor=actor)


@router.get(
    "/v1/tokens",
    response_model=list[TokenInfo],
    tags=["security"],
    responses=errors(401, 403, 503),
)
def tokens(
    request: Request,
    who: Admin,
    all: Annotated[bool, Query(description="revoked ones too")] = False,
) -> list[TokenInfo]:
    """API tokens (never their secrets: those are shown once, by `mendloop token create`)."""
    return _auth(request).tokens.list(include_revoked=all)
