"""SQI (loop/sqi.py): pure, against the real catalog's thresholds."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kernel.models import FindingKind
from loop.sqi import ALERT_BELOW, WEIGHTS, SQIModel, SQITracker, metric_scores
from rules.catalog import load_catalog


@pytest.fixture(scope="module")
def model():
    return SQIModel(load_catalog())


def healthy(model):
    """Every SQI metric comfortably on the good side of warn."""
    values = {}
    for name, warn, crit in zip(model.series, model.warn, model.crit, strict=True):
        values[name] = warn - abs(crit - warn) if crit > warn else warn + abs(crit - warn)
    return values


def test_weights_are_the_papers():
    assert WEIGHTS == {
        "response_time": 0.4,
        "success_rate": 0.3,
        "utilisation": 0.2,
        "error_rate": 0.1,
    }
    assert math.isclose(sum(WEIGHTS.values()), 1.0)
    assert ALERT_BELOW == 80


def test_metric_score_runs_from_warn_to_crit_both_directions():
    warn = np.array([300.0, 300.0, 300.0, 300.0, 99.5, 99.5, 99.5])
    crit = np.array([800.0, 800.0, 800.0, 800.0, 99.0, 99.0, 99.0])
    high = np.array([True, True, True, True, False, False, False])
    values = np.array([100.0, 300.0, 550.0, 2000.0, 99.9, 99.25, 90.0])
    assert metric_scores(values, warn, crit, high).tolist() == [
        100.0,
        100.0,
        50.0,
        0.0,
        100.0,
        pytest.approx(50.0),
        0.0,
    ]
    assert np.isnan(metric_scores(np.array([np.nan]), warn[:1], crit[:1], high[:1]))[0]


def test_a_healthy_target_scores_100(model):
    result = model.score(healthy(model))
    assert result.sqi == 100.0 and not result.alert and result.dragging == ()
    assert set(result.roles) == set(WEIGHTS)


@pytest.mark.parametrize(
    ("series", "value", "expected"),
    [
        ("api_response_time_ms", 800.0, 60.0),  # response time at crit: 100 - 40
        ("api_response_time_ms", 550.0, 80.0),  # half way warn..crit: on the line
        ("payment_success_rate_pct", 99.0, 70.0),  # success rate at crit
        ("cache_utilization_pct", 95.0, 80.0),  # utilisation past crit
        ("api_error_rate_pct", 5.0, 90.0),  # error rate alone never alerts
    ],
)
def test_one_metric_moves_the_index_by_its_roles_weight(model, series, value, expected):
    values = healthy(model) | {series: value}
    result = model.score(values)
    assert result.sqi == pytest.approx(expected)
    assert result.alert == (expected < ALERT_BELOW)
    assert result.dragging[0].series == series


def test_the_worst_metric_of_a_role_counts_and_components_are_named(model):
    values = healthy(model) | {"db_query_latency_ms": 500.0, "api_response_time_ms": 550.0}
    result = model.score(values)
    assert result.roles["response_time"] == 0.0
    assert result.sqi == pytest.approx(60.0)
    assert result.components == ("database", "api")


def test_roles_without_data_are_left_out_and_weights_rescaled(model):
    result = model.score({"api_response_time_ms": 800.0, "payment_success_rate_pct": 99.9})
    assert set(result.roles) == {"response_time", "success_rate"}
    assert result.sqi == pytest.approx(0.3 / 0.7 * 100)
    assert model.score({}) is None
    assert model.score({"cache_hit_ratio": 0.1}) is None  # not an SQI metric


def test_the_tracker_reports_one_finding_per_episode_below_the_line(model):
    tracker = SQITracker(model)
    assert tracker.current("t") is None
    tracker.update("t", [("cache_hit_ratio_nope", 1.0)], 0.0)  # no SQI metric: nothing
    assert tracker.current("t") is None
    tracker.update("t", healthy(model).items(), 1.0)
    assert tracker.current("t").sqi == 100.0 and tracker.drain() == []
    for now in (2.0, 3.0):  # below 80 twice: one episode, one finding, since its start
        tracker.update("t", [("api_response_time_ms", 800.0)], now)
    (found,) = tracker.drain()
    assert found.kind == FindingKind.sqi and found.target == "t" and found.started_at == 2.0
    assert found.series[0] == "api_response_time_ms"
    tracker.update("t", [("cache_utilization_pct", 10.0)], 4.0)  # other values are kept
    assert tracker.current("t").sqi == pytest.approx(60.0)
    tracker.update("t", [("api_response_time_ms", 100.0)], 5.0)  # recovered
    assert not tracker.current("t").alert and tracker.drain() == []
    tracker.update("t", [("api_response_time_ms", 800.0)], 6.0)  # a new episode
    assert [f.started_at for f in tracker.drain()] == [6.0]
    assert tracker.current("other") is None  # targets are separate


MODEL = SQIModel(load_catalog())
NEAR = sorted({*MODEL.warn.tolist(), *MODEL.crit.tolist()})  # on and around the lines
CELL = st.one_of(
    st.just(float("nan")),
    st.floats(-1e4, 1e6, allow_nan=False),
    st.sampled_from(NEAR),
    st.builds(lambda x, d: x + d, st.sampled_from(NEAR), st.floats(-5, 5)),
)


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.just(len(MODEL.series))),
        elements=CELL,
        fill=st.one_of(st.just(float("nan")), st.sampled_from(NEAR)),
    )
)
def test_sqi_many_is_the_score_of_each_row(values: np.ndarray) -> None:
    """The analyzer's one-pass SQI over many targets equals ``score`` on each, bit for bit.
    (Rows are drawn sparse: a fill value, NaN or a threshold, and some cells of every kind;
    drawing every cell made this test take minutes.)"""
    many = MODEL.sqi_many(values)
    for row, number in zip(values, many.tolist(), strict=True):
        result = MODEL.score(row)
        assert (number != number) if result is None else number == result.sqi
