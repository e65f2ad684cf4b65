"""Dispatch a decided fix by its earned autonomy (loop/policy.py): shadow mode records it
and hands it to a person; ``suggest`` escalates with the suggestion; ``approval`` waits for a
person with its plan; ``auto`` runs, unless automation is paused or the hourly limits are
reached (then it waits for approval too).

    dispatch = DispatchStep(ledger, autonomy, approvals, execute, ShadowScope.parse("all"))
    transition = await dispatch.run(incident)
"""

from __future__ import annotations

from kernel.models import DecisionMode
from kernel.shadow import ShadowScope
from loop.autonomy import EarnedAutonomy
from loop.ledger import Ledger
from loop.steps.approvals import ApprovalPlans
from loop.steps.run import WAITS, ExecuteStep
from loop.store import IncidentView
from loop.transition import Transition


class DispatchStep:
    def __init__(
        self,
        ledger: Ledger,
        autonomy: EarnedAutonomy,
        approvals: ApprovalPlans,
        execute: ExecuteStep,
        shadow: ShadowScope,
    ) -> None:
        self.ledger = ledger
        self.autonomy = autonomy
        self.approvals = approvals
        self.execute = execute
        self.shadow = shadow  # MENDLOOP_SHADOW; replaceable while the daemon runs

    async def run(self, incident: IncidentView) -> Transition:
        decision = incident.decision
        assert decision is not None
        plan = self.approvals.plans.of(incident)
        if why := self.shadow.applies(incident.target, decision.solution_id):
            self.ledger.record_shadow(
                incident.id,
                incident.target,
                decision.solution_id,
                plan.playbook,
                decision.mode,
                decision.reason,
            )
            return Transition.escalate(
                f"{why}: would have run {plan.playbook} ({decision.mode}); nothing executed, "
                "a person handles it"
            )
        if decision.mode == DecisionMode.suggest:
            return Transition.escalate(f"suggested fix {decision.solution_id}; no autonomy")
        if decision.mode == DecisionMode.approval:
            return await self.approvals.ask(
                incident, f"needs a person's approval: {decision.reason}"
            )
        if paused := self.ledger.automation().pause_for(incident.target):
            return await self.approvals.ask(incident, f"{paused}; {WAITS}")
        # the hourly limits again, now: incidents decided together must not overrun them
        # (checked and booked under one lock: several workers never overrun them together)
        limit = self.ledger.note_auto_action(
            incident.id,
            incident.target,
            decision.solution_id,
            lambda: self.autonomy.limit(incident.target),
        )
        if limit is not None:
            return await self.approvals.ask(incident, limit)
        return await self.execute.run(incident)
