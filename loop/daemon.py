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

Every long-lived task (the findings consumer, housekeeping, the rules watcher, the
outcome outbox, each incident's walk) runs under ``supervised`` (loop/supervise.py): an
exception is logged (its stack once), counted (``health``, /metrics) and the task starts
again after a backoff. A finding stays held (loop/admission.py) until its incident is
committed, so a fault that arrives while SQL is locked, full or down becomes an incident
once it is back; /readyz says what is failing meanwhile. A walk that meets an SQL outage
is retried from its persisted state, never escalated for it. Incidents are opened at most
``loop_max_opens_per_minute`` and at most ``loop_max_concurrent_runs`` run their dry runs
and runs at once, best rank first (established targets, then severity).
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

from kernel.config import Settings
from kernel.errors import GraphUnavailable, IllegalTransition, MendloopError, RuleFileError
from kernel.logsafe import LogDigest
from kernel.models import (
    Finding,
    Sample,
    utcnow,
)
from kernel.state import State
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from loop.admission import Admission, Rank, RunGate, Standing, rank
from loop.analyze import Analyzer
from loop.anomaly import BaselineBank
from loop.consume import Consumer
from loop.db.engine import store_outage
from loop.decide import Decider
from loop.execute import PlaybookRunner
from loop.intake import limits_of
from loop.ledger import Ledger
from loop.monitor import IngestResult, Monitor
from loop.outbox import OutcomeOutbox
from loop.policy import (
    PolicyConfig,
)
from loop.remediate import Remediation
from loop.solutions import SolutionSpec, load_library
from loop.store import IncidentStore, IncidentView
from loop.supervise import Backoff, Health, supervised
from loop.watch import Upkeep
from rules.catalog import Catalog
from rules.compiler import RuleSpec
from rules.reload import RuleSource

log = logging.getLogger("mendloop.daemon")
RUN_STATES = frozenset({State.decided, State.approved, State.executing})  # playbooks run here
STUCK_S = 10.0  # an SQL call of the loop waiting longer (a table lock) makes /readyz say so


def dependency_down(exc: BaseException) -> str | None:
    """The dependency an exception says is out (``sql``, ``neo4j``), or None (a bug)."""
    if store_outage(exc):
        return "sql"
    return "neo4j" if isinstance(exc, GraphUnavailable) else None


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


class Engine(Consumer, Upkeep, Remediation):
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
            new_target_share=settings.autonomy_new_target_share,
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
        # resilience: supervised tasks, held findings, bounded opens and runs, the outbox
        self.health = Health()
        self.backoff = Backoff(max_s=settings.loop_retry_max_s)
        self.standing = Standing(settings.loop_established_s)
        every_s = settings.log_summary_s
        self.admission = Admission(
            settings.loop_held_max, settings.loop_max_opens_per_minute, digest_s=every_s
        )
        self.run_gate = RunGate(settings.loop_max_concurrent_runs)
        self.outbox = OutcomeOutbox(store.engine)
        self._outcomes: asyncio.Task[None] | None = None
        self._resumer: asyncio.Task[None] | None = None
        self._outcomes_due = asyncio.Event()
        self._outcomes_lock = asyncio.Lock()
        self.quality_log = LogDigest(log, "input quality (gaps, stale samples)", every_s)
        self.sqi_log = LogDigest(log, "SQI below 80 (context, opens nothing)", every_s)
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
        if result.latest:
            self.standing.seen({p.target for p in result.latest})
        self._hand_over(self.analyzer.observe(result.latest))
        return result

    def _hand_over(self, findings: list[Finding]) -> None:
        if findings:
            with self._intake_lock:
                if self._loop is None:  # before start(): kept, handed over when the loop runs
                    self._early.extend(findings)
                else:
                    self._loop.call_soon_threadsafe(self._findings.put_nowait, findings)

    def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(
            supervised(name, body, self.health, self.backoff, blame=dependency_down),
            name=f"mendloop-{name}",
        )

    async def start(self) -> None:
        with self._intake_lock:
            self._loop = asyncio.get_running_loop()
            if self._early:
                self._findings.put_nowait(self._early)
                self._early = []
        self._resumer = self._supervise("resume", self._resume)
        self._consumer = self._supervise("findings", self._consume)
        self._housekeeper = self._supervise("housekeeping", self._housekeeping)
        self._rules_watcher = self._supervise("rules", self._watch_rules)
        self._outcomes = self._supervise("outcomes", self._deliver_outcomes)

    async def _resume(self) -> None:
        """Every unfinished incident walks on from its stored state (SQL failing at start:
        retried with backoff while the API answers and /readyz says why)."""
        for incident in await asyncio.to_thread(self.store.unfinished):
            if incident.id not in self._tasks:
                log.info("resuming incident %s from %s", incident.id, incident.state)
                self._spawn(incident.id)
        self.health.ok("resume")

    async def stop(self) -> None:
        running = (
            self._resumer,
            self._consumer,
            self._housekeeper,
            self._rules_watcher,
            self._outcomes,
        )
        tasks = [t for t in (*running, *self._tasks.values()) if t is not None]
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

    def loop_health(self) -> tuple[bool, str]:
        """For /readyz: the loop runs and nothing in it is failing now; else what fails
        (task or dependency), since when and with what, and how many findings wait."""
        if not self.loop_running():
            return False, "the engine loop is not running"
        held = f"{len(self.admission)} finding(s) held"
        problems = [f"{name}: {f.describe()}" for name, f in sorted(self.health.failing().items())]
        problems += [
            f"{name}: a call has waited {seconds:.0f} s"
            for name, seconds in sorted(self.health.stuck(STUCK_S).items())
        ]
        if problems:
            return False, f"{'; '.join(problems)}; {held}"
        return True, f"running; {held}, {len(self._tasks)} incident(s) in flight"

    def findings_queued(self) -> int:
        """Findings waiting to become incidents: batches not yet taken, findings held."""
        return self._findings.qsize() + len(self.admission)

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

    # -- the walk through the state machine ------------------------------------------------

    def _spawn(self, incident_id: str) -> None:
        walk = supervised(
            "incident walk",
            lambda: self._drive(incident_id),
            self.health,
            self.backoff,
            retry=lambda exc: dependency_down(exc) is not None,  # from its stored state
            blame=dependency_down,
        )
        task = asyncio.create_task(walk, name=f"incident-{incident_id}")
        self._tasks[incident_id] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(incident_id, None)
            if self._tasks.get(incident_id) is done
            else None
        )

    def _run_rank(self, incident: IncidentView) -> Rank:
        severities = [
            rule.severity
            for f in incident.findings
            if (rule := self.analyzer.rules.get(f.rule_id)) is not None
        ]
        best = min(severities, key=lambda s: rank(False, s, 0), default=None)
        established = self.standing.established(incident.target)
        return rank(established, best, incident.opened_at.timestamp())

    async def _step(self, incident: IncidentView) -> None:
        """One step; those that run playbooks (dry runs, runs) wait for a run slot."""
        if incident.state not in RUN_STATES:
            await self._steps[incident.state](incident)
            return
        async with self.run_gate.slot(self._run_rank(incident)):
            await self._steps[incident.state](incident)

    async def _drive(self, incident_id: str) -> None:
        """Walk one incident through the daemon's steps under its target's lock. A person
        may move it meanwhile (approve, re-analyse, propose, close): then whoever moved it
        owns the next step (a new walk is spawned), and this walk stops quietly. An SQL
        outage raises out of here (the supervisor walks it again from its stored state)."""
        with self.health.waiting("sql"):
            incident = await asyncio.to_thread(self.store.get, incident_id)
        if incident is None:
            log.error("incident %s to walk does not exist", incident_id)
            return
        async with self._target_locks[incident.target]:
            incident = await asyncio.to_thread(self.store.get, incident_id)  # after the wait
            assert incident is not None
            while not incident.terminal and incident.state in self._steps:
                before, stamp = incident.state, incident.updated_at
                try:
                    await self._step(incident)
                except asyncio.CancelledError:
                    raise
                except GraphUnavailable:
                    raise  # Neo4j out past the matcher's own retries: walked again later
                except IllegalTransition as exc:
                    now = self.store.get(incident_id)
                    if now is not None and now.updated_at != stamp:
                        log.info("incident %s was moved by someone else: %s", incident_id, exc)
                        return
                    self._escalate(incident, f"{incident.state} failed: {exc}")
                except MendloopError as exc:
                    self._escalate(incident, f"{incident.state} failed: {exc}")
                except Exception as exc:  # a bug must not take the daemon down
                    if store_outage(exc):
                        raise  # not the incident's fault: never escalated for it
                    log.exception(
                        "incident %s: unexpected error in %s", incident.id, incident.state
                    )
                    self._escalate(incident, f"internal error in {incident.state}: {exc!r}")
                now_view = await asyncio.to_thread(self.store.get, incident_id)
                assert now_view is not None
                incident = now_view
                self.health.ok("incident walk")
                self.health.ok("sql")
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
