"""Incidents: list (filters, keyset pagination), detail, RCA report, plan, and what people do
to them (approve, reject, re-analyse, close, escalate).

    GET  /v1/incidents?state=&target=&fault=&opened_since=&opened_until=&limit=&cursor=
         -> [IncidentSummary], newest first; X-Total-Count, and Link rel="next" + X-Next-Cursor
            while more remain
    GET  /v1/incidents/{id}            timeline, findings, report, decision, plan, runs, ...
    GET  /v1/incidents/{id}/report     JSON, or Markdown (?format=markdown / Accept)
    GET  /v1/incidents/{id}/plan       what an approval would let run (and its hash)
    POST /v1/incidents/{id}/approve | reject      approver; ``plan_hash`` binds the approval
    POST /v1/incidents/{id}/reanalyze | propose | close | escalate   operator

The engine's refusals are mapped at this edge: IllegalTransition and PlanChanged are 409,
ApprovalRefused (two-person rule) 403; ``by`` is always the caller's token name.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from api.auth import Approver, Operator, Viewer, note_audit
from api.deps import Svc, by_of
from api.schemas import (
    ApprovalIn,
    CommentIn,
    IncidentDetail,
    IncidentSummary,
    ProposeIn,
    RunOut,
    errors,
)
from kernel import untrusted
from kernel.approval import ApprovalPlan
from kernel.errors import (
    ApprovalRefused,
    IllegalTransition,
    MendloopError,
    PlanChanged,
    PlanHashRequired,
)
from kernel.models import RCAReport
from kernel.state import State
from loop.db.schema import IncidentRecord
from loop.report import render_markdown
from loop.store import IncidentView

router = APIRouter(tags=["incidents"])

MARKDOWN = "text/markdown"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def summary_of(incident: IncidentView | IncidentRecord) -> IncidentSummary:
    return IncidentSummary(
        id=incident.id,
        target=incident.target,
        state=State(incident.state),
        fault=incident.fault,
        reason=incident.reason,
        opened_at=_utc(incident.opened_at).isoformat(),
        updated_at=_utc(incident.updated_at).isoformat(),
    )


# -- listing ------------------------------------------------------------------------------


def encode_cursor(opened_at: datetime, incident_id: str) -> str:
    """Opaque keyset cursor: where the next page starts (newest first)."""
    raw = json.dumps([_utc(opened_at).isoformat(), incident_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The cursor's position; 400 when it is not one this API handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, incident_id = untrusted.loads(raw)
        return _utc(datetime.fromisoformat(at)), str(incident_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise HTTPException(400, "cursor is not valid: use the X-Next-Cursor of a page") from exc


def _filtered(query: Any, filters: dict[str, Any]) -> Any:
    if filters["states"]:
        query = query.where(col(IncidentRecord.state).in_([s.value for s in filters["states"]]))
    if filters["target"] is not None:
        query = query.where(IncidentRecord.target == filters["target"])
    if filters["fault"] is not None:
        query = query.where(IncidentRecord.fault == filters["fault"])
    if filters["since"] is not None:
        query = query.where(col(IncidentRecord.opened_at) >= filters["since"])
    if filters["until"] is not None:
        query = query.where(col(IncidentRecord.opened_at) < filters["until"])
    return query


def page_of(
    svc_store: Any, filters: dict[str, Any], limit: int, cursor: str | None
) -> tuple[list[IncidentSummary], int, str | None]:
    """One page newest first, the total matching the filters, and the next cursor."""
    opened, ident = col(IncidentRecord.opened_at), col(IncidentRecord.id)
    with Session(svc_store.engine) as session:
        total = session.exec(_filtered(select(func.count()).select_from(IncidentRecord), filters))
        query = _filtered(select(IncidentRecord), filters)
        if cursor is not None:
            at, last_id = decode_cursor(cursor)
            query = query.where(
                or_(opened < at, and_(opened == at, ident < last_id))
            )
        query = query.order_by(opened.desc(), ident.desc()).limit(limit + 1)
        rows = list(session.exec(query))
        count = int(total.one())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].opened_at, rows[-1].id) if more and rows else None
    return [summary_of(r) for r in rows], count, next_cursor


_PAGE_HEADERS = {
    "X-Total-Count": {
        "description": "incidents matching the filters",
        "schema": {"type": "integer"},
    },
    "X-Next-Cursor": {
        "description": "cursor of the next page (absent on the last)",
        "schema": {"type": "string"},
    },
    "Link": {
        "description": '<...&cursor=...>; rel="next" while more remain',
        "schema": {"type": "string"},
    },
}


@router.get(
    "/v1/incidents",
    response_model=list[IncidentSummary],
    responses={200: {"headers": _PAGE_HEADERS}, **errors(400, 401, 403, 422)},
)
def list_incidents(
    request: Request,
    response: Response,
    svc: Svc,
    who: Viewer,
    state: Annotated[list[State] | None, Query(description="repeat for several")] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    fault: Annotated[str | None, Query(max_length=200)] = None,
    opened_since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    opened_until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> list[IncidentSummary]:
    """Incidents newest first, filtered; the page size is ``limit``, the next page is at the
    ``Link: rel="next"`` header (or pass ``X-Next-Cursor`` as ``cursor``)."""
    since = _utc(opened_since) if opened_since else None
    until = _utc(opened_until) if opened_until else None
    if since and until and since >= until:
        raise HTTPException(422, "opened_since must be before opened_until")
    filters = {"states": state, "target": target, "fault": fault, "since": since, "until": until}
    items, total, next_cursor = page_of(svc.store, filters, limit, cursor)
    response.headers["X-Total-Count"] = str(total)
    if next_cursor is not None:
        response.headers["X-Next-Cursor"] = next_cursor
        url = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return items


# -- one incident -------------------------------------------------------------------------


def incident_or_404(svc: Svc, incident_id: str) -> IncidentView:
    incident = svc.store.get(incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return incident


def _runs(svc: Svc, incident_id: str) -> tuple[RunOut, ...]:
    if svc.engine is None:
        return ()
    return tuple(
        RunOut(
            key=r.key,
            phase=r.phase,
            playbook=r.playbook,
            status=r.status,
            rc=r.rc,
            changed=r.changed,
            started_at=r.started_at,
            ended_at=r.ended_at,
            events=list(r.events or []),
            diff=list(r.diff or []),
            note=r.note,
        )
        for r in svc.engine.ledger.runs(incident_id)
    )


@router.get(
    "/v1/incidents/{incident_id}", response_model=IncidentDetail, responses=errors(401, 403, 404)
)
def get_incident(incident_id: str, svc: Svc, who: Viewer) -> IncidentDetail:
    """Everything about one incident: every transition with its time and note, the findings,
    the RCA report, the decision (its match and reason), the plan and approval, the
    execution, the verification checks and every playbook run (events, dry-run diff)."""
    incident = incident_or_404(svc, incident_id)
    return IncidentDetail.model_validate({**dict(incident), "runs": _runs(svc, incident_id)})


def _wants_markdown(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "markdown"
    accept = request.headers.get("accept", "")
    return MARKDOWN in accept and "application/json" not in accept


@router.get(
    "/v1/incidents/{incident_id}/report",
    response_model=RCAReport,
    responses={
        200: {"content": {MARKDOWN: {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 422),
    },
)
def get_report(
    request: Request,
    incident_id: str,
    svc: Svc,
    who: Viewer,
    format: Annotated[
        str | None, Query(pattern="^(json|markdown)$", description="json (default) or markdown")
    ] = None,
) -> Any:
    """The RCA report: JSON, or Markdown with ``?format=markdown`` / ``Accept: text/markdown``."""
    incident = incident_or_404(svc, incident_id)
    if incident.report is None:
        raise HTTPException(404, f"incident {incident_id} has no RCA report yet ({incident.state})")
    if _wants_markdown(request, format):
        return PlainTextResponse(
            render_markdown(incident.report), media_type=f"{MARKDOWN}; charset=utf-8"
        )
    return incident.report


@router.get(
    "/v1/incidents/{incident_id}/plan",
    response_model=ApprovalPlan,
    responses=errors(401, 403, 404),
)
def get_plan(incident_id: str, svc: Svc, who: Viewer) -> ApprovalPlan:
    """What approving would let run: playbook, extra vars, hosts, the dry run's diff, the
    rollback, and ``plan_hash`` to send back with the approval."""
    incident = incident_or_404(svc, incident_id)
    plan = incident.plan
    if svc.operations is not None:
        with engine_errors():
            plan = svc.operations.plan(incident_id)
    if plan is None:
        raise HTTPException(404, f"incident {incident_id} has no plan ({incident.state})")
    return plan


# -- actions ------------------------------------------------------------------------------


@contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's refusals as HTTP answers (clear 4xx, never a 500)."""
    try:
        yield
    except PlanHashRequired as exc:  # the message names the current plan_hash
        raise HTTPException(428, str(exc)) from exc
    except PlanChanged as exc:
        current = f" (current plan_hash {exc.current_hash})" if exc.current_hash else ""
        raise HTTPException(409, f"{exc}{current}") from exc
    except ApprovalRefused as exc:
        raise HTTPException(403, str(exc)) from exc
    except IllegalTransition as exc:
        raise HTTPException(409, str(exc)) from exc
    except MendloopError as exc:
        raise HTTPException(422, str(exc)) from exc


def _act(
    request: Request,
    svc: Svc,
    incident_id: str,
    what: str,
    call: Callable[[], IncidentView],
) -> IncidentSummary:
    incident_or_404(svc, incident_id)
    note_audit(request, what)
    with engine_errors():
        return summary_of(call())


ACTION_ERRORS = errors(401, 403, 404, 409, 422, 503)
APPROVE_ERRORS = errors(401, 403, 404, 409, 422, 428, 503)


@router.post(
    "/v1/incidents/{incident_id}/approve",
    response_model=IncidentSummary,
    responses=APPROVE_ERRORS,
)
def approve(
    request: Request, incident_id: str, svc: Svc, who: Approver, body: ApprovalIn | None = None
) -> IncidentSummary:
    """Let the waiting fix run. The body names the plan approved, ``plan_hash`` from
    ``GET .../plan``: without it 428 (the answer names the current hash), and 409 when the
    plan changed since (look at it again); the approval holds for that plan only. The
    requester of a high-risk fix cannot approve it (403, two-person rule)."""
    return _decide(request, incident_id, svc, who, body, approve=True)


@router.post(
    "/v1/incidents/{incident_id}/reject",
    response_model=IncidentSummary,
    responses=ACTION_ERRORS,
)
def reject(
    request: Request, incident_id: str, svc: Svc, who: Approver, body: ApprovalIn | None = None
) -> IncidentSummary:
    """Refuse the waiting fix: the incident ends ``rejected``, nothing runs."""
    return _decide(request, incident_id, svc, who, body, approve=False)


def _decide(
    request: Request, incident_id: str, svc: Svc, who: Any, body: ApprovalIn | None, approve: bool
) -> IncidentSummary:
    if svc.approvals is None:
        raise HTTPException(503, "this server does not take approvals")
    body = body or ApprovalIn()
    by = by_of(who.name, who.via, body.by)
    kwargs: dict[str, Any] = {"by": by, "comment": body.comment}
    if approve and body.plan_hash is not None:
        kwargs["plan_hash"] = body.plan_hash
    act = svc.approvals.approve if approve else svc.approvals.reject
    verb = "approve" if approve else "reject"
    hashed = f" plan {body.plan_hash[:12]}" if approve and body.plan_hash else ""
    return _act(
        request,
        svc,
        incident_id,
        f"{verb} {incident_id}{hashed} as {by}",
        lambda: act(incident_id, **kwargs),
    )


@router.post(
    "/v1/incidents/{incident_id}/reanalyze",
    response_model=IncidentSummary,
    responses=ACTION_ERRORS,
)
def reanalyze(request: Request, incident_id: str, svc: Svc, who: Operator) -> IncidentSummary:
    """Run the analysis (and then the decision) again on the incident's findings; allowed
    while it is analysed, decided or waiting for approval (409 otherwise)."""
    ops = svc.need_operations()
    return _act(
        request,
        svc,
        incident_id,
        f"reanalyze {incident_id} as {who.name}",
        lambda: ops.reanalyze(incident_id, by=who.name),
    )


@router.post(
    "/v1/incidents/{incident_id}/propose",
    response_model=IncidentSummary,
    responses=ACTION_ERRORS,
)
def propose(
    request: Request, incident_id: str, body: ProposeIn, svc: Svc, who: Operator
) -> IncidentSummary:
    """Propose another library solution (analysed, decided or waiting incidents): it always
    waits for an approval, and its requester cannot approve it alone when it is high risk."""
    ops = svc.need_operations()
    return _act(
        request,
        svc,
        incident_id,
        f"propose {body.solution_id} for {incident_id} as {who.name}",
        lambda: ops.propose(incident_id, body.solution_id, by=who.name),
    )


@router.post(
    "/v1/incidents/{incident_id}/close",
    response_model=IncidentSummary,
    responses=ACTION_ERRORS,
)
def close(
    request: Request, incident_id: str, body: CommentIn, svc: Svc, who: Operator
) -> IncidentSummary:
    """Close an incident a person has dealt with (not while a playbook may run: 409)."""
    ops = svc.need_operations()
    return _act(
        request,
        svc,
        incident_id,
        f"close {incident_id} as {who.name}",
        lambda: ops.close(incident_id, by=who.name, comment=body.comment),
    )


@router.post(
    "/v1/incidents/{incident_id}/escalate",
    response_model=IncidentSummary,
    responses=ACTION_ERRORS,
)
def escalate(
    request: Request, incident_id: str, body: CommentIn, svc: Svc, who: Operator
) -> IncidentSummary:
    """Hand the incident to a person now, with why (not while a playbook may run: 409)."""
    ops = svc.need_operations()
    return _act(
        request,
        svc,
        incident_id,
        f"escalate {incident_id} as {who.name}",
        lambda: ops.escalate(incident_id, by=who.name, comment=body.comment),
    )
