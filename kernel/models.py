"""Typed messages that cross a stage boundary, each defined once.

    Sample -> (monitor) -> Finding -> (analyze) -> RCAReport -> (decide) -> Match, Decision
           (+ its RemediationPlan, kernel/plan.py) -> (execute) -> Execution
           -> (verify) -> Verification
    (kernel/approval.py: the ApprovalPlan a person approves, the Approval, AutomationStatus)

All are frozen pydantic models: a stage hands its output on and nobody edits it after.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kernel.ids import label_problem


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sample(Frozen):
    """One metric point. ``series`` is a catalog name; ``labels`` must carry ``target``."""

    series: str = Field(min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, validate_default=True)
    # strict: a JSON number only (true/false is no measurement, never 1.0/0.0; nor is a
    # string); finite (NaN and infinity are refused); both checked in pydantic's core
    ts: float = Field(strict=True, allow_inf_nan=False, description="unix seconds")
    value: float = Field(strict=True, allow_inf_nan=False)

    @field_validator("labels")
    @classmethod
    def _identifiers(cls, v: dict[str, str]) -> dict[str, str]:
        """A target is required and is an identifier (kernel/ids.py); the error type is the
        reason it is counted under (``bad_target``, ``bad_labels``)."""
        problem = label_problem(v)
        if problem is not None:
            raise PydanticCustomError(problem[0], problem[1])
        return v

    @property
    def target(self) -> str:
        return self.labels.get("target", "")


class FindingKind(StrEnum):
    rule = "rule"
    anomaly = "anomaly"
    no_data = "no_data"  # a series went silent (gap): not evidence of a fault
    stale = "stale"  # frozen, skewed or late samples: not evidence of a fault
    sqi = "sqi"  # a target's Service Quality Index fell below 80: context, opens nothing


class Evidence(Frozen):
    """One observation supporting a conclusion: which series, what value, against what."""

    series: str
    value: float
    threshold: float
    direction: Literal["high", "low"]
    since: float = Field(description="unix seconds the series first crossed the threshold")
    # added for the ranked RCA (all optional, so stored findings still load)
    source: Literal["rule", "threshold", "anomaly", "sqi"] = "rule"
    rule_id: str | None = Field(None, description="the rule whose condition this is")
    component: str | None = None
    deviation: float | None = Field(
        None,
        description="how far off: past the threshold as a share of warn..crit (threshold, "
        "rule), or the anomaly score in units of its learnt threshold (anomaly)",
    )


class Finding(Frozen):
    kind: FindingKind
    target: str
    series: tuple[str, ...]
    rule_id: str
    started_at: float
    score: float = Field(ge=0, le=1)
    evidence: tuple[Evidence, ...]
    labels: tuple[tuple[str, str], ...] = Field(
        (),
        description="the label set of the first series that fired, besides its target "
        "(a solution parameter's from_label reads it; docs/SITES.md)",
    )


class RootCause(Frozen):
    """A ranked hypothesis. ``evidence`` is what the rule saw (it feeds symptom matching);
    ``anomalies`` is what the ML baselines add on the same component (context only)."""

    fault: str
    component: str
    score: float = Field(ge=0, le=1)
    summary: str
    evidence: tuple[Evidence, ...]
    confidence: float | None = Field(None, ge=0, le=1, description="share of the belief")
    fired: bool = Field(True, description="a rule fired; False: its signature only matched")
    rules: tuple[str, ...] = ()
    severity: str | None = None
    onset: float | None = Field(None, description="unix s its component first went abnormal")
    explains: tuple[str, ...] = Field((), description="abnormal dependants it accounts for")
    anomalies: tuple[Evidence, ...] = ()
    why: str = ""


class Match(Frozen):
    case_id: str
    similarity: float = Field(ge=0, le=1)
    solution_id: str
    solution_success_rate: float = Field(ge=0, le=1)
    explanation: str
    features: dict[str, float | None] = Field(
        default_factory=dict, description="what matched: text cosine, fault, symptoms, ..."
    )


class MetricEvidence(Frozen):
    """One series' deviation behind a rule-free ranking (ml.component_rca.MetricDeviation):
    ``score`` how rare the window is against the series' own baseline, ``z`` its signed
    peak in baseline scales, ``onset`` its first abnormal sample (None: not abnormal)."""

    metric: str
    score: float = Field(ge=0)
    z: float
    baseline: float
    value: float
    onset: float | None = None
    shared_with: int = Field(1, ge=1, description="components reporting the identical series")

    @property
    def direction(self) -> Literal["high", "low"]:
        return "high" if self.z >= 0 else "low"


class RankedComponent(Frozen):
    """A component as a suspect of a fault no rule names (ml.component_rca.ComponentScore)."""

    component: str
    score: float = Field(ge=0, description="blame after propagation along the dependencies")
    confidence: float = Field(ge=0, le=1, description="share of all components' scores")
    anomaly: float = Field(ge=0, description="its own metrics' deviation, before propagation")
    anomalous: bool = Field(description="some metric of it was abnormal over the window")
    onset: float | None = None
    evidence: tuple[MetricEvidence, ...] = ()


class UnexplainedFault(Frozen):
    """The rule-free verdict when no rule explains what is wrong ("unknown fault on
    component X"): the target's components ranked by loop/unexplained.py. Never matched to a fix;
    ``similar`` is the past cases most like it, attached by decide for a person to read."""

    components: tuple[RankedComponent, ...]
    window_start: float = Field(description="unix s: the scored window ...")
    window_end: float = Field(description="... up to here; the baseline is before it")
    series: int = Field(0, ge=0, description="series of the target in the monitor's windows")
    series_scored: int = Field(0, ge=0, description="of which had baseline and window samples")
    latency_ms: float = Field(0.0, ge=0, description="compute time of the ranking")
    similar: tuple[Match, ...] = Field((), description="most similar past cases: shown only")

    @property
    def top(self) -> RankedComponent | None:
        return self.components[0] if self.components else None

    def headline(self) -> str:
        top = self.top
        if top is None:
            return "unknown fault, no component stands out"
        return f"unknown fault on component {top.component} (confidence {top.confidence:.0%})"

    def symptoms(self, components: int = 3) -> tuple[str, ...]:
        """``metric:high|low`` of the abnormal evidence of the leading components: what the
        structured case matching compares."""
        tags = {
            f"{e.metric}:{e.direction}"
            for c in self.components[:components]
            for e in c.evidence
            if e.onset is not None
        }
        return tuple(sorted(tags))

    def text(self, components: int = 3) -> str:
        """The ranking in words (embedded to find similar past cases)."""
        parts = []
        for c in self.components[:components]:
            seen = "; ".join(
                f"{e.metric} {'above' if e.direction == 'high' else 'below'} its usual "
                f"{e.baseline:g} at {e.value:g}"
                for e in c.evidence
                if e.onset is not None
            )
            if seen:
                parts.append(f"unknown fault on component {c.component} (observed: {seen})")
        return " ".join(parts)


class RCAReport(Frozen):
    incident_id: str
    target: str
    candidates: tuple[RootCause, ...]
    generated_at: datetime = Field(default_factory=utcnow)
    latency_ms: float = Field(ge=0, description="compute time of the analysis itself")
    first_abnormal_at: float | None = Field(
        None, description="unix s of the earliest abnormal sample behind the report"
    )
    reported_at: float | None = Field(None, description="unix s (the samples' clock)")
    time_to_report_s: float | None = Field(
        None, ge=0, description="first abnormal sample -> report (paper: 30 s; goal: 5 s)"
    )
    sqi: float | None = Field(None, ge=0, le=100, description="the target's SQI at report")
    sqi_roles: dict[str, float] = Field(default_factory=dict)
    abnormal_components: dict[str, float] = Field(
        default_factory=dict, description="component -> onset (unix s), earliest first"
    )
    unexplained: UnexplainedFault | None = Field(
        None, description="no rule explains the findings: the rule-free component ranking"
    )

    @property
    def top(self) -> RootCause | None:
        return self.candidates[0] if self.candidates else None

    @property
    def explained(self) -> bool:
        """A rule fired for some candidate: a fault somebody named (only then may a fix
        be chosen; signature candidates are context)."""
        return any(c.fired for c in self.candidates)

    def _named(self) -> tuple[RootCause, ...]:
        """Candidates a rule fired for: only they describe the incident to the matcher, so
        context candidates never shift the case match."""
        return tuple(c for c in self.candidates if c.fired)

    def symptoms(self) -> tuple[str, ...]:
        """Normalised symptom tags (``series:high``) that structured matching compares."""
        tags = {f"{e.series}:{e.direction}" for c in self._named() for e in c.evidence}
        return tuple(sorted(tags))

    def text(self) -> str:
        """The report in words; this is what gets embedded and matched against past cases."""
        parts = []
        for cause in self._named():
            observed = "; ".join(
                f"{e.series} {'above' if e.direction == 'high' else 'below'} "
                f"{e.threshold:g} at {e.value:g}"
                for e in cause.evidence
            )
            parts.append(f"{cause.summary} (component {cause.component}; observed: {observed})")
        return " ".join(parts)


class Case(Frozen):
    """A past problem in the knowledge graph and how it ended.

    ``symptoms`` are ``series:direction`` tags, optionally with a magnitude band
    (``series:high:severe``); ``environment`` maps parameters of kernel/domain.yaml
    (load, season, coverage, ...) to a value; ``region`` is a path province > city >
    district > station area. What is allowed is checked by kernel.domain on import.
    """

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, max_length=20_000)
    symptoms: tuple[str, ...] = ()
    device_type: str = ""
    environment: dict[str, str] = Field(default_factory=dict)
    target: str = ""
    region: tuple[str, ...] = ()
    fault: str
    solution_id: str
    outcome: Literal["resolved", "failed", "unknown"] = "resolved"
    time_to_resolve_s: float | None = Field(None, ge=0)


class Solution(Frozen):
    id: str
    title: str
    playbook: str
    rollback_playbook: str | None = None
    risk: Literal["low", "medium", "high"] = "medium"
    fixes: str = ""
    description: str = ""
    successes: int = 0
    failures: int = 0
    resolve_s_total: float = 0.0

    @property
    def success_rate(self) -> float:
        """Mean of the Beta(1 + successes, 1 + failures) posterior (a uniform prior), so a
        new solution scores 0.5, neither 0 nor 1, and each verified outcome moves it."""
        return (self.successes + 1) / (self.successes + self.failures + 2)

    @property
    def mean_time_to_resolve_s(self) -> float | None:
        return self.resolve_s_total / self.successes if self.successes else None


class DecisionMode(StrEnum):
    auto = "auto"
    approval = "approval"
    suggest = "suggest"


# what a Decision carried before the remediation plan (kernel/plan.py) took it over
_LEGACY_DECISION_FIELDS = ("playbook", "rollback_playbook", "extra_vars")


class Decision(Frozen):
    """Which solution, how far it may go on its own (``mode``) and why. What it runs is
    the incident's RemediationPlan (kernel/plan.py), resolved once from the library."""

    incident_id: str
    solution_id: str
    mode: DecisionMode
    reason: str
    match: Match | None = None
    requested_by: str = Field(
        "mendloop",
        description="who asks for this fix: the daemon, or the person who re-ran the analysis "
        "or proposed the solution (two-person rule: a high-risk fix needs someone else)",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """A decision stored before the remediation plan named the playbook and its vars
        itself: they are dropped (the plan is resolved again from the library, once)."""
        if isinstance(data, dict) and any(k in data for k in _LEGACY_DECISION_FIELDS):
            return {k: v for k, v in data.items() if k not in _LEGACY_DECISION_FIELDS}
        return data


class RunStatus(StrEnum):
    successful = "successful"
    failed = "failed"
    timeout = "timeout"
    canceled = "canceled"
    error = "error"


class PlaybookRun(Frozen):
    """What one ansible-runner invocation ended with."""

    playbook: str
    check_mode: bool
    status: RunStatus
    rc: int | None
    changed: int = 0
    changed_tasks: tuple[str, ...] = Field(default=(), description="``host: task`` that changed")
    failed_tasks: tuple[str, ...] = ()
    events: tuple[str, ...] = Field(default=(), description="one line per task result")
    started: datetime
    ended: datetime


class Execution(Frozen):
    id: str
    incident_id: str
    playbook: str
    check_result: PlaybookRun | None
    run: PlaybookRun | None
    status: RunStatus
    started: datetime
    ended: datetime


class VerificationStatus(StrEnum):
    passed = "passed"
    failed = "failed"
    timed_out = "timed_out"


class MetricCheck(Frozen):
    series: str
    healthy: bool
    value: float | None
    threshold: float


class Verification(Frozen):
    execution_id: str
    status: VerificationStatus
    checks: tuple[MetricCheck, ...]
    decided_at: datetime = Field(default_factory=utcnow)
    waited_s: float = 0.0
