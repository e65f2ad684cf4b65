"""The engine's own Prometheus metrics, in a registry of the app's own (never the global one,
so two apps in one process, e.g. tests, never share or clash).

    metrics = ApiMetrics(store, engine)      # engine optional: store-only servers
    engine.listeners.append(metrics.on_stage)
    app.add_middleware(RequestMetrics, metrics=metrics)
    text = metrics.exposition()              # GET /metrics

What is exported and where it comes from:
- ``mendloop_stage_seconds{from_state,to_state}`` histogram: time between consecutive stage
  events of one incident (StageEvent timings: open->analyzed, analyzed->decided, ...);
- ``mendloop_incidents{state}``, ``mendloop_executions{phase,status}`` gauges read from SQL at
  scrape time (incidents by state, playbook runs by outcome), so they are right after a
  restart too;
- ``mendloop_findings_queued``, ``mendloop_incident_tasks`` (queue depths of the loop),
  ``mendloop_intake_samples{reason}`` (the monitor's counters: every point taken or refused,
  by reason), ``mendloop_intake_series`` and ``mendloop_intake_targets`` (live names);
- ``mendloop_loop_failures_total{name}``, ``mendloop_loop_failing{name}`` (supervised tasks
  and dependencies: failures since start, failures in a row now), ``mendloop_loop_findings_
  total{outcome}``, ``mendloop_findings_held``, ``mendloop_run_slots{state}``,
  ``mendloop_outcomes_pending``, ``mendloop_input_quality_findings_total{kind}`` (the
  engine's resilience, loop/supervise.py and loop/admission.py), all read from the
  engine's typed ``status()`` (loop/status.py);
- ``mendloop_decisions_refused_total{reason}`` (loop/decide.py: the graph's solution
  disagreed with the library), ``mendloop_unexplained_incidents_total{component}`` (faults
  no rule names, escalated with their rule-free ranking, by the component ranked first;
  loop/steps/analysis.py), ``mendloop_analysis_dropped_total{reason}`` (points analysis
  did not judge: out_of_order, loop/tick.py), ``mendloop_chat_refusals_total{reason}`` and
  ``mendloop_chat_messages_total{outcome}`` (api/chatops: callbacks refused, messages
  sent / failed / dropped / retried);
  ``mendloop_token_last_used_failures_total`` (api/auth.py: the call went on regardless);
- ``mendloop_remote_write_total{counter}`` (requests, samples, out_of_order, requests refused
  whole as refused_<reason>, ...: api/remote_write.py) and
  ``mendloop_alertmanager_alerts_total{outcome}`` (firing_new, resolved, unmapped_<reason>,
  ...: api/alertmanager.py), when the app has them;
- ``mendloop_api_requests_total{method,route,status}`` and
  ``mendloop_api_request_seconds{method,route}`` (route templates, not raw paths).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loop.db.schema import ExecutionRunRecord, IncidentRecord
from loop.events import StageEvent
from loop.status import LoopStatus
from loop.store import IncidentStore

log = logging.getLogger("mendloop.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TRACKED_INCIDENTS = 10_000  # stage timing memory is bounded, oldest incidents forgotten


class LoopSource(Protocol):
    """What /metrics and /readyz read of the engine (loop.daemon.Engine)."""

    def status(self) -> LoopStatus: ...

    def loop_running(self) -> bool: ...

    def loop_health(self) -> tuple[bool, str]: ...

    def findings_queued(self) -> int: ...

    def incidents_in_flight(self) -> int: ...


@dataclass(frozen=True)
class ChatStatus:
    """What /metrics reads of chat (api.chatops.ChatOps.status): callbacks and URLs refused,
    by reason, and the sender's messages by outcome (sent, failed, dropped, retried)."""

    refusals: Mapping[str, int]
    messages: Mapping[str, int]


ChatStatusSource = Callable[[], ChatStatus]


class LoopCollector(Collector):
    """Gauges computed at scrape time from SQL, the engine's status and chat's counters."""

    def __init__(
        self,
        store: IncidentStore,
        engine: LoopSource | None,
        stats: Callable[[], dict[str, Any]] | None,
        chat: ChatStatusSource | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.stats = stats
        self.chat = chat

    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily(
            "mendloop_incidents", "Incidents by state (SQL)", labels=["state"]
        )
        try:
            with Session(self.store.engine) as session:
                rows = session.exec(
                    select(IncidentRecord.state, func.count()).group_by(IncidentRecord.state)
                ).all()
            for state, count in rows:
                incidents.add_metric([state], count)
        except Exception:  # a scrape must not fail because SQL hiccupped: readyz says so
            log.exception("metrics: incidents by state not read")
        yield incidents
        if self.engine is not None:
            yield from self._engine_metrics(self.engine)
        if self.chat is not None:
            yield from _chat_metrics(self.chat())
        if self.stats is not None:
            intake = GaugeMetricFamily(
                "mendloop_intake_samples",
                "Samples offered to the monitor since start, by outcome",
                labels=["reason"],
            )
            stats = self.stats()
            for reason, count in (stats.get("counters") or {}).items():
                intake.add_metric([reason], count)
            yield intake
            for kind in ("series", "targets"):  # live names, bounded by the intake limits
                if kind in stats:
                    yield GaugeMetricFamily(
                        f"mendloop_intake_{kind}", f"Live {kind} in the monitor", value=stats[kind]
                    )

    def _engine_metrics(self, engine: LoopSource) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "mendloop_executions",
            "Playbook runs by phase and outcome (SQL)",
            labels=["phase", "status"],
        )
        try:
            with Session(self.store.engine) as session:
                rows = session.exec(
                    select(
                        ExecutionRunRecord.phase, ExecutionRunRecord.status, func.count()
                    ).group_by(ExecutionRunRecord.phase, ExecutionRunRecord.status)
                ).all()
            for phase, status, count in rows:
                runs.add_metric([phase, status], count)
        except Exception:
            log.exception("metrics: executions not read")
        yield runs
        yield GaugeMetricFamily(
            "mendloop_findings_queued",
            "Finding batches waiting for the loop",
            value=engine.findings_queued(),
        )
        yield GaugeMetricFamily(
            "mendloop_incident_tasks",
            "Incidents being driven through the loop now",
            value=engine.incidents_in_flight(),
        )
        yield from _resilience_metrics(engine.status())


def _counters(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def _resilience_metrics(status: LoopStatus) -> Iterator[Metric]:
    """The loop's supervision (loop/supervise.py), admission (loop/admission.py), outbox
    and decisions refused because the graph disagreed with the library (loop/decide.py)."""
    yield _counters(
        "mendloop_loop_failures",
        "Failures of the loop's tasks and dependencies since start (each retried)",
        "name",
        status.failures,
    )
    failing = GaugeMetricFamily(
        "mendloop_loop_failing",
        "Failures in a row of a task or dependency now (0: works)",
        labels=["name"],
    )
    for name, count in sorted(status.failing.items()):
        failing.add_metric([name], count)
    yield failing
    yield _counters(
        "mendloop_loop_findings",
        "Findings by what became of them (opened, joined, deferred, dropped_full, ...)",
        "outcome",
        status.findings,
    )
    yield GaugeMetricFamily(
        "mendloop_findings_held", "Findings waiting to become incidents", value=status.held
    )
    slots = GaugeMetricFamily(
        "mendloop_run_slots",
        "Incidents in their dry run / run steps (busy) and queued for a slot (waiting)",
        labels=["state"],
    )
    slots.add_metric(["busy"], status.runs_busy)
    slots.add_metric(["waiting"], status.runs_waiting)
    yield slots
    if status.outcomes_pending is not None:  # None: SQL out (/readyz says so)
        yield GaugeMetricFamily(
            "mendloop_outcomes_pending",
            "Remediation outcomes not yet written to the knowledge graph",
            value=status.outcomes_pending,
        )
    yield _counters(
        "mendloop_input_quality_findings",
        "Gaps and stale samples seen since start (summarised in the log)",
        "kind",
        status.input_quality,
    )
    yield _counters(
        "mendloop_decisions_refused",
        "Decisions refused since start because the graph's solution disagrees with the "
        "library (not_in_library, library_mismatch)",
        "reason",
        status.decider_refusals,
    )
    yield _counters(
        "mendloop_unexplained_incidents",
        "Faults no rule names, escalated with their rule-free component ranking since start, "
        "by the component ranked first",
        "component",
        status.unexplained,
    )
    yield _counters(
        "mendloop_analysis_dropped",
        "Points the monitor took that analysis did not judge since start, by reason "
        "(out_of_order: older than one already judged, two submits racing)",
        "reason",
        status.analysis_dropped,
    )


def _chat_metrics(status: ChatStatus) -> Iterator[Metric]:
    yield _counters(
        "mendloop_chat_refusals",
        "Chat callbacks and response URLs refused since start, by reason",
        "reason",
        status.refusals,
    )
    yield _counters(
        "mendloop_chat_messages",
        "Chat messages since start by outcome (sent, failed, dropped, retried)",
        "outcome",
        status.messages,
    )


class CounterOf(Collector):
    """One counter read at scrape time from whoever keeps it (e.g. api/auth.py's
    TokenStore counts the ``last_used_at`` writes that failed)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class LoopProbe:
    """The loop's liveness for /readyz (not running for an engine-less app)."""

    def __init__(self, engine: LoopSource | None) -> None:
        self.engine = engine

    def status(self) -> tuple[bool, str]:
        """Running and nothing in it failing (what fails and since when, else)."""
        if self.engine is None:
            return False, "the engine loop is not running"
        return self.engine.loop_health()


class CountersCollector(Collector):
    """One counter family read at scrape time from a source of ``{label value: count}``
    (the remote-write receiver's and the Alertmanager intake's counters)."""

    def __init__(
        self, name: str, doc: str, label: str, source: Callable[[], Mapping[str, int]]
    ) -> None:
        self.name, self.doc, self.label, self.source = name, doc, label, source

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for value, count in self.source().items():
            family.add_metric([value], count)
        yield family


class ApiMetrics:
    def __init__(
        self,
        store: IncidentStore,
        engine: LoopSource | None = None,
        stats: Callable[[], dict[str, Any]] | None = None,
        chat: ChatStatusSource | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "mendloop_stage_seconds",
            "Time from one stage event of an incident to the next",
            ["from_state", "to_state"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "mendloop_api_requests",
            "API requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "mendloop_api_request_seconds",
            "API request duration",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(LoopCollector(store, engine, stats, chat))
        self._last: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def export(
        self, name: str, doc: str, label: str, source: Callable[[], Mapping[str, int]]
    ) -> None:
        """Export ``source()``'s counters as ``<name>_total{<label>}`` at every scrape."""
        self.registry.register(CountersCollector(name, doc, label, source))

    def on_stage(self, event: StageEvent) -> None:
        """A StageEvent listener (loop/events.py): the time since the incident entered its
        previous state goes into the histogram under (previous state, this state)."""
        if event.kind != "incident" or event.state is None:
            return  # automation paused/resumed: no incident moved
        state = event.state.value
        with self._lock:
            previous = self._last.pop(event.incident_id, None)
            if previous is not None and previous[0] == state:  # a step within the stage
                self._last[event.incident_id] = previous
                return
            self._last[event.incident_id] = (state, event.at)
            while len(self._last) > TRACKED_INCIDENTS:
                self._last.popitem(last=False)
        if previous is not None:
            seconds = max(0.0, (event.at - previous[1]).total_seconds())
            self.stage_seconds.labels(previous[0], state).observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Counts every request by its route template (``/v1/incidents/{incident_id}``), so
    ids never become label values; unmatched paths are ``unmatched``."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                scope.get("method", ""), template, status, time.perf_counter() - started
            )
