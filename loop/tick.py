"""One tick's samples as columns, for the analyzer's vectorised pass (loop/analyze.py).

    keys, ts, values = columns_of(result.latest)      # a monitor's Latest: no copy per point
    cells = CellIndex(tracker).lookup(keys)           # row * width + col; -1: not a catalog series
    for wave in waves(cells[ok]): ...                 # each (target, series) once per wave
    for row, positions in by_target(rows): ...        # targets in order of first sample

Why waves: the per-series state machines (rules/thresholds.py) are exact only when a
(target, series) appears at most once per pass; a batch that holds several samples of one
series (a replayed file, a test) is cut into passes in sample order, so it is judged as if
sample by sample. A monitor's ``latest`` never has duplicates: one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat

import numpy as np

from kernel.models import Sample
from loop.intake import Latest, Point
from rules.thresholds import ThresholdColumns


def columns_of(
    samples: Iterable[Sample | Point],
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """(target, series) keys, timestamps and values of a batch, in its order."""
    if isinstance(samples, Latest):
        return samples.keys, samples.ts, samples.values
    items = list(samples)
    keys = [(s.target, s.series) for s in items]
    ts = np.fromiter((s.ts for s in items), dtype=np.float64, count=len(items))
    values = np.fromiter((s.value for s in items), dtype=np.float64, count=len(items))
    return keys, ts, values


class CellIndex:
    """(target, series) -> ``row * width + col`` of the tracker's arrays, remembered after
    first sight (a dict lookup per point, in C); a series outside the catalog is -1 and
    not remembered (so unknown names cannot grow it)."""

    def __init__(self, tracker: ThresholdColumns) -> None:
        self.tracker = tracker
        self.width = len(tracker.series)
        self._cells: dict[tuple[str, str], int] = {}

    def lookup(self, keys: list[tuple[str, str]]) -> np.ndarray:
        get = self._cells.get
        cells = np.fromiter(map(get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        for i in np.flatnonzero(cells < 0).tolist():
            target, series = keys[i]
            col = self.tracker.col.get(series)
            if col is not None:
                cells[i] = self._cells[keys[i]] = self.tracker.row(target) * self.width + col
        return cells


def waves(cells: np.ndarray) -> list[np.ndarray]:
    """Positions of ``cells`` cut into passes where each cell appears at most once, each
    pass in order; one pass (all positions) when there is no duplicate."""
    n = cells.size
    if n < 2 or np.bincount(cells).max() < 2:
        return [np.arange(n)]
    order = np.argsort(cells, kind="stable")
    sorted_cells = cells[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_cells[1:] != sorted_cells[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - run_start  # how many earlier samples share the cell
    return [np.flatnonzero(rank == k) for k in range(int(rank.max()) + 1)]


def by_target(rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(row, its positions in order) per target, targets in order of their first sample."""
    n = rows.size
    if n == 0:
        return
    if n == 1 or bool(np.all(rows[1:] >= rows[:-1])):
        perm = np.arange(n)  # already grouped (a monitor's columns are)
    else:
        perm = np.argsort(rows, kind="stable")
    grouped = rows[perm]
    bounds = np.flatnonzero(grouped[1:] != grouped[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    for k in np.argsort(perm[starts], kind="stable").tolist():  # by first position
        yield int(grouped[starts[k]]), perm[starts[k] : ends[k]]
