"""Rules and the metric catalog over REST.

GET  /v1/rules                 the rules running now + why the last reload was refused
POST /v1/rules/validate        a rule file (YAML body) checked as `mendloop rules check`
POST /v1/rules/reload          re-read the rule files now (all or nothing)
GET  /v1/catalog?subsystem=&layer=&sqi_role=&component=&q=   GET /v1/catalog/{name}
"""

from __future__ import annotations

import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from api.auth import Operator, Viewer, note_audit
from api.deps import Svc
from api.schemas import ReloadOut, RuleCheckOut, RuleErrorOut, RuleOut, RulesOut, errors
from kernel.errors import RuleFileError
from rules.catalog import MetricSpec
from rules.loader import check_paths

router = APIRouter()
RULES: list[str | Enum] = ["rules"]  # FastAPI's tag type


# -- rules --------------------------------------------------------------------------------


def _rule_error(error: RuleFileError, rename: tuple[str, str] | None = None) -> RuleErrorOut:
    path = error.path
    if rename is not None:
        path = path.replace(*rename)
    return RuleErrorOut(file=path, line=error.line, reason=error.reason)


@router.get("/v1/rules", response_model=RulesOut, tags=RULES, responses=errors(401, 403, 503))
def list_rules(svc: Svc, who: Viewer) -> RulesOut:
    """The rules running now, and why the last reload was refused (if it was)."""
    engine = svc.need_engine()
    return RulesOut(
        rules=[
            RuleOut(
                id=r.id,
                faults=list(r.faults),
                component=r.component,
                severity=r.severity.value,
                summary=r.summary,
                source=r.source,
                definition=r.model_dump(mode="json", by_alias=True, exclude={"source"}),
            )
            for r in sorted(engine.analyzer.active_rules.values(), key=lambda r: r.id)
        ],
        errors=[_rule_error(e) for e in engine.upkeep.errors],
    )


@router.post(
    "/v1/rules/validate",
    response_model=RuleCheckOut,
    tags=RULES,
    responses=errors(401, 403, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def validate_rules(
    request: Request,
    svc: Svc,
    who: Viewer,
    name: Annotated[
        str, Query(pattern=r"^[A-Za-z0-9_.-]{1,100}\.ya?ml$", description="file name in errors")
    ] = "posted.yaml",
) -> RuleCheckOut:
    """Check a rule file (YAML body) as ``mendloop rules check`` does: every error as
    file:line and why, against the running catalog and fault registry. Nothing changes."""
    engine = svc.need_engine()
    body = await request.body()

    def check() -> RuleCheckOut:
        with tempfile.TemporaryDirectory(prefix="mendloop-rules-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(body)
            try:
                faults = dict(engine.domain.faults)  # the site's
                specs, errs = check_paths([path], engine.catalog, faults)
            except RuleFileError as exc:
                errs, specs = [exc], []
            rename = (str(path), name)
            return RuleCheckOut(
                ok=not errs,
                rules=[s.id for s in specs],
                errors=[_rule_error(e, rename) for e in errs],
            )

    return await run_in_threadpool(check)


@router.post(
    "/v1/rules/reload", response_model=ReloadOut, tags=RULES, responses=errors(401, 403, 503)
)
def reload_rules(request: Request, svc: Svc, who: Operator) -> ReloadOut:
    """Re-read the rule files now (the daemon also polls them). A set with any error is
    refused whole and the running rules stay: ``ok`` false and the errors."""
    engine = svc.need_engine()
    result = engine.upkeep.reload_rules()
    active = len(engine.analyzer.active_rules)
    note_audit(request, "reload rules" + ("" if result is not None else " (refused)"))
    if result is None:
        return ReloadOut(
            ok=False,
            active=active,
            added=[],
            removed=[],
            changed=[],
            errors=[_rule_error(e) for e in engine.upkeep.errors],
        )
    return ReloadOut(
        ok=True,
        active=active,
        added=list(result.added),
        removed=list(result.removed),
        changed=list(result.changed),
        errors=[],
    )


# -- metric catalog -----------------------------------------------------------------------


@router.get(
    "/v1/catalog",
    response_model=list[MetricSpec],
    tags=["catalog"],
    responses=errors(401, 403, 503),
)
def catalog(
    svc: Svc,
    who: Viewer,
    subsystem: Annotated[str | None, Query(max_length=100)] = None,
    layer: Annotated[str | None, Query(max_length=100)] = None,
    sqi_role: Annotated[str | None, Query(max_length=100)] = None,
    component: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=200, description="in name or description")] = None,
) -> list[MetricSpec]:
    """The metric catalog (rules/metrics.yaml), filtered."""
    needle = q.lower() if q else None
    return [
        spec
        for spec in svc.need_engine().catalog.values()
        if (subsystem is None or spec.subsystem == subsystem)
        and (layer is None or spec.layer == layer)
        and (sqi_role is None or spec.sqi_role == sqi_role)
        and (component is None or spec.component == component)
        and (needle is None or needle in spec.name or needle in spec.description.lower())
    ]


@router.get(
    "/v1/catalog/{name}",
    response_model=MetricSpec,
    tags=["catalog"],
    responses=errors(401, 403, 404, 503),
)
def catalog_entry(name: str, svc: Svc, who: Viewer) -> MetricSpec:
    spec = svc.need_engine().catalog.get(name)
    if spec is None:
        raise HTTPException(404, f"no metric {name} in the catalog")
    return spec
