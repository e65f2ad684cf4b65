"""The vectorised thresholds (rules/thresholds.py) judge exactly like the reference
``ThresholdTracker`` (rules/reference.py), sample for sample: same changes, same facts, same
quality events, in the same order, on random streams that breach, recover, flat-line,
fall silent and are forgotten."""

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loop.tick import by_target, waves
from rules.catalog import Catalog, load_catalog
from rules.reference import ThresholdTracker
from rules.thresholds import ThresholdColumns

_TWIN = load_catalog()
_INSTANT = _TWIN["cache_utilization_pct"].model_copy(update={"name": "instant", "duration_s": 0.0})
CATALOG = Catalog([*_TWIN.values(), _INSTANT])
# one of each kind: bad high / bad low, held 0 s and longer
SERIES = ("cache_hit_ratio", "cache_utilization_pct", "db_penetration_pct", "instant")
TARGETS = ("a", "b", "c")
FLAT, GAP, FORGET = 6.0, 4.0, 12.0


def values_of(series):
    spec = CATALOG[series]
    sign = 1 if spec.bad == "high" else -1
    step = abs(spec.crit - spec.warn) or 1.0
    # healthy, between warn and crit, on crit, past it (two levels)
    return [
        spec.warn - sign * step,
        spec.warn + sign * step / 2,
        spec.crit,
        spec.crit + sign * step,
        spec.crit + 2 * sign * step,
    ]


sample = st.tuples(
    st.sampled_from(TARGETS), st.sampled_from(SERIES), st.integers(0, 4), st.integers(0, 2)
)
tick = st.tuples(
    st.lists(sample, max_size=8),
    st.sampled_from([0.0, 1.0, 1.0, 2.0, 5.0, 7.0, 13.0]),  # time step before the tick
    st.lists(st.sampled_from(TARGETS), max_size=3, unique=True),  # swept after it
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tick, min_size=1, max_size=40))
def test_columns_judge_like_the_reference(ticks):
    reference = ThresholdTracker(CATALOG, flat_after_s=FLAT, gap_s=GAP)
    columns = ThresholdColumns(CATALOG, flat_after_s=FLAT, gap_s=GAP)
    now = 0.0
    for samples, step, swept in ticks:
        now += step
        seen = {}
        for target, series, level, lag in samples:  # one sample per (target, series)
            seen.setdefault((target, series), (now - lag, values_of(series)[level]))
        batch = [(t, s, ts, v) for (t, s), (ts, v) in seen.items()]
        expected = [c for t, s, ts, v in batch if (c := reference.update(t, s, ts, v))]
        rows = np.array([columns.row(t) for t, *_ in batch], dtype=np.int64)
        cols = np.array([columns.col[s] for _, s, *_ in batch], dtype=np.int64)
        ts = np.array([b[2] for b in batch], dtype=np.float64)
        vs = np.array([b[3] for b in batch], dtype=np.float64)
        got, events = columns.update(rows, cols, ts, vs)
        assert [c for _, c in got] == expected
        assert [i for i, _ in got] == sorted(i for i, _ in got)
        columns.events += [e for _, e in sorted(events, key=lambda x: x[0])]
        assert columns.events == reference.events
        for target in swept:
            expected = reference.sweep(target, now, forget_after_s=FORGET)
            if target in columns.rows:
                got, events = columns.sweep([columns.rows[target]], [now], forget_after_s=FORGET)
                columns.events += [e for _, e in events]
            else:
                got = []
            assert [c for _, c in got] == expected
            assert columns.events == reference.events
        for target in TARGETS:
            assert columns.abnormal(target) == reference.abnormal(target)
            assert columns.any_abnormal(target) == bool(reference.abnormal(target))
            for series in SERIES:
                assert columns.last_seen(target, series) == reference.last_seen(target, series)
                assert columns.last_value(target, series) == reference.last_value(target, series)
        assert columns.targets() == reference.targets()


def test_many_targets_grow_the_arrays():
    columns = ThresholdColumns(CATALOG)
    rows = np.array([columns.row(f"t{i}") for i in range(100)])
    cols = np.full(100, columns.col["cache_hit_ratio"])
    for ts in range(3):
        got, _ = columns.update(rows, cols, np.full(100, float(ts)), np.full(100, 0.1))
    assert len(got) == 100 and all(c.abnormal for _, c in got)
    assert columns.abnormal("t99")[0].since == 0.0


@given(st.lists(st.integers(0, 5), max_size=30))
def test_waves_keep_each_cell_once_per_pass_in_order(cells):
    cells = np.array(cells, dtype=np.int64)
    passes = waves(cells)
    seen = np.concatenate(passes) if passes else np.array([], dtype=np.int64)
    assert sorted(seen.tolist()) == list(range(len(cells)))
    for k, positions in enumerate(passes):
        assert list(positions) == sorted(positions)
        assert len(set(cells[positions].tolist())) == len(positions)
        for i in positions:  # the k-th sample of its cell
            assert int(np.count_nonzero(cells[:i] == cells[i])) == k


@given(st.lists(st.integers(0, 5), max_size=30))
def test_by_target_groups_in_order_of_first_sample(rows):
    rows = np.array(rows, dtype=np.int64)
    groups = list(by_target(rows))
    assert [r for r, _ in groups] == list(dict.fromkeys(rows.tolist()))
    for r, positions in groups:
        assert positions.tolist() == [i for i, x in enumerate(rows.tolist()) if x == r]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SERIES),
    st.lists(
        st.tuples(st.sampled_from([-1, -1, -1, 0, 1, 2, 3, 4]), st.sampled_from([1.0, 1.0, 2.0])),
        max_size=40,
    ),
)
@example("cache_utilization_pct", [(0, 1.0), (1, 1.0), (0, 1.0), (3, 1.0)] + [(-1, 1.0)] * 8)
def test_one_series_second_by_second_like_the_reference(series, stream):
    """Dense streams of one series: noisy runs, stuck values and flat-lining at their edges."""
    reference = ThresholdTracker(CATALOG, flat_after_s=FLAT, gap_s=GAP)
    columns = ThresholdColumns(CATALOG, flat_after_s=FLAT, gap_s=GAP)
    row, col = np.array([columns.row("t")]), np.array([columns.col[series]])
    now, value = 0.0, values_of(series)[0]
    for level, step in stream:  # level -1: the same value again
        now += step
        value = value if level < 0 else values_of(series)[level]
        expected = reference.update("t", series, now, value)
        got, events = columns.update(row, col, np.array([now]), np.array([value]))
        assert [c for _, c in got] == ([expected] if expected else [])
        columns.events += [e for _, e in events]
        assert columns.events == reference.events
