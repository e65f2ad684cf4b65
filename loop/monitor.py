"""Monitor: the door samples come in by, and the sliding windows they are kept in.

    >>> monitor = Monitor(load_catalog(), window_s=300)
    >>> result = monitor.ingest([{"series": "cache_hit_ratio", "labels": {"target": "a"},
    ...                           "ts": 1.0, "value": 0.93}])
    >>> result.accepted, monitor.latest("a", "cache_hit_ratio")
    (1, (1.0, 0.93))

Bad samples (unknown series, NaN, wrong types) are rejected one by one with a reason; the
rest of the batch goes on. Each (target, series) keeps a fixed-size numpy ring buffer, so
memory is bounded whatever the input. Within a series, time only moves forward: a sample
older than or equal to the newest one kept is counted as ``stale`` and dropped, which makes
duplicates and late arrivals deterministic. Thread-safe: the twin pushes from its own
thread while the daemon reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from loop.errors import InvalidSample, validation_reasons
from loop.models import Sample
from rules.catalog import Catalog


@dataclass(frozen=True)
class Rejection:
    index: int
    error: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    stale: int
    rejected: tuple[Rejection, ...]
    samples: tuple[Sample, ...] = field(repr=False, default=())


class SeriesWindow:
    """Fixed-capacity ring buffer of (ts, value) for one series of one target."""

    __slots__ = ("_count", "_next", "_ts", "_values")

    def __init__(self, capacity: int) -> None:
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._values = np.zeros(capacity, dtype=np.float64)
        self._next = 0
        self._count = 0

    def append(self, ts: float, value: float) -> bool:
        if self._count and ts <= self._ts[self._next - 1]:
            return False
        self._ts[self._next] = ts
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._ts)
        self._count = min(self._count + 1, len(self._ts))
        return True

    def latest(self) -> tuple[float, float] | None:
        if not self._count:
            return None
        return float(self._ts[self._next - 1]), float(self._values[self._next - 1])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Oldest first; copies, so callers may keep them."""
        if self._count < len(self._ts):
            return self._ts[: self._count].copy(), self._values[: self._count].copy()
        return np.roll(self._ts, -self._next), np.roll(self._values, -self._next)


def parse_sample(raw: Sample | Mapping[str, Any], catalog: Catalog) -> Sample:
    """Validate one incoming sample; raise InvalidSample with a reason a person can act on."""
    if not isinstance(raw, Sample | Mapping):
        raise InvalidSample(f"sample must be an object, not {type(raw).__name__}")
    try:
        sample = raw if isinstance(raw, Sample) else Sample.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSample(validation_reasons(exc)) from exc
    if sample.series not in catalog:
        raise InvalidSample(f"series: unknown metric {sample.series!r} (not in the catalog)")
    return sample


class Monitor:
    def __init__(self, catalog: Catalog, window_s: int = 300) -> None:
        self.catalog = catalog
        self.capacity = window_s
        self._windows: dict[tuple[str, str], SeriesWindow] = {}
        self._lock = threading.Lock()

    def ingest(self, batch: Iterable[Sample | Mapping[str, Any]]) -> IngestResult:
        accepted: list[Sample] = []
        rejected: list[Rejection] = []
        stale = 0
        for index, raw in enumerate(batch):
            try:
                sample = parse_sample(raw, self.catalog)
            except InvalidSample as exc:
                rejected.append(Rejection(index, str(exc)))
                continue
            key = (sample.target, sample.series)
            with self._lock:
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = SeriesWindow(self.capacity)
                fresh = window.append(sample.ts, sample.value)
            if fresh:
                accepted.append(sample)
            else:
                stale += 1
        return IngestResult(len(accepted), stale, tuple(rejected), tuple(accepted))

    def latest(self, target: str, series: str) -> tuple[float, float] | None:
        with self._lock:
            window = self._windows.get((target, series))
            return window.latest() if window else None

    def window(self, target: str, series: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            window = self._windows.get((target, series))
            if window is None:
                return np.empty(0), np.empty(0)
            return window.arrays()

    def targets(self) -> list[str]:
        with self._lock:
            return sorted({target for target, _ in self._windows})
