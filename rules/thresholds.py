"""The catalog thresholds of every (target, series) as arrays: a tick is a few numpy passes.

    columns = ThresholdColumns(catalog)
    row = columns.row("t")                               # a target's row (made on first sight)
    changes, events = columns.update(rows, cols, ts, values)   # one tick; (row, col) unique
    changes, events = columns.sweep(rows, nows)           # gaps and forgetting, per target

The same state machine as ``rules.reference.ThresholdTracker`` (read that one for the
rules: breach held ``duration_s``, hysteresis back within warn, flat-lining and gaps),
kept as the readable reference and checked against this one sample for sample by
tests/rules/test_thresholds.py. Here the state is a ``[targets, series]`` array per
field, so the per-tick cost is a fixed number of numpy operations over the tick's
samples instead of a Python call per sample; only the rare transitions (a fact made or
retracted, a quality event) build Python objects. Changes and events come back tagged
with the position of the sample (or of the target in ``sweep``) that caused them, so the
caller can put them in the reference's order.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from rules.catalog import Catalog
from rules.compiler import AbnormalFact
from rules.signals import NOISY_RUN, Change, QualityEvent

Tagged = list[tuple[int, Change]]
TaggedEvents = list[tuple[int, QualityEvent]]

_FLOATS = ("_ts", "_value", "_change_ts", "_since", "_first")
_BOOLS = ("_varied", "_noisy", "_moved", "_abn", "_flat", "_gap")
_INTS = ("_run", "_born")
_NAN_FLOATS = ("_ts", "_since")  # NaN: none yet (the reference's None)


class ThresholdColumns:
    """``ThresholdTracker`` over ``[targets, series]`` arrays (see the module docstring)."""

    # one [targets, series] array per field of the reference's _SeriesState
    _ts: np.ndarray  # last_ts (NaN: no state)
    _value: np.ndarray
    _change_ts: np.ndarray
    _since: np.ndarray  # breach_since (NaN: none)
    _first: np.ndarray  # breach_first
    _varied: np.ndarray  # ever_varied
    _noisy: np.ndarray  # breach_noisy
    _moved: np.ndarray  # breach_varied
    _abn: np.ndarray  # a fact is true (it is in _facts)
    _flat: np.ndarray  # flat_reported
    _gap: np.ndarray  # gap_reported
    _run: np.ndarray
    _born: np.ndarray  # creation order of the state (0: none)

    def __init__(self, catalog: Catalog, flat_after_s: float = 120.0, gap_s: float = 60.0) -> None:
        self.catalog = catalog
        self.flat_after_s = flat_after_s
        self.gap_s = gap_s
        self.series = tuple(catalog)
        self.col = {name: j for j, name in enumerate(self.series)}
        specs = [catalog[s] for s in self.series]
        self.high = np.array([s.bad == "high" for s in specs], dtype=bool)
        self.warn = np.array([s.warn for s in specs], dtype=np.float64)
        self.crit = np.array([s.crit for s in specs], dtype=np.float64)
        self.duration = np.array([s.duration_s for s in specs], dtype=np.float64)
        self.events: list[QualityEvent] = []  # the caller files them in order (see Analyzer)
        self.names: list[str] = []
        self.rows: dict[str, int] = {}
        self._tracked: dict[str, None] = {}  # targets with state, in order of first update
        self._facts: dict[tuple[int, int], AbnormalFact] = {}
        self._seq = 0  # creation order of a (target, series) state: the reference's dict order
        self._alloc(16)

    def _alloc(self, n: int) -> None:
        width = len(self.series)
        old = self._born.shape[0] if hasattr(self, "_born") else 0
        for name in _FLOATS:
            grown = np.full((n, width), np.nan if name in _NAN_FLOATS else 0.0)
            if old:
                grown[:old] = getattr(self, name)[:old]
            setattr(self, name, grown)
        for name in _BOOLS:
            fresh = np.zeros((n, width), dtype=bool)
            if old:
                fresh[:old] = getattr(self, name)[:old]
            setattr(self, name, fresh)
        for name in _INTS:
            ints = np.zeros((n, width), dtype=np.int64)
            if old:
                ints[:old] = getattr(self, name)[:old]
            setattr(self, name, ints)

    def _flat_views(self) -> SimpleNamespace:
        """Each state array as a flat view (``row * width + col``)."""
        return SimpleNamespace(
            **{name[1:]: getattr(self, name).reshape(-1) for name in (*_FLOATS, *_BOOLS, *_INTS)}
        )

    def row(self, target: str) -> int:
        """The target's row, made on first sight (no state until ``update``)."""
        found = self.rows.get(target)
        if found is not None:
            return found
        found = self.rows[target] = len(self.names)
        self.names.append(target)
        if found >= self._born.shape[0]:
            self._alloc(2 * self._born.shape[0])
        return found

    # -- one tick -----------------------------------------------------------------------

    def update(
        self, rows: np.ndarray, cols: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> tuple[Tagged, TaggedEvents]:
        """Samples in order, each (row, col) at most once: the reference's ``update`` on
        each. Returns the changes and quality events, each with its sample's position."""
        if rows.size == 0:
            return [], []
        at = rows * len(self.series) + cols  # flat cells: 1-D takes, the fast kind
        f = self._flat_views()
        first = f.born[at] == 0
        if first.any():  # states made in sample order, like the reference's dicts
            f.born[at[first]] = self._seq + 1 + np.arange(np.count_nonzero(first))
            self._seq += int(np.count_nonzero(first))
            self._track_in_order(rows[first])
        changed = first | (values != f.value[at])
        varied = np.where(changed, f.varied[at] | ~first, f.varied[at])
        run = np.where(changed, np.where(first, 0, f.run[at] + 1), 0)
        change_ts = np.where(changed, ts, f.change_ts[at])
        flat = f.flat[at] & ~changed
        f.ts[at], f.value[at], f.gap[at] = ts, values, False
        f.varied[at], f.run[at], f.change_ts[at] = varied, run, change_ts
        frozen = varied & (ts - change_ts >= self.flat_after_s)

        high = self.high[cols]
        healthy = ~np.where(high, values > self.warn[cols], values < self.warn[cols])
        crit = np.where(high, values > self.crit[cols], values < self.crit[cols])
        was = f.abn[at]
        flat_abnormal = was & ~healthy & frozen
        recover = was & (healthy | flat_abnormal)
        report = flat_abnormal & ~flat

        breach = ~was & crit
        since = f.since[at]
        start = breach & np.isnan(since)
        since = np.where(start, ts, since)
        first_value = np.where(start, values, f.first[at])
        noisy = np.where(start, run >= NOISY_RUN, f.noisy[at])
        moved = np.where(start, False, f.moved[at]) | (values != first_value)
        waiting = breach & ((ts - since < self.duration[cols]) | flat)
        stuck = breach & ~waiting & noisy & ~moved & (self.duration[cols] > 0)
        report |= stuck & (ts - since >= self.flat_after_s) & ~flat
        fire = breach & ~waiting & ~stuck

        keep_since = ~(recover | (~was & ~crit))
        f.since[at] = np.where(keep_since, np.where(breach, since, f.since[at]), np.nan)
        f.first[at] = np.where(breach, first_value, f.first[at])
        f.noisy[at] = np.where(breach, noisy, f.noisy[at])
        f.moved[at] = np.where(breach, moved, f.moved[at])
        f.flat[at] = flat | report
        f.abn[at] = (was & ~recover) | fire

        events: TaggedEvents = []
        for i in np.flatnonzero(report).tolist():
            r, c = int(rows[i]), int(cols[i])
            events.append((i, self._flat_event(r, c, float(values[i]), float(change_ts[i]))))
        changes: Tagged = []
        for i in np.flatnonzero(recover | fire).tolist():
            r, c = int(rows[i]), int(cols[i])
            if recover[i]:
                changes.append((i, Change(self._facts.pop((r, c)), abnormal=False)))
                continue
            spec = self.catalog[self.series[c]]
            fact = AbnormalFact(
                target=self.names[r],
                series=self.series[c],
                value=float(values[i]),
                threshold=spec.crit,
                direction=spec.bad,
                since=float(since[i]),
            )
            self._facts[(r, c)] = fact
            changes.append((i, Change(fact, abnormal=True)))
        return changes, events

    def _track_in_order(self, rows: np.ndarray) -> None:
        """Targets in order of their first update (``targets()``), as the reference keeps them."""
        _, first = np.unique(rows, return_index=True)
        for r in rows[np.sort(first)].tolist():
            self._tracked.setdefault(self.names[r], None)

    def _flat_event(self, r: int, c: int, value: float, since: float) -> QualityEvent:
        series = self.series[c]
        return QualityEvent(
            "stale", "flat", self.names[r], series, value, float(self.crit[c]), since
        )

    def sweep(
        self, rows: list[int], nows: list[float], forget_after_s: float = 3600.0
    ) -> tuple[Tagged, TaggedEvents]:
        """The reference's ``sweep`` for each target in turn (``rows[k]`` at ``nows[k]``);
        tagged with ``k``."""
        changes: Tagged = []
        events: TaggedEvents = []
        if not rows:
            return changes, events
        r = np.asarray(rows, dtype=np.int64)
        now = np.asarray(nows, dtype=np.float64)[:, None]
        silent = now - self._ts[r] >= self.gap_s  # NaN (no state) compares False
        if not silent.any():
            return changes, events
        forget = silent & (now - self._ts[r] >= forget_after_s)
        todo = silent & (forget | ~self._gap[r] | self._abn[r] | ~np.isnan(self._since[r]))
        hits = np.argwhere(todo)
        if hits.size:
            born = self._born[r[hits[:, 0]], hits[:, 1]]
            hits = hits[np.lexsort((born, hits[:, 0]))]
        for k, c in hits.tolist():
            row, t_now = rows[k], float(nows[k])
            last = float(self._ts[row, c])
            if forget[k, c]:
                if self._abn[row, c]:
                    changes.append((k, self._recover(row, c)))
                self._reset(row, c)
                continue
            if not self._gap[row, c]:
                self._gap[row, c] = True
                events.append(
                    (
                        k,
                        QualityEvent(
                            "no_data",
                            "gap",
                            self.names[row],
                            self.series[c],
                            t_now - last,
                            self.gap_s,
                            last,
                        ),
                    )
                )
            if self._abn[row, c]:
                changes.append((k, self._recover(row, c)))
            self._since[row, c] = np.nan
        return changes, events

    def _recover(self, r: int, c: int) -> Change:
        self._abn[r, c] = False
        self._since[r, c] = np.nan
        return Change(self._facts.pop((r, c)), abnormal=False)

    def _reset(self, r: int, c: int) -> None:
        """Forget a (target, series) state: as if never seen."""
        for name in _FLOATS:
            getattr(self, name)[r, c] = np.nan if name in _NAN_FLOATS else 0.0
        for name in _BOOLS:
            getattr(self, name)[r, c] = False
        self._run[r, c] = self._born[r, c] = 0

    # -- reading ------------------------------------------------------------------------

    def abnormal(self, target: str) -> list[AbnormalFact]:
        """Facts true on ``target``, in the order its series were first seen."""
        r = self.rows.get(target)
        if r is None:
            return []
        cols = np.flatnonzero(self._abn[r])
        cols = cols[np.argsort(self._born[r, cols], kind="stable")]
        return [self._facts[(r, c)] for c in cols.tolist()]

    def last_ts(self) -> np.ndarray:
        """Each cell's last judged timestamp (flat, ``row * width + col``; NaN: none)."""
        return self._ts.reshape(-1)

    def any_abnormal(self, target: str) -> bool:
        r = self.rows.get(target)
        return r is not None and bool(self._abn[r].any())

    def last_seen(self, target: str, series: str) -> float | None:
        r, c = self.rows.get(target), self.col.get(series)
        if r is None or c is None or self._born[r, c] == 0:
            return None
        return float(self._ts[r, c])

    def last_value(self, target: str, series: str) -> float | None:
        r, c = self.rows.get(target), self.col.get(series)
        if r is None or c is None or self._born[r, c] == 0:
            return None
        return float(self._value[r, c])

    def targets(self) -> list[str]:
        return list(self._tracked)
