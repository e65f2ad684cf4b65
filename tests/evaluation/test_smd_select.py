import numpy as np
import pytest

from evaluation.smd_select import (
    DURATION,
    FAULTS_PER_REPLICA,
    GRID,
    MIN_TRAIN_ROWS,
    inject_faults,
    select_ranker,
    settings,
)


def _normal_rows(rows: int, metrics: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, metrics))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=rows)  # a correlated pair
    return x


def test_the_grid_has_one_entry_per_setting_and_none_without_sharing_twice():
    grid = settings()
    keys = {tuple(sorted(s.items())) for s in grid}
    assert len(keys) == len(grid)
    no_share = [s for s in grid if s["share"] == 0]
    assert len(no_share) == len(GRID["window"]) * len(GRID["quantile"]) * len(GRID["smooth"])


def test_faults_are_written_where_they_say_and_only_after_the_fit_rows():
    x = _normal_rows(MIN_TRAIN_ROWS, 6)
    x[:, 5] = 3.0  # a constant metric is never chosen: a move there would be trivial
    start = int(0.6 * len(x))
    injected, faults = inject_faults(x, start, np.random.default_rng(1))
    assert len(faults) == FAULTS_PER_REPLICA
    changed = np.zeros(x.shape, dtype=bool)
    for f in faults:
        assert start <= f.start < f.end <= len(x)
        assert DURATION[0] <= f.end - f.start <= DURATION[1]
        assert 1 <= len(f.dims) <= 4 and 5 not in f.dims
        changed[f.start : f.end, list(f.dims)] = True
    ends = [f.end for f in faults]
    assert all(b.start >= a for a, b in zip(ends, faults[1:], strict=False))  # no overlap
    differs = ~np.isclose(injected, x)
    assert differs.any() and not (differs & ~changed).any()
    # same seed, same faults
    again, faults_again = inject_faults(x, start, np.random.default_rng(1))
    assert faults_again == faults and np.array_equal(again, injected)


def test_too_few_rows_or_nothing_that_varies_is_refused():
    with pytest.raises(ValueError, match="cannot hold"):
        inject_faults(_normal_rows(1000, 4), 600, np.random.default_rng(0))
    with pytest.raises(ValueError, match="varies"):
        inject_faults(np.ones((MIN_TRAIN_ROWS, 3)), 4000, np.random.default_rng(0))


def test_selection_finds_the_injected_metrics_far_better_than_chance():
    setting, table = select_ranker(_normal_rows(MIN_TRAIN_ROWS, 8), seed=3)
    assert setting == {k: v for k, v in table[0].items() if not k.startswith("synthetic")}
    assert len(table) == len(settings())
    best = table[0]["synthetic_hitrate@150%"]
    # chance: about 1.5 |G| / 8 of the culprits in the top 1.5 |G| -> ~0.3 for |G| <= 4
    assert best > 0.7
