"""The window-novelty detector: streaming and vectorised forms agree; drifts are novel."""

import numpy as np

from ml.contextual import ContextualDetector
from ml.sequence import SequenceDetector, SequenceParams, sequence_alarms
from ml.univariate import recent_max_ratio
from ml.windowed import (
    WindowNovelty,
    novel_windows,
    novelty_threshold,
    window_features,
    window_novelty,
)


def _periodic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / 50) + rng.normal(0, 0.3, n)


def test_features_are_the_trailing_window_summaries():
    v = np.array([1.0, 3.0, 2.0, 6.0])
    f = window_features(v, 2)
    np.testing.assert_allclose(f[:, 0], [1.0, 2.0, 2.5, 4.0])  # mean (first value repeats)
    np.testing.assert_allclose(f[:, 1], [1.0, 1.0, 2.0, 2.0])  # min
    np.testing.assert_allclose(f[:, 2], [1.0, 3.0, 3.0, 6.0])  # max
    np.testing.assert_allclose(f[:, 3], [0.0, 1.0, 1.5, 2.5])  # mean |step|


def test_novelty_only_uses_windows_that_do_not_overlap():
    v = np.array([0.0, 0.0, 0.0, 5.0, 5.0, 5.0])
    nov = window_novelty(v, 1)
    # row 3 (the jump) is 5 away from every earlier window; row 4 is as high but calm
    # (its step is 0, row 3's was 5); row 5 has row 4 as memory
    np.testing.assert_allclose(nov, [0, 0, 0, 5, 5, 0])
    assert window_novelty(v, 2)[4] == 5.0  # width 2: row 3's window overlaps row 4's


def test_threshold_is_learnt_from_the_second_half_of_training():
    nov = np.array([9.0, 9.0, 1.0, 2.0, 100.0])
    assert novelty_threshold(nov, warmup=4, factor=3.0) == 6.0


def test_streaming_equals_vectorised_and_a_slow_drift_is_novel():
    v = _periodic(2000)
    v[1500:] += np.linspace(0, 6, 500)  # a slow drift to a level never seen
    det = WindowNovelty(warmup=600, width=12, factor=2.0)
    flags = np.array([det.update(float(x)) for x in v])
    np.testing.assert_array_equal(flags, novel_windows(v, 600, 12, 2.0))
    assert not flags[:1500].any()  # the periodic pattern never is
    assert flags[1500:].any()


def test_non_finite_values_repeat_the_last_one():
    v = _periodic(400)
    v[300] = np.nan
    det = WindowNovelty(warmup=200, width=5, factor=2.0)
    flags = np.array([det.update(float(x)) for x in v])
    np.testing.assert_array_equal(flags, novel_windows(v, 200, 5, 2.0))


def test_sequence_detector_with_novelty_equals_the_vectorised_rule():
    from ml.univariate import StreamingDetector, StreamingParams

    v = _periodic(1500)
    v[1100:] += np.linspace(0, 2, 400)  # slow: no single step beats the recent maximum
    p = SequenceParams(warmup=300, novelty_factor=2.0)
    det = SequenceDetector(p)
    alarms = np.array([det.update(float(i), float(x)).alarm for i, x in enumerate(v)])
    model = ContextualDetector(v[:300].min(), v[:300].max(), overflow=p.overflow)
    raw = np.array([model.update(x) for x in v])
    dev = StreamingDetector(StreamingParams(warmup=300, lookback=p.lookback))
    feats = []
    for i, x in enumerate(v):
        dev.update(float(i), float(x))
        feats.append(dev.last_features)
    f = np.array(feats)
    ratio = np.max([recent_max_ratio(f[:, k], det.deviation.lookback) for k in range(3)], 0)
    ratio[:300] = np.nan
    novel = novel_windows(v, 300, p.width, 2.0)
    np.testing.assert_array_equal(alarms, sequence_alarms(raw, ratio, p, novel=novel))
    off = SequenceParams(warmup=300, novelty_factor=None)
    assert alarms[1100:].sum() >= sequence_alarms(raw, ratio, off)[1100:].sum()
