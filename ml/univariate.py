"""A causal, streaming detector for one series of unknown shape (no seasonality assumed).

Each new point is scored only against the past. Three deviations are measured:

- level: robust z-score of the value against the median/MAD of the last ``window`` points;
- step: the same for the first difference (spikes, sudden level shifts);
- shape: distance of the last ``embed`` values to their nearest neighbour among all earlier
  stretches of the series (a pattern never seen before).

Each deviation is divided by its own maximum over the last ``lookback`` points: the
threshold is learnt from the series itself (a point is anomalous when it deviates
``margin`` times more than anything in the recent past), never a constant in units of the
data. After an alarm the detector stays quiet for ``refractory`` points so that one event
raises one alarm. The first ``warmup`` points only train.

    det = StreamingDetector(warmup=750)
    for ts, value in stream:
        point = det.update(ts, value)
        if point.alarm: ...            # open a finding
        elif point.state is SeriesState.STALE: ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.hygiene import longest_flat_run, robust_scale
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
    """An append-only float buffer with amortised O(1) append and a numpy view."""

    def __init__(self, width: int = 0) -> None:
        self._shape = (1024, width) if width else (1024,)
        self._a = np.zeros(self._shape)
        self.n = 0

    def append(self, x: float | np.ndarray) -> None:
        if self.n == self._a.shape[0]:
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
        self._vals = _Grow()
        self._feats = [_Grow(), _Grow(), _Grow()]  # level, step, shape
        self._emb = _Grow(self.p.embed)
        self._emb_sq = _Grow()
        self._scale = 1.0
        self._stale_after = math.inf
        self._run = 0
        self._last: float | None = None
        self._last_alarm = -(10**12)
        self.count = 0

    @property
    def window(self) -> int:
        return max(self.p.warmup, 50)

    def _robust_z(self, x: float, past: np.ndarray) -> float:
        if past.size < 3:
            return 0.0
        med = np.median(past)
        mad = 1.4826 * np.median(np.abs(past - med))
        return abs(x - med) / (mad + 1e-9)

    def _shape_distance(self, vals: np.ndarray) -> float:
        m = self.p.embed
        if vals.size < m:
            return 0.0
        e = vals[-m:] / self._scale
        self._emb.append(e)
        self._emb_sq.append(float(e @ e))
        k = self._emb.n - 1 - m  # neighbours must end before this stretch starts
        if k <= 0:
            return 0.0
        lo = max(0, k - self.p.max_history)
        emb = self._emb.view[lo:k]
        d2 = self._emb_sq.view[lo:k] + float(e @ e) - 2.0 * (emb @ e)
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
            # learn the scale of the data and how long it may legitimately stay flat
            _, self._scale = robust_scale(vals[: self.p.warmup])
            self._stale_after = 2 * longest_flat_run(vals[: self.p.warmup]) + 1
        diffs_past = np.diff(vals[-w - 2 :])
        feats = (
            self._robust_z(value, vals[-w - 1 : -1]),
            self._robust_z(diffs_past[-1], diffs_past[:-1]) if diffs_past.size else 0.0,
            self._shape_distance(vals) if i >= self.p.warmup else 0.0,
        )
        look = max(int(self.p.lookback * self.p.warmup), 2)
        ratio = 0.0
        for buf, f in zip(self._feats, feats, strict=True):
            past = buf.view[-look:]
            ref = float(past.max()) if past.size else 0.0
            buf.append(f)
            if ref > 0:
                ratio = max(ratio, f / ref)
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
