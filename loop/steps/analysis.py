"""Analyze and decide: from findings to a root cause, and to the fix with its frozen plan.

    transition = await AnalyzeStep(analyzer, ranker).run(incident)  # open -> analyzed
    transition = await DecideStep(decider, planner).run(incident)   # analyzed -> decided

No rule explains the findings: analyze ranks the target's components without rules
(loop/unexplained.py) and reports "unknown fault on component X" (fault ``unknown``);
decide never chooses a fix for it: it escalates with the ranking, its evidence and the
most similar past cases (shown, not applied), counted by top component.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from kernel.errors import KnowledgeError
from kernel.models import RCAReport, UnexplainedFault
from kernel.state import State
from loop.analyze import Analyzer
from loop.decide import Decider
from loop.planner import Planner
from loop.steps import subject
from loop.store import IncidentView
from loop.transition import Transition
from loop.unexplained import UNKNOWN_FAULT, ComponentRanker


class AnalyzeStep:
    """Rules first (loop/analyze.py); when none explains the findings, the rule-free
    component ranking (loop/unexplained.py): "unknown fault on component X"."""

    def __init__(self, analyzer: Analyzer, ranker: ComponentRanker | None = None) -> None:
        self.analyzer = analyzer
        self.ranker = ranker

    async def run(self, incident: IncidentView) -> Transition:
        report = self.analyzer.report(incident.id, incident.target, incident.findings)
        top = report.top
        if not report.explained:
            return await self._unexplained(incident, report)
        assert top is not None
        return Transition(
            State.analyzed,
            f"root cause {top.fault} ({top.component}, score {top.score:.2f}) "
            f"in {report.latency_ms:.1f} ms",
            report=report,
            fault=top.fault,
        )

    async def _unexplained(self, incident: IncidentView, report: RCAReport) -> Transition:
        if self.ranker is None or not incident.findings:
            return Transition.escalate("no rule explains the findings")
        onset = min(f.started_at for f in incident.findings)
        now = report.reported_at if report.reported_at is not None else time.time()
        fault = await asyncio.to_thread(self.ranker.rank, incident.target, onset, now)
        top = fault.top
        if top is None or not top.anomalous:
            return Transition.escalate(
                "no rule explains the findings, and no component's metrics stand out "
                f"({fault.series_scored} of {fault.series} series scored)"
            )
        headline = fault.headline()
        return Transition(
            State.analyzed,
            f"{headline}: no rule explains the findings; ranked {fault.series_scored} "
            f"series in {fault.latency_ms:.1f} ms",
            report=report.model_copy(update={"unexplained": fault}),
            fault=UNKNOWN_FAULT,
        )


class DecideStep:
    """The matcher and the earned autonomy choose the fix (loop/decide.py); the planner
    resolves it into the RemediationPlan everything after runs from (loop/planner.py)."""

    def __init__(self, decider: Decider, planner: Planner) -> None:
        self.decider = decider
        self.planner = planner
        self.unexplained: Counter[str] = Counter()  # escalated unexplained, by top component

    async def run(self, incident: IncidentView) -> Transition:
        assert incident.report is not None
        if incident.report.unexplained is not None:
            return await self._escalate_unexplained(incident.report)
        outcome = await asyncio.to_thread(self.decider.decide, incident.report)
        if outcome.decision is None:
            return Transition.escalate(outcome.reason)
        try:
            plan = self.planner.resolve(subject(incident), outcome.decision.solution_id)
        except KnowledgeError as exc:  # its parameters do not render: a person looks
            return Transition.escalate(str(exc))
        return Transition(
            State.decided, outcome.reason, decision=outcome.decision, remediation=plan
        )

    async def _escalate_unexplained(self, report: RCAReport) -> Transition:
        """A fault nobody named: never matched to a fix. To a person with the ranking, its
        evidence and the most similar past cases (shown, not applied)."""
        assert report.unexplained is not None
        similar = await asyncio.to_thread(self.decider.similar, report)
        fault = report.unexplained.model_copy(update={"similar": similar})
        if (top := fault.top) is not None:
            self.unexplained[top.component] += 1
        reason = escalation_reason(fault)
        return Transition(
            State.escalated,
            reason,
            report=report.model_copy(update={"unexplained": fault}),
            reason=reason,
        )


def escalation_reason(fault: UnexplainedFault) -> str:
    """Pure: what the person an unexplained fault goes to reads first (chat, web page)."""
    parts = [f"{fault.headline()}: no rule names it, so nothing is run"]
    if (top := fault.top) is not None:
        seen = [e for e in top.evidence if e.onset is not None][:3]
        if seen:
            parts.append(
                "evidence: "
                + ", ".join(f"{e.metric} {e.value:.4g} (usually {e.baseline:.4g})" for e in seen)
            )
        others = [f"{c.component} {c.confidence:.0%}" for c in fault.components[1:3]]
        if others:
            parts.append(f"next: {', '.join(others)}")
    if fault.similar:
        cases = ", ".join(
            f"{m.case_id} ({m.similarity:.2f}, fixed by {m.solution_id})" for m in fault.similar
        )
        parts.append(f"similar past cases (not applied): {cases}")
    else:
        parts.append("no similar past case")
    return "; ".join(parts)
