"""Every rule form on the real durable_rules engine, through the real Analyzer.

Time is the samples' time: each test feeds ticks with explicit timestamps, so nothing
depends on how fast the machine is.
"""

from pathlib import Path

import pytest
import yaml

from kernel.models import FindingKind, Sample
from loop.analyze import Analyzer
from rules.catalog import load_catalog
from rules.compiler import faults_for
from rules.loader import check_paths


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def compile_rules(tmp_path: Path, catalog, *rules: dict):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"rules": list(rules)}))
    specs, errors = check_paths([path], catalog, faults_for())
    assert errors == [], errors
    return specs


@pytest.fixture
def make_analyzer(tmp_path, catalog):
    made = []

    def make(*rules: dict, **kw) -> Analyzer:
        made.append(Analyzer(catalog, compile_rules(tmp_path, catalog, *rules), **kw))
        return made[-1]

    yield make
    for analyzer in made:
        analyzer.close()


def rule(rule_id: str, **body) -> dict:
    return {"id": rule_id, "summary": "s", **({"fault": "voltage_sag"} | body)}


def feed(analyzer: Analyzer, ts: float, target: str = "t", **values: float) -> list[str]:
    samples = [
        Sample(series=k, labels={"target": target}, ts=ts, value=v) for k, v in values.items()
    ]
    return [f.rule_id for f in analyzer.observe(samples)]


NOISE = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2]


def test_threshold_with_own_bound_and_duration(make_analyzer):
    analyzer = make_analyzer(
        rule("slow-db", all=[{"series": "db_query_latency_ms", "above": 500, "for": "10s"}])
    )
    fired = []
    for ts in range(0, 10):
        fired += feed(analyzer, ts, db_query_latency_ms=600 + NOISE[ts % 6])
    assert fired == []  # 9 s < 10 s
    fired += feed(analyzer, 10, db_query_latency_ms=601)
    assert fired == ["slow-db"]
    (fact,) = analyzer.abnormal("t")[-1:]
    assert (fact.threshold, fact.since, fact.key) == (500, 0, "db_query_latency_ms>500@10s")


def test_rate_of_change(make_analyzer):
    analyzer = make_analyzer(
        rule(
            "complaints-rising",
            all=[{"series": "cs_complaints_per_h", "rises_by": 20, "per": "1m"}],
        )
    )
    fired = []
    for ts in range(0, 61, 10):
        fired += feed(analyzer, ts, cs_complaints_per_h=10 + ts / 10)  # +6 per minute
    assert fired == []
    for ts in range(70, 131, 10):
        fired += feed(analyzer, ts, cs_complaints_per_h=16 + (ts - 60) / 2)  # +30 per minute
    assert fired == ["complaints-rising"]


def test_counter_reset_is_not_a_fall_or_a_rise(make_analyzer):
    analyzer = make_analyzer(
        rule(
            "many-slow-queries",
            all=[
                {"series": "db_slow_queries_per_min", "rises_by": 100, "per": 60, "counter": True}
            ],
        )
    )
    fired = []
    values = [1000, 1010, 1020, 5, 15, 25, 35]  # the exporter restarted after 1020
    for i, value in enumerate(values):
        fired += feed(analyzer, i * 10, db_slow_queries_per_min=value)
    assert fired == []  # the increase over a minute is 55, never 1000 -> 5
    fired += feed(analyzer, 70, db_slow_queries_per_min=200)
    assert fired == ["many-slow-queries"]  # +185 in the last minute


def test_absence_of_data_fires_on_sweep(make_analyzer):
    analyzer = make_analyzer(
        rule("edge-silent", all=[{"series": "edge_sampling_rate_pts_per_s", "absent_for": "30s"}])
    )
    for ts in range(5):
        assert feed(analyzer, ts, edge_sampling_rate_pts_per_s=300, edge_cpu_util_pct=40) == []
    fired = []
    for ts in range(5, 40):
        fired += feed(analyzer, ts, edge_cpu_util_pct=40)  # the target is alive, edge silent
    assert fired == ["edge-silent"]
    assert feed(analyzer, 40, edge_sampling_rate_pts_per_s=300) == []  # back: retracted


SAG = {"pq_voltage_rms_pct": 82.0}
SURGE = {"cs_complaints_power_quality_per_h": 15.0}


def sequence_analyzer(make_analyzer):
    return make_analyzer(
        rule(
            "sag-then-complaints",
            sequence=[
                {"series": "pq_voltage_rms_pct"},
                {"series": "cs_complaints_power_quality_per_h"},
            ],
            within="2h",
        )
    )


def run(analyzer, start: int, stop: int, step: int = 1, **values) -> list[str]:
    fired = []
    for ts in range(start, stop, step):
        fired += feed(analyzer, ts, **{k: v + NOISE[ts % 6] for k, v in values.items()})
    return fired


def test_sequence_a_then_b_within_the_window_even_after_a_recovered(make_analyzer):
    analyzer = sequence_analyzer(make_analyzer)
    assert run(analyzer, 0, 5, **SAG) == []
    assert run(analyzer, 5, 10, pq_voltage_rms_pct=100.0) == []  # the sag is over
    fired = run(analyzer, 3600, 3615, pq_voltage_rms_pct=100.0, **SURGE)  # an hour later
    assert fired == ["sag-then-complaints"]


def test_sequence_b_before_a_does_not_fire(make_analyzer):
    analyzer = sequence_analyzer(make_analyzer)
    assert run(analyzer, 0, 15, pq_voltage_rms_pct=100.0, **SURGE) == []
    assert run(analyzer, 15, 25, **SAG, **SURGE) == []


def test_sequence_too_late_does_not_fire(make_analyzer):
    analyzer = sequence_analyzer(make_analyzer)
    assert run(analyzer, 0, 5, **SAG) == []
    assert run(analyzer, 5, 10, pq_voltage_rms_pct=100.0) == []
    assert run(analyzer, 7300, 7320, pq_voltage_rms_pct=100.0, **SURGE) == []  # > 2 h


def test_composite_within_window(make_analyzer):
    analyzer = make_analyzer(
        rule(
            "sag-and-thd",
            all=[{"series": "pq_voltage_rms_pct"}, {"series": "pq_thd_current_pct"}],
            within="1m",
        )
    )
    assert run(analyzer, 0, 5, **SAG) == []
    assert run(analyzer, 5, 200, 5, pq_voltage_rms_pct=100.0) == []
    # THD shows 3 minutes after the sag: not within a minute of each other
    assert run(analyzer, 200, 210, pq_voltage_rms_pct=100.0, pq_thd_current_pct=8.0) == []
    assert run(analyzer, 210, 220, pq_voltage_rms_pct=100, pq_thd_current_pct=3) == []
    fired = run(analyzer, 400, 410, pq_voltage_rms_pct=82.0, pq_thd_current_pct=8.0)
    assert fired == ["sag-and-thd"]


def test_target_scope(make_analyzer):
    analyzer = make_analyzer(
        rule("site-sag", targets=["pm-site-*"], all=[{"series": "pq_voltage_rms_pct"}])
    )
    fired = []
    for ts in range(5):
        fired += feed(analyzer, ts, target="lab.1", **SAG)
        fired += feed(analyzer, ts, target="pm-site-7", **SAG)
        fired += feed(analyzer, ts, target="pm.site-7", **SAG)
    assert fired == ["site-sag"]


def test_two_rules_share_one_signal(make_analyzer):
    analyzer = make_analyzer(
        rule("a", all=[{"series": "pq_voltage_rms_pct"}]),
        rule(
            "b",
            fault=["voltage_sag", "power_factor_drop"],
            severity="critical",
            all=[{"series": "pq_voltage_rms_pct"}, {"series": "pq_voltage_sag_depth_pct"}],
        ),
    )
    fired = run(analyzer, 0, 5, pq_voltage_rms_pct=82.0, pq_voltage_sag_depth_pct=20.0)
    assert sorted(fired) == ["a", "b"]
    assert analyzer.rules["b"].faults == ("voltage_sag", "power_factor_drop")
    assert all(f.kind == FindingKind.rule for f in analyzer.quality_findings()) is True
