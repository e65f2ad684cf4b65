"""A robust seasonal baseline per series: median and MAD per time-of-day bucket.

Learnt from a baseline window; each new point is then scored in O(1) as its robust
z-score against the median/MAD of its bucket. The threshold is the ``1 - false_alarm_rate``
quantile of the training z-scores. A series that stops changing for longer than it ever
did in training is STALE; NaN/inf is NO_DATA; neither is scored.

    base = SeasonalBaseline().fit(ts, values)        # ts in unix seconds
    point = base.score(ts_now, value_now)            # PointScore
    onset = onset_index(base.score_many(ts, v).scores, base.threshold, alarm_at)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.hygiene import finite_mask, flat_run_lengths, longest_flat_run, robust_scale
from ml.types import PointScore, SeriesState


@dataclass(frozen=True)
class ScoredBlock:
    """Vectorised result of :meth:`SeasonalBaseline.score_many`."""

    scores: np.ndarray  # NaN where not scored
    states: tuple[SeriesState, ...]
    expected: np.ndarray


class SeasonalBaseline:
    """``period_s``/``bucket_s`` set the seasonality (default: hourly buckets of a day).
    Buckets with fewer than ``min_bucket`` training points fall back to the whole window."""

    def __init__(
        self,
        period_s: float = 86_400.0,
        bucket_s: float = 3_600.0,
        false_alarm_rate: float = 0.001,
        min_bucket: int = 10,
    ) -> None:
        if not 0 < false_alarm_rate < 1:
            raise ValueError("false_alarm_rate must be in (0, 1)")
        self.period_s = period_s
        self.bucket_s = bucket_s
        self.false_alarm_rate = false_alarm_rate
        self.min_bucket = min_bucket
        self.n_buckets = max(1, math.ceil(period_s / bucket_s))
        self.median = np.zeros(self.n_buckets)
        self.scale = np.ones(self.n_buckets)
        self.threshold = float("nan")
        self.stale_after = math.inf
        self.trained_from = self.trained_to = float("nan")
        self._run = 0
        self._last = float("nan")

    def _bucket(self, ts: np.ndarray) -> np.ndarray:
        return ((np.asarray(ts, dtype=np.float64) % self.period_s) // self.bucket_s).astype(int)

    def fit(self, ts: np.ndarray, values: np.ndarray) -> SeasonalBaseline:
        """Learn from the baseline window; NaN/inf are ignored. Needs >= 2 finite points."""
        ts = np.asarray(ts, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        ok = finite_mask(v) & np.isfinite(ts)
        if ok.sum() < 2:
            raise ValueError("a baseline needs at least two finite points")
        ts, v = ts[ok], v[ok]
        gmed, gscale = robust_scale(v)
        b = self._bucket(ts)
        for k in range(self.n_buckets):
            vk = v[b == k]
            self.median[k], self.scale[k] = (
                robust_scale(vk) if vk.size >= self.min_bucket else (gmed, gscale)
            )
        z = np.abs(v - self.median[b]) / self.scale[b]
        self.threshold = float(np.quantile(z, 1.0 - self.false_alarm_rate))
        # how long the series may stay put, as seen in training (x2 for slack)
        self.stale_after = 2 * longest_flat_run(v) + 1
        self.trained_from, self.trained_to = float(ts.min()), float(ts.max())
        return self

    def score_many(self, ts: np.ndarray, values: np.ndarray) -> ScoredBlock:
        """Score a block of consecutive points (pure; does not touch the streaming state)."""
        ts = np.asarray(ts, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        b = self._bucket(ts)
        expected = self.median[b]
        ok = finite_mask(v)
        z = np.where(ok, np.abs(np.where(ok, v, 0.0) - expected) / self.scale[b], np.nan)
        stale = flat_run_lengths(v) > self.stale_after
        states = tuple(
            SeriesState.NO_DATA
            if not o
            else SeriesState.STALE
            if s
            else SeriesState.ANOMALOUS
            if zz > self.threshold
            else SeriesState.OK
            for o, s, zz in zip(ok, stale, z, strict=True)
        )
        scores = np.where(stale, np.nan, z)
        return ScoredBlock(scores, states, expected)

    def score(self, ts: float, value: float) -> PointScore:
        """Score one new point (streaming: remembers the flat run across calls)."""
        nan = float("nan")
        if not math.isfinite(value):
            return PointScore(ts, value, SeriesState.NO_DATA, nan, self.threshold)
        self._run = self._run + 1 if value == self._last else 1
        self._last = value
        k = int(self._bucket(np.array([ts]))[0])
        expected = float(self.median[k])
        if self._run > self.stale_after:
            return PointScore(ts, value, SeriesState.STALE, nan, self.threshold, expected)
        z = abs(value - expected) / float(self.scale[k])
        state = SeriesState.ANOMALOUS if z > self.threshold else SeriesState.OK
        return PointScore(ts, value, state, z, self.threshold, expected)
