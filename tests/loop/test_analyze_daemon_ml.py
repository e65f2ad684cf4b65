"""The daemon's own Engine learns its ML baselines from an hour of healthy twin data and
then shows them in an incident's RCA report: nothing installed by hand, simulated time.

The engine is built like ``mendloop run`` builds it (its Monitor, Analyzer and
BaselineBank under ``var_dir/models``); graph, embedder and runner are never reached
because only the analyze step is driven. Samples go in through ``Engine.submit`` (the
door every source uses); retraining is the housekeeping's ``analyzer.retrain_due``; the
report is the one ``Engine._analyze`` stores on the incident. Only the clock is replaced.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from evaluation.rca import local_time
from kernel.config import DEFAULT_SITE, Settings
from kernel.models import Sample
from kernel.state import State
from loop.daemon import Engine
from loop.report import render_markdown
from loop.store import IncidentStore
from rules import RULES_DIR
from rules.catalog import load_catalog
from rules.compiler import load_rules
from rules.reload import RuleSource
from sites import load_site
from twin.model import Twin

TARGET = "pm-site-1"
SEED = 47  # not an eval seed (7001-7003) nor the baseline day's (9001)


class SimClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


SITE = load_site(DEFAULT_SITE)


@pytest.fixture
def make_engine(tmp_path):
    catalog = load_catalog()
    rules = load_rules(catalog)
    made = []

    def make(clock: SimClock) -> Engine:
        settings = Settings(var_dir=tmp_path / "var")
        store = IncidentStore(f"sqlite:///{tmp_path / 'engine.db'}")
        source = RuleSource.for_dir(RULES_DIR, catalog)
        engine = Engine(settings, store, None, None, catalog, rules, None, SITE, source)  # type: ignore[arg-type]
        engine.monitor.clock = clock  # simulated time, for the monitor and the analyzer
        engine.analyzer.clock = clock
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.analyzer.close()
        engine.store.close()


def feed(engine: Engine, twin: Twin, clock: SimClock, seconds: float, step: float) -> None:
    for _ in range(int(seconds / step)):
        clock.t += step
        values = twin.advance(clock.t)[0]
        result = engine.submit(
            Sample(series=s, labels={"target": TARGET}, ts=clock.t, value=float(v))
            for s, v in zip(twin.series, values, strict=True)
        )
        assert result.accepted == len(twin.series)


def test_engine_learns_baselines_from_healthy_data_and_reports_ml_onsets(make_engine, tmp_path):
    clock = SimClock(local_time(9.25))  # 09:15 local: the fault comes in the 10 o'clock hour
    engine = make_engine(clock)
    twin = Twin(targets=(TARGET,), seed=SEED)
    feed(engine, twin, clock, 1800, step=10.0)
    assert engine.analyzer.retrain_due(clock()) == []  # half an hour is not enough
    feed(engine, twin, clock, 1900, step=10.0)
    assert engine.analyzer.retrain_due(clock()) == [TARGET]  # the housekeeping's call
    assert (tmp_path / "var" / "models" / f"{TARGET}.joblib").exists()
    assert engine.findings_before_start() == []  # a healthy hour opened nothing

    feed(engine, twin, clock, 60, step=1.0)
    assert engine.analyzer.anomalies(TARGET) == []  # healthy again: nothing beyond baseline
    injected = clock()
    twin.inject(TARGET, "cache_saturation", now=injected)
    feed(engine, twin, clock, 20, step=1.0)
    findings = engine.findings_before_start()  # handed to the loop once it runs
    assert findings
    assert {engine.analyzer.rules[f.rule_id].fault for f in findings} == {"cache_saturation"}

    incident_id = engine.store.open_incident(TARGET, findings)
    opened = engine.store.get(incident_id)
    engine.moves.apply(opened, asyncio.run(engine.steps.analyze.run(opened)))  # the first step
    incident = engine.store.get(incident_id)
    assert incident.state == State.analyzed
    report = incident.report
    top = report.top
    assert top.fault == "cache_saturation" and top.fired
    # the learnt baselines are evidence on the cause: series, onset, how far off
    assert top.anomalies
    assert all(e.source == "anomaly" and e.component == "cache" for e in top.anomalies)
    assert all(e.deviation > 1 for e in top.anomalies)
    onsets = [e.since for e in top.anomalies]
    assert injected - 1 <= min(onsets) <= report.first_abnormal_at
    assert top.onset is not None and top.onset <= report.first_abnormal_at
    assert next(iter(report.abnormal_components)) == "cache"
    assert "ML baseline" in render_markdown(report)

    # a restarted daemon loads the persisted baseline and judges at once
    again = make_engine(clock)
    assert again.analyzer.baselines.model(TARGET) is not None
    model = again.analyzer.baselines.model(TARGET)
    assert model.trained_to == pytest.approx(clock() - 80, abs=40)
    assert np.isfinite(model.threshold).sum() > 200
