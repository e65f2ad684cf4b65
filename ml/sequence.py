"""A causal detector for one series that learns normal sequences and reports sparingly.

Complementary views of each new point, all computed from the past only:

- :class:`ml.contextual.ContextualDetector` says how *unpredicted* the point is given the
  sequence so far (a learnt model of normal sequences, 0..1);
- :class:`ml.univariate.StreamingDetector` says how *large* its level, step or shape
  deviation is relative to the recent past (a ratio; > 1 beats the recent maximum).

A point is a candidate when the sequence model is surprised (raw > ``threshold``) and the
deviation ratio reached ``gate`` within the last ``gate_span`` points (an unpredicted
value that is also a real departure), or when :class:`ml.windowed.WindowNovelty` finds
the window ending there novel (a second model family, for the slow drifts the gate and
the small changes the quantisation miss; ``novelty_factor=None`` turns it off). It
alarms when no candidate appeared in the ``rest`` × ``warmup`` points before it: one
event, one alarm, and a series that keeps surprising is learning a new normal rather
than failing. The first ``warmup`` points only train; their range sets the quantisation
of the sequence model.

    det = SequenceDetector(SequenceParams(warmup=750))
    for ts, value in stream:
        point = det.update(ts, value)
        if point.alarm: ...

Cost: about 0.3-1 ms per point on NAB series (the sequence model dominates; the window
novelty scans all earlier windows, O(n) per point).
:func:`sequence_alarms` is the same decision rule on whole arrays, for evaluation sweeps.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ml.contextual import ContextualDetector, rest_period_alarms
from ml.types import PointScore, SeriesState
from ml.univariate import StreamingDetector, StreamingParams
from ml.windowed import WindowNovelty


@dataclass(frozen=True)
class SequenceParams:
    """Hyperparameters; ``rest`` and ``lookback`` are fractions of ``warmup`` (one setting
    fits series of any length), ``gate_span`` is in points."""

    warmup: int = 750
    threshold: float = 0.75
    rest: float = 0.1
    gate: float = 1.0
    gate_span: int = 20
    lookback: float = 1.0
    overflow: int = 8
    novelty_width: float = 0.02  # the window of WindowNovelty, a fraction of warmup
    novelty_factor: float | None = 4.0  # its threshold over the training maximum

    @property
    def width(self) -> int:
        """The novelty window in points (at least 2)."""
        return max(int(self.novelty_width * self.warmup), 2)


def gated_scores(raw: np.ndarray, ratio: np.ndarray, gate: float, span: int) -> np.ndarray:
    """The sequence model's raw score where the deviation ratio reached ``gate`` within
    the last ``span`` points (this one included), else 0. NaN ratios count as 0."""
    from scipy.ndimage import maximum_filter1d

    r = np.nan_to_num(np.asarray(ratio, dtype=np.float64), nan=0.0)
    span = max(int(span), 1)
    recent = maximum_filter1d(r, size=span, origin=(span - 1) // 2, mode="constant", cval=0.0)
    return np.where(recent > gate, np.asarray(raw, dtype=np.float64), 0.0)


def sequence_alarms(
    raw: np.ndarray,
    ratio: np.ndarray,
    params: SequenceParams,
    warmup: int | None = None,
    novel: np.ndarray | None = None,
) -> np.ndarray:
    """Alarms of :class:`SequenceDetector` from its score arrays (vectorised): ``raw``
    from the sequence model, ``ratio`` the deviation ratio, NaN where the deviation
    detector did not score (warm-up, stale, no data), ``novel`` the points whose window
    :class:`ml.windowed.WindowNovelty` found novel (None: that model is off)."""
    w = params.warmup if warmup is None else warmup
    s = gated_scores(raw, ratio, params.gate, params.gate_span)
    if novel is not None and params.novelty_factor is not None:
        s = np.where(np.asarray(novel, dtype=bool), np.inf, s)
    alarms = rest_period_alarms(s, params.threshold, max(int(params.rest * w), 1))
    return alarms & np.isfinite(np.asarray(ratio, dtype=np.float64))  # never in a stale spell


class SequenceDetector:
    """See the module docstring. One instance per series; not thread-safe."""

    def __init__(self, params: SequenceParams | None = None) -> None:
        self.p = params or SequenceParams()
        self.deviation = StreamingDetector(
            StreamingParams(warmup=self.p.warmup, lookback=self.p.lookback)
        )
        self.model: ContextualDetector | None = None
        self._train: list[float] = []
        self._ratios: deque[float] = deque(maxlen=max(self.p.gate_span, 1))
        self._gated: deque[float] = deque(maxlen=max(int(self.p.rest * self.p.warmup), 1))
        self.last_raw = 0.0  # the sequence model's raw score of the last point
        self.novelty = (
            WindowNovelty(self.p.warmup, self.p.width, self.p.novelty_factor)
            if self.p.novelty_factor is not None
            else None
        )

    def _learn_range(self) -> None:
        lo, hi = min(self._train), max(self._train)
        self.model = ContextualDetector(lo, hi, overflow=self.p.overflow)
        for v in self._train:  # the warm-up is learnt on the scale it defined
            self.model.update(v)
        self._train = []

    def update(self, ts: float, value: float) -> PointScore:
        """Score ``value`` against the past, then learn from it."""
        point = self.deviation.update(ts, value)
        nan = float("nan")
        novel = self.novelty.update(value) if self.novelty is not None else False
        if not math.isfinite(value):
            return point
        if self.model is None:
            self._train.append(value)
            if len(self._train) >= self.p.warmup:
                self._learn_range()
            self.last_raw = 0.0
            self._ratios.append(0.0)
            self._gated.append(0.0)
            return PointScore(ts, value, SeriesState.WARMING_UP, nan, nan)
        raw = self.model.update(value)
        self.last_raw = raw
        scored = point.state in (SeriesState.OK, SeriesState.ANOMALOUS)
        self._ratios.append(point.score if scored else 0.0)
        gated = raw if max(self._ratios) > self.p.gate else 0.0
        if novel:  # a candidate whatever the sequence model says
            gated = math.inf
        quiet = max(self._gated) < self.p.threshold if self._gated else True
        self._gated.append(gated)
        if point.state is SeriesState.STALE:
            return point
        alarm = gated > self.p.threshold and quiet
        state = SeriesState.ANOMALOUS if gated > self.p.threshold else SeriesState.OK
        score = min(gated, 1.0)  # 1: the window was novel
        return PointScore(ts, value, state, score, self.p.threshold, alarm=alarm)
