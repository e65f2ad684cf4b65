"""Monitor: the door samples come in by, and the sliding windows they are kept in.

    monitor = Monitor(load_catalog(), window_s=300)
    result = monitor.ingest([{"series": "cache_hit_ratio", "labels": {"target": "a"},
                              "ts": time.time(), "value": 0.93}])      # validated, per sample
    result = monitor.ingest_columns(targets, series, ts, values)      # vectorised fast path
    monitor.latest("a", "cache_hit_ratio"); monitor.stats()

Nothing is lost silently. A bad sample (unknown series, NaN/inf, wrong type, missing
target, a timestamp far in the past or future) is rejected with its index and reason; a
sample older than or equal to its series' newest is dropped as *late* or *duplicate*
(windows.py); a batch over ``max_batch`` is refused whole; when more than
``max_in_flight`` samples are being ingested at once the call raises ``Overloaded`` (the
API answers 429 + Retry-After). Every one of these is counted by reason in ``stats()``.
Thread-safe: the twin pushes from its own thread while the daemon and the API read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pydantic import ValidationError

from loop.errors import InvalidSample, Overloaded, validation_reasons
from loop.models import Sample
from loop.windows import WindowStore
from rules.catalog import Catalog

MAX_TARGET_LEN = 200
COUNTED = (
    "accepted",
    "late",
    "duplicate",
    "unknown_metric",
    "invalid",
    "bad_labels",
    "too_old",
    "in_future",
    "oversized_batch",
    "shed_overload",
    "expired_series",
)
MAX_LABELS = 32


class Point(NamedTuple):
    """The newest accepted value of one series: what analysis looks at."""

    target: str
    series: str
    ts: float
    value: float


@dataclass
class Layout:
    """A fixed sequence of (target, series) resolved once to window slots, for sources that
    send the same series every tick (the twin, exporters, benchmarks)."""

    targets: tuple[str, ...]
    series: tuple[str, ...]
    known: np.ndarray
    slots: np.ndarray
    generation: int


@dataclass(frozen=True)
class Rejection:
    index: int
    error: str
    reason: str = "invalid"


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    late: int
    duplicate: int
    rejected: tuple[Rejection, ...]
    latest: tuple[Point, ...] = field(repr=False, default=())

    @property
    def stale(self) -> int:
        return self.late + self.duplicate


def parse_sample(raw: Sample | Mapping[str, Any], catalog: Catalog) -> Sample:
    """Validate one incoming sample; raise InvalidSample with a reason a person can act on."""
    if not isinstance(raw, Sample | Mapping):
        raise InvalidSample(f"sample must be an object, not {type(raw).__name__}")
    try:
        sample = raw if isinstance(raw, Sample) else Sample.model_validate(raw)
    except ValidationError as exc:
        raise InvalidSample(validation_reasons(exc)) from exc
    if sample.series not in catalog:
        raise InvalidSample(
            f"series: unknown metric {sample.series!r} (not in the catalog)", "unknown_metric"
        )
    if len(sample.labels) > MAX_LABELS or not 0 < len(sample.target) <= MAX_TARGET_LEN:
        raise InvalidSample(
            f"labels: at most {MAX_LABELS} labels and a target of 1-{MAX_TARGET_LEN} characters",
            "bad_labels",
        )
    return sample


class Monitor:
    def __init__(
        self,
        catalog: Catalog,
        window_s: int = 300,
        *,
        max_age_s: float = 3600.0,
        max_future_s: float = 300.0,
        max_batch: int = 100_000,
        max_in_flight: int = 500_000,
        expire_after_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.capacity = window_s
        self.max_age_s = max_age_s
        self.max_future_s = max_future_s
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.expire_after_s = expire_after_s
        self.clock = clock
        self._store = WindowStore(window_s)
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._in_flight = 0
        self._gate = threading.Lock()

    # -- intake -----------------------------------------------------------------------

    def _admit(self, n: int) -> None:
        with self._gate:
            if self._in_flight + n > self.max_in_flight:
                self._counters["shed_overload"] += n
                raise Overloaded(
                    f"intake busy ({self._in_flight} samples in flight, limit "
                    f"{self.max_in_flight}); retry shortly",
                    retry_after_s=1.0,
                )
            self._in_flight += n

    def _release(self, n: int) -> None:
        with self._gate:
            self._in_flight -= n

    def _oversized(self, n: int) -> IngestResult | None:
        if n <= self.max_batch:
            return None
        with self._gate:
            self._counters["oversized_batch"] += n
        message = f"batch of {n} samples exceeds the limit of {self.max_batch}; split it"
        return IngestResult(0, 0, 0, (Rejection(-1, message, "oversized_batch"),))

    def _time_reason(self, ts: float, now: float) -> str | None:
        if ts < now - self.max_age_s:
            return "too_old"
        if ts > now + self.max_future_s:
            return "in_future"
        return None

    def ingest(self, batch: Sequence[Sample | Mapping[str, Any]] | Iterable[Any]) -> IngestResult:
        """Validated path for JSON-ish input: each sample checked and rejected on its own."""
        items = batch if isinstance(batch, Sequence) else list(batch)
        if (refused := self._oversized(len(items))) is not None:
            return refused
        self._admit(len(items))
        try:
            now = self.clock()
            targets: list[str] = []
            names: list[str] = []
            stamps: list[float] = []
            values: list[float] = []
            rejected: list[Rejection] = []
            for index, raw in enumerate(items):
                try:
                    sample = parse_sample(raw, self.catalog)
                    reason = self._time_reason(sample.ts, now)
                    if reason is not None:
                        raise InvalidSample(
                            f"ts: {sample.ts:.0f} is outside [now - {self.max_age_s:g} s, "
                            f"now + {self.max_future_s:g} s]",
                            reason,
                        )
                except InvalidSample as exc:
                    rejected.append(Rejection(index, str(exc), exc.reason))
                    continue
                targets.append(sample.target)
                names.append(sample.series)
                stamps.append(sample.ts)
                values.append(sample.value)
            return self._write(
                (targets, names),
                np.asarray(stamps, dtype=np.float64),
                np.asarray(values, dtype=np.float64),
                rejected,
            )
        finally:
            self._release(len(items))

    def layout(self, targets: Sequence[str], series: Sequence[str]) -> Layout:
        known = np.fromiter((s in self.catalog for s in series), dtype=bool, count=len(series))
        with self._lock:
            slots = self._store.slots_for(
                [t for t, k in zip(targets, known, strict=True) if k],
                [s for s, k in zip(series, known, strict=True) if k],
            )
            full = np.full(len(series), -1, dtype=np.int64)
            full[known] = slots
            return Layout(tuple(targets), tuple(series), known, full, self._store.generation)

    def ingest_columns(
        self,
        targets: Sequence[str] | Layout,
        series: Sequence[str] = (),
        ts: np.ndarray | None = None,
        values: np.ndarray | None = None,
        *,
        want_latest: bool = True,
    ) -> IngestResult:
        """Vectorised path for in-process sources (the twin, benchmarks): same rules.

        Pass a ``Layout`` instead of targets/series when the same series come every tick:
        then a batch costs a few numpy operations and no Python work per sample.
        """
        layout = targets if isinstance(targets, Layout) else self.layout(targets, series)
        if layout.generation != self._store.generation:  # slots were freed meanwhile
            layout = self.layout(layout.targets, layout.series)
        n = len(layout.series)
        if (refused := self._oversized(n)) is not None:
            return refused
        self._admit(n)
        try:
            ts = np.asarray(ts, dtype=np.float64)
            values = np.asarray(values, dtype=np.float64)
            now = self.clock()
            known = layout.known
            finite = np.isfinite(ts) & np.isfinite(values)
            too_old = ts < now - self.max_age_s
            in_future = ts > now + self.max_future_s
            good = known & finite & ~too_old & ~in_future
            rejected = [
                Rejection(int(i), reason_text, reason)
                for mask, reason, reason_text in (
                    (~known, "unknown_metric", "series: unknown metric (not in the catalog)"),
                    (known & ~finite, "invalid", "value/ts: must be finite numbers"),
                    (known & finite & too_old, "too_old", "ts: older than the window"),
                    (known & finite & in_future, "in_future", "ts: in the future"),
                )
                for i in np.flatnonzero(mask)
            ]
            good_slots = layout.slots[good]
            return self._write(good_slots, ts[good], values[good], rejected, want_latest)
        finally:
            self._release(n)

    def _write(
        self,
        slots: np.ndarray | tuple[list[str], list[str]],
        ts: np.ndarray,
        values: np.ndarray,
        rejected: list[Rejection],
        want_latest: bool = True,
    ) -> IngestResult:
        with self._lock:
            if isinstance(slots, tuple):
                slots = self._store.slots_for(*slots)
            outcome = self._store.append(slots, ts, values)
            latest: tuple[Point, ...] = ()
            if want_latest:
                last_ts, last_values = self._store.latest_many(outcome.touched)
                latest = tuple(
                    Point(*self._store.key(slot), float(t), float(v))
                    for slot, t, v in zip(
                        outcome.touched.tolist(),
                        last_ts.tolist(),
                        last_values.tolist(),
                        strict=True,
                    )
                )
            self._counters["accepted"] += outcome.accepted
            self._counters["late"] += outcome.late
            self._counters["duplicate"] += outcome.duplicate
            self._counters.update(r.reason for r in rejected)
        return IngestResult(
            outcome.accepted, outcome.late, outcome.duplicate, tuple(rejected), latest
        )

    # -- reading ----------------------------------------------------------------------

    def latest(self, target: str, series: str) -> tuple[float, float] | None:
        with self._lock:
            slot = self._store.find(target, series)
            return self._store.latest(slot) if slot is not None else None

    def window(self, target: str, series: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            slot = self._store.find(target, series)
            if slot is None:
                return np.empty(0), np.empty(0)
            return self._store.window(slot)

    def targets(self) -> list[str]:
        with self._lock:
            return self._store.targets()

    def expire(self, now: float | None = None) -> int:
        """Forget series that sent nothing for ``expire_after_s`` (bounded memory)."""
        with self._lock:
            freed = self._store.expire(self.clock() if now is None else now, self.expire_after_s)
            self._counters["expired_series"] += freed
            return freed

    def stats(self) -> dict[str, Any]:
        """Counters by reason since start: what was taken, and everything that was not."""
        with self._lock, self._gate:
            return {
                "counters": {reason: self._counters[reason] for reason in COUNTED},
                "series": self._store.series_count,
                "window_bytes": self._store.nbytes,
                "in_flight": self._in_flight,
            }
