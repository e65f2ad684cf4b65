"""A causal, streaming detector for one series of unknown shape (no seasonality assumed).

Each new point is scored only against the past. Three deviations are measured:

- level: robust z-score of the value against the median/MAD of the last ``window`` points;
- step: the same for the first difference (spikes, sudden level shifts);
- shape: distance of the last ``embed`` values to their nearest neighbour among all earlier
  stretches of the series (a pattern never seen before; at most ``max_history`` kept).

Each deviation is divided by its own maximum over the last ``lookback`` points: the
threshold is learnt from the series itself (a point is anomalous when it deviates
``margin`` times more than anything in the recent past), never a constant in units of the
data. After an alarm the detector stays quiet for ``refractory`` points so that one event
raises one alarm. The first ``warmup`` points only train.

    det = StreamingDetector(StreamingParams(warmup=750))
    for ts, value in stream:
        point = det.update(ts, value)
        if point.alarm: ...            # open a finding
        elif point.state is SeriesState.STALE: ...

Cost: O(window) for the medians plus O(history) for the nearest neighbour per point; use
:class:`ml.baseline.SeasonalBaseline` (O(1)) where a series has a known daily shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.hygiene import longest_flat_run
from ml.types import PointScore, SeriesState


@dataclass(frozen=True)
class StreamingParams:
    """Hyperparameters; durations are in points. ``lookback`` and ``refractory`` are
    fractions of ``warmup`` so one setting fits series of any sampling rate."""

    warmup: int = 750
    margin: float = 1.0
    lookback: float = 2.0
    refractory: float = 0.15
    embed: int = 8
    max_history: int = 50_000


def recent_max_ratio(x: np.ndarray, lookback: int) -> np.ndarray:
    """``x[t] / max(x[t-lookback:t])`` (0 where that maximum is 0 or there is no past):
    how many times a deviation exceeds everything of its kind in the recent past. The
    vectorised twin of what :class:`StreamingDetector` computes point by point."""
    from scipy.ndimage import maximum_filter1d  # scipy comes with scikit-learn

    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    lookback = max(int(lookback), 1)
    # maximum over x[t-lookback+1 .. t], shifted by one so that it covers the past only
    mx = maximum_filter1d(x, size=lookback, origin=(lookback - 1) // 2, mode="nearest")
    ref = np.concatenate([[0.0], mx[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref > 0, x / np.where(ref > 0, ref, 1.0), 0.0)


def alarms_from_scores(scores: np.ndarray, margin: float, refractory: int) -> np.ndarray:
    """Alarm points of a score sequence: above ``margin`` and more than ``refractory``
    points after the previous alarm. NaN scores never alarm. This is the decision rule of
    :class:`StreamingDetector`, kept pure so that a sweep need not re-run the detector."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    out = np.zeros(s.size, dtype=bool)
    last = -(10**12)
    for i in np.flatnonzero(s > margin):
        if i - last > refractory:
            out[i] = True
            last = i
    return out


class _Grow:
    """An append-only buffer with amortised O(1) append, a numpy view, and a bounded
    memory: once it holds more than ``2 * keep`` items it drops all but the last ``keep``."""

    def __init__(self, keep: int, width: int = 0) -> None:
        cap = min(1024, 2 * keep + 1)
        self._a = np.zeros((cap, width) if width else (cap,))
        self.n = 0
        self.keep = keep
        self.dropped = 0  # items dropped from the front so far

    def append(self, x: float | np.ndarray) -> None:
        if self.n == self._a.shape[0]:
            if self.n > 2 * self.keep:
                cut = self.n - self.keep
                self._a[: self.keep] = self._a[cut : self.n]
                self.n = self.keep
                self.dropped += cut
            else:
                self._a = np.concatenate([self._a, np.zeros_like(self._a)])
        self._a[self.n] = x
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self._a[: self.n]


class StreamingDetector:
    """See the module docstring. One instance per series; not thread-safe."""

    def __init__(self, params: StreamingParams | None = None) -> None:
        self.p = params or StreamingParams()
        self.window = max(self.p.warmup, 50)
        self.lookback = max(int(self.p.lookback * self.p.warmup), 2)
        hist = max(self.p.max_history, self.window + 2)
        self._vals = _Grow(hist)
        self._feats = [_Grow(self.lookback) for _ in range(3)]  # level, step, shape
        self._emb = _Grow(hist, self.p.embed)
        self._emb_sq = _Grow(hist)
        self._stale_after = math.inf
        self._run = 0
        self._last: float | None = None
        self._last_alarm = -(10**12)
        self.count = 0
        # the last point's raw deviations (level, step, shape) and each one relative to
        # its recent maximum: which kind of change raised the alarm
        self.last_features = (0.0, 0.0, 0.0)
        self.last_ratios = (0.0, 0.0, 0.0)

    @staticmethod
    def _robust_z(x: float, past: np.ndarray) -> float:
        if past.size < 3:
            return 0.0
        med = np.median(past)
        mad = 1.4826 * np.median(np.abs(past - med))
        return float(abs(x - med) / (mad + 1e-9))

    def _shape_distance(self, vals: np.ndarray) -> float:
        m = self.p.embed
        if vals.size < m:
            return 0.0
        e = vals[-m:]  # unscaled: the score is a ratio of distances, the scale cancels
        self._emb.append(e)
        self._emb_sq.append(float(e @ e))
        k = self._emb.n - 1 - m  # neighbours must end before this stretch starts
        if k <= 0:
            return 0.0
        emb = self._emb.view[:k]
        d2 = self._emb_sq.view[:k] + float(e @ e) - 2.0 * (emb @ e)
        return math.sqrt(max(float(d2.min()), 0.0))

    def update(self, ts: float, value: float) -> PointScore:
        """Score ``value`` against the past, then learn from it."""
        nan = float("nan")
        if not math.isfinite(value):
            return PointScore(ts, value, SeriesState.NO_DATA, nan, nan)
        self._run = self._run + 1 if value == self._last else 1
        self._last = value
        self._vals.append(value)
        self.count += 1
        vals = self._vals.view
        i = self.count - 1
        w = self.window
        if i == self.p.warmup:
            # learn how long the series may legitimately stay flat
            self._stale_after = 2 * longest_flat_run(vals[: self.p.warmup]) + 1
        diffs_past = np.diff(vals[-w - 2 :])
        feats = (
            self._robust_z(value, vals[-w - 1 : -1]),
            self._robust_z(diffs_past[-1], diffs_past[:-1]) if diffs_past.size else 0.0,
            self._shape_distance(vals),
        )
        ratios = []
        for buf, f in zip(self._feats, feats, strict=True):
            past = buf.view[-self.lookback :]
            ref = float(past.max()) if past.size else 0.0
            buf.append(f)
            ratios.append(f / ref if ref > 0 else 0.0)
        self.last_features = feats
        self.last_ratios = (ratios[0], ratios[1], ratios[2])
        ratio = max(ratios)
        if i < self.p.warmup:
            return PointScore(ts, value, SeriesState.WARMING_UP, nan, nan)
        if self._run > self._stale_after:
            return PointScore(ts, value, SeriesState.STALE, nan, nan)
        if ratio <= self.p.margin:
            return PointScore(ts, value, SeriesState.OK, ratio, self.p.margin)
        alarm = i - self._last_alarm > int(self.p.refractory * self.p.warmup)
        if alarm:
            self._last_alarm = i
        return PointScore(ts, value, SeriesState.ANOMALOUS, ratio, self.p.margin, alarm=alarm)
