"""A fault no rule names, end to end on real components (the twin over HTTP, the engine
with durable_rules and every shipped rule, Neo4j, ansible-runner, SQLite, the REST API):
sustained anomalies open an incident, the rule-free ranking puts the broken component on
top, decide escalates it with the most similar past cases and nothing is run.

The fault is this test's own: the twin's faults all have rules, and the rule packs are
not edited to make one fit. ``LOCK_STORM`` drives database series no rule reads
(lock waits, deadlocks, errors, sessions, connections) towards broken values, with a
milder echo on the API that depends on the database, on top of the twin's healthy output
for one target, the way twin/faults.yaml describes a fault (value, delay, time
constant). A second target gets a twin fault a rule covers (in shadow mode, so nothing
runs there either): its anomalies are explained by the rule's incident and open no
unexplained one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kernel.models import FindingKind, Sample
from kernel.shadow import ShadowScope
from kernel.state import State
from rules.catalog import load_catalog
from rules.compiler import load_rules

from .conftest import LoopHarness, empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

UNRULED, RULED = "unx-1", "ruled-1"
HEALTHY_S = 45.0  # the baseline the ranking compares with: ~90 samples at the twin's tick


@dataclass(frozen=True)
class Push:
    """Like a twin fault effect: towards ``value`` from ``delay_s``, time constant ``tau_s``."""

    series: str
    value: float
    delay_s: float = 0.0
    tau_s: float = 1.0


LOCK_STORM = (  # the database's own series (component database)
    Push("db_lock_wait_ms", 900.0),
    Push("db_deadlocks_per_min", 14.0),
    Push("db_error_rate_pct", 2.5),
    Push("db_active_sessions", 460.0, delay_s=0.5),
    Push("db_connections_used_pct", 95.0, delay_s=0.5),
    # the API calls the database: errors rise there a little later, below its thresholds
    Push("api_error_rate_pct", 1.6, delay_s=2.0, tau_s=2.0),
    Push("api_gateway_5xx_per_s", 12.0, delay_s=2.0, tau_s=2.0),
)


class Overlay:
    """The twin's samples with the test's fault applied on the targets it was started on."""

    def __init__(self, sink: Callable[[Sequence[Sample]], Any], effects: Sequence[Push]) -> None:
        self.sink = sink
        self.effects = {p.series: p for p in effects}
        self.started: dict[str, float] = {}

    def __call__(self, samples: Sequence[Sample]) -> Any:
        out = []
        for s in samples:
            since, push = self.started.get(s.target), self.effects.get(s.series)
            if since is not None and push is not None and s.ts > since + push.delay_s:
                pull = 1.0 - math.exp(-(s.ts - since - push.delay_s) / push.tau_s)
                value = float(s.value + pull * (push.value - s.value))
                s = Sample(series=s.series, labels=s.labels, ts=s.ts, value=value)
            out.append(s)
        return self.sink(out)


def test_no_rule_reads_the_faults_series() -> None:
    """The premise: the shipped rules never look at what LOCK_STORM moves."""
    catalog = load_catalog()
    read = {c.series for r in load_rules(catalog) for c in (*r.conditions, *r.none_of)}
    assert all(p.series in catalog for p in LOCK_STORM)
    assert not read & {p.series for p in LOCK_STORM}


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.fixture(scope="module")
def ended(neo4j_settings, tmp_path_factory) -> Iterator[tuple[LoopHarness, Any, Any]]:
    empty_graph(neo4j_settings)
    var_dir = tmp_path_factory.mktemp("e2e-unexplained") / "var"
    settings = settings_for(
        neo4j_settings,
        var_dir,
        unexplained_min_series=3,
        unexplained_min_duration_s=10.0,
        verify_timeout_s=45.0,
    )
    with LoopHarness(settings, [UNRULED, RULED]) as loop:
        engine = loop.engine
        assert engine is not None
        engine.steps.dispatch.shadow = ShadowScope(targets=frozenset({RULED}))
        overlay = Overlay(engine.submit, LOCK_STORM)
        loop.twin.sink = overlay
        time.sleep(HEALTHY_S)  # a healthy baseline first
        assert engine.store.list() == []
        overlay.started[UNRULED] = time.time()
        loop.inject(RULED, "cache_saturation")
        incident = loop.wait_settled(loop.wait_opened(UNRULED, timeout_s=90), timeout_s=120)
        wait_for(lambda: engine.admission.counts["explained"] >= 1, "the ruled target's check")
        app = create_app(engine.store, engine=engine)
        with TestClient(app) as client:
            yield loop, incident, client


def test_the_unruled_fault_ends_escalated_with_its_component_on_top(ended) -> None:
    loop, incident, _ = ended
    assert incident.state == State.escalated and incident.fault == "unknown"
    assert [t.to_state for t in loop.engine.store.get(incident.id).timeline] == [
        State.open,
        State.analyzed,
        State.escalated,
    ]
    (finding,) = incident.findings
    assert finding.kind == FindingKind.anomaly and len(finding.series) >= 3
    assert {"db_lock_wait_ms", "db_deadlocks_per_min", "db_error_rate_pct"} <= set(finding.series)
    report = incident.report
    assert report is not None and not report.explained
    fault = report.unexplained
    assert fault is not None and fault.top is not None
    assert fault.top.component == "database" and fault.top.anomalous
    assert fault.top.confidence > max(c.confidence for c in fault.components[1:])
    assert {e.metric for e in fault.top.evidence if e.onset is not None} & {
        p.series for p in LOCK_STORM
    }
    assert incident.reason.startswith("unknown fault on component database (confidence ")
    assert "nothing is run" in incident.reason


def test_similar_cases_are_attached_not_applied(ended) -> None:
    loop, incident, _ = ended
    similar = incident.report.unexplained.similar
    assert 1 <= len(similar) <= 3
    assert [m.similarity for m in similar] == sorted((m.similarity for m in similar), reverse=True)
    assert similar[0].case_id in incident.reason
    # nothing was decided, planned or run: no run row, the twin saw no remedy
    assert incident.decision is None and incident.remediation is None
    assert incident.execution is None and incident.verification is None
    assert loop.engine.ledger.runs(incident.id) == []
    assert loop.twin_state(UNRULED)["actions"] == []


def test_a_target_a_rule_explains_opens_no_unexplained_incident(ended) -> None:
    loop, _, _ = ended
    ruled = loop.engine.store.list(target=RULED)
    assert ruled and all(i.fault != "unknown" for i in ruled)
    assert all(f.kind == FindingKind.rule for i in ruled for f in i.findings)
    assert loop.engine.store.list(target=UNRULED)[0].fault == "unknown"
    assert len(loop.engine.store.list(target=UNRULED)) == 1  # one episode pages once
    assert loop.engine.ledger.runs(ruled[0].id) == []  # shadow: recorded, not run


def test_the_api_and_metrics_show_it(ended) -> None:
    _, incident, client = ended
    detail = client.get(f"/v1/incidents/{incident.id}").json()
    assert detail["report"]["unexplained"]["components"][0]["component"] == "database"
    assert detail["reason"] == incident.reason
    text = client.get(f"/v1/incidents/{incident.id}/report?format=markdown").text
    assert "**Unknown fault on component database (confidence" in text
    assert "Similar past cases (shown, not applied):" in text
    metrics = client.get("/metrics").text
    assert 'mendloop_unexplained_incidents_total{component="database"} 1.0' in metrics
    assert 'mendloop_loop_findings_total{outcome="explained"}' in metrics
