"""The analyzer with its ML baselines and SQI on the real twin, monitor, durable_rules and
scikit-learn-free numpy scoring (no mocks): baselines learnt from normal operation,
anomalies with onsets feeding the ranking, SQI findings, training window and persistence."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.rca import local_time, train_baseline
from kernel.models import FindingKind
from loop.analyze import Analyzer
from loop.anomaly import BaselineBank, BaselinePolicy
from loop.monitor import Monitor
from loop.report import render_markdown
from rules.catalog import load_catalog
from rules.compiler import load_rules
from twin.model import Twin

TARGET = "pm-site-1"
SEED = 23  # the eval's seeds are 7001-7003; the baseline day here uses 31
PEAK = local_time(10)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def rules(catalog):
    return load_rules(catalog)


@pytest.fixture(scope="module")
def baseline(catalog):
    return train_baseline(catalog, BaselineBank(catalog), seed=31)


class Loop:
    def __init__(self, catalog, rules, bank=None, t0=PEAK, seed=SEED):
        self.twin = Twin(targets=(TARGET,), seed=seed)
        self.now = t0
        self.monitor = Monitor(catalog, clock=lambda: self.now)
        self.analyzer = Analyzer(catalog, rules, baselines=bank)
        self.layout = self.monitor.layout([TARGET] * len(self.twin.series), self.twin.series)
        self.findings = []
        self.anomalous_ticks = 0

    def run(self, seconds, step=1.0):
        for _ in range(int(seconds / step)):
            self.now += step
            values = self.twin.advance(self.now)[0]
            result = self.monitor.ingest_columns(
                self.layout, ts=np.full(values.shape, self.now), values=values
            )
            self.findings += self.analyzer.observe(result.latest)
            self.anomalous_ticks += bool(self.analyzer.anomalies(TARGET))


@pytest.fixture
def make_loop(catalog, rules, baseline):
    made = []

    def make(bank=None, install=True, **kw):
        loop = Loop(catalog, rules, bank, **kw)
        if install:
            loop.analyzer.baselines.install(TARGET, baseline)
        made.append(loop)
        return loop

    yield make
    for loop in made:
        loop.analyzer.close()


def test_fault_free_operation_raises_no_anomaly_rule_or_sqi_finding(make_loop):
    loop = make_loop(t0=local_time(3))
    loop.run(900)
    assert loop.findings == []
    assert loop.anomalous_ticks == 0
    assert loop.analyzer.sqi_findings() == []
    assert loop.analyzer.sqi(TARGET).sqi == 100.0


def test_a_fault_is_ranked_with_ml_onsets_and_sqi(make_loop):
    loop = make_loop()
    loop.run(30)
    injected = loop.now
    loop.twin.inject(TARGET, "cache_saturation", now=injected)
    loop.run(30)
    assert {loop.analyzer.rules[f.rule_id].fault for f in loop.findings} == {"cache_saturation"}
    report = loop.analyzer.report("inc", TARGET, loop.findings)
    top = report.top
    assert top.fault == "cache_saturation" and top.fired
    assert top.anomalies and all(e.component == "cache" for e in top.anomalies)
    assert all(e.source == "anomaly" and e.deviation > 1 for e in top.anomalies)
    # the baseline sees the excursion start no later than the first crit crossing
    assert injected - 1 <= top.onset <= report.first_abnormal_at
    assert {"database", "api", "payment"} <= set(top.explains)
    assert next(iter(report.abnormal_components)) == "cache"
    # built 30 s after the injection here: the time to report counts from the first
    # sample past a threshold to the report's clock
    assert report.time_to_report_s == pytest.approx(loop.now - report.first_abnormal_at)
    assert injected < report.first_abnormal_at <= injected + 2
    assert report.sqi < 80 and report.sqi_roles["response_time"] < 100
    sqi = loop.analyzer.sqi_findings()
    assert len(sqi) == 1 and sqi[0].kind == FindingKind.sqi and sqi[0].target == TARGET
    assert "cache" in {e.component for e in sqi[0].evidence}  # first to drag it down
    assert "cache_saturation" in render_markdown(report)


def test_below_the_rules_thresholds_the_baselines_still_point_at_the_cause(make_loop):
    # at intensity 0.8 the db query latency stays under its crit line: no rule fires, no
    # incident opens, but the ranking of the context already names the fault
    loop = make_loop()
    loop.run(20)
    loop.twin.inject(TARGET, "db_io_wait", now=loop.now, intensity=0.8)
    loop.run(40)
    assert loop.findings == []
    anomalies = loop.analyzer.anomalies(TARGET)
    assert "db_query_latency_ms" in {e.series for e in anomalies}
    report = loop.analyzer.report("ctx", TARGET, [])
    assert report.top.fault == "db_io_wait" and not report.top.fired
    assert report.text() == "" and report.symptoms() == ()


def test_without_a_baseline_nothing_is_judged(make_loop):
    loop = make_loop(install=False)
    loop.twin.inject(TARGET, "edge_cpu_saturation", now=loop.now)
    loop.run(20)
    assert loop.analyzer.anomalies(TARGET) == []
    assert loop.findings  # the rules work on their own


def test_the_baseline_window_is_learnt_persisted_and_retrained_on_schedule(
    make_loop, catalog, tmp_path
):
    policy = BaselinePolicy(stride_s=60, min_span_s=1800, every_s=3600, window_s=7200)
    bank = BaselineBank(catalog, model_dir=tmp_path / "models", policy=policy)
    loop = make_loop(bank=bank, install=False)
    loop.run(1700, step=10.0)
    assert loop.analyzer.retrain_due(loop.now) == []  # not enough normal operation yet
    loop.run(200, step=10.0)
    assert loop.analyzer.retrain_due(loop.now) == [TARGET]
    assert (tmp_path / "models" / f"{TARGET}.joblib").exists()
    assert loop.analyzer.retrain_due(loop.now + 60) == []  # fresh: not due
    rows = len(bank.training_window(TARGET)[0])
    loop.twin.inject(TARGET, "cache_saturation", now=loop.now)
    loop.run(300, step=10.0)
    assert len(bank.training_window(TARGET)[0]) <= rows + 1  # a fault is not "normal"
    assert loop.analyzer.anomalies(TARGET)  # the learnt model judges
    again = BaselineBank(catalog, model_dir=tmp_path / "models", policy=policy)
    assert again.load() == 1 and again.model(TARGET) is not None
    assert again.due(loop.now) == []  # no window of its own yet: nothing to retrain on
    (tmp_path / "models" / "broken.joblib").write_text("not a model")
    assert BaselineBank(catalog, model_dir=tmp_path / "models").load() == 1


def test_a_silent_or_frozen_series_is_not_an_anomaly(make_loop):
    from loop.monitor import Point

    loop = make_loop()
    loop.run(20)
    loop.twin.inject(TARGET, "edge_cpu_saturation", now=loop.now)
    loop.run(20)
    anomalous = {e.series for e in loop.analyzer.anomalies(TARGET)}
    assert {"edge_cpu_util_pct", "edge_latency_ms"} <= anomalous
    frozen = loop.twin.state(TARGET)["values"]["edge_latency_ms"]
    for _ in range(150):  # edge_cpu_util_pct goes silent, edge_latency_ms repeats a value
        loop.now += 1
        row = loop.twin.advance(loop.now)[0].tolist()
        values = dict(zip(loop.twin.series, row, strict=True))
        values["edge_latency_ms"] = frozen
        del values["edge_cpu_util_pct"]
        loop.analyzer.observe([Point(TARGET, s, loop.now, v) for s, v in values.items()])
    anomalous = {e.series for e in loop.analyzer.anomalies(TARGET)}
    assert "edge_cpu_util_pct" not in anomalous  # no data
    assert "edge_latency_ms" not in anomalous  # stale
    assert "edge_dropped_points_per_s" in anomalous  # the fault itself is still seen
