"""The streaming state of every target's ML baselines, as matrices: one array op per tick.

    streams = BaselineStreams(n_series)
    row = streams.add()                          # a target's row (reused after free)
    streams.install(row, model)                  # its fitted TargetBaseline, stacked
    streams.update(rows, cols, ts, values)       # the tick's newest points, every target
    streams.value[row], streams.beyond_since[row], ...   # what anomalies() reads

Per point ``(row, col)`` of a tick: the run of identical values (a frozen source), the
newest value and time, and, where the row's target has a model, the robust z-score against
the median/MAD of its time-of-day bucket, the start of the run past the learnt threshold
(``beyond_since``) and of the run above the usual level (``onset``). The same arithmetic as
one target at a time (loop/anomaly.py kept it per target: ~0.07 ms of Python per target
and tick), over ``[targets, series]`` at once.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FittedBaseline(Protocol):
    """What ``install`` reads of a fitted model (loop/anomaly.py's TargetBaseline; named by
    its shape so the two modules do not import each other)."""

    period_s: float
    bucket_s: float
    median: np.ndarray  # [series, bucket]
    scale: np.ndarray
    judged: np.ndarray
    threshold: np.ndarray  # [series]
    elevated: np.ndarray


STATE = ("value", "ts", "z", "expected", "beyond_since", "onset")
# name -> (blank value, dtype, shape: "s" [targets, series], "bs" [targets, bucket, series]
# (a tick's points of one target share their hour: contiguous reads), "" [targets])
LAYOUT: dict[str, tuple[float | bool, type, str]] = {
    **{name: (np.nan, float, "s") for name in STATE},
    "run": (0.0, float, "s"),  # consecutive identical values (a frozen source)
    "median": (0.0, float, "bs"),
    "scale": (1.0, float, "bs"),
    "judged": (False, bool, "bs"),  # enough training rows in this hour to judge it
    "threshold": (np.inf, float, "s"),
    "elevated": (np.inf, float, "s"),
    "has_model": (False, bool, ""),
    "period": (1.0, float, ""),
    "bucket": (1.0, float, ""),
}


class BaselineStreams:
    value: np.ndarray
    ts: np.ndarray
    z: np.ndarray
    expected: np.ndarray
    beyond_since: np.ndarray  # first point of the run past threshold
    onset: np.ndarray  # first point of the run above the usual level
    run: np.ndarray
    median: np.ndarray
    scale: np.ndarray
    judged: np.ndarray
    threshold: np.ndarray
    elevated: np.ndarray
    has_model: np.ndarray
    period: np.ndarray
    bucket: np.ndarray

    def __init__(self, n_series: int, capacity: int = 16) -> None:
        self.n_series = n_series
        self._free: list[int] = []
        self._used = 0
        self._alloc(capacity, 1)

    def _alloc(self, rows: int, buckets: int) -> None:
        """(Re)allocate for ``rows`` targets and ``buckets`` hours, keeping what is there."""
        n = self._used
        for name, (blank, dtype, shape) in LAYOUT.items():
            dims = {"s": (rows, self.n_series), "bs": (rows, buckets, self.n_series)}
            new: np.ndarray = np.full(dims.get(shape, (rows,)), blank, dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                if shape == "bs":
                    new[:n, : old.shape[1]] = old[:n]
                else:
                    new[:n] = old[:n]
            setattr(self, name, new)

    @property
    def capacity(self) -> int:
        return len(self.has_model)

    def add(self) -> int:
        """A row for a new target: a freed one, or the next (growing by doubling)."""
        if self._free:
            return self._free.pop()
        if self._used == self.capacity:
            self._alloc(max(16, 2 * self.capacity), self.median.shape[1])
        self._used += 1
        return self._used - 1

    def free(self, row: int) -> None:
        """Forget a target's row (blank for the next target that gets it)."""
        for name in STATE:
            getattr(self, name)[row] = np.nan
        self.run[row] = 0
        self.has_model[row] = False
        self._free.append(row)

    def install(self, row: int, model: FittedBaseline) -> None:
        buckets = model.median.shape[1]
        if buckets > self.median.shape[1]:
            self._alloc(self.capacity, buckets)
        self.median[row, :buckets] = model.median.T
        self.scale[row, :buckets] = model.scale.T
        self.judged[row] = False
        self.judged[row, :buckets] = model.judged.T
        self.threshold[row], self.elevated[row] = model.threshold, model.elevated
        self.period[row], self.bucket[row] = model.period_s, model.bucket_s
        self.has_model[row] = True
        self.beyond_since[row] = np.nan
        self.onset[row] = np.nan

    def update(
        self, rows: np.ndarray, cols: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> None:
        """Score the newest points (``rows``: each point's target row, ``cols``: its series).
        Indexed flat (one take or put per matrix): faster than two-array indexing."""
        at = rows * self.n_series + cols
        value, run = self.value.reshape(-1), self.run.reshape(-1)
        run[at] = np.where(value[at] == values, run[at] + 1, 1)
        value[at] = values
        self.ts.reshape(-1)[at] = ts
        scored = self.has_model[rows]
        if not scored.any():
            return
        if not scored.all():
            rows, cols, at = rows[scored], cols[scored], at[scored]
            ts, values = ts[scored], values[scored]
        hour = ((ts % self.period[rows]) // self.bucket[rows]).astype(np.int64)
        cell = (rows * self.median.shape[1] + hour) * self.n_series + cols
        expected = self.median.reshape(-1)[cell]
        z = np.abs(values - expected) / self.scale.reshape(-1)[cell]
        z = np.where(self.judged.reshape(-1)[cell], z, np.nan)
        self.z.reshape(-1)[at], self.expected.reshape(-1)[at] = z, expected
        beyond = z > self.threshold.reshape(-1)[at]  # NaN (not judged) compares False
        raised = z > self.elevated.reshape(-1)[at]
        since, onset = self.beyond_since.reshape(-1), self.onset.reshape(-1)
        was, began = since[at], onset[at]
        since[at] = np.where(beyond, np.where(np.isnan(was), ts, was), np.nan)
        onset[at] = np.where(raised, np.where(np.isnan(began), ts, began), np.nan)
