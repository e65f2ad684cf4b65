"""One tick's samples as columns, for the analyzer's vectorised pass (loop/analyze.py).

    keys, ts, values = columns_of(result.latest)      # a monitor's Latest: no copy per point
    cells = CellIndex(tracker).lookup(keys)           # row * width + col; -1: not a catalog series
    ok, events = TimeGuard(30.0, 600.0).admit(keys, cells, ts, now, ok)   # clock skew
    for wave in waves(cells[ok]): ...                 # each (target, series) once per wave
    for row, positions in by_target(rows): ...        # targets in order of first sample
    changes = sweep_targets(due, tracker, signals, occurrences, keep)        # housekeeping

Why waves: the per-series state machines (rules/thresholds.py) are exact only when a
(target, series) appears at most once per pass; a batch that holds several samples of one
series (a replayed file, a test) is cut into passes in sample order, so it is judged as if
sample by sample. A monitor's ``latest`` never has duplicates: one pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import repeat

import numpy as np

from kernel.models import Sample
from loop.intake import Latest, Point
from rules.compiler import AbnormalFact
from rules.signals import Change, QualityEvent, SignalTracker
from rules.thresholds import ThresholdColumns


def columns_of(samples: Iterable[Sample | Point]) -> Latest:
    """A batch as columns, in its order (a monitor's ``Latest`` as it is)."""
    if isinstance(samples, Latest):
        return samples
    items = list(samples)
    keys = [(s.target, s.series) for s in items]
    ts = np.fromiter((s.ts for s in items), dtype=np.float64, count=len(items))
    values = np.fromiter((s.value for s in items), dtype=np.float64, count=len(items))
    return Latest(keys, ts, values)


class CellIndex:
    """(target, series) -> ``row * width + col`` of the tracker's arrays, remembered after
    first sight (a dict lookup per point, in C); a series outside the catalog is -1 and
    not remembered (so unknown names cannot grow it)."""

    def __init__(self, tracker: ThresholdColumns) -> None:
        self.tracker = tracker
        self.width = len(tracker.series)
        self._cells: dict[tuple[str, str], int] = {}
        self._source: tuple[object, int] | None = None  # whose slots _by_slot caches
        self._by_slot = np.full(0, -1, dtype=np.int64)

    def cells(self, batch: Latest) -> np.ndarray:
        """``lookup`` of the batch's keys; by window slot (a numpy take) when the batch
        says which slots of which store and generation it holds."""
        if batch.slots is None or batch.source is None or batch.slots.size == 0:
            return self.lookup(batch.keys)
        store, generation = batch.source
        if self._source is None or self._source[0] is not store or self._source[1] != generation:
            self._source, self._by_slot = (store, generation), np.full(0, -1, dtype=np.int64)
        slots = batch.slots
        top = int(slots.max()) + 1
        if top > self._by_slot.size:
            grown = np.full(max(top, 2 * self._by_slot.size), -1, dtype=np.int64)
            grown[: self._by_slot.size] = self._by_slot
            self._by_slot = grown
        cells: np.ndarray = self._by_slot[slots]
        missing = np.flatnonzero(cells < 0)
        if missing.size:  # first sight of these slots (or not catalog series: looked up again)
            found = self.lookup([batch.keys[i] for i in missing.tolist()])
            cells[missing] = found
            self._by_slot[slots[missing]] = found
        return cells

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


class TimeGuard:
    """Samples too far in the future or past of the clock are not judged: each such
    (target, series) is reported once per episode (a ``stale`` event, reason
    ``clock_skew``/``late``) and a good sample ends its episode. A numpy test over the
    batch; only samples of such series are looked at one by one."""

    def __init__(self, max_future_s: float, max_lag_s: float) -> None:
        self.max_future_s = max_future_s
        self.max_lag_s = max_lag_s
        self._skewed: set[tuple[int, str]] = set()  # (cell, reason): an episode reported

    def admit(
        self,
        keys: list[tuple[str, str]],
        cells: np.ndarray,
        ts: np.ndarray,
        now: float | None,
        ok: np.ndarray,
    ) -> tuple[np.ndarray, list[QualityEvent]]:
        """``ok`` less the skewed samples, and the episodes that began (in sample order)."""
        if now is None:
            return ok, []
        bad = ok & ((ts > now + self.max_future_s) | (ts < now - self.max_lag_s))
        if not bad.any() and not self._skewed:
            return ok, []
        events: list[QualityEvent] = []
        look = bad | (ok & np.isin(cells, [c for c, _ in self._skewed]))
        for i in np.flatnonzero(look).tolist():
            cell, t = int(cells[i]), float(ts[i])
            if not bad[i]:
                self._skewed.discard((cell, "clock_skew"))
                self._skewed.discard((cell, "late"))
                continue
            if t > now + self.max_future_s:
                reason, limit = "clock_skew", self.max_future_s
            else:
                reason, limit = "late", self.max_lag_s
            if (cell, reason) not in self._skewed:
                self._skewed.add((cell, reason))
                target, series = keys[i]
                events.append(QualityEvent("stale", reason, target, series, abs(t - now), limit, t))
        return ok & ~bad, events


def sweep_targets(
    due: list[tuple[str, float]],
    tracker: ThresholdColumns,
    signals: SignalTracker,
    occurrences: dict[tuple[str, str], AbnormalFact],
    keep: dict[str, float],
) -> list[Change]:
    """Each target of ``due`` in turn at its time: silent series (gaps, forgetting: one
    numpy pass for all), absences, onsets past their windows (dropped from
    ``occurrences``); the changes in that order, the quality events onto ``tracker.events``."""
    if not due:
        return []
    rows = [tracker.rows[target] for target, _ in due]
    found, events = tracker.sweep(rows, [now for _, now in due])
    tracker.events += [event for _, event in events]
    per: dict[int, list[Change]] = {}
    for k, change in found:
        per.setdefault(k, []).append(change)
    expired: dict[str, list[Change]] = {}
    if occurrences:
        when = dict(due)
        for (t, key), fact in list(occurrences.items()):
            if t in when and when[t] > fact.since + keep.get(key, 0.0):
                del occurrences[(t, key)]
                expired.setdefault(t, []).append(Change(fact.occurrence(), abnormal=False))
    changes: list[Change] = []
    for k, (target, now) in enumerate(due):
        changes += per.get(k, [])
        if signals.absent:
            last_seen = {c.series: tracker.last_seen(target, c.series) for c in signals.absent}
            changes += signals.sweep(target, now, last_seen)
        changes += expired.get(target, [])
    return changes


def in_order(
    last: np.ndarray, cells: np.ndarray, ts: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, int]:
    """``ok`` less the samples not newer than the last judged of their (target, series)
    (``last``: the last timestamps by cell, NaN for none), and how many those were.

    The monitor takes a series' samples in time order, but two submits can reach analysis
    in the other order (each ingests, then observes, outside the other's lock): the later
    batch's older point must not be judged after the newer one. Samples of one batch are
    judged in order, so a repeated cell is checked against its earlier samples."""
    pos = np.flatnonzero(ok)
    if pos.size == 0:
        return ok, 0
    cell, stamp = cells[pos], ts[pos]
    prev = last[cell]
    fresh = np.isnan(prev) | (stamp > prev)
    if cell.size > 1 and np.bincount(cell).max() > 1:  # a raw batch with repeats: in order
        newest: dict[int, float] = {}
        for k, (c, t) in enumerate(zip(cell.tolist(), stamp.tolist(), strict=True)):
            before = newest.get(c, float(last[c]))
            fresh[k] = math.isnan(before) or t > before
            if fresh[k]:
                newest[c] = t
    if bool(fresh.all()):
        return ok, 0
    out = ok.copy()
    out[pos] = fresh
    return out, int(pos.size - np.count_nonzero(fresh))
