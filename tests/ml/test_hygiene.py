import numpy as np

from ml.hygiene import counter_to_increase, flat_run_lengths, longest_flat_run, robust_scale


def test_counter_reset_counts_the_new_value_as_the_increase():
    out = counter_to_increase(np.array([10.0, 12.0, 3.0, 5.0]))
    assert np.isnan(out[0])
    assert out[1:].tolist() == [2.0, 3.0, 2.0]


def test_flat_runs_and_nan_breaks_them():
    v = np.array([1.0, 1.0, 1.0, 2.0, np.nan, np.nan, 2.0, 2.0])
    assert flat_run_lengths(v).tolist() == [1, 2, 3, 1, 1, 1, 1, 2]
    assert longest_flat_run(v) == 3


def test_robust_scale_is_never_zero():
    med, scale = robust_scale(np.array([5.0] * 10))
    assert med == 5.0 and scale > 0
    # mostly constant with rare spikes: falls back to the standard deviation, not 0
    v = np.array([0.0] * 90 + [1.0] * 10)
    assert robust_scale(v)[1] == np.std(v)
    assert robust_scale(np.array([np.nan, np.inf]))[1] == 1.0
