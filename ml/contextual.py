"""A contextual sequence detector: learns which contexts predict which next values.

Re-implemented from the published description of the Contextual Anomaly Detector
(M. Smirnov, "CAD OSE", NAB 2016): no code was copied. The idea:

- each value is quantised to ``2**bits`` levels of a range learnt from the training
  window; a level is written as *bit-pair facts* (bit k set -> fact 2k+1, clear -> 2k),
  so that near levels share facts;
- a *context* pairs a left set of facts (the previous step's value facts and the
  contexts that were confirmed at the previous step, its "active neurons") with a right
  set (the current value's facts). Every new (left, right) pair is remembered, and so are
  the intersections of partially matching remembered contexts (generalisations);
- at each step the contexts whose left side is fully present predict their right side.
  The anomaly is high when few predictions come true and when the step creates many new
  contexts: ``(1 - confirmed share + new share) / 2``.

So the detector learns normal *sequences*, of any order (active contexts carry the past
forward), from the stream itself; nothing is a constant in data units.

    det = ContextualDetector(lo, hi, overflow=4)   # range seen in the training window
    raw = [det.update(v) for v in values]           # 0 (fully predicted) .. 1 (never seen)
    alarms = rest_period_alarms(raw, threshold=0.8, rest=150)

Values outside the training range fall on ``overflow`` extra levels each side, each a
fact of its own (so a value beyond anything seen is new); beyond those they are clipped.
The published detector is given the minimum and maximum of the *whole* file in advance
(NAB passes them to every detector); here the range comes from the training window only,
so that scoring stays causal.

Cost: per step, proportional to the remembered left contexts that share a fact with the
previous step (tens to a few thousand on NAB); about 5-20 µs per remembered context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

NEURON_BASE = 1 << 20  # facts above this are context ids ("neurons"), below: value bits


class _Grow:
    """A growable 1-d numpy array (amortised O(1) append)."""

    def __init__(self, dtype: type = np.int64) -> None:
        self.a = np.zeros(64, dtype=dtype)
        self.n = 0

    def append(self, x: int) -> None:
        if self.n == self.a.size:
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n] = x
        self.n += 1

    @property
    def v(self) -> np.ndarray:
        return self.a[: self.n]


class _Side:
    """The remembered semi-contexts of one side: their fact sets and a fact index."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, ...], int] = {}
        self.facts: list[tuple[int, ...]] = []
        self.size = _Grow()
        self.postings: dict[int, list[int]] = {}
        self._cache: dict[int, np.ndarray] = {}

    def get(self, facts: tuple[int, ...]) -> int:
        sid = self.ids.get(facts)
        if sid is None:
            sid = len(self.facts)
            self.ids[facts] = sid
            self.facts.append(facts)
            self.size.append(len(facts))
            for f in facts:
                self.postings.setdefault(f, []).append(sid)
                self._cache.pop(f, None)
        return sid

    def hits(self, facts: Sequence[int]) -> np.ndarray:
        """How many of ``facts`` each semi-context holds."""
        parts = []
        for f in facts:
            arr = self._cache.get(f)
            if arr is None:
                post = self.postings.get(f)
                if not post:
                    continue
                arr = self._cache[f] = np.asarray(post, dtype=np.int64)
            parts.append(arr)
        n = len(self.facts)
        if not parts:
            return np.zeros(n, dtype=np.int64)
        return np.bincount(np.concatenate(parts), minlength=n)


class ContextualDetector:
    """See the module docstring. ``lo``/``hi``: the value range learnt in training."""

    def __init__(
        self,
        lo: float,
        hi: float,
        bits: int = 3,
        max_left: int = 7,
        max_active: int = 15,
        overflow: int = 0,
    ) -> None:
        self.bits = bits
        self.levels = 2**bits
        self.lo = float(lo)
        span = float(hi) - float(lo)
        self.step = span / (self.levels - 1) if span > 0 else 1.0
        self.overflow = overflow
        self.max_left = max_left
        self.max_active = max_active
        self.sides = (_Side(), _Side())
        # per context: left id, right id, zero-level flag, times confirmed
        self.c_left = _Grow()
        self.c_right = _Grow()
        self.c_zero = _Grow(np.bool_)
        self.c_count = _Grow()
        self.children: list[dict[int, int]] = []  # per left id: right id -> context id
        self.left: tuple[int, ...] = ()
        self._left_hits = np.zeros(0, dtype=np.int64)  # crossing of self.left

    @property
    def n_contexts(self) -> int:
        return self.c_left.n

    # -- encoding ---------------------------------------------------------------------
    def facts(self, value: float) -> tuple[int, ...]:
        """Bit-pair facts of the value's level: bit k set -> 2k+1, clear -> 2k."""
        level = math.floor((value - self.lo) / self.step) if math.isfinite(value) else 0
        level = min(max(level, -self.overflow), self.levels - 1 + self.overflow)
        if level < 0:
            return (1000 - level,)
        if level >= self.levels:
            return (2000 + level,)
        return tuple(2 * k + ((level >> k) & 1) for k in range(self.bits))

    # -- memory -----------------------------------------------------------------------
    def _remember(self, left: tuple[int, ...], right: tuple[int, ...], zero: bool) -> int:
        """Store the context; returns its id if new, else -1. A zero-level context seen
        again is marked zero-level (it may seed generalisations)."""
        lid = self.sides[0].get(left)
        rid = self.sides[1].get(right)
        while len(self.children) <= lid:
            self.children.append({})
        cid = self.children[lid].get(rid)
        if cid is None:
            cid = self.c_left.n
            self.children[lid][rid] = cid
            self.c_left.append(lid)
            self.c_right.append(rid)
            self.c_zero.append(zero)
            self.c_count.append(0)
            return cid
        if zero:
            self.c_zero.a[cid] = True
        return -1

    # -- one step ---------------------------------------------------------------------
    def update(self, value: float) -> float:
        """Raw anomaly of ``value`` given the past (0..1), then learn from it."""
        now = self.facts(value)
        n_before = self.c_left.n  # contexts that existed when the left crossing was made
        fresh = -1
        if self.left:
            fresh = self._remember(self.left, now, zero=True)
        new_zero = fresh >= 0
        rhits = self.sides[1].hits(now)
        cl = self.c_left.a[:n_before]
        cr = self.c_right.a[:n_before]
        lh = np.zeros(len(self.sides[0].facts), dtype=np.int64)
        lh[: self._left_hits.size] = self._left_hits
        lhc = lh[cl]
        lsz = self.sides[0].size.a[cl]
        rhc = rhits[cr]
        full = (lhc == lsz) & (lhc > 0)
        predicted = int(full.sum())
        act = full & (rhc == self.sides[1].size.a[cr])
        counts = self.c_count.a
        counts[:n_before][act] += 1
        candidates: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        if self.left:
            candidates.add((self.left, now))
        if new_zero:
            gen = (lhc > 0) & (rhc > 0) & ~act & self.c_zero.a[:n_before] & (lhc <= self.max_left)
            lset, nset = set(self.left), set(now)
            lf, rf = self.sides[0].facts, self.sides[1].facts
            for cid in np.flatnonzero(gen).tolist():
                a = tuple(f for f in lf[cl[cid]] if f in lset)
                b = tuple(f for f in rf[cr[cid]] if f in nset)
                candidates.add((a, b))
        confirmed = float(act.sum()) / predicted if predicted else 0.0
        ids = np.flatnonzero(act)
        if ids.size > self.max_active:
            order = np.lexsort((cr[ids], cl[ids], counts[ids]))
            ids = ids[order[-self.max_active :]]
        added = 0
        if new_zero:
            for a, b in candidates:
                if a != self.left or b != now:
                    added += self._remember(a, b, zero=False) >= 0
            added += 1
        self.left = tuple(sorted(set(now) | {NEURON_BASE + int(i) for i in ids}))
        self._left_hits = self.sides[0].hits(self.left)
        novelty = added / len(candidates) if new_zero and candidates else 0.0
        return (1.0 - confirmed + novelty) / 2.0


def rest_period_alarms(
    raw: np.ndarray, threshold: float, rest: int, quiet: float | None = None
) -> np.ndarray:
    """The reporting policy: a point alarms when its raw score exceeds ``threshold`` and
    no raw score in the ``rest`` points before it reached ``quiet`` (default: the
    threshold). One event gives one alarm, and a series that keeps being surprising is
    still learning, not failing. NaN never alarms."""
    from scipy.ndimage import maximum_filter1d

    s = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0)
    if s.size == 0 or rest < 1:
        return s > threshold
    q = threshold if quiet is None else quiet
    mx = maximum_filter1d(s, size=rest, origin=(rest - 1) // 2, mode="constant", cval=0.0)
    before = np.concatenate([[0.0], mx[:-1]])  # max of s[i-rest .. i-1]
    return (s > threshold) & (before < q)
