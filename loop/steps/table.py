"""The steps of the walk built together, each with what it needs, and the table the engine
drives incidents through (state -> step).

    steps = Steps.build(parts...)          # loop/daemon.py does this once
    steps.table()[State.open]              # AnalyzeStep
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.shadow import ShadowScope
from kernel.state import State
from loop.analyze import Analyzer
from loop.autonomy import EarnedAutonomy
from loop.decide import Decider
from loop.events import Events
from loop.execute import PlaybookRunner
from loop.ledger import Ledger
from loop.monitor import Monitor
from loop.moves import Moves
from loop.outbox import OutcomeDelivery, OutcomeOutbox
from loop.planner import Planner
from loop.policy import PolicyConfig
from loop.steps import Step
from loop.steps.analysis import AnalyzeStep, DecideStep
from loop.steps.approvals import ApprovalPlans
from loop.steps.dispatch import DispatchStep
from loop.steps.outcome import LearnStep, VerifyStep
from loop.steps.run import ExecuteStep, ReconcileStep, RollbackStep
from loop.supervise import Health
from loop.unexplained import ComponentRanker
from rules.catalog import Catalog


@dataclass(frozen=True)
class Steps:
    analyze: AnalyzeStep
    decide: DecideStep
    dispatch: DispatchStep
    execute: ExecuteStep
    reconcile: ReconcileStep
    verify: VerifyStep
    rollback: RollbackStep
    learn: LearnStep
    approvals: ApprovalPlans

    @classmethod
    def build(
        cls,
        *,
        analyzer: Analyzer,
        decider: Decider,
        planner: Planner,
        autonomy: EarnedAutonomy,
        runner: PlaybookRunner,
        ledger: Ledger,
        policy: PolicyConfig,
        monitor: Monitor,
        catalog: Catalog,
        outbox: OutcomeOutbox,
        delivery: OutcomeDelivery,
        health: Health,
        moves: Moves,
        events: Events,
        shadow: ShadowScope,
        levels: frozenset[str] = frozenset(),
    ) -> Steps:
        approvals = ApprovalPlans(runner, ledger, planner)
        rollback = RollbackStep(runner, ledger)
        execute = ExecuteStep(runner, ledger, monitor, catalog, approvals, moves, rollback)
        learn = LearnStep(ledger, policy, outbox, delivery, health)
        return cls(
            analyze=AnalyzeStep(
                analyzer, ComponentRanker(monitor, catalog, analyzer.topology.upstreams)
            ),
            decide=DecideStep(decider, planner),
            dispatch=DispatchStep(ledger, autonomy, approvals, execute, shadow),
            execute=execute,
            reconcile=ReconcileStep(runner, ledger, execute, events),
            verify=VerifyStep(
                monitor, analyzer, catalog, ledger, approvals.plans, learn, rollback, levels
            ),
            rollback=rollback,
            learn=learn,
            approvals=approvals,
        )

    def table(self) -> dict[State, Step]:
        """Where the engine walks an incident from each state it drives."""
        return {
            State.open: self.analyze,
            State.analyzed: self.decide,
            State.decided: self.dispatch,
            State.approved: self.execute,
            State.executing: self.reconcile,
            State.verifying: self.verify,
        }
