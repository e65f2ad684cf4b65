"""The daemon: findings in, incidents driven through the steps of the loop, until shutdown.

    engine = Engine(settings, store, graph, embedder, catalog, rules, runner, site, rule_source)
    await engine.start()                  # resumes unfinished incidents first
    engine.submit(samples)                # from any thread: the twin, the REST API
    engine.operations.approve(...)        # what people do (loop/operations.py)
    await engine.wait_settled(incident_id, timeout_s=600)
    await engine.stop(); engine.close()

The engine keeps intake (``submit``, ``hand_over``), the findings consumer with its
admission (loop/consume.py, loop/admission.py), the walk of each incident through the
steps table (loop/walk.py over loop/steps/: analyze, decide, dispatch, execute,
reconcile, verify; each returns a Transition that is applied, loop/moves.py),
supervision and shutdown. What the steps need is built here once and passed to each
explicitly; what people do is ``operations`` (loop/operations.py).

Each incident is walked by one task under its target's lock; a step that fails records
its reason on the incident (escalated) and the daemon carries on. Steps that run
playbooks wait for a run slot (``loop_max_concurrent_runs``, best rank first). Every
long-lived task (the findings consumer, housekeeping, the rules watcher, the outcome
outbox, each walk) runs under ``supervised`` (loop/supervise.py): an exception is logged,
counted (``health``, /metrics) and the task starts again after a backoff. A walk that
meets an SQL or Neo4j outage is retried from its persisted state, never escalated for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kernel.config import Settings
from kernel.models import Finding, Sample
from kernel.shadow import ShadowScope
from kernel.state import State
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from loop.admission import Admission, RunGate, Standing
from loop.analyze import Analyzer
from loop.anomaly import BaselineBank
from loop.autonomy import EarnedAutonomy
from loop.cluster.worker import ClusterWorker
from loop.consume import Consumer
from loop.decide import Decider
from loop.estate import Estate
from loop.events import Events, Listener
from loop.execute import PlaybookRunner
from loop.intake import Latest, limits_of
from loop.ledger import Ledger
from loop.monitor import IngestResult, Monitor
from loop.moves import Moves
from loop.operations import Operations
from loop.outbox import OutcomeDelivery, OutcomeOutbox
from loop.planner import Planner
from loop.policy import PolicyConfig
from loop.rca import Topology
from loop.status import LoopStatus
from loop.steps.table import Steps
from loop.store import IncidentStore, IncidentView
from loop.supervise import Backoff, Health, supervised
from loop.sustained import SustainedAnomalies, SustainedPolicy
from loop.walk import Walker, dependency_down
from loop.watch import Upkeep
from rules.catalog import Catalog
from rules.compiler import RuleSpec
from rules.reload import RuleSource

log = logging.getLogger("mendloop.daemon")
STUCK_S = 10.0  # an SQL call of the loop waiting longer (a table lock) makes /readyz say so


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
        estate: Estate,
        rule_source: RuleSource,
        policy: PolicyConfig | None = None,
    ) -> None:
        self.settings, self.store, self.graph, self.embedder = settings, store, graph, embedder
        self.catalog, self.runner = catalog, runner
        self.estate = estate  # the site: domain, library, parameter defaults, hosts
        self.domain = estate.domain
        self.library = estate.library  # what may run, and its risk
        self.ledger = Ledger(store.engine)
        self.policy = policy or PolicyConfig(
            max_auto_per_target_per_hour=settings.autonomy_max_per_target_per_hour,
            max_auto_per_hour=settings.autonomy_max_per_hour,
            new_target_share=settings.autonomy_new_target_share,
        )
        self.monitor = Monitor(catalog, settings.window_s, limits=limits_of(settings))
        # ML baselines per target: learnt from normal operation, persisted under var/models
        baselines = BaselineBank(catalog, model_dir=settings.var_dir / "models")
        self.analyzer = Analyzer(
            catalog,
            rules,
            clock=self.monitor.clock,
            baselines=baselines,
            topology=Topology(estate.domain.components),
        )
        if loaded := baselines.load():
            log.info("loaded %d ML baseline(s) from %s", loaded, baselines.model_dir)
        self.events = Events()
        self.listeners: list[Listener] = self.events.listeners
        # resilience: supervised tasks, held findings, bounded opens and runs, the outbox
        self.health = Health()
        self.backoff = Backoff(max_s=settings.loop_retry_max_s)
        self.standing = Standing(settings.loop_established_s)
        self.admission = Admission(
            settings.loop_held_max,
            settings.loop_max_opens_per_minute,
            digest_s=settings.log_summary_s,
        )
        self.run_gate = RunGate(settings.loop_max_concurrent_runs)
        self.outbox = OutcomeOutbox(store.engine)
        self.delivery = OutcomeDelivery(graph, embedder, self.outbox, self.health, estate.domain)
        # deciding: the earned autonomy, the matcher, the plan of the chosen fix
        self.planner = Planner(estate, settings.verify_hold_s, settings.verify_timeout_s)
        self.autonomy = EarnedAutonomy(self.ledger, self.policy, self.standing)
        self.decider = Decider(
            graph,
            embedder,
            settings.match_min_similarity,
            self.autonomy.mode,
            library=self.library,
        )
        self.moves = Moves(store, self.events)
        self.steps = Steps.build(
            analyzer=self.analyzer,
            decider=self.decider,
            planner=self.planner,
            autonomy=self.autonomy,
            runner=runner,
            ledger=self.ledger,
            policy=self.policy,
            monitor=self.monitor,
            catalog=catalog,
            outbox=self.outbox,
            delivery=self.delivery,
            health=self.health,
            moves=self.moves,
            events=self.events,
            shadow=ShadowScope.parse(settings.shadow),
            # the site's alert series: a level that holds until the next notification
            levels=frozenset(m.series for m in estate.alerts),
        )
        self.operations = Operations(
            store, self.ledger, self.analyzer, self.decider, self.planner, self.events, self.walk
        )
        self.upkeep = Upkeep(
            self.analyzer,
            self.monitor,
            rule_source,  # hot reload of the site's rules: polled, refused whole
            self.standing,
            self.health,
            self.hand_over,
            settings.log_summary_s,
            sustained=SustainedAnomalies(
                SustainedPolicy(
                    settings.unexplained_min_series, settings.unexplained_min_duration_s
                )
            ),
        )
        self.walker = Walker(
            store,
            self.steps.table(),
            self.moves,
            self.run_gate,
            self.analyzer,
            self.standing,
            self.health,
            self.backoff,
        )
        self.consumer = Consumer(
            store,
            self.analyzer,
            self.admission,
            self.standing,
            self.health,
            self.events,
            self.walker.spawn,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: list[Finding] = []  # found before start(): handed over when it runs
        self._intake_lock = threading.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the supervised long-lived tasks
        self.cluster: ClusterWorker | None = None  # several workers on PostgreSQL: ``join``

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
        self.took(result)
        return result

    def took(self, result: IngestResult) -> None:
        """What any door took (``submit``, the remote-write receiver) goes to analysis;
        the findings to the loop (thread-safe)."""
        if latest := result.latest:  # a monitor's columns: no Point object per sample
            self.standing.seen(
                latest.targets() if isinstance(latest, Latest) else {p.target for p in latest}
            )
        self.hand_over(self.analyzer.observe(result.latest))

    def hand_over(self, findings: list[Finding]) -> None:
        """Findings to the consumer (thread-safe); before ``start`` they are kept. With
        several workers, only those of targets this worker owns."""
        if self.cluster is not None:
            findings = [f for f in findings if self.owns(f.target)]
        findings = [self._labelled(f) for f in findings]
        if findings:
            with self._intake_lock:
                if self._loop is None:
                    self._early.extend(findings)
                else:
                    self._loop.call_soon_threadsafe(self.consumer.queue.put_nowait, findings)

    def _labelled(self, finding: Finding) -> Finding:
        """The finding with the labels of its first series (for from_label parameters)."""
        if finding.labels or not finding.series:
            return finding
        labels = self.monitor.labels_of(finding.target, finding.series[0])
        return finding.model_copy(update={"labels": labels}) if labels else finding

    def findings_before_start(self) -> list[Finding]:
        """What was found before ``start`` and waits for it (the consumer takes it then)."""
        with self._intake_lock:
            return list(self._early)

    # -- start and shutdown -----------------------------------------------------------------

    def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(
            supervised(name, body, self.health, self.backoff, blame=dependency_down),
            name=f"mendloop-{name}",
        )

    async def start(self) -> None:
        with self._intake_lock:
            self._loop = asyncio.get_running_loop()
            if self._early:
                self.consumer.queue.put_nowait(self._early)
                self._early = []
        bodies: dict[str, Callable[[], Awaitable[None]]] = {
            "resume": self._resume,
            **({"cluster": self.cluster.run} if self.cluster is not None else {}),
            "findings": self.consumer.run,
            "housekeeping": self.upkeep.housekeeping,
            "rules": self.upkeep.watch_rules,
            "outcomes": self.delivery.run,
        }
        self._tasks = {name: self._supervise(name, body) for name, body in bodies.items()}

    async def _resume(self) -> None:
        """Every unfinished incident walks on from its stored state (SQL failing at start:
        retried with backoff while the API answers and /readyz says why)."""
        for incident in await asyncio.to_thread(self.store.unfinished):
            if incident.id not in self.walker.walks and self.owns(incident.target):
                log.info("resuming incident %s from %s", incident.id, incident.state)
                self.walker.spawn(incident.id)
        self.health.ok("resume")

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self.walker.walks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with self._intake_lock:  # approvals after this wait for the next start (it resumes them)
            self._loop = None
        self.analyzer.close()

    def close(self) -> None:
        """Release the store and the graph (after ``stop``)."""
        self.store.close()
        self.graph.close()

    # -- what /readyz and /metrics ask (api/metrics.py) ---------------------------------

    def loop_running(self) -> bool:
        """The findings consumer is alive: findings become incidents."""
        consumer = self._tasks.get("findings")
        return consumer is not None and not consumer.done()

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
        return True, f"running; {held}, {self.walker.in_flight()} incident(s) in flight"

    def findings_queued(self) -> int:
        """Findings waiting to become incidents: batches not yet taken, findings held."""
        return self.consumer.queue.qsize() + len(self.admission)

    def incidents_in_flight(self) -> int:
        """Incidents being driven through the loop now (one task each)."""
        return self.walker.in_flight()

    def status(self) -> LoopStatus:
        try:
            pending: int | None = self.outbox.count_pending()
        except Exception:  # SQL out: /readyz says so; the scrape still answers
            log.warning("metrics: the outcome outbox was not read", exc_info=True)
            pending = None
        return LoopStatus(
            failures=dict(self.health.failures),
            failing={name: f.count for name, f in self.health.failing().items()},
            findings=dict(self.admission.counts),
            held=len(self.admission),
            runs_busy=self.run_gate.busy,
            runs_waiting=self.run_gate.waiting,
            outcomes_pending=pending,
            input_quality=dict(self.upkeep.quality_log.total),
            decider_refusals=dict(self.decider.refusals),
            unexplained=dict(self.steps.decide.unexplained),
            analysis_dropped={"out_of_order": self.analyzer.out_of_order},
        )

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

    # -- people hand incidents back ---------------------------------------------------------

    def walk(self, incident_id: str) -> None:
        """Walk the incident on from where it is (thread-safe; a person moved it). Without
        a running loop nothing happens now: the next start resumes it. With several
        workers, its owner is told (LISTEN/NOTIFY, polling as the fallback)."""
        if self.cluster is not None:
            incident = self.store.get(incident_id)
            if incident is None or not self.owns(incident.target):
                self.cluster.notify(incident_id)
                return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.walker.spawn, incident_id)

    # -- several workers on one PostgreSQL (loop/cluster/) -------------------------------

    def join(self, cluster: ClusterWorker) -> None:
        """Work as one of several workers (before ``start``): the loop's writes fenced by
        the target's lease, incidents walked only by their target's owner."""
        self.cluster = cluster
        self.moves.fence = cluster.fence
        self.ledger.fence = cluster.fence

    def owns(self, target: str) -> bool:
        return self.cluster is None or self.cluster.owns(target)

    def walking(self) -> set[str]:
        return set(self.walker.walks)

    def spawn(self, incident_id: str) -> None:
        """Walk it here (on the event loop): the cluster's takeover and notifications."""
        self.walker.spawn(incident_id)

    def drop(self, targets: frozenset[str]) -> None:
        """Targets another worker owns now: their walks stop (the new owner walks on)."""
        for incident_id, task in list(self.walker.walks.items()):
            incident = self.store.get(incident_id)
            if incident is not None and incident.target in targets:
                log.warning("incident %s: its target moved to another worker", incident_id)
                task.cancel()
