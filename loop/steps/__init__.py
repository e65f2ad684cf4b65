"""The steps of an incident's walk, one small object each, built with what it needs.

    open              AnalyzeStep     (analysis.py)  -> analyzed | escalated
    analyzed          DecideStep      (analysis.py)  -> decided, with the RemediationPlan
    decided           DispatchStep    (dispatch.py)  -> shadow / suggest / awaiting_approval
                                                        | ExecuteStep
    approved          ExecuteStep     (run.py)       -> executing -> verifying | rollback
    executing         ReconcileStep   (run.py)       after a restart: what became of the run
    verifying         VerifyStep      (outcome.py)   -> LearnStep, then resolved | rollback
    (from the above)  RollbackStep    (run.py)       -> rolled_back | escalated
                      ApprovalPlans   (approvals.py) the plan a person approves, rechecked

Each ``run(incident)`` returns the Transition the engine applies (loop/moves.py); only the
execute step applies one itself (``executing``, persisted before a playbook starts). What
runs is the incident's RemediationPlan, read through ``Plans``.
"""

from __future__ import annotations

from typing import Protocol

from kernel.errors import KnowledgeError
from kernel.plan import RemediationPlan
from loop.planner import Planner, Subject
from loop.store import IncidentView
from loop.transition import Transition


class Step(Protocol):
    async def run(self, incident: IncidentView) -> Transition: ...


def subject(incident: IncidentView) -> Subject:
    # the labels of the series that fired (the first finding that carries any), and
    # the target
    carried = next((f.labels for f in incident.findings if f.labels), ())
    labels = {**dict(carried), "target": incident.target}
    return Subject(incident.id, incident.target, incident.findings, incident.report, labels)


class Plans:
    """The remediation plan of an incident: the one it carries; for an incident decided
    before plans existed (a database upgraded mid-flight), resolved from the library now."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    def of(self, incident: IncidentView) -> RemediationPlan:
        if incident.remediation is not None:
            return incident.remediation
        if incident.decision is None:
            raise KnowledgeError(f"incident {incident.id} has no decision to run")
        return self.planner.resolve(subject(incident), incident.decision.solution_id)
