"""Analyze and decide: from findings to a root cause, and to the fix with its frozen plan.

    transition = await AnalyzeStep(analyzer).run(incident)        # open -> analyzed
    transition = await DecideStep(decider, planner).run(incident) # analyzed -> decided
"""

from __future__ import annotations

import asyncio

from kernel.errors import KnowledgeError
from kernel.state import State
from loop.analyze import Analyzer
from loop.decide import Decider
from loop.planner import Planner
from loop.steps import subject
from loop.store import IncidentView
from loop.transition import Transition


class AnalyzeStep:
    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    async def run(self, incident: IncidentView) -> Transition:
        report = self.analyzer.report(incident.id, incident.target, incident.findings)
        top = report.top
        if top is None:
            return Transition.escalate("no rule explains the findings")
        return Transition(
            State.analyzed,
            f"root cause {top.fault} ({top.component}, score {top.score:.2f}) "
            f"in {report.latency_ms:.1f} ms",
            report=report,
            fault=top.fault,
        )


class DecideStep:
    """The matcher and the earned autonomy choose the fix (loop/decide.py); the planner
    resolves it into the RemediationPlan everything after runs from (loop/planner.py)."""

    def __init__(self, decider: Decider, planner: Planner) -> None:
        self.decider = decider
        self.planner = planner

    async def run(self, incident: IncidentView) -> Transition:
        assert incident.report is not None
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
