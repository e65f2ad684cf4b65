"""The REST API's own request and response models, each defined once.

Stage messages (IncidentView, RCAReport, Case, AutomationStatus, MetricSpec, ...) are served
as they are; what only the API needs (pages, request bodies, summaries, error bodies)
lives here so every router and the OpenAPI schema agree on one shape.

    @router.post("/x", response_model=Out, responses=errors(404, 409))
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kernel.state import State
from loop.store import IncidentView

TARGET_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
PLAN_HASH_PATTERN = r"^[0-9a-f]{64}$"


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: what was wrong, in words (422 adds pydantic's list)."""

    detail: str | list[dict[str, Any]]


_ERROR_TEXT = {
    400: "bad input (e.g. an unreadable upload)",
    401: "no valid API token (Authorization: Bearer mlt_...)",
    403: "the token's role is too low, or the rules forbid it (two-person rule)",
    404: "no such incident / case / solution",
    409: "the incident is not in a state that allows this, or the plan changed",
    413: "request body over the size limit",
    415: "unsupported content type",
    422: "the request does not validate (field, reason)",
    428: "an approval without the plan_hash of the plan it approves (the answer names it)",
    503: "this server lacks the component the endpoint needs, or it is unreachable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: the error codes it can answer, documented once."""
    return {code: {"model": ErrorOut, "description": _ERROR_TEXT[code]} for code in codes}


# -- incidents ------------------------------------------------------------------------


class IncidentSummary(BaseModel):
    id: str
    target: str
    state: State
    fault: str | None
    reason: str
    opened_at: str
    updated_at: str


class RunOut(BaseModel):
    """One playbook invocation of an incident (check run, real run, rollback, ...)."""

    key: str = Field(description="idempotency key: incident/solution/phase")
    phase: str
    playbook: str
    status: str
    rc: int | None
    changed: int
    started_at: datetime
    ended_at: datetime | None
    events: list[dict[str, Any]] = Field(description="the runner's task events (bounded)")
    diff: list[str] = Field(description="what --diff reported (check runs: the dry-run diff)")
    note: str


class IncidentDetail(IncidentView):
    """An incident with its whole story: every transition (timeline), findings, RCA report,
    decision (with its match and reason), the plan waiting for approval, the approval,
    execution, verification checks, and every playbook run with its events and diff."""

    runs: tuple[RunOut, ...] = ()


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)
    plan_hash: str | None = Field(
        None,
        pattern=PLAN_HASH_PATTERN,
        description="the plan you looked at (GET .../plan); required to approve an incident "
        "that has a plan (428 without it), 409 if the plan changed since",
    )
    by: str = Field(
        "api",
        min_length=1,
        max_length=200,
        description="who decides, when authentication is off; otherwise the caller's token",
    )


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000, description="why (kept on the timeline)")


class ProposeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    solution_id: str = Field(pattern=r"^sol-[a-z0-9-]{1,100}$", description="a library solution")


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(
        None, pattern=TARGET_PATTERN, description="one target; omitted: everywhere"
    )
    reason: str = Field("", max_length=500)


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(
        None, pattern=TARGET_PATTERN, description="one target; omitted: the global pause"
    )


# -- knowledge ------------------------------------------------------------------------


class SimilarCase(BaseModel):
    case_id: str
    title: str
    fault: str
    outcome: str
    solution_id: str
    similarity: float
    same_problem: bool = Field(description="similarity >= match_min_similarity (0.8)")
    features: dict[str, float | None]
    explanation: str


class SearchOut(BaseModel):
    query: dict[str, Any] = Field(description="what was matched: text, fault, symptom keys")
    matches: list[SimilarCase]
    timing_ms: dict[str, float]


class CasePage(BaseModel):
    items: list[dict[str, Any]] = Field(description="cases (the Case model), by id")
    next_after: str | None = Field(description="pass as ?after= for the next page")


class BadRowOut(BaseModel):
    line: int
    id: str
    reason: str


class ImportOut(BaseModel):
    format: Literal["jsonl", "csv"]
    checked_only: bool
    rows: int
    good: int
    bad: int
    bad_rows: list[BadRowOut] = Field(description="the first 1000 bad rows: line, id, why")
    written: int = 0
    unchanged: int = 0
    embedded: int = 0


class TrackRecord(BaseModel):
    successes: int
    failures: int
    success_rate: float = Field(description="Beta(1+s, 1+f) mean: 0.5 with no history")
    mean_time_to_resolve_s: float | None


class AutonomyOut(BaseModel):
    fault: str
    target_class: str
    level: str = Field(description="suggest | approval | auto, as earned")
    successes: int
    failures: int
    streak: int
    reason: str


class SolutionOut(BaseModel):
    id: str
    title: str
    faults: list[str]
    risk: str
    playbook: str
    rollback_playbook: str | None
    check_mode: bool
    blast_radius: int
    description: str
    track_record: TrackRecord | None = Field(description="verified outcomes in the graph")
    autonomy: list[AutonomyOut] = Field(description="per (fault, target class), from the ledger")


class RuleErrorOut(BaseModel):
    file: str
    line: int | None
    reason: str


class RuleOut(BaseModel):
    id: str
    faults: list[str]
    component: str
    severity: str
    summary: str
    source: str = Field(description="file:line")
    definition: dict[str, Any] = Field(description="the rule as written (aliases kept)")


class RulesOut(BaseModel):
    rules: list[RuleOut]
    errors: list[RuleErrorOut] = Field(description="why the last reload was refused (if it was)")


class RuleCheckOut(BaseModel):
    ok: bool
    rules: list[str]
    errors: list[RuleErrorOut]


class ReloadOut(BaseModel):
    ok: bool
    active: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    errors: list[RuleErrorOut]


# -- operations -----------------------------------------------------------------------


class CheckOut(BaseModel):
    ok: bool
    detail: str


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, CheckOut]


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    intake: bool


class WhoAmI(BaseModel):
    name: str
    role: str
    via: str
