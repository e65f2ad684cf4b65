"""The remediation half of the daemon: autonomy, approval, execution, verification, learning.

    class Engine(Remediation): ...        # loop/daemon.py wires it; these are its steps

Kept apart from loop/daemon.py so the daemon stays the wiring (intake, analysis, the walk
through the state machine) and this file holds what happens from ``decided`` on:
``_dispatch`` (earned autonomy, hourly limits and pauses, loop/policy.py), the approval
plans and what people do (loop/operate.py, the ``Operations`` mixin: approve, reject,
pause/resume, reanalyze, propose, close, escalate), ``_execute`` (the plan recomputed for
an approved fix, preconditions, blast radius, keyed runs, loop/execute.py), ``_reconcile``
(a run found interrupted after a restart), ``_verify`` (the solution's verification spec,
loop/verify.py), ``_roll_back`` (rollback + re-check; a rollback found interrupted is
reconciled) and ``_learn`` (graph + autonomy; the outcome goes through the SQL outbox,
loop/outbox.py, delivered by ``_deliver_outcomes`` while Neo4j is away).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kernel.errors import GraphUnavailable
from kernel.logsafe import safe
from kernel.models import (
    Decision,
    DecisionMode,
    Execution,
    PlaybookRun,
    RunStatus,
    Solution,
    VerificationStatus,
    utcnow,
)
from kernel.shadow import ShadowScope
from kernel.state import State
from loop.execute import (
    PlaybookRunner,
    execute,
    reconcile,
    rollback,
    run_key,
)
from loop.learn import outcome_case
from loop.ledger import Ledger
from loop.operate import Operations, Void
from loop.outbox import OutcomeDelivery, OutcomeOutbox
from loop.policy import (
    AutonomyKey,
    PolicyConfig,
    choose_mode,
    initial_state,
    limit_reached,
    target_class,
)
from loop.solutions import SolutionSpec
from loop.store import IncidentStore, IncidentView
from loop.supervise import Health
from loop.verify import verify

if TYPE_CHECKING:
    from kernel.config import Settings
    from knowledge.embedding import Embedder
    from knowledge.graph import KnowledgeGraph
    from loop.admission import Standing
    from loop.analyze import Analyzer
    from loop.decide import Decider
    from loop.monitor import Monitor
    from rules.catalog import Catalog

log = logging.getLogger("mendloop.daemon")


_WAITS = "the automatic fix waits for approval"


class Remediation(OutcomeDelivery, Operations):
    """Mixin of loop.daemon.Engine: the steps from ``decided`` to an ending."""

    settings: Settings
    store: IncidentStore
    graph: KnowledgeGraph
    embedder: Embedder
    catalog: Catalog
    monitor: Monitor
    analyzer: Analyzer
    decider: Decider
    runner: PlaybookRunner
    library: dict[str, SolutionSpec]
    ledger: Ledger
    policy: PolicyConfig
    standing: Standing
    _blast: dict[str, asyncio.Semaphore]
    _loop: asyncio.AbstractEventLoop | None
    health: Health
    outbox: OutcomeOutbox
    _outcomes_due: asyncio.Event
    _outcomes_lock: asyncio.Lock
    shadow: ShadowScope | None = None  # None: from settings.shadow (MENDLOOP_SHADOW)

    def shadow_scope(self) -> ShadowScope:
        """Shadow mode: this attribute, else the ``shadow`` setting (MENDLOOP_SHADOW:
        ``all``, or ``target:X,solution:Y,...``)."""
        if self.shadow is not None:
            return self.shadow
        return ShadowScope.parse(self.settings.shadow)

    def autonomy(self, solution: Solution, fault: str, target: str) -> tuple[DecisionMode, str]:
        """The earned mode of a (solution, fault, target class) now, and why (policy.py);
        a key seen for the first time starts from the solution's graph track record."""
        key = AutonomyKey(solution.id, fault, target_class(target))
        state = self.ledger.autonomy(key)
        if state is None:
            state = initial_state(key, solution.successes, solution.failures, self.policy)
            self.ledger.save_autonomy(state)
        hour = timedelta(hours=1)
        return choose_mode(
            state,
            solution.risk,
            self.ledger.auto_actions(target, hour),
            self.ledger.auto_actions(None, hour),
            self.policy,
            recent_on_new_targets=self._on_new_targets(target, hour),
        )

    def _on_new_targets(self, target: str, within: timedelta) -> int | None:
        """For a target that is not established: the automatic actions of the last
        ``within`` on targets that are not established either (None for an established
        target, which the new targets' share does not bind)."""
        if self.standing.established(target):
            return None
        recent = self.ledger.auto_action_targets(within)
        return sum(n for t, n in recent.items() if not self.standing.established(t))

    async def _dispatch(self, incident: IncidentView) -> None:
        decision = incident.decision
        assert decision is not None
        if why := self.shadow_scope().applies(incident.target, decision.solution_id):
            self.ledger.record_shadow(
                incident.id,
                incident.target,
                decision.solution_id,
                decision.playbook,
                decision.mode,
                decision.reason,
            )
            self._escalate(
                incident,
                f"{why}: would have run {decision.playbook} ({decision.mode}); nothing executed, "
                "a person handles it",
            )
            return
        if decision.mode == DecisionMode.suggest:
            self._escalate(incident, f"suggested fix {decision.solution_id}; no autonomy")
            return
        if decision.mode == DecisionMode.approval:
            await self._ask_approval(incident, f"needs a person's approval: {decision.reason}")
            return
        if paused := self.ledger.automation().pause_for(incident.target):
            await self._ask_approval(incident, f"{paused}; {_WAITS}")
            return
        # the hourly limits again, now: incidents decided together must not overrun them
        hour = timedelta(hours=1)
        limit = limit_reached(
            self.ledger.auto_actions(incident.target, hour),
            self.ledger.auto_actions(None, hour),
            self.policy,
            recent_on_new_targets=self._on_new_targets(incident.target, hour),
        )
        if limit is not None:
            await self._ask_approval(incident, limit)
            return
        self.ledger.note_auto_action(incident.id, incident.target, decision.solution_id)
        await self._execute(incident)

    def _preconditions_unmet(self, incident: IncidentView, spec: SolutionSpec) -> list[str]:
        unmet = []
        for cond in spec.preconditions:
            point = self.monitor.latest(incident.target, cond.series)
            metric = self.catalog.get(cond.series)
            value = point[1] if point else None
            if not cond.holds(value, metric.is_healthy if metric else None):
                unmet.append(f"{cond} (now {value})")
        return unmet

    def _blast_radius(self, decision: Decision) -> asyncio.Semaphore:
        spec = self._spec(decision)
        radius = spec.blast_radius if spec else 1
        return self._blast.setdefault(decision.solution_id, asyncio.Semaphore(radius))

    async def _execute(self, incident: IncidentView) -> None:
        decision = incident.decision
        assert decision is not None
        checked: PlaybookRun | None = None
        if incident.state == State.approved:  # bound to its plan: recompute it first
            try:
                decision, checked = await self._recheck_plan(incident)
            except Void:
                return
        spec = self._spec(decision)
        if spec is not None and (unmet := self._preconditions_unmet(incident, spec)):
            self._escalate(incident, f"preconditions of {spec.id} not met: {'; '.join(unmet)}")
            return
        async with self._blast_radius(decision):
            paused = self.ledger.automation().pause_for(incident.target)
            if paused and incident.state == State.decided:  # paused while it waited its turn
                await self._ask_approval(incident, f"{paused}; {_WAITS}")
                return
            incident = self._move(
                incident,
                State.executing,
                f"running {decision.playbook} (idempotency key {decision.incident_id}/"
                f"{decision.solution_id})",
            )
            check_mode = spec.check_mode if spec else True
            execution = await execute(decision, self.runner, self.ledger, check_mode, checked)
        await self._after_run(incident, decision, execution)

    async def _after_run(
        self, incident: IncidentView, decision: Decision, execution: Execution
    ) -> None:
        if execution.status == RunStatus.successful:
            changed = execution.run.changed if execution.run else 0
            self._move(
                incident,
                State.verifying,
                f"{decision.playbook} ran ({changed} changed); verifying",
                execution=execution,
            )
            return
        if execution.run is None:  # the dry run failed: nothing was changed
            failed = execution.check_result.failed_tasks if execution.check_result else ()
            self._escalate(
                incident,
                f"dry run of {decision.playbook} ended {execution.status}: {'; '.join(failed)}",
                execution=execution,
            )
            return
        await self._roll_back(
            incident, f"{decision.playbook} ended {execution.status}", execution=execution
        )

    async def _reconcile(self, incident: IncidentView) -> None:
        """Found in ``executing`` after a restart: what happened to the run decides."""
        decision = incident.decision
        if decision is None:
            self._escalate(incident, "found executing without a decision; not re-run")
            return
        spec = self._spec(decision)
        async with self._blast_radius(decision):
            execution, why = await reconcile(
                decision, self.runner, self.ledger, spec.check_mode if spec else True
            )
        log.info("incident %s reconciled: %s", incident.id, why)
        if execution is None:
            self._escalate(incident, f"the daemon stopped during the run: {why}")
            return
        self._emit(incident.id, incident.target, State.executing, f"reconciled: {why}")
        await self._after_run(incident, decision, execution)

    async def _verify(self, incident: IncidentView) -> None:
        assert incident.execution is not None and incident.decision is not None
        begun = self.ledger.run(run_key(incident.decision, "rollback"))
        if begun is not None:  # the daemon stopped during the rollback: finish that
            await self._roll_back(incident, begun.note or "the daemon stopped during the rollback")
            return
        spec = self._spec(incident.decision)
        series = {e.series for f in incident.findings for e in f.evidence}
        hold_s, timeout_s = self.settings.verify_hold_s, self.settings.verify_timeout_s
        conditions: tuple[Any, ...] = ()
        sqi_min: float | None = None
        if spec is not None:
            series |= set(spec.verification.metrics)
            conditions = spec.verification.conditions
            sqi_min = spec.verification.sqi_min
            hold_s = spec.verification.hold_s or hold_s
            timeout_s = min(spec.verification.deadline_s, timeout_s)

        def read_sqi(target: str) -> tuple[float, tuple[str, ...]] | None:
            result = self.analyzer.sqi(target)
            return (result.sqi, result.components) if result is not None else None

        verification = await verify(
            incident.execution,
            series,
            self.monitor.latest,
            incident.target,
            self.catalog,
            hold_s,
            timeout_s,
            conditions=conditions,
            read_sqi=read_sqi,
            sqi_min=sqi_min,
            component=incident.report.top.component
            if incident.report and incident.report.top
            else None,
        )
        resolved = verification.status == VerificationStatus.passed
        await self._learn(incident, resolved)
        if resolved:
            self._move(
                incident,
                State.resolved,
                f"{len(verification.checks)} check(s) healthy for "
                f"{hold_s:g} s after {verification.waited_s:.1f} s",
                verification=verification,
            )
            return
        unhealthy = ", ".join(c.series for c in verification.checks if not c.healthy)
        await self._roll_back(
            incident,
            f"verification {verification.status}: {unhealthy}",
            verification=verification,
        )

    async def _roll_back(self, incident: IncidentView, why: str, **payload: Any) -> None:
        """Rollback, re-check it (its check mode must show nothing left to revert), then a
        person takes over: ``rolled_back`` when it held, ``escalated`` when it did not."""
        decision = incident.decision
        assert decision is not None
        spec = self._spec(decision)
        outcome = await rollback(
            decision, self.runner, self.ledger, spec.check_mode if spec else True, why=why
        )
        if outcome.held and outcome.run is not None:
            self._move(
                incident,
                State.rolled_back,
                f"{why}; rolled back with {outcome.run.playbook} ({outcome.recheck}), "
                "a person is needed",
                reason=f"{why}; rolled back ({outcome.recheck})",
                **payload,
            )
        else:
            status = outcome.run.status if outcome.run else "no rollback"
            self._escalate(incident, f"{why}; rollback: {status} ({outcome.recheck})", **payload)

    async def _learn(self, incident: IncidentView, resolved: bool) -> None:
        """The outcome goes to the graph (a new case, solution statistics) and to the
        autonomy of (solution, fault, target class): a verified fix climbs, a failure drops."""
        assert incident.report is not None and incident.decision is not None
        decision = incident.decision
        key = AutonomyKey(decision.solution_id, incident.fault or "", target_class(incident.target))
        state = self.ledger.autonomy(key) or initial_state(key, 0, 0, self.policy)
        state = self.ledger.record_outcome(incident.id, state, resolved, self.policy)
        log.info(
            "incident %s: autonomy of %s now %s (%s)",
            incident.id,
            safe(key),  # the target class comes from outside
            state.level,
            state.reason,
        )
        seconds = (utcnow() - incident.opened_at).total_seconds()
        case = outcome_case(incident.id, incident.report, decision, resolved, seconds)
        self.outbox.put(incident.id, case, decision)  # in SQL first: Neo4j may be down now
        async with self._outcomes_lock:
            try:
                await self._deliver(case, decision)
            except GraphUnavailable as exc:  # kept in the outbox, retried by _deliver_outcomes
                self.health.failed("neo4j", exc, stack=False)
                log.warning("incident %s: the outcome waits in the outbox: %s", incident.id, exc)
                self._outcomes_due.set()
