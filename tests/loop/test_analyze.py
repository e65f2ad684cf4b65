"""Analyze against the real durable_rules engine, compiled from the real rule files."""

import pytest

from kernel.models import Sample
from loop.analyze import Analyzer, build_report
from rules.catalog import load_catalog
from rules.compiler import load_rules
from rules.reference import ThresholdTracker


@pytest.fixture
def analyzer():
    catalog = load_catalog()
    analyzer = Analyzer(catalog, load_rules(catalog))
    yield analyzer
    analyzer.close()


def tick(target, ts, **values):
    return [Sample(series=k, labels={"target": target}, ts=ts, value=v) for k, v in values.items()]


CACHE_BROKEN = {"cache_utilization_pct": 92, "cache_hit_ratio": 0.45, "db_penetration_pct": 12}
CACHE_OK = {"cache_utilization_pct": 55, "cache_hit_ratio": 0.95, "db_penetration_pct": 1}


def test_threshold_needs_duration_and_recovers_with_hysteresis():
    tracker = ThresholdTracker(load_catalog())
    assert tracker.update("t", "cache_hit_ratio", 0, 0.5) is None  # breach starts
    assert tracker.update("t", "cache_hit_ratio", 1, 0.5) is None  # 1 s < duration 2 s
    change = tracker.update("t", "cache_hit_ratio", 2, 0.5)
    assert change and change.abnormal and change.fact.since == 0
    assert tracker.update("t", "cache_hit_ratio", 3, 0.8) is None  # above crit, below warn
    change = tracker.update("t", "cache_hit_ratio", 4, 0.9)
    assert change and not change.abnormal


def test_a_blip_shorter_than_the_duration_is_not_abnormal():
    tracker = ThresholdTracker(load_catalog())
    tracker.update("t", "cache_hit_ratio", 0, 0.5)
    tracker.update("t", "cache_hit_ratio", 1, 0.95)
    assert tracker.update("t", "cache_hit_ratio", 2, 0.5) is None
    assert tracker.abnormal("t") == []


def test_cache_rule_fires_once_with_its_evidence(analyzer):
    findings = []
    for ts in range(5):
        findings += analyzer.observe(tick("site", ts, **CACHE_BROKEN))
    assert [f.rule_id for f in findings] == ["cache-saturation-penetration"]
    finding = findings[0]
    assert finding.target == "site"
    assert {e.series for e in finding.evidence} == set(CACHE_BROKEN)
    report = build_report("inc1", "site", findings, analyzer.rules)
    assert report.top.fault == "cache_saturation"
    assert "cache_hit_ratio below 0.7 at 0.45" in report.text()
    assert report.symptoms() == (
        "cache_hit_ratio:low",
        "cache_utilization_pct:high",
        "db_penetration_pct:high",
    )


def test_rule_does_not_mix_targets(analyzer):
    findings = []
    for ts in range(5):
        findings += analyzer.observe(
            tick("a", ts, cache_utilization_pct=92, cache_hit_ratio=0.45)
            + tick("b", ts, db_penetration_pct=12)
        )
    assert findings == []


def test_none_condition_blocks_the_db_rule_while_the_cache_is_broken(analyzer):
    findings = []
    for ts in range(5):
        findings += analyzer.observe(
            tick("s", ts, db_io_wait_pct=41, db_query_latency_ms=700, cache_hit_ratio=0.4)
        )
    assert findings == []
    for ts in range(5, 10):
        findings += analyzer.observe(
            tick("s", ts, db_io_wait_pct=41, db_query_latency_ms=700, cache_hit_ratio=0.95)
        )
    assert [f.rule_id for f in findings] == ["db-io-wait-saturation"]


def test_rule_fires_again_after_recovery(analyzer):
    fired = []
    for ts in range(4):
        fired += analyzer.observe(tick("s", ts, **CACHE_BROKEN))
    for ts in range(4, 6):
        fired += analyzer.observe(tick("s", ts, **CACHE_OK))
    for ts in range(6, 10):
        fired += analyzer.observe(tick("s", ts, **CACHE_BROKEN))
    assert len(fired) == 2
