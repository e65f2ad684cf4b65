"""Knowledge over REST: similar cases, case CRUD and import, solutions with their track
record and earned autonomy (rules and the catalog: api/rules_routes.py).

    GET    /v1/knowledge/search?text=...&fault=&symptoms=a:high,b:low&device=&k=5
    GET    /v1/incidents/{id}/similar?k=5       the incident's RCA report as the query
    GET    /v1/cases?after=&limit=&fault=        GET/PUT/DELETE /v1/cases/{id}, POST /v1/cases
    POST   /v1/cases/import?check=true           JSONL or CSV body, bad rows with line + why
    GET    /v1/solutions[/{id}]                  library + graph track record + autonomy

Cases are written the way ``mendloop kb import`` writes them (knowledge.tickets validates,
knowledge.importer embeds and writes one transaction), so a case from the API and one from
a file are the same thing. Neo4j being away is 503, not 500.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.auth import Operator, Viewer, note_audit
from api.deps import Services, Svc
from api.schemas import (
    AutonomyOut,
    BadRowOut,
    CasePage,
    ImportOut,
    SearchOut,
    SimilarCase,
    SolutionOut,
    TrackRecord,
    errors,
)
from kernel.domain import Domain, parse_symptom, symptom_keys
from kernel.errors import GraphUnavailable, KnowledgeError
from kernel.models import Case
from knowledge.importer import Importer
from knowledge.similarity import MatchQuery
from knowledge.tickets import BadRow, read_tickets, validate
from loop.decide import match_query

router = APIRouter()
KNOWLEDGE: list[str | Enum] = ["knowledge"]  # FastAPI's tag type

CSV_TYPES = ("text/csv", "application/csv")
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/json", "text/plain", "")


@contextmanager
def graph_errors() -> Iterator[None]:
    try:
        yield
    except GraphUnavailable as exc:
        raise HTTPException(503, "the knowledge graph (Neo4j) is unreachable; see /readyz") from exc
    except KnowledgeError as exc:
        raise HTTPException(422, str(exc)) from exc


def _domain(svc: Services) -> Any:
    if svc.domain is None:  # the site's, when an engine runs (else the twin's pack)
        svc.domain = svc.engine.domain if svc.engine is not None else Domain.load()
    return svc.domain


# -- similar cases ------------------------------------------------------------------------


def _search(svc: Services, query: Any, k: int) -> SearchOut:
    engine = svc.need_engine()
    with graph_errors():
        scored, timing = svc.matcher().match(query)
    threshold = engine.settings.match_min_similarity
    return SearchOut(
        query={
            "text": query.text,
            "fault": query.fault,
            "symptom_keys": list(query.symptom_keys),
            "device_type": query.device_type,
            "component": query.component,
        },
        matches=[
            SimilarCase(
                case_id=s.candidate.case.id,
                title=s.candidate.case.title,
                fault=s.candidate.case.fault,
                outcome=s.candidate.case.outcome,
                solution_id=s.candidate.solution.id,
                similarity=round(s.similarity, 4),
                same_problem=s.similarity >= threshold,
                features=s.features.as_dict(),
                explanation=s.as_match().explanation,
            )
            for s in scored[:k]
        ],
        timing_ms={name: round(value, 2) for name, value in vars(timing).items()},
    )


@router.get(
    "/v1/knowledge/search",
    response_model=SearchOut,
    tags=KNOWLEDGE,
    responses=errors(401, 403, 422, 503),
)
def search(
    svc: Svc,
    who: Viewer,
    text: Annotated[str | None, Query(max_length=5000, description="a description")] = None,
    incident: Annotated[str | None, Query(max_length=64, description="or an incident id")] = None,
    fault: Annotated[str | None, Query(max_length=200)] = None,
    symptoms: Annotated[str, Query(max_length=2000, description="series:direction,...")] = "",
    device: Annotated[str | None, Query(max_length=200)] = None,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SearchOut:
    """The past cases most like a description (``text``, optionally with the fault,
    symptoms, device type) or like an incident's RCA report (``incident``)."""
    if (text is None) == (incident is None):
        raise HTTPException(422, "give exactly one of text= or incident=")
    if incident is not None:
        return similar_to_incident(incident, svc, who, k)
    assert text is not None
    if not text.strip():
        raise HTTPException(422, "text must not be empty")
    domain = _domain(svc)
    if fault is not None and fault not in domain.faults:
        raise HTTPException(422, f"unknown fault {fault!r}; known: {', '.join(domain.faults)}")
    if device is not None and device not in domain.device_types:
        raise HTTPException(422, f"unknown device type {device!r}")
    tags = [s.strip() for s in symptoms.split(",") if s.strip()]
    try:
        for tag in tags:
            parse_symptom(tag)
    except ValueError as exc:
        raise HTTPException(422, f"symptoms: {exc}") from exc
    query = MatchQuery(
        text=text,
        fault=fault,
        symptom_keys=tuple(symptom_keys(tags)),
        device_type=device or "",
        component=domain.device_types.get(device or "", ""),
    )
    return _search(svc, query, k)


@router.get(
    "/v1/incidents/{incident_id}/similar",
    response_model=SearchOut,
    tags=["incidents", "knowledge"],
    responses=errors(401, 403, 404, 503),
)
def similar_to_incident(
    incident_id: str, svc: Svc, who: Viewer, k: Annotated[int, Query(ge=1, le=50)] = 5
) -> SearchOut:
    """Past cases like this incident, matched on its RCA report as the decision does."""
    incident = svc.store.get(incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id}")
    if incident.report is None or incident.report.top is None:
        raise HTTPException(404, f"incident {incident_id} has no RCA report to match on")
    return _search(svc, match_query(incident.report), k)


# -- cases --------------------------------------------------------------------------------


def _solution_ids(svc: Services) -> set[str]:
    with graph_errors():
        return {s.id for s in svc.need_engine().graph.solutions()}


def _validated(svc: Services, case: Case) -> Case:
    """The same checks as ``kb import``: the domain's vocabulary, a known solution."""
    engine = svc.need_engine()
    row = validate(
        1, case.model_dump(mode="json"), _domain(svc), engine.catalog, _solution_ids(svc)
    )
    if isinstance(row, BadRow):
        raise HTTPException(422, f"case {case.id}: {row.reason}")
    return row.case


def _write(svc: Services, cases: list[Case]) -> dict[str, Any]:
    engine = svc.need_engine()
    importer = Importer(engine.graph, engine.embedder, _domain(svc), batch_size=500, retry_s=10)
    with graph_errors():
        return importer.write(cases).as_dict()


def _case_or_404(svc: Services, case_id: str) -> Case:
    with graph_errors():
        case = svc.need_engine().graph.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id}")
    return case


@router.get("/v1/cases", response_model=CasePage, tags=KNOWLEDGE, responses=errors(401, 403, 503))
def list_cases(
    svc: Svc,
    who: Viewer,
    after: Annotated[str, Query(max_length=200, description="the last id of the page before")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    fault: Annotated[str | None, Query(max_length=200)] = None,
) -> CasePage:
    """Cases in id order, a page at a time."""
    with graph_errors():
        cases = svc.need_engine().graph.list_cases(after=after, limit=limit, fault=fault)
    return CasePage(
        items=[c.model_dump(mode="json") for c in cases],
        next_after=cases[-1].id if len(cases) == limit else None,
    )


@router.get(
    "/v1/cases/{case_id}", response_model=Case, tags=KNOWLEDGE, responses=errors(401, 403, 404, 503)
)
def get_case(case_id: str, svc: Svc, who: Viewer) -> Case:
    return _case_or_404(svc, case_id)


@router.post(
    "/v1/cases",
    response_model=Case,
    status_code=201,
    tags=KNOWLEDGE,
    responses=errors(401, 403, 409, 422, 503),
)
def create_case(request: Request, case: Case, svc: Svc, who: Operator) -> Case:
    """A new case (409 if the id exists: PUT replaces). Its solution's track record moves
    with its outcome, as for an imported ticket."""
    note_audit(request, f"create case {case.id}")
    with graph_errors():
        exists = svc.need_engine().graph.get_case(case.id) is not None
    if exists:
        raise HTTPException(409, f"case {case.id} exists; PUT /v1/cases/{case.id} replaces it")
    _write(svc, [_validated(svc, case)])
    return _case_or_404(svc, case.id)


@router.put(
    "/v1/cases/{case_id}",
    response_model=Case,
    tags=KNOWLEDGE,
    responses=errors(401, 403, 422, 503),
)
def put_case(request: Request, case_id: str, case: Case, svc: Svc, who: Operator) -> Case:
    """Create or replace a case; the track records move from its old solution/outcome to
    the new ones in the same transaction."""
    if case.id != case_id:
        raise HTTPException(422, f"the body's id {case.id!r} is not the path's {case_id!r}")
    note_audit(request, f"put case {case_id}")
    _write(svc, [_validated(svc, case)])
    return _case_or_404(svc, case_id)


@router.delete(
    "/v1/cases/{case_id}",
    status_code=204,
    tags=KNOWLEDGE,
    responses=errors(401, 403, 404, 503),
)
def delete_case(request: Request, case_id: str, svc: Svc, who: Operator) -> Response:
    """Delete a case; what it counted for in its solution's record is taken back."""
    note_audit(request, f"delete case {case_id}")
    with graph_errors():
        deleted = svc.need_engine().graph.delete_case(case_id)
    if not deleted:
        raise HTTPException(404, f"no case {case_id}")
    return Response(status_code=204)


UploadFormat = Literal["jsonl", "csv"]


def _upload_format(request: Request, fmt: str | None) -> UploadFormat:
    """``?format=`` (checked by the route's pattern), else the Content-Type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if fmt == "csv" or (fmt is None and media in CSV_TYPES):
        return "csv"
    if fmt == "jsonl" or (fmt is None and media in JSONL_TYPES):
        return "jsonl"
    raise HTTPException(
        415, f"send JSONL (application/x-ndjson) or CSV (text/csv), or ?format=; not {media}"
    )


@router.post(
    "/v1/cases/import",
    response_model=ImportOut,
    tags=KNOWLEDGE,
    responses=errors(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_cases(
    request: Request,
    svc: Svc,
    who: Operator,
    check: Annotated[bool, Query(description="validate only, write nothing")] = False,
    format: Annotated[
        str | None, Query(pattern="^(jsonl|csv)$", description="else from Content-Type")
    ] = None,
) -> ImportOut:
    """Historical tickets (the ``mendloop kb import`` formats) as the request body. Bad rows
    are reported with line, id and why and the good ones are still written (idempotent:
    re-importing an unchanged case writes nothing)."""
    fmt = _upload_format(request, format)
    body = await request.body()
    if not body.strip():
        raise HTTPException(400, "the body is empty: send the JSONL or CSV file")
    note_audit(request, f"import cases ({fmt}, {len(body)} bytes{', check only' if check else ''})")
    return await run_in_threadpool(_import, svc, body, fmt, check)


def _import(svc: Services, body: bytes, fmt: UploadFormat, check: bool) -> ImportOut:
    engine = svc.need_engine()
    solutions = _solution_ids(svc)
    with tempfile.TemporaryDirectory(prefix="mendloop-import-") as tmp:
        path = Path(tmp) / f"upload.{fmt}"
        path.write_bytes(body)
        try:
            rows = list(read_tickets(path, _domain(svc), engine.catalog, solutions))
        except KnowledgeError as exc:
            raise HTTPException(400, str(exc).replace(str(path), "upload")) from exc
    bad = [r for r in rows if isinstance(r, BadRow)]
    good = [r.case for r in rows if not isinstance(r, BadRow)]
    out = ImportOut(
        format=fmt,
        checked_only=check,
        rows=len(rows),
        good=len(good),
        bad=len(bad),
        bad_rows=[BadRowOut(line=r.line, id=r.id, reason=r.reason) for r in bad[:1000]],
    )
    if not check and good:
        counts = _write(svc, good)
        out.written, out.unchanged, out.embedded = (
            counts["written"],
            counts["unchanged"],
            counts["embedded"],
        )
    return out


@router.get("/v1/knowledge/stats", tags=KNOWLEDGE, responses=errors(401, 403, 503))
def knowledge_stats(svc: Svc, who: Viewer) -> dict[str, Any]:
    """What the graph holds (as ``mendloop kb stats``)."""
    with graph_errors():
        return svc.need_engine().graph.stats()


# -- solutions ----------------------------------------------------------------------------


def _solutions(svc: Services) -> list[SolutionOut]:
    engine = svc.need_engine()
    with graph_errors():
        records = {s.id: s for s in engine.graph.solutions()}
    autonomy: dict[str, list[AutonomyOut]] = {}
    for state in engine.ledger.autonomy_states():
        autonomy.setdefault(state.key.solution_id, []).append(
            AutonomyOut(
                fault=state.key.fault,
                target_class=state.key.target_class,
                level=state.level.value,
                successes=state.successes,
                failures=state.failures,
                streak=state.streak,
                reason=state.reason,
            )
        )
    out = []
    for sid, spec in sorted(engine.library.items()):
        record = records.get(sid)
        track = None
        if record is not None:
            track = TrackRecord(
                successes=record.successes,
                failures=record.failures,
                success_rate=round(record.success_rate, 4),
                mean_time_to_resolve_s=record.mean_time_to_resolve_s,
            )
        out.append(
            SolutionOut(
                id=sid,
                title=spec.title,
                faults=list(spec.faults),
                risk=spec.risk,
                playbook=spec.playbook,
                rollback_playbook=spec.rollback_playbook,
                check_mode=spec.check_mode,
                blast_radius=spec.blast_radius,
                description=spec.description,
                track_record=track,
                autonomy=sorted(autonomy.get(sid, []), key=lambda a: (a.fault, a.target_class)),
            )
        )
    return out


@router.get(
    "/v1/solutions",
    response_model=list[SolutionOut],
    tags=KNOWLEDGE,
    responses=errors(401, 403, 503),
)
def list_solutions(
    svc: Svc, who: Viewer, fault: Annotated[str | None, Query(max_length=200)] = None
) -> list[SolutionOut]:
    """The solution library with each solution's verified track record (graph) and the
    autonomy it has earned per (fault, target class) (ledger)."""
    return [s for s in _solutions(svc) if fault is None or fault in s.faults]


@router.get(
    "/v1/solutions/{solution_id}",
    response_model=SolutionOut,
    tags=KNOWLEDGE,
    responses=errors(401, 403, 404, 503),
)
def get_solution(solution_id: str, svc: Svc, who: Viewer) -> SolutionOut:
    for solution in _solutions(svc):
        if solution.id == solution_id:
            return solution
    raise HTTPException(404, f"no solution {solution_id}")
