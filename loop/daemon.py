"""The daemon: wires monitor -> analyze -> decide -> execute -> verify and drives incidents.

    engine = Engine(settings, store, graph, embedder)
    await engine.start()                  # resumes unfinished incidents first
    engine.submit(samples)                # from any thread: the twin, the REST API
    await engine.wait_settled(incident_id, timeout_s=600)

Each incident is walked through the state machine by one task; a stage that fails
records its reason on the incident (escalated) and the daemon carries on. A target has at
most one incident per fault in flight and runs one remediation at a time; a solution runs
on at most ``blast_radius`` targets at once. Autonomy is earned (loop/policy.py, state in
loop/ledger.py): an automatic fix runs (unless automation is paused), one that needs
approval waits in ``awaiting_approval`` with its ApprovalPlan until ``approve``/``reject``.
What people do (approve, reject, pause/resume, reanalyze, propose, close, escalate) are
thread-safe methods of loop/operate.py that the REST API and chat call; listeners hear
every step as a StageEvent. Every playbook run is keyed and recorded before it starts;
after a restart an incident found in ``executing`` is reconciled (loop/execute.py
``reconcile``, a begun rollback through ``rollback``), never blindly re-run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from loop.analyze import Analyzer, ReloadResult
from loop.anomaly import BaselineBank
from loop.config import Settings
from loop.decide import Decider
from loop.errors import IllegalTransition, MendloopError, RuleFileError
from loop.execute import PlaybookRunner
from loop.ledger import Ledger
from loop.models import (
    Finding,
    Sample,
    utcnow,
)
from loop.intake import limits_of
from loop.monitor import IngestResult, Monitor
from loop.policy import (
    PolicyConfig,
)
from loop.rca import independent_problems
from loop.remediate import Remediation
from loop.solutions import SolutionSpec, load_library
from loop.state import State
from loop.store import IncidentStore, IncidentView
from rules.catalog import Catalog
from rules.compiler import RuleSpec
from rules.reload import RuleSource

log = logging.getLogger("mendloop.daemon")


@dataclass(frozen=True)
class StageEvent:
    """What listeners (chat, the web page) hear. ``kind`` ``incident``: an incident moved
    (or a step of it happened) and ``state`` is where it is; ``automation``: automation
    was paused or resumed, ``incident_id`` is empty, ``target`` the paused target or
    ``*`` (everywhere) and ``state`` None."""

    incident_id: str
    target: str
    state: State | None
    note: str
    at: datetime
    kind: str = "incident"


Listener = Callable[[StageEvent], None]


class Engine(Remediation):
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
        self.policy = policy or PolicyConfig(
            max_auto_per_target_per_hour=settings.autonomy_max_per_target_per_hour,
            max_auto_per_hour=settings.autonomy_max_per_hour,
        )
        self._blast: dict[str, asyncio.Semaphore] = {}
        self.graph = graph
        self.embedder = embedder
        self.catalog = catalog
        self.monitor = Monitor(catalog, settings.window_s, limits=limits_of(settings))
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

    def submit(
        self,
        batch: Iterable[Sample | Mapping[str, Any]],
        *,
        owner: str | None = None,
        refused: Mapping[str, int] | None = None,
    ) -> IngestResult:
        """Ingest samples (thread-safe); findings are handed to the loop's queue."""
        result = self.monitor.ingest(batch, owner=owner, refused=refused)
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
        with self._intake_lock:  # approvals after this wait for the next start (it resumes them)
            self._loop = None
        self.analyzer.close()

    @overload
    def close(self) -> None: ...

    @overload
    def close(self, incident_id: str, by: str, comment: str = "") -> IncidentView: ...

    def close(
        self, incident_id: str | None = None, by: str = "api", comment: str = ""
    ) -> IncidentView | None:
        """``close(incident_id, by, comment)``: a person closes an incident that is not
        running (Remediation.close_incident). ``close()``: release the store and the graph
        (``dispose``; the name predates closing incidents and callers keep using it)."""
        if incident_id is None:
            self.dispose()
            return None
        return self.close_incident(incident_id, by, comment)

    def dispose(self) -> None:
        self.store.close()
        self.graph.close()

    # -- what /readyz and /metrics ask (api/metrics.py) ---------------------------------

    def loop_running(self) -> bool:
        """The findings consumer is alive: findings become incidents."""
        return self._consumer is not None and not self._consumer.done()

    def findings_queued(self) -> int:
        return self._findings.qsize()

    def incidents_in_flight(self) -> int:
        """Incidents being driven through the loop now (one task each)."""
        return len(self._tasks)

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
                for problem in independent_problems(
                    fresh, self._component_of, self.analyzer.topology
                ):
                    incident_id = self.store.open_incident(target, problem)
                    self._emit(incident_id, target, State.open, f"{len(problem)} rule finding(s)")
                    self._spawn(incident_id)

    def _fault_of(self, finding: Finding) -> str:
        return self.analyzer.rules[finding.rule_id].fault

    def _component_of(self, finding: Finding) -> str:
        return self.analyzer.rules[finding.rule_id].component

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
        """Walk one incident through the daemon's steps under its target's lock. A person
        may move it meanwhile (approve, re-analyse, propose, close): then whoever moved it
        owns the next step (a new walk is spawned), and this walk stops quietly."""
        incident = self.store.get(incident_id)
        assert incident is not None
        async with self._target_locks[incident.target]:
            incident = self.store.get(incident_id)  # what it is now, after the wait
            assert incident is not None
            while not incident.terminal and incident.state in self._steps:
                before, stamp = incident.state, incident.updated_at
                try:
                    await self._steps[incident.state](incident)
                except asyncio.CancelledError:
                    raise
                except IllegalTransition as exc:
                    now = self.store.get(incident_id)
                    if now is not None and now.updated_at != stamp:
                        log.info("incident %s was moved by someone else: %s", incident_id, exc)
                        return
                    self._escalate(incident, f"{incident.state} failed: {exc}")
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
                    if incident.updated_at != stamp:  # a person put it back: their walk goes on
                        return
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

    def _emit(
        self, incident_id: str, target: str, state: State | None, note: str, kind: str = "incident"
    ) -> None:
        event = StageEvent(incident_id, target, state, note, utcnow(), kind)
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
