import math

import numpy as np

from ml.bank import DetectorBank
from ml.persist import load_model, save_model
from ml.types import SeriesState
from ml.univariate import StreamingParams


def feed(bank, values, series="cpu", target="t1", t0=0.0, step=10.0):
    events = []
    for i, v in enumerate(values):
        e = bank.observe(target, series, t0 + i * step, float(v))
        if e is not None:
            events.append(e)
    return events


def test_alarm_carries_its_onset_and_kind():
    rng = np.random.default_rng(0)
    v = 50 + rng.normal(0, 1, 1000)
    v[800:820] += np.linspace(0, 40, 20)  # a ramp: the alarm comes after it started
    bank = DetectorBank(StreamingParams(warmup=300))
    events = [e for e in feed(bank, v) if e.state is SeriesState.ANOMALOUS]
    ramp = [e for e in events if 8000 <= e.ts <= 8190]
    assert len(ramp) == 1  # one event, one alarm
    # the excursion began before the alarm, and not before the ramp
    assert 8000 <= ramp[0].onset_ts < ramp[0].ts
    assert ramp[0].kind in ("level", "step", "shape") and ramp[0].score > 1
    # a record-breaking detector also flags the odd noise record, but rarely
    assert len(events) <= 3
    assert bank.state("t1", "cpu") in (SeriesState.ANOMALOUS, SeriesState.OK)


def test_stale_and_no_data_are_events_once_not_anomalies():
    rng = np.random.default_rng(1)
    v = np.concatenate([50 + rng.normal(0, 1, 400), np.full(100, 50.0)])
    bank = DetectorBank(StreamingParams(warmup=200))
    events = feed(bank, v)
    stale = [e for e in events if e.state is SeriesState.STALE]
    assert len(stale) == 1 and stale[0].onset_ts == 4000.0 and stale[0].kind == "stale"
    assert not [e for e in events if e.ts > 4000 and e.state is SeriesState.ANOMALOUS]
    nan_events = feed(bank, [math.nan, math.nan], t0=5000.0)
    assert [e.kind for e in nan_events] == ["no_data"]


def test_silence_is_reported_once_after_twice_the_longest_warmup_interval():
    bank = DetectorBank(StreamingParams(warmup=50))
    feed(bank, np.random.default_rng(2).normal(size=100), step=10.0)  # last sample at 990
    assert bank.silent(1005.0) == []
    events = bank.silent(1011.0)
    assert [(e.series, e.onset_ts, e.state) for e in events] == [
        ("cpu", 990.0, SeriesState.NO_DATA)
    ]
    assert bank.silent(2000.0) == []  # once per spell
    feed(bank, [1.0], t0=2000.0)
    assert len(bank.silent(3000.0)) == 1


def test_bank_persists(tmp_path):
    bank = DetectorBank(StreamingParams(warmup=50), overrides={"mem": StreamingParams(warmup=20)})
    feed(bank, np.arange(100.0) % 7)
    save_model(bank, tmp_path / "bank.joblib", key="t1", trained_from=0, trained_to=990)
    loaded, meta = load_model(tmp_path / "bank.joblib", kind="DetectorBank")
    assert len(loaded) == 1 and meta.key == "t1"
    a = bank.observe("t1", "cpu", 1000.0, 3.0)
    b = loaded.observe("t1", "cpu", 1000.0, 3.0)
    assert a == b
    assert loaded.overrides["mem"].warmup == 20
