import math
import threading

import numpy as np
import pytest

from kernel.errors import InvalidSample, Overloaded
from kernel.models import Sample
from loop.monitor import Monitor, parse_sample
from rules.catalog import load_catalog

NOW = 10_000.0


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def monitor_for(catalog, **kw):
    return Monitor(catalog, window_s=10, clock=lambda: NOW, **kw)


def raw(series="cache_hit_ratio", ts=NOW, value=0.9, target="t1"):
    return {"series": series, "labels": {"target": target}, "ts": ts, "value": value}


def test_bad_samples_are_rejected_one_by_one_with_reasons_and_counted(catalog):
    monitor = monitor_for(catalog)
    result = monitor.ingest(
        [
            raw(ts=NOW - 1),
            raw(series="no_such_metric"),
            raw(value=math.nan),
            raw(value=math.inf),
            {"series": "cache_hit_ratio", "labels": {"target": "t1"}, "ts": "yes", "value": 1},
            ["not", "an", "object"],
            raw(ts=NOW - 7200),
            raw(ts=NOW + 3600),
            raw(target=""),
            raw(ts=NOW),
        ]
    )
    assert result.accepted == 2
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "unknown_metric"),
        (2, "invalid"),
        (3, "invalid"),
        (4, "invalid"),
        (5, "invalid"),
        (6, "too_old"),
        (7, "in_future"),
        (8, "bad_target"),
    ]
    assert "unknown metric 'no_such_metric'" in result.rejected[0].error
    assert "finite" in result.rejected[1].error
    assert "object" in result.rejected[4].error
    assert monitor.latest("t1", "cache_hit_ratio") == (NOW, 0.9)
    counters = monitor.stats()["counters"]
    assert counters["accepted"] == 2 and counters["invalid"] == 4
    assert counters["too_old"] == counters["in_future"] == counters["unknown_metric"] == 1


def test_duplicates_and_late_samples_are_dropped_deterministically(catalog):
    monitor = monitor_for(catalog)
    first = monitor.ingest([raw(ts=NOW, value=0.9), raw(ts=NOW, value=0.1), raw(ts=NOW - 1)])
    assert (first.accepted, first.duplicate, first.late) == (2, 1, 0)
    second = monitor.ingest([raw(ts=NOW - 2), raw(ts=NOW)])
    assert (second.accepted, second.late, second.duplicate) == (0, 1, 1)
    assert monitor.latest("t1", "cache_hit_ratio") == (NOW, 0.9)  # first among equals wins
    assert monitor.stats()["counters"]["duplicate"] == 2


def test_latest_points_are_one_per_touched_series(catalog):
    monitor = monitor_for(catalog)
    result = monitor.ingest(
        [raw(ts=NOW - 2, value=0.5), raw(ts=NOW - 1, value=0.6), raw(target="b", value=0.7)]
    )
    assert sorted(result.latest) == [
        ("b", "cache_hit_ratio", NOW, 0.7),
        ("t1", "cache_hit_ratio", NOW - 1, 0.6),
    ]


def test_oversized_batch_is_refused_whole_and_counted(catalog):
    monitor = monitor_for(catalog, max_batch=3)
    result = monitor.ingest([raw(ts=NOW - i) for i in range(4)])
    assert result.accepted == 0 and result.rejected[0].reason == "oversized_batch"
    assert "split it" in result.rejected[0].error
    assert monitor.stats()["counters"]["oversized_batch"] == 4
    assert monitor.latest("t1", "cache_hit_ratio") is None


def test_overload_sheds_with_retry_after_and_counts(catalog):
    monitor = monitor_for(catalog, max_in_flight=5)
    entered, release = threading.Event(), threading.Event()

    class Slow(list):  # a batch whose validation blocks, holding its place in flight
        def __iter__(self):
            entered.set()
            release.wait(5)
            return super().__iter__()

    worker = threading.Thread(target=monitor.ingest, args=(Slow([raw()] * 4),))
    worker.start()
    entered.wait(5)
    with pytest.raises(Overloaded) as err:
        monitor.ingest([raw(ts=NOW - 1)] * 2)
    release.set()
    worker.join(5)
    assert err.value.retry_after_s > 0
    assert monitor.stats()["counters"]["shed_overload"] == 2
    assert monitor.ingest([raw(ts=NOW + 1)]).accepted == 1  # room again


def test_columns_path_applies_the_same_rules(catalog):
    monitor = monitor_for(catalog)
    result = monitor.ingest_columns(
        ["a", "a", "a", "a", "a"],
        ["cache_hit_ratio", "nope", "cache_hit_ratio", "db_io_wait_pct", "db_io_wait_pct"],
        np.array([NOW, NOW, NOW - 9999, NOW, NOW]),
        np.array([0.9, 1.0, 0.8, np.nan, 12.0]),
    )
    assert result.accepted == 2
    assert sorted(r.reason for r in result.rejected) == ["invalid", "too_old", "unknown_metric"]
    assert monitor.latest("a", "db_io_wait_pct") == (NOW, 12.0)


def test_window_is_bounded_oldest_first_and_series_expire(catalog):
    clock = [NOW]
    monitor = Monitor(catalog, window_s=3, clock=lambda: clock[0], expire_after_s=60)
    for i in range(5):
        monitor.ingest([raw(ts=NOW + i, value=float(i)), raw(ts=NOW + i, target="gone")])
    ts, values = monitor.window("t1", "cache_hit_ratio")
    assert ts.tolist() == [NOW + 2, NOW + 3, NOW + 4] and values.tolist() == [2.0, 3.0, 4.0]
    clock[0] = NOW + 50
    monitor.ingest([raw(ts=NOW + 50)])
    assert monitor.expire(NOW + 100) == 1  # "gone" went quiet 96 s ago, t1 50 s ago
    assert monitor.targets() == ["t1"] and monitor.latest("gone", "cache_hit_ratio") is None


def test_parse_sample_accepts_models_and_never_makes_up_a_target(catalog):
    sample = parse_sample(
        Sample(series="cache_hit_ratio", labels={"target": "a"}, ts=1, value=0.5), catalog
    )
    assert sample.target == "a"
    for labels in ({}, {"x": "y"}):
        missing = {"series": "cache_hit_ratio", "labels": labels, "ts": 1, "value": 1}
        with pytest.raises(InvalidSample) as info:
            parse_sample(missing, catalog)
        assert info.value.reason == "bad_target"
