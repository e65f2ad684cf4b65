"""Bad input (gaps, flat-lining, clock skew, NaN) becomes no_data/stale, never a root cause."""

import math

import pytest

from kernel.models import FindingKind
from loop.analyze import Analyzer
from loop.monitor import Point
from rules.catalog import load_catalog
from rules.compiler import load_rules

NOISE = [0.0, 0.01, -0.02, 0.015, -0.01, 0.02]
HEALTHY = {"cache_utilization_pct": 55, "cache_hit_ratio": 0.95, "db_penetration_pct": 1}
BROKEN = {"cache_utilization_pct": 92, "cache_hit_ratio": 0.45, "db_penetration_pct": 12}


@pytest.fixture
def make():
    catalog = load_catalog()
    rules = load_rules(catalog)
    made = []

    def build(**kw) -> Analyzer:
        made.append(Analyzer(catalog, rules, **kw))
        return made[-1]

    yield build
    for analyzer in made:
        analyzer.close()


def points(ts, values, noisy=True, target="t"):
    return [
        Point(target, k, float(ts), v * (1 + NOISE[int(ts) % 6]) if noisy else v)
        for k, v in values.items()
    ]


def test_a_stuck_source_repeating_a_bad_value_is_stale_not_a_fault(make):
    analyzer = make(flat_after_s=30)
    fired = []
    for ts in range(10):
        fired += analyzer.observe(points(ts, HEALTHY))
    for ts in range(10, 60):  # the exporter now reports one frozen value, on the bad side
        fired += analyzer.observe(
            points(ts, {**HEALTHY, "cache_hit_ratio": 0.0}, noisy=False)
            + points(ts, {k: v for k, v in BROKEN.items() if k != "cache_hit_ratio"})
        )
    assert fired == []
    quality = analyzer.quality_findings()
    assert [(q.kind, q.rule_id, q.series) for q in quality] == [
        (FindingKind.stale, "data:flat", ("cache_hit_ratio",))
    ]


def test_an_abnormal_series_that_freezes_is_retracted_as_stale(make):
    analyzer = make(flat_after_s=20)
    for ts in range(6):
        analyzer.observe(points(ts, HEALTHY))
    fired = []
    for ts in range(6, 12):
        fired += analyzer.observe(points(ts, BROKEN))
    assert [f.rule_id for f in fired] == ["cache-saturation-penetration"]
    for ts in range(12, 40):
        analyzer.observe(points(ts, BROKEN, noisy=False))
    assert {f.series for f in analyzer.abnormal("t")} == set()
    assert {q.rule_id for q in analyzer.quality_findings()} == {"data:flat"}


def test_a_gap_retracts_the_silent_series_and_says_no_data(make):
    analyzer = make(gap_s=10)
    for ts in range(6):
        analyzer.observe(points(ts, BROKEN))
    assert {f.series for f in analyzer.abnormal("t")} == set(BROKEN)
    for ts in range(6, 20):  # db_penetration_pct goes silent
        analyzer.observe(points(ts, {k: v for k, v in BROKEN.items() if k != "db_penetration_pct"}))
    assert "db_penetration_pct" not in {f.series for f in analyzer.abnormal("t")}
    quality = analyzer.quality_findings()
    assert [(q.kind, q.series) for q in quality] == [(FindingKind.no_data, ("db_penetration_pct",))]
    assert quality[0].evidence[0].since == 5


def test_a_target_that_goes_silent_is_swept_by_the_clock(make):
    now = [0.0]
    analyzer = make(gap_s=10, clock=lambda: now[0])
    for ts in range(6):
        now[0] = ts
        analyzer.observe(points(ts, BROKEN))
    now[0] = 100.0
    analyzer.sweep()
    assert analyzer.abnormal("t") == []
    assert {q.kind for q in analyzer.quality_findings()} == {FindingKind.no_data}


def test_samples_from_the_future_or_far_past_are_not_judged(make):
    now = [1000.0]
    analyzer = make(clock=lambda: now[0], max_future_s=30, max_lag_s=600)
    fired = []
    for i in range(6):
        now[0] = 1000.0 + i
        fired += analyzer.observe(points(now[0] + 120, BROKEN))  # clock skew: 2 min ahead
        fired += analyzer.observe(points(now[0] - 900, BROKEN))  # 15 min late
    assert fired == []
    assert analyzer.abnormal("t") == []
    reasons = sorted({(q.kind, q.rule_id) for q in analyzer.quality_findings()})
    assert reasons == [(FindingKind.stale, "data:clock_skew"), (FindingKind.stale, "data:late")]


def test_nan_and_unknown_series_are_ignored(make):
    analyzer = make()
    for ts in range(6):
        analyzer.observe([Point("t", "cache_hit_ratio", float(ts), math.nan)])
        analyzer.observe([Point("t", "no_such_series", float(ts), 1.0)])
    assert analyzer.abnormal("t") == []


def test_bad_input_findings_never_reach_the_rule_findings(make):
    analyzer = make(gap_s=5, flat_after_s=10)
    fired = []
    for ts in range(30):
        values = BROKEN if ts < 8 else {"cache_utilization_pct": 92}
        fired += analyzer.observe(points(ts, values))
    assert {f.kind for f in fired} == {FindingKind.rule}
    assert {q.kind for q in analyzer.quality_findings()} == {FindingKind.no_data}
