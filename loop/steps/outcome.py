"""Verify and learn: did the fix work, and what the loop keeps of it.

    transition = await VerifyStep(monitor, analyzer, catalog, ledger, plans, learn,
                                  rollback).run(incident)   # verifying -> resolved | rollback
    await LearnStep(ledger, policy, outbox, delivery, health).run(incident, resolved=True)

Verification runs on the remediation plan's VerificationPlan (loop/verify.py). Learning
moves the autonomy of (solution, fault, target class) (loop/policy.py, loop/ledger.py) and
queues the outcome for the graph in SQL first (loop/outbox.py), so Neo4j being down
delays it and never loses it.
"""

from __future__ import annotations

import logging

from kernel.errors import GraphUnavailable
from kernel.logsafe import safe
from kernel.models import VerificationStatus, utcnow
from kernel.state import State
from loop.analyze import Analyzer
from loop.execute import run_key
from loop.learn import outcome_case
from loop.ledger import Ledger
from loop.monitor import Monitor
from loop.outbox import OutcomeDelivery, OutcomeOutbox
from loop.policy import AutonomyKey, PolicyConfig, initial_state, target_class
from loop.steps import Plans
from loop.steps.run import RollbackStep
from loop.store import IncidentView
from loop.supervise import Health
from loop.transition import Transition
from loop.verify import verify
from rules.catalog import Catalog

log = logging.getLogger("mendloop.daemon")


class LearnStep:
    """The outcome goes to the graph (a new case, solution statistics) and to the
    autonomy of (solution, fault, target class): a verified fix climbs, a failure drops."""

    def __init__(
        self,
        ledger: Ledger,
        policy: PolicyConfig,
        outbox: OutcomeOutbox,
        delivery: OutcomeDelivery,
        health: Health,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.outbox = outbox
        self.delivery = delivery
        self.health = health

    async def run(self, incident: IncidentView, resolved: bool) -> None:
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
        async with self.delivery.lock:
            try:
                await self.delivery.deliver(case, decision)
            except GraphUnavailable as exc:  # kept in the outbox, retried by its task
                self.health.failed("neo4j", exc, stack=False)
                log.warning("incident %s: the outcome waits in the outbox: %s", incident.id, exc)
                self.delivery.due.set()


class VerifyStep:
    def __init__(
        self,
        monitor: Monitor,
        analyzer: Analyzer,
        catalog: Catalog,
        ledger: Ledger,
        plans: Plans,
        learn: LearnStep,
        rollback: RollbackStep,
        levels: frozenset[str] = frozenset(),
    ) -> None:
        self.levels = levels  # alert series: fresh from the run's start (loop/verify.py)
        self.monitor = monitor
        self.analyzer = analyzer
        self.catalog = catalog
        self.ledger = ledger
        self.plans = plans
        self.learn = learn
        self.rollback = rollback

    def read_sqi(self, target: str) -> tuple[float, tuple[str, ...]] | None:
        result = self.analyzer.sqi(target)
        return (result.sqi, result.components) if result is not None else None

    async def run(self, incident: IncidentView) -> Transition:
        assert incident.execution is not None and incident.decision is not None
        plan = self.plans.of(incident)
        begun = self.ledger.run(run_key(plan, "rollback"))
        if begun is not None:  # the daemon stopped during the rollback: finish that
            why = begun.note or "the daemon stopped during the rollback"
            return await self.rollback.run(incident, plan, why)
        verification = await verify(
            incident.execution,
            plan.verification,
            self.monitor.latest,
            incident.target,
            self.catalog,
            read_sqi=self.read_sqi,
            levels=self.levels,
        )
        resolved = verification.status == VerificationStatus.passed
        await self.learn.run(incident, resolved)
        if resolved:
            return Transition(
                State.resolved,
                f"{len(verification.checks)} check(s) healthy for "
                f"{plan.verification.hold_s:g} s after {verification.waited_s:.1f} s",
                verification=verification,
            )
        unhealthy = ", ".join(c.series for c in verification.checks if not c.healthy)
        return await self.rollback.run(
            incident,
            plan,
            f"verification {verification.status}: {unhealthy}",
            verification=verification,
        )
