"""Columnar sliding windows: one numpy ring buffer per (target, series) slot.

    store = WindowStore(capacity=300)
    slots = store.slots_for(["a", "a"], ["cache_hit_ratio", "db_io_wait_pct"])
    outcome = store.append(slots, ts, values)      # vectorised; late/duplicate counted
    store.latest(slot), store.window(slot)

All slots share two 2-D arrays (``[slots, capacity]`` of ts and values), so memory is
``16 B x capacity`` per series whatever the traffic, and a batch is written with a handful
of numpy operations instead of a Python call per sample.

Time only moves forward within a slot: a sample not newer than the slot's newest is
*late* (or a *duplicate* when its timestamp equals it) and is dropped and counted — the
same rule Prometheus applies to out-of-order samples, and deterministic whatever the
arrival order inside a batch (the batch is ordered by timestamp first; among equal
timestamps the first in the batch wins). Slots not written for ``expire_after_s`` are
freed by ``expire(now)`` and reused.

Cardinality is bounded (``Limits``): past the number of live series or targets, in all or
for one owner (the API token that created them), a *new* series gets no slot: ``slots_for``
marks it ``-1 - i`` for the reason ``REFUSALS[i]``, so the caller counts it. Existing series
keep flowing, and the arrays never grow past the series limit, whatever is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_GROW = 2
REFUSALS = ("series_limit", "target_limit", "token_series_limit", "token_target_limit")
"""Why a new series got no slot; ``slots_for`` marks it ``-1 - REFUSALS.index(reason)``."""
_SERIES, _TARGETS, _OWNER_SERIES, _OWNER_TARGETS = (-1 - i for i in range(len(REFUSALS)))


@dataclass(frozen=True)
class Limits:
    """Live series and targets allowed, in all and per owner (``None``: unbounded)."""

    series: int | None = None
    targets: int | None = None
    series_per_owner: int | None = None
    targets_per_owner: int | None = None


@dataclass(frozen=True)
class AppendOutcome:
    accepted: int
    late: int
    duplicate: int
    touched: np.ndarray  # slots that took at least one sample, ascending


class WindowStore:
    def __init__(
        self, capacity: int, initial_slots: int = 1024, limits: Limits | None = None
    ) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.limits = limits or Limits()
        if self.limits.series is not None:
            initial_slots = max(1, min(initial_slots, self.limits.series))
        self._ts = np.zeros((initial_slots, capacity), dtype=np.float64)
        self._values = np.zeros((initial_slots, capacity), dtype=np.float64)
        self._head = np.zeros(initial_slots, dtype=np.int64)  # next write position
        self._count = np.zeros(initial_slots, dtype=np.int64)
        self._newest = np.full(initial_slots, -np.inf)
        self._keys: list[tuple[str, str] | None] = []
        self._index: dict[tuple[str, str], int] = {}
        self._free: list[int] = []
        self.generation = 0  # bumped when slots are freed: cached slot ids may be stale
        # who created each live slot, and the live counts the limits are checked against
        self._owner: list[str | None] = []
        self._target_series: dict[str, int] = {}
        self._target_owner: dict[str, str | None] = {}
        self._owner_series: dict[str, int] = {}
        self._owner_targets: dict[str, int] = {}

    # -- slots --------------------------------------------------------------------------

    def _grow(self) -> None:
        old = len(self._head)
        new = old * _GROW
        if self.limits.series is not None:  # never more rows than live series may exist
            new = max(old + 1, min(new, self.limits.series))
        for name in ("_ts", "_values"):
            grown = np.zeros((new, self.capacity), dtype=np.float64)
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        self._head = np.concatenate([self._head, np.zeros(new - old, dtype=np.int64)])
        self._count = np.concatenate([self._count, np.zeros(new - old, dtype=np.int64)])
        self._newest = np.concatenate([self._newest, np.full(new - old, -np.inf)])

    def _refusal(self, target: str, owner: str | None) -> int:
        """0 when a new series of ``target`` may have a slot, else its negative mark."""
        limits = self.limits
        new_target = target not in self._target_series
        if owner is not None:
            if (
                new_target
                and limits.targets_per_owner is not None
                and self._owner_targets.get(owner, 0) >= limits.targets_per_owner
            ):
                return _OWNER_TARGETS
            if (
                limits.series_per_owner is not None
                and self._owner_series.get(owner, 0) >= limits.series_per_owner
            ):
                return _OWNER_SERIES
        if new_target and limits.targets is not None and len(self._target_series) >= limits.targets:
            return _TARGETS
        if limits.series is not None and len(self._index) >= limits.series:
            return _SERIES
        return 0

    def slot(self, target: str, series: str, owner: str | None = None) -> int:
        """The slot of (target, series), made on first sight; negative when refused."""
        key = (target, series)
        found = self._index.get(key)
        if found is not None:
            return found
        refused = self._refusal(target, owner)
        if refused:
            return refused
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
            self._owner[slot] = owner
        else:
            slot = len(self._keys)
            if slot >= len(self._head):
                self._grow()
            self._keys.append(key)
            self._owner.append(owner)
        self._index[key] = slot
        if target in self._target_series:
            self._target_series[target] += 1
        else:
            self._target_series[target] = 1
            self._target_owner[target] = owner
            if owner is not None:
                self._owner_targets[owner] = self._owner_targets.get(owner, 0) + 1
        if owner is not None:
            self._owner_series[owner] = self._owner_series.get(owner, 0) + 1
        return slot

    def slots_for(
        self, targets: Sequence[str], series: Sequence[str], owner: str | None = None
    ) -> np.ndarray:
        """Slots in order; a refused new series is marked negative (see ``REFUSALS``)."""
        index = self._index
        return np.fromiter(
            (
                found if (found := index.get((t, s))) is not None else self.slot(t, s, owner)
                for t, s in zip(targets, series, strict=True)
            ),
            dtype=np.int64,
            count=len(series),
        )

    def find(self, target: str, series: str) -> int | None:
        return self._index.get((target, series))

    def is_live(self, slot: int) -> bool:
        return 0 <= slot < len(self._keys) and self._keys[slot] is not None

    def key(self, slot: int) -> tuple[str, str]:
        key = self._keys[slot]
        if key is None:
            raise KeyError(f"slot {slot} is free")
        return key

    def keys_of(self, slots: np.ndarray) -> list[tuple[str, str]]:
        """(target, series) of live slots, in order (the stored tuples, not copies)."""
        return list(map(self._keys.__getitem__, slots.tolist()))  # type: ignore[arg-type]

    @property
    def series_count(self) -> int:
        return len(self._index)

    @property
    def target_count(self) -> int:
        return len(self._target_series)

    def owner_counts(self, owner: str) -> tuple[int, int]:
        """(live series, live targets) that ``owner`` created."""
        return self._owner_series.get(owner, 0), self._owner_targets.get(owner, 0)

    @property
    def nbytes(self) -> int:
        return int(self._ts.nbytes + self._values.nbytes)

    def targets(self) -> list[str]:
        return sorted(self._target_series)

    # -- writing ------------------------------------------------------------------------

    def append(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> AppendOutcome:
        """Write a batch; returns what was taken and what was dropped as late/duplicate."""
        n = len(slots)
        if n == 0:
            return AppendOutcome(0, 0, 0, np.empty(0, dtype=np.int64))
        order = np.lexsort((np.arange(n), ts, slots))  # by slot, then ts, then arrival
        s, t, v = slots[order], ts[order], values[order]
        first_of_slot = np.ones(n, dtype=bool)
        first_of_slot[1:] = s[1:] != s[:-1]
        same_as_previous = ~first_of_slot & (t == np.roll(t, 1))
        newest = self._newest[s]
        stale = t <= newest
        duplicate = (stale & (t == newest)) | same_as_previous
        keep = ~(stale | same_as_previous)
        late = int(np.count_nonzero(stale & ~duplicate))
        s, t, v = s[keep], t[keep], v[keep]
        if len(s) == 0:
            return AppendOutcome(0, late, int(np.count_nonzero(duplicate)), s)
        # rank of each sample within its slot's run -> its ring position
        starts = np.ones(len(s), dtype=bool)
        starts[1:] = s[1:] != s[:-1]
        run_start = np.maximum.accumulate(np.where(starts, np.arange(len(s)), 0))
        rank = np.arange(len(s)) - run_start
        touched, per_slot = np.unique(s, return_counts=True)
        # only a run's newest `capacity` samples are written: no position is written twice
        tail = rank >= np.repeat(per_slot, per_slot) - self.capacity
        positions = (self._head[s] + rank) % self.capacity
        self._ts[s[tail], positions[tail]] = t[tail]
        self._values[s[tail], positions[tail]] = v[tail]
        self._head[touched] = (self._head[touched] + per_slot) % self.capacity
        self._count[touched] = np.minimum(self._count[touched] + per_slot, self.capacity)
        last = np.append(starts[1:], True)  # the last (newest) sample of each run
        self._newest[s[last]] = t[last]
        return AppendOutcome(len(s), late, int(np.count_nonzero(duplicate)), touched)

    # -- reading ------------------------------------------------------------------------

    def latest(self, slot: int) -> tuple[float, float] | None:
        if self._count[slot] == 0:
            return None
        pos = (self._head[slot] - 1) % self.capacity
        return float(self._ts[slot, pos]), float(self._values[slot, pos])

    def latest_many(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = (self._head[slots] - 1) % self.capacity
        return self._ts[slots, pos], self._values[slots, pos]

    def window(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Oldest first; copies."""
        count, head = int(self._count[slot]), int(self._head[slot])
        idx = (np.arange(head - count, head)) % self.capacity
        return self._ts[slot, idx].copy(), self._values[slot, idx].copy()

    # -- expiry -------------------------------------------------------------------------

    def expire(self, now: float, expire_after_s: float) -> int:
        """Free the slots of series that sent nothing for ``expire_after_s``."""
        live = np.fromiter(self._index.values(), dtype=np.int64, count=len(self._index))
        if len(live) == 0:
            return 0
        dead = live[self._newest[live] < now - expire_after_s]
        for slot in dead.tolist():
            key = self._keys[slot]
            assert key is not None
            del self._index[key]
            self._keys[slot] = None
            self._free.append(slot)
            self._forget(key[0], self._owner[slot])
            self._owner[slot] = None
        self._head[dead] = 0
        self._count[dead] = 0
        self._newest[dead] = -np.inf
        if len(dead):
            self.generation += 1
        return len(dead)

    def _forget(self, target: str, owner: str | None) -> None:
        """One series of ``target`` (created by ``owner``) is gone: free its counts."""
        if owner is not None:
            self._owner_series[owner] -= 1
            if not self._owner_series[owner]:
                del self._owner_series[owner]
        self._target_series[target] -= 1
        if self._target_series[target]:
            return
        del self._target_series[target]
        creator = self._target_owner.pop(target)
        if creator is not None:
            self._owner_targets[creator] -= 1
            if not self._owner_targets[creator]:
                del self._owner_targets[creator]
