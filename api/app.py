"""FastAPI app factory.

    app = create_app(store, submit=engine.submit, approvals=engine)

GET /healthz, GET /v1/incidents, GET /v1/incidents/{id} (timeline + RCA report),
POST /v1/samples (JSON batch: ``{"samples": [...]}`` or a bare list), POST
/v1/samples/prometheus (text exposition), POST /v1/metrics (OTLP/HTTP JSON), GET /v1/intake
(counters by reason), POST /v1/incidents/{id}/approve and /reject (``{"comment", "by"}``:
move an incident waiting in awaiting_approval on; 404 unknown, 409 not waiting). One bad
sample is rejected with its index and reason; the rest of the batch is still taken; a busy
intake answers 429 with Retry-After, never a silent drop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Approver, Auth, Principal, Role, install, note_audit, require
from api.ingest import MAX_BODY_BYTES, busy, ingest_router, push_status
from loop import __version__
from loop.errors import IllegalTransition, Overloaded
from loop.monitor import IngestResult
from loop.state import State
from loop.store import IncidentStore, IncidentView

Submit = Callable[[Iterable[Mapping[str, Any]]], IngestResult]


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


class Approvals(Protocol):
    """What approving needs from the daemon (loop.daemon.Engine has both)."""

    def approve(self, incident_id: str, by: str = ..., comment: str = ...) -> IncidentView: ...

    def reject(self, incident_id: str, by: str = ..., comment: str = ...) -> IncidentView: ...


class ApprovalIn(BaseModel):
    comment: str = Field("", max_length=2000)
    by: str = Field(
        "api",
        min_length=1,
        max_length=200,
        description="who decides, when authentication is off; otherwise the caller's token",
    )


class IncidentSummary(BaseModel):
    id: str
    target: str
    state: State
    fault: str | None
    reason: str
    opened_at: str
    updated_at: str


def _summary(incident: IncidentView) -> IncidentSummary:
    return IncidentSummary(
        id=incident.id,
        target=incident.target,
        state=incident.state,
        fault=incident.fault,
        reason=incident.reason,
        opened_at=incident.opened_at.isoformat(),
        updated_at=incident.updated_at.isoformat(),
    )


def ingest_response(result: IngestResult) -> JSONResponse:
    """The answer to any push: 413 for a batch refused whole, 422 when nothing was usable."""
    body = IngestOut(
        accepted=result.accepted,
        stale=result.stale,
        late=result.late,
        duplicate=result.duplicate,
        rejected=[
            RejectionOut(index=r.index, error=r.error, reason=r.reason) for r in result.rejected
        ],
    )
    status = push_status(
        any(r.reason == "oversized_batch" for r in result.rejected),
        bool(result.rejected),
        bool(result.accepted or result.stale),
    )
    return JSONResponse(body.model_dump(), status_code=status)


def create_app(
    store: IncidentStore,
    submit: Submit | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
    units: Mapping[str, str] | None = None,
    approvals: Approvals | None = None,
    auth: Auth | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    chat: APIRouter | None = None,
    web: APIRouter | None = None,
) -> FastAPI:
    app = FastAPI(title="mendloop", version=__version__)
    install(app, auth, max_body_bytes)
    if chat is not None:  # signed chat callbacks (api/chatops): their own auth, not tokens
        app.include_router(chat)
    if web is not None:  # the web page, its event stream and data (api/web.py)
        app.include_router(web)
    viewer = [Depends(require(Role.viewer))]
    if submit is not None:  # Prometheus text and OTLP/HTTP JSON pushes (api/ingest.py)
        app.include_router(
            ingest_router(submit, units=units), dependencies=[Depends(require(Role.operator))]
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "intake": submit is not None}

    @app.get("/v1/incidents", response_model=list[IncidentSummary], dependencies=viewer)
    def list_incidents(
        state: State | None = None,
        target: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[IncidentSummary]:
        return [_summary(i) for i in store.list(state=state, target=target, limit=limit)]

    @app.get("/v1/incidents/{incident_id}", response_model=IncidentView, dependencies=viewer)
    def get_incident(incident_id: str) -> IncidentView:
        incident = store.get(incident_id)
        if incident is None:
            raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
        return incident

    def _decide(
        request: Request, who: Principal, incident_id: str, body: ApprovalIn | None, approve: bool
    ) -> IncidentSummary:
        if approvals is None:
            raise HTTPException(status_code=503, detail="this server does not take approvals")
        if store.get(incident_id) is None:
            raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
        body = body or ApprovalIn()
        by = body.by if who.via == "anonymous" else who.name
        act = approvals.approve if approve else approvals.reject
        note_audit(request, f"{'approve' if approve else 'reject'} {incident_id} as {by}")
        try:
            return _summary(act(incident_id, by=by, comment=body.comment))
        except IllegalTransition as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc

    @app.post("/v1/incidents/{incident_id}/approve", response_model=IncidentSummary)
    def approve(
        request: Request,
        incident_id: str,
        who: Approver,
        body: ApprovalIn | None = None,
    ) -> IncidentSummary:
        return _decide(request, who, incident_id, body, approve=True)

    @app.post("/v1/incidents/{incident_id}/reject", response_model=IncidentSummary)
    def reject(
        request: Request,
        incident_id: str,
        who: Approver,
        body: ApprovalIn | None = None,
    ) -> IncidentSummary:
        return _decide(request, who, incident_id, body, approve=False)

    @app.post(
        "/v1/samples", response_model=IngestOut, dependencies=[Depends(require(Role.operator))]
    )
    def post_samples(payload: Annotated[Any, Body()]) -> Any:
        if submit is None:
            raise HTTPException(status_code=503, detail="this server does not take samples")
        batch = payload.get("samples") if isinstance(payload, dict) else payload
        if not isinstance(batch, list):
            raise HTTPException(
                status_code=422, detail='expected {"samples": [...]} or a JSON list of samples'
            )
        try:
            result = submit(batch)
        except Overloaded as exc:
            raise busy(exc) from exc
        return ingest_response(result)

    @app.get("/v1/intake", dependencies=viewer)
    def intake() -> dict[str, Any]:
        """What the monitor took and everything it did not, counted by reason."""
        if stats is None:
            raise HTTPException(status_code=503, detail="this server does not take samples")
        return stats()

    return app
