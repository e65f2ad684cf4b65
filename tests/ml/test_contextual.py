import numpy as np

from ml.contextual import ContextualDetector, rest_period_alarms
from ml.sequence import SequenceDetector, SequenceParams, gated_scores, sequence_alarms
from ml.types import SeriesState
from ml.univariate import recent_max_ratio


def test_bit_pair_facts_share_bits_between_near_levels():
    det = ContextualDetector(0.0, 7.0, bits=3, overflow=2)
    assert det.facts(0.0) == (0, 2, 4)
    assert det.facts(1.0) == (1, 2, 4)  # one bit apart: two facts shared
    assert det.facts(7.0) == (1, 3, 5)
    # beyond the training range: overflow levels with facts of their own, then clipped
    assert det.facts(8.0) != det.facts(9.0)
    assert det.facts(9.0) == det.facts(100.0)
    assert det.facts(-1.0) not in (det.facts(0.0), det.facts(8.0))


def test_a_learnt_sequence_is_predicted_and_a_broken_one_is_not():
    pattern = [0, 3, 7, 3] * 200
    det = ContextualDetector(0.0, 7.0)
    raw = [det.update(float(v)) for v in pattern]
    assert max(raw[-100:]) < 0.1  # fully predicted once learnt
    assert det.update(0.0) < 0.1
    assert det.update(7.0) > 0.5  # 0 -> 7 never happened: unpredicted


def test_rest_period_alarms_one_alarm_per_event():
    raw = np.array([0, 0.9, 0.95, 0.2, 0.9, 0, 0, 0, 0, 0.9, np.nan])
    assert np.flatnonzero(rest_period_alarms(raw, 0.8, rest=3)).tolist() == [1, 9]
    # a lower quiet level: a 0.5 in the last 3 points keeps it quiet
    raw = np.array([0, 0.9, 0, 0, 0.5, 0, 0.9])
    assert np.flatnonzero(rest_period_alarms(raw, 0.8, rest=3)).tolist() == [1, 6]
    assert np.flatnonzero(rest_period_alarms(raw, 0.8, rest=3, quiet=0.4)).tolist() == [1]


def test_gate_needs_a_recent_deviation():
    raw = np.array([0.9, 0.9, 0.9, 0.9])
    ratio = np.array([0.5, 2.0, 0.5, np.nan])
    assert gated_scores(raw, ratio, gate=1.0, span=1).tolist() == [0, 0.9, 0, 0]
    assert gated_scores(raw, ratio, gate=1.0, span=2).tolist() == [0, 0.9, 0.9, 0]


def _series(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 10 + 3 * np.sin(2 * np.pi * t / 50) + rng.normal(0, 0.3, n)
    v[1200:1210] += 12  # a burst never seen in training
    return v


def test_streaming_detector_equals_the_vectorised_rule():
    v = _series()
    p = SequenceParams(warmup=300)
    det = SequenceDetector(p)
    points = [det.update(float(i), float(x)) for i, x in enumerate(v)]
    alarms = np.array([pt.alarm for pt in points])
    # the same rule on whole arrays, from the two models' own scores
    raw = np.zeros(v.size)
    model = ContextualDetector(v[:300].min(), v[:300].max(), overflow=p.overflow)
    raw = np.array([model.update(x) for x in v])
    feats = _deviation_features(v, p)
    ratio = np.max([recent_max_ratio(feats[:, k], det.deviation.lookback) for k in range(3)], 0)
    ratio[:300] = np.nan
    np.testing.assert_array_equal(alarms, sequence_alarms(raw, ratio, p))
    assert alarms[1200:1215].sum() == 1  # the burst: one alarm
    assert alarms.sum() <= 3
    assert all(pt.state is SeriesState.WARMING_UP for pt in points[:300])


def _deviation_features(v: np.ndarray, p: SequenceParams) -> np.ndarray:
    from ml.univariate import StreamingDetector, StreamingParams

    d = StreamingDetector(StreamingParams(warmup=p.warmup, lookback=p.lookback))
    out = []
    for i, x in enumerate(v):
        d.update(float(i), float(x))
        out.append(d.last_features)
    return np.array(out)


def test_nan_is_no_data_and_a_flat_line_never_alarms():
    v = _series(900)
    v[500] = np.nan
    v = np.concatenate([v, np.full(300, 42.0)])
    det = SequenceDetector(SequenceParams(warmup=300))
    points = [det.update(float(i), float(x)) for i, x in enumerate(v)]
    assert points[500].state is SeriesState.NO_DATA
    assert points[-1].state is SeriesState.STALE
    assert not any(p.alarm for p in points[-250:])
