import math

import pytest

from loop.errors import InvalidSample
from loop.models import Sample
from loop.monitor import Monitor, SeriesWindow, parse_sample
from rules.catalog import load_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def raw(series="cache_hit_ratio", ts=1.0, value=0.9, target="t1"):
    return {"series": series, "labels": {"target": target}, "ts": ts, "value": value}


def test_bad_samples_are_rejected_one_by_one_and_the_rest_kept(catalog):
    monitor = Monitor(catalog, window_s=10)
    result = monitor.ingest(
        [
            raw(ts=1),
            raw(series="no_such_metric"),
            raw(value=math.nan),
            raw(value=math.inf),
            {"series": "cache_hit_ratio", "ts": "yesterday", "value": 1},
            ["not", "an", "object"],
            raw(ts=2),
        ]
    )
    assert result.accepted == 2
    assert [r.index for r in result.rejected] == [1, 2, 3, 4, 5]
    assert "unknown metric 'no_such_metric'" in result.rejected[0].error
    assert "finite" in result.rejected[1].error
    assert "ts" in result.rejected[3].error
    assert "object" in result.rejected[4].error
    assert monitor.latest("t1", "cache_hit_ratio") == (2.0, 0.9)


def test_duplicates_and_late_samples_are_dropped_deterministically(catalog):
    monitor = Monitor(catalog, window_s=10)
    first = monitor.ingest([raw(ts=5, value=0.9), raw(ts=5, value=0.1), raw(ts=4, value=0.2)])
    assert (first.accepted, first.stale) == (1, 2)
    assert monitor.latest("t1", "cache_hit_ratio") == (5.0, 0.9)


def test_targets_are_kept_apart(catalog):
    monitor = Monitor(catalog, window_s=10)
    monitor.ingest([raw(target="a", value=0.1), raw(target="b", value=0.2)])
    assert monitor.targets() == ["a", "b"]
    assert monitor.latest("a", "cache_hit_ratio")[1] == 0.1


def test_window_is_bounded_and_oldest_first():
    window = SeriesWindow(capacity=3)
    for ts in range(1, 6):
        assert window.append(float(ts), ts * 10.0)
    ts, values = window.arrays()
    assert ts.tolist() == [3.0, 4.0, 5.0]
    assert values.tolist() == [30.0, 40.0, 50.0]


def test_partial_window_and_empty():
    window = SeriesWindow(capacity=4)
    assert window.latest() is None
    window.append(1.0, 1.0)
    window.append(2.0, 2.0)
    assert window.arrays()[0].tolist() == [1.0, 2.0]


def test_parse_sample_accepts_models_and_defaults_target(catalog):
    sample = parse_sample(Sample(series="cache_hit_ratio", ts=1, value=0.5), catalog)
    assert sample.target == "default"
    with pytest.raises(InvalidSample):
        parse_sample({"series": "cache_hit_ratio", "ts": 1}, catalog)
