import numpy as np
import pytest

from ml.attribution import DeviationRanker, lagged_median


def test_lagged_median_sees_only_rows_before_the_gap():
    x = np.arange(10, dtype=float)[:, None]
    med = lagged_median(x, window=3, gap=1)
    # row 6: rows 2..4 -> median 3; row 0: only the padded first row
    assert med[6, 0] == 3.0 and med[0, 0] == 0.0
    # a jump at row 8 is not in its own baseline
    y = x.copy()
    y[8] = 100.0
    assert lagged_median(y, 3, 1)[8, 0] == med[8, 0]


def _train(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    return np.hstack(
        [
            base + 0.05 * rng.normal(size=(n, 1)),  # 0 and 1 move together
            base + 0.05 * rng.normal(size=(n, 1)),
            rng.normal(0, 5, size=(n, 1)),  # 2: noisy by nature
            rng.normal(size=(n, 1)),
        ]
    )


def test_a_drifting_metric_is_not_blamed_for_ever():
    train = _train()
    test = _train(600, seed=1)
    test[:, 3] += 10  # metric 3 drifted long before the anomaly (a new normal)
    test[500:, 2] += 30  # the anomaly: metric 2 leaves its recent range
    r = DeviationRanker(window=100, gap=5, share=0).fit(train)
    s = r.scores(np.vstack([train, test]))[-100:-60]  # the first 40 rows of the anomaly
    assert (np.argmax(s, axis=1) == 2).all()


def test_correlated_metrics_share_the_blame():
    train = _train()
    test = _train(300, seed=2)
    test[250:, 0] += 8  # only metric 0 moved; metric 1 usually moves with it
    r = DeviationRanker(window=100, gap=5).fit(train)
    s = r.scores(np.vstack([train, test]))[-50:].mean(axis=0)
    assert [int(j) for j in np.argsort(-s)[:2]] == [0, 1]
    assert list(r.mates[0]) == [0, 1] and list(r.mates[2]) == [2]


def test_scores_are_a_trailing_mean_of_the_last_rows():
    train = _train()
    test = _train(300, seed=3)
    rows = np.vstack([train, test])
    raw = DeviationRanker(window=100, gap=5, smooth=1).fit(train).scores(rows)
    smooth = DeviationRanker(window=100, gap=5, smooth=5).fit(train).scores(rows)
    np.testing.assert_allclose(smooth[-1], raw[-5:].mean(axis=0))
    np.testing.assert_allclose(smooth[0], raw[0])  # the first row stands in for the past
    # causal: a change at the last row leaves every earlier row's scores alone
    later = rows.copy()
    later[-1] += 50
    after = DeviationRanker(window=100, gap=5).fit(train).scores(later)
    np.testing.assert_array_equal(after[:-1], smooth[:-1])


def test_a_deviation_that_holds_outranks_a_one_row_blip():
    train = _train()
    test = _train(300, seed=4)
    test[295, 3] += 12  # one row of metric 3 jumps far
    test[291:, 0] += 5  # metric 0 moves less far, but has stayed moved for 5 rows
    rows = np.vstack([train, test])
    one_row = DeviationRanker(window=100, gap=5, share=0, smooth=1).fit(train).scores(rows)
    s = DeviationRanker(window=100, gap=5, share=0).fit(train).scores(rows)
    assert int(np.argmax(one_row[-5])) == 3  # row 295 alone: the blip
    assert int(np.argmax(s[-5])) == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        DeviationRanker(quantile=1.5)
    with pytest.raises(ValueError):
        DeviationRanker(smooth=0)
    with pytest.raises(RuntimeError):
        DeviationRanker().scores(np.zeros((5, 2)))


def test_the_absolute_view_remembers_what_the_recent_baseline_forgot():
    train = _train()
    test = _train(600, seed=5)
    test[100:, 3] += 12  # moved long ago: the 100-row baseline has absorbed it
    test[595:, 2] += 15  # a fresh, smaller move (in its own units metric 2 is noisy)
    rows = np.vstack([train, test])
    drift = DeviationRanker(window=100, gap=5, share=0).fit(train).scores(rows)
    both = DeviationRanker(window=100, gap=5, share=0, absolute=2.0).fit(train).scores(rows)
    assert int(np.argmax(drift[-1])) == 2
    assert both[-1, 3] > np.log1p(drift[-1, 3])  # metric 3 is still far from its training
    with pytest.raises(ValueError, match="absolute_z"):
        DeviationRanker(absolute=1.0).fit(train).blame(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        DeviationRanker(absolute=-1.0)


def test_with_blame_is_a_ranker_fitted_with_those_settings():
    train = _train()
    rows = np.vstack([train, _train(300, seed=6)])
    fitted = DeviationRanker(window=100, gap=5, quantile=0.9, corr=0.8).fit(train)
    fresh = DeviationRanker(window=100, gap=5, quantile=0.9, corr=0.8, share=0.3, smooth=15)
    np.testing.assert_allclose(
        fitted.with_blame(0.3, 15, 0.0).scores(rows), fresh.fit(train).scores(rows)
    )


def test_events_accumulate_their_flagged_rows_so_far():
    from ml.attribution import accumulate_events

    scores = np.array([[1.0, 0.0], [5.0, 0.0], [0.0, 3.0], [9.0, 9.0], [0.0, 4.0], [2.0, 2.0]])
    flagged = np.array([False, True, True, False, True, False])
    mean = accumulate_events(scores, flagged, gap=2)
    # rows 1, 2 and 4 are one event (one unflagged row between); unflagged rows keep theirs
    np.testing.assert_allclose(mean[[0, 3, 5]], scores[[0, 3, 5]])
    np.testing.assert_allclose(mean[1], [5.0, 0.0])
    np.testing.assert_allclose(mean[2], [2.5, 1.5])
    np.testing.assert_allclose(mean[4], [5 / 3, 7 / 3])
    peak = accumulate_events(scores, flagged, gap=2, how="max")
    np.testing.assert_allclose(peak[4], [5.0, 4.0])
    # a gap of 1 splits them: row 4 starts a new event and sees only itself
    np.testing.assert_allclose(accumulate_events(scores, flagged, gap=1)[4], [0.0, 4.0])
    # causal: a later row never changes an earlier one
    later = scores.copy()
    later[4] = 100.0
    np.testing.assert_allclose(accumulate_events(later, flagged, gap=2)[:4], mean[:4])
    assert np.array_equal(accumulate_events(scores, np.zeros(6, bool)), scores)
    with pytest.raises(ValueError):
        accumulate_events(scores, flagged, how="median")
