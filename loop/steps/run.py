"""Run, reconcile and roll back: the steps that run playbooks (loop/execute.py keys every
run before it starts, so none runs twice).

    execute = ExecuteStep(runner, ledger, monitor, catalog, approvals, moves, rollback)
    transition = await execute.run(incident)     # approved | decided -> executing -> ...
    transition = await ReconcileStep(runner, ledger, plans, execute, events).run(incident)
    transition = await RollbackStep(runner, ledger).run(incident, plan, why)

Before a run: the approval is checked against the plan of this moment (an approved fix,
loop/steps/approvals.py), the plan's preconditions must hold on the target's latest
samples, and a solution runs on at most ``blast_radius`` targets at once. ``executing``
is persisted before the playbook starts, so a restart finds the run and reconciles it
(ReconcileStep) instead of running it blindly again.
"""

from __future__ import annotations

import asyncio
import logging

from kernel.models import Execution, RunStatus, Verification
from kernel.plan import RemediationPlan
from kernel.state import State
from loop.events import Events
from loop.execute import PlaybookRunner, execute, reconcile, rollback
from loop.ledger import Ledger
from loop.monitor import Monitor
from loop.moves import Moves
from loop.steps.approvals import ApprovalPlans, Checked
from loop.store import IncidentView
from loop.transition import KEEP, Field, Transition
from rules.catalog import Catalog

log = logging.getLogger("mendloop.daemon")
WAITS = "the automatic fix waits for approval"


class BlastRadius:
    """At most ``plan.blast_radius`` targets run one solution at once."""

    def __init__(self) -> None:
        self._slots: dict[str, asyncio.Semaphore] = {}

    def of(self, plan: RemediationPlan) -> asyncio.Semaphore:
        return self._slots.setdefault(plan.solution_id, asyncio.Semaphore(plan.blast_radius))


def unmet_preconditions(
    plan: RemediationPlan, target: str, monitor: Monitor, catalog: Catalog
) -> list[str]:
    """The plan's preconditions that do not hold on the target's latest samples, with the
    value seen (missing data never satisfies one)."""
    unmet = []
    for cond in plan.preconditions:
        point = monitor.latest(target, cond.series)
        metric = catalog.get(cond.series)
        value = point[1] if point else None
        if not cond.holds(value, metric.is_healthy if metric else None):
            unmet.append(f"{cond} (now {value})")
    return unmet


class RollbackStep:
    """Rollback, re-check it (its check mode must show nothing left to revert), then a
    person takes over: ``rolled_back`` when it held, ``escalated`` when it did not."""

    def __init__(self, runner: PlaybookRunner, ledger: Ledger) -> None:
        self.runner = runner
        self.ledger = ledger

    async def run(
        self,
        incident: IncidentView,
        plan: RemediationPlan,
        why: str,
        *,
        execution: Field[Execution] = KEEP,
        verification: Field[Verification] = KEEP,
    ) -> Transition:
        outcome = await rollback(plan, self.runner, self.ledger, why=why)
        if outcome.held and outcome.run is not None:
            return Transition(
                State.rolled_back,
                f"{why}; rolled back with {outcome.run.playbook} ({outcome.recheck}), "
                "a person is needed",
                execution=execution,
                verification=verification,
                reason=f"{why}; rolled back ({outcome.recheck})",
            )
        status = outcome.run.status if outcome.run else "no rollback"
        return Transition.escalate(
            f"{why}; rollback: {status} ({outcome.recheck})",
            execution=execution,
            verification=verification,
        )


class ExecuteStep:
    """From ``decided`` (an automatic fix) or ``approved``: check, run, and go on to
    verification (or roll back a run that failed)."""

    def __init__(
        self,
        runner: PlaybookRunner,
        ledger: Ledger,
        monitor: Monitor,
        catalog: Catalog,
        approvals: ApprovalPlans,
        moves: Moves,
        rollback: RollbackStep,
    ) -> None:
        self.runner = runner
        self.ledger = ledger
        self.monitor = monitor
        self.catalog = catalog
        self.approvals = approvals
        self.moves = moves
        self.rollback = rollback
        self.plans = approvals.plans
        self.blast = BlastRadius()

    async def run(self, incident: IncidentView) -> Transition:
        plan = self.plans.of(incident)
        checked = None
        if incident.state == State.approved:  # bound to its plan: recompute it first
            rechecked = await self.approvals.recheck(incident)
            if not isinstance(rechecked, Checked):
                return rechecked
            plan, checked = rechecked.plan, rechecked.dry_run
        if unmet := unmet_preconditions(plan, incident.target, self.monitor, self.catalog):
            return Transition.escalate(
                f"preconditions of {plan.solution_id} not met: {'; '.join(unmet)}"
            )
        async with self.blast.of(plan):
            paused = self.ledger.automation().pause_for(incident.target)
            if paused and incident.state == State.decided:  # paused while it waited its turn
                return await self.approvals.ask(incident, f"{paused}; {WAITS}")
            moved = self.moves.apply(
                incident,
                Transition(
                    State.executing,
                    f"running {plan.playbook} (idempotency key {plan.incident_id}/"
                    f"{plan.solution_id})",
                    remediation=plan,
                ),
            )
            assert moved is not None
            execution = await execute(plan, self.runner, self.ledger, checked)
        return await self.after_run(moved, plan, execution)

    async def after_run(
        self, incident: IncidentView, plan: RemediationPlan, execution: Execution
    ) -> Transition:
        if execution.status == RunStatus.successful:
            changed = execution.run.changed if execution.run else 0
            return Transition(
                State.verifying,
                f"{plan.playbook} ran ({changed} changed); verifying",
                execution=execution,
            )
        if execution.run is None:  # the dry run failed: nothing was changed
            failed = execution.check_result.failed_tasks if execution.check_result else ()
            return Transition.escalate(
                f"dry run of {plan.playbook} ended {execution.status}: {'; '.join(failed)}",
                execution=execution,
            )
        return await self.rollback.run(
            incident, plan, f"{plan.playbook} ended {execution.status}", execution=execution
        )


class ReconcileStep:
    """Found in ``executing`` after a restart: what happened to the run decides."""

    def __init__(
        self,
        runner: PlaybookRunner,
        ledger: Ledger,
        execute: ExecuteStep,
        events: Events,
    ) -> None:
        self.runner = runner
        self.ledger = ledger
        self.execute = execute
        self.events = events

    async def run(self, incident: IncidentView) -> Transition:
        if incident.decision is None:
            return Transition.escalate("found executing without a decision; not re-run")
        plan = self.execute.plans.of(incident)
        async with self.execute.blast.of(plan):
            execution, why = await reconcile(plan, self.runner, self.ledger)
        log.info("incident %s reconciled: %s", incident.id, why)
        if execution is None:
            return Transition.escalate(f"the daemon stopped during the run: {why}")
        self.events.emit(incident.id, incident.target, State.executing, f"reconciled: {why}")
        return await self.execute.after_run(incident, plan, execution)
