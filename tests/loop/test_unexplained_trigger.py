"""The trigger for sustained anomalies no rule explains (loop/sustained.py): how many
series, how long, once per episode; and the analyzer's view it reads (the real twin and
analyzer, no rule loaded)."""

from __future__ import annotations

import pytest

from evaluation.rca import local_time
from kernel.models import Evidence, FindingKind
from loop.analyze import Analyzer
from loop.sustained import (
    RULE_ID,
    SustainedAnomalies,
    SustainedPolicy,
    sustained_since,
    unexplained_finding,
)
from rules.catalog import load_catalog
from twin.model import Twin


def _ev(series: str, since: float) -> Evidence:
    return Evidence(series=series, value=9.0, threshold=5.0, direction="high", since=since)


def test_since_when_enough_distinct_series_are_abnormal() -> None:
    evidence = [_ev("a", 10), _ev("b", 30), _ev("a", 5), _ev("c", 20)]
    assert sustained_since(evidence, 3) == 30  # a (5), c (20), b (30): the third
    assert sustained_since(evidence, 2) == 20
    assert sustained_since(evidence, 4) is None  # a counts once
    assert sustained_since(evidence, 0) is None


def test_one_finding_per_episode_after_the_duration() -> None:
    watch = SustainedAnomalies(SustainedPolicy(min_series=2, min_duration_s=30))
    two = [_ev("a", 100), _ev("b", 110)]
    assert watch.check({"t": (120.0, [_ev("a", 100)])}) == []  # one series: not enough
    assert watch.check({"t": (139.0, two)}) == []  # 29 s since the second
    found = watch.check({"t": (140.0, two)})
    assert len(found) == 1 and watch.counts["raised"] == 1
    finding = found[0]
    assert finding.kind == FindingKind.anomaly and finding.rule_id == RULE_ID
    assert finding.target == "t" and finding.series == ("a", "b") and finding.started_at == 100
    assert watch.check({"t": (500.0, two)}) == []  # the same episode pages once
    assert watch.check({"t": (501.0, [_ev("a", 100)])}) == []  # below: the episode ends
    again = [_ev("a", 100), _ev("c", 600)]
    assert watch.check({"t": (629.0, again)}) == []
    assert len(watch.check({"t": (630.0, again)})) == 1  # a new episode pages again
    assert watch.check({}) == [] and len(watch.check({"t": (700.0, again)})) == 1


def test_the_finding_keeps_the_earliest_evidence_and_scores_by_breadth() -> None:
    evidence = [_ev(f"s{i:02}", 100 + (i * 7) % 25) for i in range(25)]
    finding = unexplained_finding("t", evidence)
    assert len(finding.series) == 25 and len(finding.evidence) == 20 and finding.score == 1.0
    assert [e.since for e in finding.evidence] == sorted(e.since for e in finding.evidence)
    assert unexplained_finding("t", evidence[:3]).score == pytest.approx(0.3)


def test_due_throttles_and_zero_series_is_off() -> None:
    watch = SustainedAnomalies(SustainedPolicy(min_series=3, every_s=5))
    assert watch.due(100.0) and not watch.due(104.0) and watch.due(105.0)
    off = SustainedAnomalies(SustainedPolicy(min_series=0))
    assert not off.due(100.0)
    with pytest.raises(ValueError):
        SustainedPolicy(min_series=-1)


def test_the_analyzer_reports_what_deviates_per_target() -> None:
    catalog = load_catalog()
    analyzer = Analyzer(catalog, [])  # no rule: nothing fires, the deviations remain
    twin = Twin(targets=("d-broken", "d-healthy"), seed=3)
    start = int(local_time(10))
    for t in range(start, start + 60):
        if t == start + 20:
            twin.inject("d-broken", "db_io_wait", now=float(t))
        assert analyzer.observe(twin.step(float(t))) == []
    deviating = analyzer.deviating()
    assert "d-healthy" not in deviating
    now, evidence = deviating["d-broken"]
    assert now == start + 59
    series = {e.series for e in evidence}
    assert {"db_io_wait_pct", "db_read_latency_ms"} <= series
    assert all(start + 20 <= e.since <= now for e in evidence)
    watch = SustainedAnomalies(SustainedPolicy(min_series=3, min_duration_s=20))
    found = watch.check(deviating)
    assert [f.target for f in found] == ["d-broken"]
    analyzer.close()
