"""Replay: recorded incidents through today's analysis and decision, to backtest a change
of rules, knowledge or policy before it goes live.

    decider = Decider(graph, embedder, settings.match_min_similarity, base_vars, library=lib)
    summary = backtest(store.list(limit=500), analyzer, decider)
    summary["same_solution"], summary["changed"]      # what the change would do differently

What is replayed is each incident's recorded *findings* (the rule hits with their
evidence, stored with the incident): they are ranked again by the current rules and
topology (``Analyzer.report``) and matched again against the current knowledge graph
(``Decider.decide``). The decider should be built without the live autonomy callback so
a backtest never touches the autonomy ledger; its mode is then the risk-only one.
Limits: the raw samples are not recorded, so detection itself (thresholds, ``for``
durations, ML) is not replayed, and the ML context is the analyzer's current one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from loop.analyze import Analyzer
from loop.decide import Decider
from loop.store import IncidentView


@dataclass(frozen=True)
class ReplayResult:
    incident_id: str
    target: str
    recorded_fault: str | None
    replayed_fault: str | None
    recorded_solution: str | None
    replayed_solution: str | None
    replayed_mode: str | None
    reason: str

    @property
    def same_fault(self) -> bool:
        return self.recorded_fault == self.replayed_fault

    @property
    def same_solution(self) -> bool:
        return self.recorded_solution == self.replayed_solution


def replay_incident(incident: IncidentView, analyzer: Analyzer, decider: Decider) -> ReplayResult:
    """One recorded incident through the current analysis and decision."""
    report = analyzer.report(incident.id, incident.target, incident.findings)
    top = report.top
    outcome = decider.decide(report) if top is not None else None
    decision = outcome.decision if outcome else None
    return ReplayResult(
        incident_id=incident.id,
        target=incident.target,
        recorded_fault=incident.fault,
        replayed_fault=top.fault if top else None,
        recorded_solution=incident.decision.solution_id if incident.decision else None,
        replayed_solution=decision.solution_id if decision else None,
        replayed_mode=str(decision.mode) if decision else None,
        reason=outcome.reason if outcome else "no rule explains the findings",
    )


def backtest(
    incidents: Iterable[IncidentView], analyzer: Analyzer, decider: Decider
) -> dict[str, Any]:
    """Replay every incident that has findings; count what would change."""
    results = [replay_incident(i, analyzer, decider) for i in incidents if i.findings]
    changed = [asdict(r) for r in results if not (r.same_fault and r.same_solution)]
    return {
        "incidents": len(results),
        "same_fault": sum(r.same_fault for r in results),
        "same_solution": sum(r.same_solution for r in results),
        "changed": changed,
    }
