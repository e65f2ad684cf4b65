import numpy as np
import pytest

from ml.baseline import SeasonalBaseline
from ml.types import SeriesState

DAY = 86_400.0


def daily(days: int, step: float = 300.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(0.0, days * DAY, step)
    rng = np.random.default_rng(seed)
    return ts, 100 + 50 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0, 2, ts.size)


def test_threshold_is_the_training_quantile_of_the_budget():
    ts, v = daily(14)
    base = SeasonalBaseline(false_alarm_rate=0.01).fit(ts, v)
    block = base.score_many(ts, v)
    share = np.mean([s is SeriesState.ANOMALOUS for s in block.states])
    assert share == pytest.approx(0.01, abs=0.002)
    assert base.trained_from == 0.0 and base.trained_to == ts[-1]


def test_value_normal_at_noon_is_anomalous_at_midnight():
    ts, v = daily(14)
    base = SeasonalBaseline().fit(ts, v)
    peak = 6 * 3600.0  # sin peaks a quarter day in: ~150
    assert base.score(20 * DAY + peak, 150.0).state is SeriesState.OK
    trough = 18 * 3600.0  # ~50 expected
    point = base.score(20 * DAY + trough, 150.0)
    assert point.state is SeriesState.ANOMALOUS
    assert point.expected == pytest.approx(50, abs=5)


def test_nan_is_no_data_and_flat_line_is_stale_not_anomalous():
    ts, v = daily(14)
    base = SeasonalBaseline().fit(ts, v)
    assert base.score(20 * DAY, float("nan")).state is SeriesState.NO_DATA
    assert base.score(20 * DAY, float("inf")).state is SeriesState.NO_DATA
    # the sensor sticks at a far-off value: stale once it has been flat longer than ever
    states = [base.score(20 * DAY + i * 300.0, 500.0).state for i in range(20)]
    assert states[0] is SeriesState.ANOMALOUS
    assert states[-1] is SeriesState.STALE
    block = base.score_many(np.arange(20) * 300.0, np.full(20, 500.0))
    assert block.states[-1] is SeriesState.STALE and np.isnan(block.scores[-1])


def test_fit_ignores_nan_and_refuses_empty():
    ts, v = daily(7)
    v[::7] = np.nan
    base = SeasonalBaseline().fit(ts, v)
    assert np.isfinite(base.threshold)
    with pytest.raises(ValueError):
        SeasonalBaseline().fit(np.array([0.0, 1.0]), np.array([np.nan, np.nan]))
