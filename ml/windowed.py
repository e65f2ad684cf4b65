"""Novelty of a series' recent window: a second, ARTime-like view for slow or small changes.

A sequence model quantised to a few levels misses small changes, and a gate that asks a
deviation to beat its recent maximum misses slow drifts. This detector looks at *summaries*
of the last ``width`` points instead of the points themselves:

- the window's mean, minimum and maximum (its level and range),
- the mean absolute step inside it (its roughness);

and scores each window by its distance (the largest of the four differences) to the
nearest window seen so far that does not overlap it. A window is *novel* when that
distance exceeds ``factor`` times the largest such distance in the second half of the
training points (the first half fills the memory): the threshold is learnt from the
series, in the series' own units (the score is a ratio, so no scale is assumed).
Inspired by ARTime (NAB 2021: adaptive resonance on windowed features, vigilance learnt in
the probationary period); written from that idea, no code copied.

    det = WindowNovelty(warmup=750, width=15, factor=4.0)
    for value in stream:
        if det.update(value): ...              # a novel window ends here

:func:`window_novelty` computes the same distances on a whole array (for evaluation
sweeps; tests/ml check both agree). Cost: the nearest neighbour is a scan of all earlier
windows, O(n) per point (about 1 s for 20k points in the vectorised form).
"""

from __future__ import annotations

import math

import numpy as np

N_FEATURES = 4  # mean, min, max, mean |step|


def _ffill(values: np.ndarray) -> np.ndarray:
    """Non-finite values take the last finite one (0 before the first)."""
    v = np.asarray(values, dtype=np.float64).copy()
    ok = np.isfinite(v)
    idx = np.where(ok, np.arange(v.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = v[idx]
    out[~ok & (idx == 0) & ~ok[0]] = 0.0
    return out


def window_features(values: np.ndarray, width: int) -> np.ndarray:
    """Per point t: mean, min, max and mean |step| of ``values[t-width+1 .. t]`` (points
    before the start repeat the first value). Shape (n, 4)."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

    x = _ffill(values)
    w = max(int(width), 1)
    org = (w - 1) // 2  # a trailing window: the point and the w-1 before it
    step = np.abs(np.diff(x, prepend=x[:1]))
    return np.column_stack(
        [
            uniform_filter1d(x, w, origin=org, mode="nearest"),
            minimum_filter1d(x, w, origin=org, mode="nearest"),
            maximum_filter1d(x, w, origin=org, mode="nearest"),
            uniform_filter1d(step, w, origin=org, mode="constant", cval=0.0),
        ]
    )


def window_novelty(values: np.ndarray, width: int, block: int = 256) -> np.ndarray:
    """Per point t: the Chebyshev distance of its window's features to the nearest of
    the windows ending at or before ``t - width`` (0 while there are none)."""
    w = max(int(width), 1)
    f = window_features(values, w)
    n = f.shape[0]
    out = np.zeros(n)
    for a in range(w, n, block):
        b = min(a + block, n)
        m = b - w  # windows 0 .. m-1 can be memory for some row of the block
        d = np.abs(f[a:b, 0, None] - f[None, :m, 0])
        for k in range(1, N_FEATURES):
            np.maximum(d, np.abs(f[a:b, k, None] - f[None, :m, k]), out=d)
        for i in range(b - a):  # row a+i may only use windows ending at or before a+i-w
            d[i, a + i - w + 1 :] = np.inf
        out[a:b] = d.min(axis=1)
    return out


def novelty_threshold(novelty: np.ndarray, warmup: int, factor: float) -> float:
    """``factor`` times the largest novelty in the second half of the training points."""
    part = np.asarray(novelty[warmup // 2 : warmup], dtype=np.float64)
    return factor * float(part.max()) if part.size else math.inf


def novel_windows(values: np.ndarray, warmup: int, width: int, factor: float) -> np.ndarray:
    """Points (after ``warmup``) whose window is novel: the rule of :class:`WindowNovelty`
    on a whole array."""
    nov = window_novelty(values, width)
    out = nov > novelty_threshold(nov, warmup, factor)
    out[:warmup] = False
    return out


class WindowNovelty:
    """See the module docstring. One instance per series; not thread-safe."""

    def __init__(self, warmup: int, width: int, factor: float) -> None:
        self.warmup = warmup
        self.width = max(int(width), 1)
        self.factor = factor
        self.threshold = math.inf
        self.last = 0.0  # the last point's novelty
        self._x: list[float] = []  # the last `width` values (padded with the first)
        self._steps: list[float] = []
        self._feats = np.zeros((1024, N_FEATURES))
        self._train: list[float] = []
        self.count = 0

    def _features(self, value: float) -> np.ndarray:
        if not self._x:
            self._x = [value] * self.width
            self._steps = [0.0] * self.width
        else:
            self._steps = [*self._steps[1:], abs(value - self._x[-1])]
            self._x = [*self._x[1:], value]
        x = self._x
        return np.array([sum(x) / self.width, min(x), max(x), sum(self._steps) / self.width])

    def update(self, value: float) -> bool:
        """Learn the point's window; True when it is novel (never during warm-up). A
        non-finite value repeats the last finite one."""
        if not math.isfinite(value):
            value = self._x[-1] if self._x else 0.0
        f = self._features(value)
        t = self.count
        if t == self._feats.shape[0]:
            self._feats = np.concatenate([self._feats, np.zeros_like(self._feats)])
        self._feats[t] = f
        self.count += 1
        m = t - self.width + 1  # windows 0 .. m-1 end at or before t - width
        self.last = float(np.abs(self._feats[:m] - f).max(axis=1).min()) if m > 0 else 0.0
        if t < self.warmup:
            if t >= self.warmup // 2:
                self._train.append(self.last)
            if t == self.warmup - 1:
                self.threshold = self.factor * max(self._train) if self._train else math.inf
            return False
        return self.last > self.threshold
