import numpy as np
import pytest

from ml.forest import GroupForest
from ml.types import SeriesState

METRICS = [f"m{i}" for i in range(6)]


def data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    load = rng.normal(0, 1, (n, 1))
    return np.hstack([load + rng.normal(0, 0.3, (n, 1)) for _ in METRICS])


def test_threshold_honours_the_training_false_alarm_budget():
    forest = GroupForest(METRICS, false_alarm_rate=0.02).fit(data(3000, 0))
    # two scores with half the budget each: between half and all of it on the training rows
    share = np.mean(forest.train_scores > forest.threshold)
    assert 0.01 - 0.002 <= share <= 0.02 + 0.002


def test_anomaly_is_detected_and_attributed_to_the_metrics_that_moved():
    forest = GroupForest(METRICS).fit(data(3000, 0))
    test = data(400, 1)
    test[200:220, 2] += 8
    test[200:220, 5] -= 6
    result = forest.score(test)
    assert result.anomalous[205:220].all()
    assert result.anomalous[:150].mean() < 0.1
    ranked = forest.attribute(test[200:220])
    assert {a.metric for a in ranked[:2]} == {"m2", "m5"}
    assert ranked[0].metric == "m2" and ranked[0].deviation > 0
    assert next(a for a in ranked if a.metric == "m5").deviation < 0


def test_onsets_date_each_deviating_metric():
    forest = GroupForest(METRICS).fit(data(3000, 0))
    rows = data(100, 4)
    rows[60:, 1] += np.linspace(0, 10, 40)  # m1 ramps from row 60
    rows[90:, 4] += 8  # m4 jumps at row 90
    ts = 1000.0 + 10 * np.arange(100)
    onsets = forest.onsets(rows, ts)
    assert set(onsets) == {"m1", "m4"}  # only the metrics out of range now
    assert 1000 + 10 * 55 <= onsets["m1"] <= 1000 + 10 * 70
    # a jump: back to row 90, or a few rows earlier where noise was above its median
    assert 1000 + 10 * 80 <= onsets["m4"] <= 1000 + 10 * 90
    assert list(forest.onsets(rows, ts, ["m0"])) == ["m0"]


def test_bad_rows_are_no_data_or_stale_not_anomalous():
    forest = GroupForest(METRICS).fit(data(2000, 0))
    test = data(60, 2)
    test[10] = np.nan
    test[30:45] = 50.0  # every metric stuck: a frozen exporter
    result = forest.score(test)
    assert result.states[10] is SeriesState.NO_DATA and np.isnan(result.scores[10])
    assert result.states[44] is SeriesState.STALE
    # a single missing metric is imputed as normal, the row is still scored
    test[20, 1] = np.nan
    assert forest.score(test).states[20] in (SeriesState.OK, SeriesState.ANOMALOUS)


def test_refuses_wrong_shapes_and_scoring_before_fit():
    with pytest.raises(ValueError):
        GroupForest(METRICS).fit(np.zeros((10, 3)))
    with pytest.raises(RuntimeError):
        GroupForest(METRICS).score(np.zeros((10, 6)))
