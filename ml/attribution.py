"""Which metrics explain a multivariate anomaly: a drift-aware, per-metric ranking.

Ranking metrics by their |z| against the training baseline favours metrics that drift or
are spiky by nature: they are far from their training median at every anomaly, whatever
its cause. Here a metric's deviation is measured against its own *recent* baseline (the
median of a window that ends ``gap`` rows before the row, so the anomaly's own start is
not in it), in units of its training scale, and divided by how large that same
deviation usually is for this metric in training (its ``quantile``): 1 means "as far
off as it is one time in ten", whatever the metric's units, noise or drift.

Metrics that move together in training (|correlation| >= ``corr``) share the blame: a
metric's score is ``(1 - share) * own + share * max(own, its mates')``, so that a group
of related metrics (e.g. the CPU counters of one host) ranks together even when only
one of them moved far.

Finally each row's scores are averaged over the last ``smooth`` rows (it and the rows
before it; 5, the window of :class:`ml.forest.GroupForest`'s mean feature): one row's
noise ranks less, a deviation that holds ranks more, and nothing looks ahead.

With ``absolute`` > 0 the ranking also hears the plain view: the score becomes
``log1p(drift score) + absolute * log1p(|z|)``, |z| being the distance from the
*training* median in training scales (trailing-averaged the same way). The recent
baseline forgets a deviation that has lasted ``window`` rows; |z| does not.

    ranker = DeviationRanker().fit(train)           # train: (rows, metrics)
    s = ranker.scores(history_and_rows)[-k:]        # per row and metric, >= 0
    order = np.argsort(-s, axis=1)                  # most telling metric first

Everything is learnt from the training rows; nothing looks at labels or the future.
Cost: one running median per metric (scipy), about 0.1 s per 20k rows x 38 metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from ml.hygiene import robust_scale


def lagged_median(x: np.ndarray, window: int, gap: int) -> np.ndarray:
    """Per row t and column: the median of rows ``t-gap-window .. t-gap-1`` (the first
    row stands in for rows before the start). Causal: row t never sees itself."""
    x = np.asarray(x, dtype=np.float64)
    pad = window + gap
    full = np.vstack([np.repeat(x[:1], pad, axis=0), x])
    # median over rows i-window+1 .. i of ``full``; row t of x is full row t+pad
    med = median_filter(full, size=(window, 1), origin=((window - 1) // 2, 0), mode="nearest")
    return med[window - 1 : window - 1 + x.shape[0]]


class DeviationRanker:
    """See the module docstring. ``window``/``gap`` in rows (6 h / 10 min on SMD's
    1-minute rows); ``quantile`` of the training deviations that maps to 1."""

    def __init__(
        self,
        window: int = 360,
        gap: int = 10,
        quantile: float = 0.9,
        corr: float = 0.8,
        share: float = 0.5,
        smooth: int = 5,
        absolute: float = 0.0,
    ) -> None:
        if not 0 < quantile < 1:
            raise ValueError("quantile must be in (0, 1)")
        if not 0 <= share <= 1:
            raise ValueError("share must be in [0, 1]")
        if smooth < 1:
            raise ValueError("smooth must be >= 1")
        if absolute < 0:
            raise ValueError("absolute must be >= 0")
        self.window = window
        self.gap = gap
        self.quantile = quantile
        self.corr = corr
        self.share = share
        self.smooth = smooth
        self.absolute = absolute
        self.median = np.zeros(0)
        self.scale = np.ones(0)
        self.typical = np.ones(0)
        self.mates: list[np.ndarray] = []  # per metric: the metrics it moves with (itself too)

    def deviation(self, x: np.ndarray) -> np.ndarray:
        """Per row and metric: the distance from its lagged median, in training scales.
        The costly part (a running median); it depends on ``window``, ``gap`` and the
        fitted scale only, so a sweep over the other settings can compute it once."""
        if self.scale.size == 0:
            raise RuntimeError("DeviationRanker.fit() first")
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
        return np.abs(x - lagged_median(x, self.window, self.gap)) / self.scale

    def fit_scale(self, train: np.ndarray) -> DeviationRanker:
        """Only each metric's robust training scale: enough for :meth:`deviation`, which
        is how a sweep gets the training deviation once for :meth:`fit`."""
        x = np.asarray(train, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"train must be (rows >= 2, metrics), got {x.shape}")
        med_scale = np.array([robust_scale(x[:, j]) for j in range(x.shape[1])])
        self.median, self.scale = med_scale[:, 0], med_scale[:, 1]
        return self

    def absolute_z(self, x: np.ndarray) -> np.ndarray:
        """Per row and metric: |x - training median| in training scales (missing: 0)."""
        if self.scale.size == 0:
            raise RuntimeError("DeviationRanker.fit() first")
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
        return np.abs(x - self.median) / self.scale

    def fit(self, train: np.ndarray, train_deviation: np.ndarray | None = None) -> DeviationRanker:
        """Learn each metric's scale and how far it usually strays from its recent past.
        ``train_deviation``: :meth:`deviation` of ``train`` by a ranker with the same
        window and gap, if already computed."""
        x = np.asarray(train, dtype=np.float64)
        self.fit_scale(x)
        dev = self.deviation(x) if train_deviation is None else train_deviation
        floor = 1e-3  # a metric that never moves in training: any move is telling
        self.typical = np.maximum(np.quantile(dev, self.quantile, axis=0), floor)
        xs = np.nan_to_num(x, nan=0.0)
        sd = xs.std(axis=0)
        c = np.zeros((x.shape[1], x.shape[1]))
        live = sd > 0  # a constant metric correlates with nothing
        if live.any():
            c[np.ix_(live, live)] = np.corrcoef(xs[:, live].T)
        np.fill_diagonal(c, 1.0)
        self.mates = [np.flatnonzero(np.abs(row) >= self.corr) for row in c]
        return self

    def with_blame(self, share: float, smooth: int, absolute: float) -> DeviationRanker:
        """This fitted ranker with other blame settings (``share``, ``smooth``,
        ``absolute`` do not change what :meth:`fit` learns): a sweep fits once."""
        other = DeviationRanker(
            self.window, self.gap, self.quantile, self.corr, share, smooth, absolute
        )
        other.median, other.scale, other.typical = self.median, self.scale, self.typical
        other.mates = self.mates
        return other

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Per row and metric, the deviation in units of its training ``quantile``. Pass
        at least ``window + gap`` rows of history before the rows of interest."""
        absolute_z = self.absolute_z(rows) if self.absolute > 0 else None
        return self.blame(self.deviation(rows), absolute_z)

    def blame(self, deviation: np.ndarray, absolute_z: np.ndarray | None = None) -> np.ndarray:
        """:meth:`scores` from rows' :meth:`deviation` (and :meth:`absolute_z` when
        ``absolute`` > 0): in units of each metric's usual deviation, shared with its
        mates, averaged over the trailing rows."""
        if self.typical.size == 0:
            raise RuntimeError("DeviationRanker.fit() first")
        own = deviation / self.typical
        if self.share > 0:
            mates = np.column_stack([own[:, m].max(axis=1) for m in self.mates])
            own = (1 - self.share) * own + self.share * mates
        out = trailing_mean(own, self.smooth)
        if self.absolute > 0:
            if absolute_z is None:
                raise ValueError("absolute > 0 needs the rows' absolute_z")
            out = np.log1p(out) + self.absolute * np.log1p(trailing_mean(absolute_z, self.smooth))
        return out


def accumulate_events(
    scores: np.ndarray, flagged: np.ndarray, gap: int = 10, how: str = "mean"
) -> np.ndarray:
    """Per flagged row, the mean (``how="mean"``) or maximum (``"max"``) of the scores
    of its event's flagged rows so far: an event is a run of flagged rows with fewer than
    ``gap`` unflagged rows between them. Unflagged rows keep their own scores. Causal:
    a row never sees a later one. Why: the ranking an operator reads during an incident
    should rest on all the incident's evidence, not on its latest row alone (on SMD the
    culprit metrics often move most at the start and fade)."""
    if how not in ("mean", "max"):
        raise ValueError("how must be 'mean' or 'max'")
    x = np.asarray(scores, dtype=np.float64)
    out = x.copy()
    rows = np.flatnonzero(np.asarray(flagged, dtype=bool))
    if rows.size == 0:
        return out
    breaks = np.flatnonzero(np.diff(rows) > gap) + 1  # first flagged row of each event
    for event in np.split(rows, breaks):
        block = x[event]
        if how == "max":
            out[event] = np.maximum.accumulate(block, axis=0)
        else:
            out[event] = np.cumsum(block, axis=0) / np.arange(1, event.size + 1)[:, None]
    return out


def trailing_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Per row t and column: the mean of rows ``t-n+1 .. t`` (the first row stands in for
    rows before the start). Causal."""
    if n <= 1:
        return x
    return uniform_filter1d(x, n, axis=0, origin=(n - 1) // 2, mode="nearest")
