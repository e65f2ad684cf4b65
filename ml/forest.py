"""IsolationForest over short multivariate windows of a group of series (one target or
subsystem), with per-metric attribution.

Every metric is first put on its own robust scale (median/MAD of the training window), so
the forest and the attribution speak the same units. A row's features are the scaled
values and their mean over the last ``window`` rows (a short-lived spike and a sustained
shift both show).

Two scores guard each other: the forest's (a row unlike the training rows as a whole) and
the largest |z| of any metric (one metric far outside its own range, which an
IsolationForest under-rates when the other metrics are normal: its axis-parallel splits
rarely pick the one metric that moved). Each gets half of the false-alarm budget: its
threshold is the ``1 - false_alarm_rate / 2`` quantile of its scores on the training
rows. A row's score is the larger of the two, each divided by its threshold, so
``score > 1`` means anomalous. Learnt from the data, never a constant.

    forest = GroupForest(metrics).fit(train)          # train: (rows, metrics), NaN allowed
    result = forest.score(test)                       # GroupScores: .scores .anomalous
    causes = forest.attribute(test[rows])             # [Attribution], most telling first
    onsets = forest.onsets(recent_rows, recent_ts)    # {metric: when it started to deviate}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from ml.hygiene import robust_scale
from ml.onset import onset_index
from ml.types import Attribution, SeriesState


@dataclass(frozen=True)
class GroupScores:
    """Scores of a block of rows. ``states`` is per row: NO_DATA when every metric of the
    row is missing, STALE when every metric stayed flat over the whole window, otherwise OK
    or ANOMALOUS."""

    scores: np.ndarray  # max(forest score / its threshold, max |z| / its threshold)
    threshold: float  # always 1.0: the scores are already relative to the thresholds
    states: tuple[SeriesState, ...]

    @property
    def anomalous(self) -> np.ndarray:
        return np.array([s is SeriesState.ANOMALOUS for s in self.states], dtype=bool)


class GroupForest:
    def __init__(
        self,
        metrics: Sequence[str],
        window: int = 5,
        false_alarm_rate: float = 0.01,
        n_estimators: int = 100,
        max_samples: int = 256,
        random_state: int = 0,
    ) -> None:
        if not 0 < false_alarm_rate < 1:
            raise ValueError("false_alarm_rate must be in (0, 1)")
        self.metrics = tuple(metrics)
        self.window = window
        self.false_alarm_rate = false_alarm_rate
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.median = np.zeros(len(self.metrics))
        self.scale = np.ones(len(self.metrics))
        self.forest_threshold = float("nan")
        self.z_threshold = float("nan")
        self.threshold = 1.0
        self.train_scores = np.zeros(0)
        self.z_typical = np.zeros(len(self.metrics))  # per metric: median |z| in training
        self.z_high = np.zeros(len(self.metrics))  # per metric: its (1 - budget) |z| quantile
        self._forest: IsolationForest | None = None

    # -- pure helpers -------------------------------------------------------------
    def zscores(self, x: np.ndarray) -> np.ndarray:
        """Signed robust z-scores against the training baseline; NaN stays NaN."""
        return (np.asarray(x, dtype=np.float64) - self.median) / self.scale

    def _features(self, x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num(self.zscores(x), nan=0.0)  # a missing metric looks normal
        c = np.cumsum(np.vstack([np.zeros((1, z.shape[1])), z]), axis=0)
        idx = np.arange(1, z.shape[0] + 1)
        lo = np.maximum(idx - self.window, 0)
        mean = (c[idx] - c[lo]) / (idx - lo)[:, None]
        return np.hstack([z, mean])

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._forest is None:
            raise RuntimeError("GroupForest.fit() first")
        feats = self._features(x)
        forest = -self._forest.score_samples(feats)  # higher = more anomalous
        zmax = np.abs(feats[:, : len(self.metrics)]).max(axis=1)
        return forest, zmax

    def _raw_scores(self, x: np.ndarray) -> np.ndarray:
        forest, zmax = self._parts(x)
        return np.maximum(forest / self.forest_threshold, zmax / self.z_threshold)

    # -- API ------------------------------------------------------------------------
    def fit(self, train: np.ndarray) -> GroupForest:
        """Learn baselines, the forest and the threshold from ``train`` (rows x metrics)."""
        x = np.asarray(train, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.metrics):
            raise ValueError(f"train must be (rows, {len(self.metrics)}), got {x.shape}")
        for j in range(x.shape[1]):
            self.median[j], self.scale[j] = robust_scale(x[:, j])
        self._forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, x.shape[0]),
            random_state=self.random_state,
        ).fit(self._features(x))
        forest, zmax = self._parts(x)
        q = 1.0 - self.false_alarm_rate / 2
        self.forest_threshold = float(np.quantile(forest, q))
        self.z_threshold = max(float(np.quantile(zmax, q)), 1e-12)
        self.train_scores = self._raw_scores(x)
        with np.errstate(all="ignore"):
            absz = np.abs(self.zscores(x))
            self.z_typical = np.nan_to_num(np.nanquantile(absz, 0.5, axis=0), nan=0.0)
            self.z_high = np.nan_to_num(
                np.nanquantile(absz, 1.0 - self.false_alarm_rate, axis=0), nan=0.0
            )
        return self

    def score(self, x: np.ndarray) -> GroupScores:
        """Score consecutive rows (the window features use the rows given, so pass some
        history before the rows of interest when streaming)."""
        x = np.asarray(x, dtype=np.float64)
        scores = self._raw_scores(x)
        missing = ~np.isfinite(x).any(axis=1)
        flat = _flat_rows(x, self.window)
        states = tuple(
            SeriesState.NO_DATA
            if m
            else SeriesState.STALE
            if f
            else SeriesState.ANOMALOUS
            if s > self.threshold
            else SeriesState.OK
            for s, m, f in zip(scores, missing, flat, strict=True)
        )
        return GroupScores(np.where(missing, np.nan, scores), self.threshold, states)

    def attribute(self, rows: np.ndarray) -> list[Attribution]:
        """Rank the metrics by how far they are from their baseline over ``rows`` (the
        anomalous rows of one event): mean |robust z|, missing values ignored."""
        z = self.zscores(np.atleast_2d(rows))
        with np.errstate(all="ignore"):
            contrib = np.nan_to_num(np.nanmean(np.abs(z), axis=0), nan=0.0)
            signed = np.nan_to_num(np.nanmean(z, axis=0), nan=0.0)
        order = np.argsort(-contrib, kind="stable")
        return [Attribution(self.metrics[j], float(contrib[j]), float(signed[j])) for j in order]

    def onsets(
        self, rows: np.ndarray, ts: np.ndarray, metrics: Sequence[str] | None = None
    ) -> dict[str, float]:
        """When each metric started to deviate, for the last of ``rows`` (the recent history
        of the group, oldest first, ``ts`` their times). By default only the metrics
        that are out of their usual range at the last row (|z| above their own training
        ``1 - false_alarm_rate`` quantile); the excursion is the run of rows, ending at the
        last one, whose |z| stays above the metric's training median |z|."""
        z = np.abs(self.zscores(np.atleast_2d(rows)))
        ts = np.asarray(ts, dtype=np.float64)
        if z.shape[0] != ts.size or ts.size == 0:
            raise ValueError("rows and ts must have the same, non-zero length")
        if metrics is None:
            wanted = [j for j in range(len(self.metrics)) if z[-1, j] > self.z_high[j]]
        else:
            wanted = [self.metrics.index(m) for m in metrics]
        last = ts.size - 1
        return {
            self.metrics[j]: float(ts[onset_index(z[:, j], float(self.z_typical[j]), last)])
            for j in wanted
        }


def _flat_rows(x: np.ndarray, window: int) -> np.ndarray:
    """Rows where every metric has been identical for the last ``window`` rows."""
    n = x.shape[0]
    out = np.zeros(n, dtype=bool)
    if n < window or window < 2:
        return out
    same = np.all(x[1:] == x[:-1], axis=1)
    run = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        run[i] = run[i - 1] + 1 if same[i - 1] else 0
    out[:] = run >= window - 1
    return out
