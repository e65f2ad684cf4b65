"""The rule-free ranking on the daemon's windows (loop/unexplained.py), on the real twin
and monitor with no rule loaded: a fault no rule names gets its component on top, with
evidence; a healthy target gets no suspect; the analyze step reports "unknown fault on
component X"; the report, its Markdown and its escalation text carry it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from evaluation.rca import local_time
from kernel.models import (
    Finding,
    FindingKind,
    Match,
    MetricEvidence,
    RankedComponent,
    RCAReport,
    UnexplainedFault,
)
from kernel.state import State
from loop.analyze import Analyzer
from loop.decide import unexplained_query
from loop.monitor import Monitor
from loop.report import render_markdown
from loop.steps.analysis import AnalyzeStep, escalation_reason
from loop.store import IncidentView
from loop.unexplained import UNKNOWN_FAULT, ComponentRanker
from rules.catalog import load_catalog
from twin.model import Twin

BROKEN, HEALTHY = "u-broken", "u-healthy"
HEALTHY_S, FAULT_S = 120, 40
START = int(local_time(10))
INJECTED = START + HEALTHY_S


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def monitor(catalog):
    """Two targets of the twin in the monitor's windows: db_io_wait injected on one of
    them after two healthy minutes (no rule is loaded anywhere here)."""
    clock = {"now": START}
    mon = Monitor(catalog, 300, clock=lambda: clock["now"])
    twin = Twin(targets=(BROKEN, HEALTHY), seed=5)
    for t in range(START + 1, INJECTED + FAULT_S + 1):
        if t == INJECTED:
            twin.inject(BROKEN, "db_io_wait", now=t)
        clock["now"] = float(t)
        result = mon.ingest(twin.step(float(t)))
        assert not result.rejected
    return mon


@pytest.fixture(scope="module")
def ranker(monitor, catalog):
    topology = Analyzer(catalog, []).topology
    return ComponentRanker(monitor, catalog, topology.upstreams)


def test_the_faulty_component_ranks_first_with_its_evidence(ranker, catalog) -> None:
    fault = ranker.rank(BROKEN, onset=INJECTED + 2, now=INJECTED + FAULT_S)
    assert fault.series == len(catalog) and fault.series_scored == len(catalog)
    top = fault.top
    assert top is not None and top.component == "database" and top.anomalous
    assert 0 < top.confidence <= 1
    assert fault.components[1].confidence <= top.confidence
    metrics = {e.metric for e in top.evidence}
    assert "db_io_wait_pct" in metrics or "db_redo_log_wait_ms" in metrics, metrics
    first = top.evidence[0]
    assert first.onset is not None and first.onset >= fault.window_start
    assert first.direction == "high" and first.value > first.baseline
    assert fault.window_start == INJECTED + 2 - 5.0 and fault.window_end == INJECTED + FAULT_S
    assert fault.headline().startswith("unknown fault on component database (confidence ")


def test_a_healthy_target_has_no_suspect(ranker) -> None:
    fault = ranker.rank(HEALTHY, onset=INJECTED + 2, now=INJECTED + FAULT_S)
    assert fault.series_scored > 0
    assert not any(c.anomalous for c in fault.components)


def test_an_unknown_target_scores_nothing(ranker) -> None:
    fault = ranker.rank("nobody", onset=INJECTED, now=INJECTED + FAULT_S)
    assert fault.series == 0 and not any(c.anomalous for c in fault.components)


def _incident(target: str, findings: tuple[Finding, ...]) -> IncidentView:
    now = datetime.now(UTC)
    return IncidentView(
        id="inc-u",
        target=target,
        state=State.open,
        fault=None,
        reason="",
        opened_at=now,
        updated_at=now,
        findings=findings,
        report=None,
        decision=None,
        execution=None,
        verification=None,
    )


def _anomaly(target: str) -> Finding:
    return Finding(
        kind=FindingKind.anomaly,
        target=target,
        series=("db_io_wait_pct",),
        rule_id="unexplained",
        started_at=INJECTED + 2,
        score=0.5,
        evidence=(),
    )


def test_analyze_reports_an_unknown_fault_on_the_component(ranker, catalog) -> None:
    analyzer = Analyzer(catalog, [], clock=lambda: INJECTED + FAULT_S)
    step = AnalyzeStep(analyzer, ranker)
    move = asyncio.run(step.run(_incident(BROKEN, (_anomaly(BROKEN),))))
    assert move.state == State.analyzed and move.fault == UNKNOWN_FAULT
    assert move.note.startswith("unknown fault on component database")
    report = move.report
    assert isinstance(report, RCAReport) and report.unexplained is not None
    assert not report.explained and report.unexplained.top.component == "database"
    # what is stored loads back, and a report stored before the field existed loads too
    again = RCAReport.model_validate_json(report.model_dump_json())
    assert again.unexplained == report.unexplained
    old = report.model_dump(mode="json")
    del old["unexplained"]
    assert RCAReport.model_validate(old).unexplained is None


def test_analyze_escalates_when_no_component_stands_out(ranker, catalog) -> None:
    analyzer = Analyzer(catalog, [], clock=lambda: INJECTED + FAULT_S)
    move = asyncio.run(AnalyzeStep(analyzer, ranker).run(_incident(HEALTHY, (_anomaly(HEALTHY),))))
    assert move.state == State.escalated
    assert "no component's metrics stand out" in (move.reason or "")
    bare = asyncio.run(AnalyzeStep(analyzer, None).run(_incident(BROKEN, (_anomaly(BROKEN),))))
    assert bare.state == State.escalated and bare.reason == "no rule explains the findings"


def _fault(similar: tuple[Match, ...] = ()) -> UnexplainedFault:
    db = RankedComponent(
        component="database",
        score=0.7,
        confidence=0.7,
        anomaly=9.0,
        anomalous=True,
        onset=1000.0,
        evidence=(
            MetricEvidence(
                metric="db_io_wait_pct", score=5.2, z=40.0, baseline=3.0, value=41.0, onset=1001
            ),
            MetricEvidence(metric="db_qps", score=0.4, z=-0.5, baseline=900.0, value=880.0),
        ),
    )
    api = RankedComponent(
        component="api", score=0.3, confidence=0.3, anomaly=2.0, anomalous=True, onset=1003.0
    )
    return UnexplainedFault(
        components=(db, api), window_start=995.0, window_end=1040.0, series=286, similar=similar
    )


def test_the_words_and_symptoms_of_an_unknown_fault() -> None:
    fault = _fault()
    assert fault.symptoms() == ("db_io_wait_pct:high",)  # abnormal evidence only
    assert "db_io_wait_pct above its usual 3 at 41" in fault.text()
    query = unexplained_query(_report(fault))
    assert query is not None and query.fault is None and query.component == "database"
    assert query.symptom_keys == ("db_io_wait_pct:high",)


def _report(fault: UnexplainedFault | None) -> RCAReport:
    return RCAReport(
        incident_id="inc-u", target=BROKEN, candidates=(), latency_ms=1.0, unexplained=fault
    )


def test_escalation_and_markdown_show_evidence_and_similar_cases() -> None:
    match = Match(
        case_id="case-db-7",
        similarity=0.62,
        solution_id="sol-db-io",
        solution_success_rate=0.8,
        explanation="",
    )
    reason = escalation_reason(_fault((match,)))
    assert reason.startswith("unknown fault on component database (confidence 70%)")
    assert "nothing is run" in reason and "db_io_wait_pct 41 (usually 3)" in reason
    assert "case-db-7 (0.62, fixed by sol-db-io)" in reason and "api 30%" in reason
    assert "no similar past case" in escalation_reason(_fault())
    text = render_markdown(_report(_fault((match,))))
    assert "**Unknown fault on component database (confidence 70%).**" in text
    assert "| 1 | database | 70% | yes |" in text and "`db_io_wait_pct` = 41" in text
    assert "`case-db-7` similarity 0.62, fixed by `sol-db-io`" in text
    assert unexplained_query(_report(None)) is None
