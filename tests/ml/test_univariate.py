import numpy as np

from ml.types import SeriesState
from ml.univariate import (
    StreamingDetector,
    StreamingParams,
    alarms_from_scores,
    recent_max_ratio,
)


def run(values, **params):
    det = StreamingDetector(StreamingParams(**params))
    points, feats = [], []
    for i, v in enumerate(values):
        points.append(det.update(float(i), float(v)))
        feats.append(det.last_features)
    return det, points, np.array(feats)


def noise(n: int, seed: int = 0) -> np.ndarray:
    return 10 + np.random.default_rng(seed).normal(0, 1, n)


def test_spike_raises_one_alarm_at_the_spike():
    v = noise(1500)
    v[1200] += 25
    _, points, _ = run(v, warmup=300)
    assert points[1200].alarm and points[1200].anomalous
    assert all(p.state is SeriesState.WARMING_UP for p in points[:300])
    # one event, one alarm: nothing else fires within the refractory period after it
    assert not any(p.alarm for p in points[1201 : 1200 + 45])


def test_streaming_scores_equal_the_vectorised_ratio():
    v = np.cumsum(np.random.default_rng(3).normal(size=1200))
    det, points, feats = run(v, warmup=200, max_history=400)
    ratio = np.max([recent_max_ratio(feats[:, k], det.lookback) for k in range(3)], axis=0)
    scores = np.array([p.score for p in points])
    ok = np.isfinite(scores)
    assert ok.sum() == 1000
    np.testing.assert_allclose(scores[ok], ratio[ok])


def test_nan_is_no_data_and_does_not_disturb_the_stream():
    v = noise(800)
    _, clean, _ = run(v, warmup=200)
    with_nan = np.insert(v, 500, np.nan)
    _, points, _ = run(with_nan, warmup=200)
    assert points[500].state is SeriesState.NO_DATA
    assert [p.score for p in points[501:]] == [p.score for p in clean[500:]]


def test_flat_line_is_stale_and_never_alarms():
    v = np.concatenate([noise(600), np.full(200, 42.0)])
    _, points, _ = run(v, warmup=200)
    assert points[-1].state is SeriesState.STALE
    assert not any(p.alarm for p in points[610:])


def test_memory_stays_bounded():
    det, _, _ = run(noise(5000), warmup=100, max_history=500)
    assert det._vals.n <= 1001 and det._emb.n <= 1001
    assert all(buf.n <= 2 * det.lookback + 1 for buf in det._feats)


def test_recent_max_ratio_by_hand():
    x = np.array([0.0, 2.0, 1.0, 4.0, 4.0, 1.0])
    # past max over 2 points: -, 0, 2, 2, 4, 4
    assert recent_max_ratio(x, 2).tolist() == [0.0, 0.0, 0.5, 2.0, 1.0, 0.25]


def test_alarms_respect_margin_refractory_and_nan():
    s = np.array([2.0, 2.0, 0.5, 2.0, np.nan, 2.0, 1.0])
    assert alarms_from_scores(s, 1.0, 2).tolist() == [1, 0, 0, 1, 0, 0, 0]
    assert alarms_from_scores(s, 1.0, 0).tolist() == [1, 1, 0, 1, 0, 1, 0]
