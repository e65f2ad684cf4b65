"""Bad-input handling shared by the detectors: NaN/inf, gaps, counter resets, flat lines.

Pure functions on numpy arrays. They decide what a detector may score; what they reject
becomes a NO_DATA or STALE state, never an anomaly.

    >>> rates = counter_to_increase(np.array([10.0, 12.0, 3.0, 5.0]))   # reset at index 2
    >>> rates.tolist()
    [nan, 2.0, 3.0, 2.0]
"""

from __future__ import annotations

import numpy as np


def finite_mask(values: np.ndarray) -> np.ndarray:
    """True where a value can be scored (not NaN, not +-inf)."""
    return np.isfinite(np.asarray(values, dtype=np.float64))


def counter_to_increase(values: np.ndarray) -> np.ndarray:
    """Per-step increase of a monotonic counter, treating a drop as a reset (like PromQL
    ``increase``): after a reset the new value itself is the increase. First step is NaN."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    if v.size < 2:
        return out
    d = np.diff(v)
    out[1:] = np.where(d >= 0, d, v[1:])
    return out


def flat_run_lengths(values: np.ndarray) -> np.ndarray:
    """For each index, how many consecutive samples up to and including it are identical
    (1 = the value just changed). NaN breaks a run."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    same = np.zeros(n, dtype=bool)
    same[1:] = v[1:] == v[:-1]
    # run length = index - index of the last change
    idx = np.arange(n)
    last_change = np.where(~same, idx, 0)
    np.maximum.accumulate(last_change, out=last_change)
    return idx - last_change + 1


def longest_flat_run(values: np.ndarray) -> int:
    """Longest run of identical values: the training window's own flatness, used to learn
    how long a series may legitimately stay put before it counts as stale."""
    runs = flat_run_lengths(values)
    return int(runs.max()) if runs.size else 0


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a scale that is never zero: 1.4826*MAD, or the standard deviation when
    more than half of the values are equal, or 1.0 for a constant series."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    if mad > 0:
        return med, mad
    std = float(np.std(v))
    if std > 0:
        return med, std
    return med, max(abs(med), 1.0) * 1e-6 if med != 0 else 1e-6
