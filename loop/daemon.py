"""The daemon: wires monitor -> analyze -> decide -> execute -> verify and drives incidents.

    engine = Engine(settings, store, graph, embedder)
    await engine.start()                  # resumes unfinished incidents first
    engine.submit(samples)                # from any thread: the twin, the REST API
    await engine.wait_settled(incident_id, timeout_s=600)

Each incident is walked through the state machine by one task; a stage that fails
records its reason on the incident (escalated) and the daemon carries on. A target has at
most one incident per fault in flight and runs one remediation at a time; a solution runs
on at most ``blast_radius`` targets at once. Autonomy is earned (loop/policy.py, state in
loop/ledger.py): an automatic fix runs, one that needs approval waits in
``awaiting_approval`` until ``approve``/``reject`` (the REST API calls them). Every
playbook run is keyed and recorded before it starts; after a restart an incident found
in ``executing`` is reconciled (loop/execute.py ``reconcile``), never blindly re-run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from loop.analyze import Analyzer, ReloadResult
from loop.anomaly import BaselineBank
from loop.config import Settings
from loop.decide import Decider
from loop.errors import IllegalTransition, MendloopError, RuleFileError
from loop.execute import PlaybookRunner, execute, reconcile, rollback
from loop.learn import outcome_case, record_outcome
from loop.ledger import Ledger
from loop.models import (
    Decision,
    DecisionMode,
    Execution,
    Finding,
    RunStatus,
    Sample,
    Solution,
    VerificationStatus,
    utcnow,
)
from loop.monitor import IngestResult, Monitor
from loop.policy import (
    AutonomyKey,
    PolicyConfig,
    choose_mode,
    initial_state,
    limit_reached,
    target_class,
)
from loop.solutions import SolutionSpec, load_library
from loop.state import State
from loop.store import IncidentStore, IncidentView
from loop.verify import verify
from rules.catalog import Catalog
from rules.compiler import RuleSpec
from rules.reload import RuleSource

log = logging.getLogger("mendloop.daemon")


@dataclass(frozen=True)
class StageEvent:
    incident_id: str
    target: str
    state: State
    note: str
    at: datetime


Listener = Callable[[StageEvent], None]


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: IncidentStore,
        graph: KnowledgeGraph,
        embedder: Embedder,
        catalog: Catalog,
        rules: Iterable[RuleSpec],
        runner: PlaybookRunner,
        playbook_vars: dict[str, str | int | float | bool] | None = None,
        policy: PolicyConfig | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # remediation: the solution library, earned autonomy, runs keyed before they start
        self.library: dict[str, SolutionSpec] = load_library(settings.playbooks_dir)
        self.ledger = Ledger(store.engine)
        self.policy = policy or PolicyConfig()
        self._blast: dict[str, asyncio.Semaphore] = {}
        self.graph = graph
        self.embedder = embedder
        self.catalog = catalog
        self.monitor = Monitor(catalog, settings.window_s)
        # ML baselines per target: learnt from normal operation, persisted under var/models
        baselines = BaselineBank(catalog, model_dir=settings.var_dir / "models")
        self.analyzer = Analyzer(catalog, rules, clock=self.monitor.clock, baselines=baselines)
        if loaded := baselines.load():
            log.info("loaded %d ML baseline(s) from %s", loaded, baselines.model_dir)
        # hot reload: rule files are polled; a broken set is refused, its errors kept here
        self.rule_source = RuleSource(settings.rules_dir, catalog)
        self.rules_errors: tuple[RuleFileError, ...] = ()
        self.rules_poll_s = 2.0
        self._rules_watcher: asyncio.Task[None] | None = None
        self.runner = runner
        self.decider = Decider(
            graph,
            embedder,
            settings.match_min_similarity,
            playbook_vars or {"twin_url": f"http://{settings.twin_host}:{settings.twin_port}"},
            autonomy=self.autonomy,
            library=self.library,
        )
        self.listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._findings: asyncio.Queue[list[Finding]] = asyncio.Queue()
        self._early: list[Finding] = []
        self._intake_lock = threading.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._target_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._consumer: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._steps: dict[State, Callable[[IncidentView], Awaitable[None]]] = {
            State.open: self._analyze,
            State.analyzed: self._decide,
            State.decided: self._dispatch,
            State.approved: self._execute,
            State.executing: self._reconcile,
            State.verifying: self._verify,
        }

    # -- intake ---------------------------------------------------------------------------

    def submit(self, batch: Iterable[Sample | Mapping[str, Any]]) -> IngestResult:
        """Ingest samples (thread-safe); findings are handed to the loop's queue."""
        result = self.monitor.ingest(batch)
        self._hand_over(self.analyzer.observe(result.latest))
        return result

    def _hand_over(self, findings: list[Finding]) -> None:
        if findings:
            with self._intake_lock:
                if self._loop is None:  # before start(): kept, handed over when the loop runs
                    self._early.extend(findings)
                else:
                    self._loop.call_soon_threadsafe(self._findings.put_nowait, findings)

    # -- rules: hot reload -------------------------------------------------------------

    def reload_rules(self) -> ReloadResult | None:
        """Re-read the rule files. A set with any error is refused whole (``rules_errors``
        says file:line and why) and the running rules stay; a good set replaces them
        atomically, the currently abnormal signals re-asserted into it."""
        specs, errors = self.rule_source.load()
        if errors:
            self.rules_errors = tuple(errors)
            for error in errors:
                log.error("rule reload refused, previous rules stay active: %s", error)
            return None
        self.rules_errors = ()
        result = self.analyzer.reload(specs)
        log.info(
            "rules reloaded: %d active (added %s, removed %s, changed %s)",
            len(specs),
            ", ".join(result.added) or "-",
            ", ".join(result.removed) or "-",
            ", ".join(result.changed) or "-",
        )
        self._hand_over(list(result.fired))
        return result

    async def _watch_rules(self) -> None:
        """Poll the rule files (mtimes) and sweep the analyzer (gaps, absences, windows)."""
        while True:
            await asyncio.sleep(self.rules_poll_s)
            if self.rule_source.changed():
                await asyncio.to_thread(self.reload_rules)
            self._hand_over(self.analyzer.sweep())
            bad_input: defaultdict[tuple[str, str, str], list[str]] = defaultdict(list)
            for finding in self.analyzer.quality_findings():
                bad_input[(finding.kind, finding.target, finding.rule_id)] += finding.series
            for (kind, target, why), series in bad_input.items():
                log.warning("%s on %s (%s): %s", kind, target, why, ", ".join(series[:5]))
            for finding in self.analyzer.sqi_findings():  # context for people, opens nothing
                log.warning("SQI below 80 on %s: %s", finding.target, finding.rule_id)

    async def start(self) -> None:
        with self._intake_lock:
            self._loop = asyncio.get_running_loop()
            if self._early:
                self._findings.put_nowait(self._early)
                self._early = []
        for incident in self.store.unfinished():
            log.info("resuming incident %s from %s", incident.id, incident.state)
            self._spawn(incident.id)
        self._consumer = asyncio.create_task(self._consume(), name="mendloop-findings")
        self._housekeeper = asyncio.create_task(self._housekeeping(), name="mendloop-housekeeping")
        self._rules_watcher = asyncio.create_task(self._watch_rules(), name="mendloop-rules")

    async def stop(self) -> None:
        tasks = [
            t
            for t in (self._consumer, self._housekeeper, self._rules_watcher, *self._tasks.values())
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.analyzer.close()

    def close(self) -> None:
        self.store.close()
        self.graph.close()

    async def wait_settled(self, incident_id: str, timeout_s: float) -> IncidentView:
        """Until the incident has ended or waits for a person (approval), or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            incident = self.store.get(incident_id)
            assert incident is not None
            settled = incident.terminal or incident.state == State.awaiting_approval
            if settled or time.monotonic() > deadline:
                return incident
            await asyncio.sleep(0.2)

    async def _housekeeping(self, every_s: float = 60.0) -> None:
        """Series that went quiet are forgotten, so memory follows the live series only."""
        while True:
            await asyncio.sleep(every_s)
            freed = self.monitor.expire()
            if freed:
                log.info("expired %d quiet series", freed)
            retrained = await asyncio.to_thread(self.analyzer.retrain_due, self.monitor.clock())
            if retrained:
                log.info("ML baselines retrained: %s", ", ".join(retrained))

    async def _consume(self) -> None:
        while True:
            findings = await self._findings.get()
            by_target: defaultdict[str, list[Finding]] = defaultdict(list)
            for finding in findings:
                by_target[finding.target].append(finding)
            for target, group in by_target.items():
                handled = self._faults_in_flight(target)
                fresh = [f for f in group if self._fault_of(f) not in handled]
                if not fresh:
                    log.info("findings on %s belong to incidents in flight", target)
                    continue
                incident_id = self.store.open_incident(target, fresh)
                self._emit(incident_id, target, State.open, f"{len(fresh)} rule finding(s)")
                self._spawn(incident_id)

    def _fault_of(self, finding: Finding) -> str:
        return self.analyzer.rules[finding.rule_id].fault

    def _faults_in_flight(self, target: str) -> set[str]:
        """Faults a live incident of the target already handles: more findings of the same
        fault join nothing new; a different fault is a problem of its own (its remediation
        still waits for the target's lock)."""
        return {
            self._fault_of(f)
            for incident in self.store.unfinished(target)
            for f in incident.findings
            if f.rule_id in self.analyzer.rules
        }

    # -- the walk through the state machine ------------------------------------------------

    def _spawn(self, incident_id: str) -> None:
        task = asyncio.create_task(self._drive(incident_id), name=f"incident-{incident_id}")
        self._tasks[incident_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(incident_id, None))

    async def _drive(self, incident_id: str) -> None:
        incident = self.store.get(incident_id)
        assert incident is not None
        async with self._target_locks[incident.target]:
            while not incident.terminal and incident.state in self._steps:
                before = incident.state
                try:
                    await self._steps[incident.state](incident)
                except asyncio.CancelledError:
                    raise
                except MendloopError as exc:
                    self._escalate(incident, f"{incident.state} failed: {exc}")
                except Exception as exc:  # a bug must not take the daemon down
                    log.exception(
                        "incident %s: unexpected error in %s", incident.id, incident.state
                    )
                    self._escalate(incident, f"internal error in {incident.state}: {exc!r}")
                incident = self.store.get(incident_id)  # type: ignore[assignment]
                assert incident is not None
                if incident.state == before:  # never run a step (a playbook!) twice in a row
                    log.error("incident %s did not leave %s; left to a person", incident_id, before)
                    return

    def _move(self, incident: IncidentView, state: State, note: str, **kw: Any) -> IncidentView:
        view = self.store.transition(incident.id, state, note, **kw)
        self._emit(incident.id, incident.target, state, note)
        return view

    def _escalate(self, incident: IncidentView, reason: str, **payload: Any) -> None:
        current = self.store.get(incident.id)
        if current is None or current.terminal:
            return
        try:
            self._move(current, State.escalated, reason, reason=reason, **payload)
        except IllegalTransition:
            log.warning("incident %s could not be escalated from %s", incident.id, current.state)

    def _emit(self, incident_id: str, target: str, state: State, note: str) -> None:
        event = StageEvent(incident_id, target, state, note, utcnow())
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("stage listener failed")

    async def _analyze(self, incident: IncidentView) -> None:
        report = self.analyzer.report(incident.id, incident.target, incident.findings)
        top = report.top
        if top is None:
            self._escalate(incident, "no rule explains the findings")
            return
        self._move(
            incident,
            State.analyzed,
            f"root cause {top.fault} ({top.component}, score {top.score:.2f}) "
            f"in {report.latency_ms:.1f} ms",
            report=report,
            fault=top.fault,
        )

    async def _decide(self, incident: IncidentView) -> None:
        assert incident.report is not None
        outcome = await asyncio.to_thread(self.decider.decide, incident.report)
        if outcome.decision is None:
            self._escalate(incident, outcome.reason)
            return
        self._move(incident, State.decided, outcome.reason, decision=outcome.decision)

    # -- remediation: autonomy, approval, execution, verification ---------------------------

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
        )

    def approve(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        """A person approves the waiting fix: the incident moves on to the real run.
        Thread-safe (the API calls it from its worker threads); IllegalTransition when the
        incident does not wait for an approval."""
        note = f"approved by {by}" + (f": {comment}" if comment else "")
        view = self.store.transition(incident_id, State.approved, note)
        self._emit(incident_id, view.target, State.approved, note)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._spawn, incident_id)
        return view

    def reject(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        """A person rejects the waiting fix: the incident ends ``rejected``, nothing runs."""
        note = f"rejected by {by}" + (f": {comment}" if comment else "")
        view = self.store.transition(incident_id, State.rejected, note, reason=note)
        self._emit(incident_id, view.target, State.rejected, note)
        return view

    def _spec(self, decision: Decision) -> SolutionSpec | None:
        return self.library.get(decision.solution_id)

    async def _dispatch(self, incident: IncidentView) -> None:
        decision = incident.decision
        assert decision is not None
        if decision.mode == DecisionMode.auto:
            # the hourly limits again, now: incidents decided together must not overrun them
            hour = timedelta(hours=1)
            limit = limit_reached(
                self.ledger.auto_actions(incident.target, hour),
                self.ledger.auto_actions(None, hour),
                self.policy,
            )
            if limit is not None:
                self._move(incident, State.awaiting_approval, limit)
                return
            self.ledger.note_auto_action(incident.id, incident.target, decision.solution_id)
            await self._execute(incident)
        elif decision.mode == DecisionMode.approval:
            self._move(
                incident, State.awaiting_approval, f"needs a person's approval: {decision.reason}"
            )
        else:
            self._escalate(incident, f"suggested fix {decision.solution_id}; no autonomy")

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
        spec = self._spec(decision)
        if spec is not None and (unmet := self._preconditions_unmet(incident, spec)):
            self._escalate(incident, f"preconditions of {spec.id} not met: {'; '.join(unmet)}")
            return
        async with self._blast_radius(decision):
            incident = self._move(
                incident,
                State.executing,
                f"running {decision.playbook} (idempotency key {decision.incident_id}/"
                f"{decision.solution_id})",
            )
            check_mode = spec.check_mode if spec else True
            execution = await execute(decision, self.runner, self.ledger, check_mode)
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
        run, recheck = await rollback(
            decision, self.runner, self.ledger, spec.check_mode if spec else True
        )
        held = run is not None and run.status == RunStatus.successful
        if held and "still to revert" not in recheck and "ended" not in recheck:
            self._move(
                incident,
                State.rolled_back,
                f"{why}; rolled back with {run.playbook} ({recheck}), a person is needed",
                reason=f"{why}; rolled back ({recheck})",
                **payload,
            )
        else:
            status = run.status if run else "no rollback"
            self._escalate(incident, f"{why}; rollback: {status} ({recheck})", **payload)

    async def _learn(self, incident: IncidentView, resolved: bool) -> None:
        """The outcome goes to the graph (a new case, solution statistics) and to the
        autonomy of (solution, fault, target class): a verified fix climbs, a failure drops."""
        assert incident.report is not None and incident.decision is not None
        decision = incident.decision
        key = AutonomyKey(decision.solution_id, incident.fault or "", target_class(incident.target))
        state = self.ledger.autonomy(key) or initial_state(key, 0, 0, self.policy)
        state = self.ledger.record_outcome(incident.id, state, resolved, self.policy)
        log.info(
            "incident %s: autonomy of %s now %s (%s)", incident.id, key, state.level, state.reason
        )
        seconds = (utcnow() - incident.opened_at).total_seconds()
        case = outcome_case(incident.id, incident.report, decision, resolved, seconds)
        try:
            # in a thread: the write retries through a Neo4j restart, the loop must not wait
            await asyncio.to_thread(record_outcome, self.graph, self.embedder, case, decision)
        except MendloopError as exc:
            log.warning("incident %s: outcome not written to the graph: %s", incident.id, exc)
