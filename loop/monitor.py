"""Monitor: the door samples come in by, and the sliding windows they are kept in.

    monitor = Monitor(load_catalog(), window_s=300)
    result = monitor.ingest([{"series": "cache_hit_ratio", "labels": {"target": "a"},
                              "ts": time.time(), "value": 0.93}])      # validated, per sample
    result = monitor.ingest_columns(targets, series, ts, values)      # vectorised fast path
    monitor.ingest(samples, owner=token_id, refused={"parse_error": 2})  # an API push
    slots, generation = monitor.claim(targets, series, identities)    # remote-write: resolved
    monitor.ingest_slots(slots[rows], ts, values, generation)         # once, then by slot
    monitor.latest("a", "cache_hit_ratio"); monitor.stats()

A point is filed under a catalog series by its name and labels (the catalog's matchers and
target label: rules/selectors.py); a second label set for the same (target, series) is
refused as ``label_conflict``, never merged (loop/identity.py); derived series are
computed as their operands come in (loop/derived.py). Docs: docs/INTAKE.md.

Nothing is lost silently. A bad sample (unknown series, NaN/inf, true/false, wrong type,
a missing target or one that is not an identifier (kernel/ids.py), bad labels, a timestamp
far in the past or future) is rejected with its index and reason; a sample older than or
equal to its series' newest is dropped as *late* or *duplicate* (windows.py); a batch over
``max_batch`` is refused whole; when more than ``max_in_flight`` samples are being
ingested at once the call raises ``Overloaded`` (the API answers 429 + Retry-After). A new
series past the cardinality limits (``Limits``: live series and targets, in all and per
``owner``, the API token that pushes) is refused as ``series_limit``, ``target_limit``,
``token_series_limit`` or ``token_target_limit``; existing series keep flowing. What a
source refused before the monitor saw it (a line that does not parse) is booked here too
(``refused=``), so for every push: points sent = accepted + late + duplicate + refusals,
and ``stats()`` holds every one of them by reason. Thread-safe: the twin pushes from its
own thread while the daemon and the API read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kernel.ids import is_identifier
from kernel.models import Sample
from loop.derived import Deriver
from loop.identity import CONFLICT_TEXT, LABEL_CONFLICT, Identities
from loop.intake import (
    COUNTED,
    DEFAULT_LIMITS,
    IngestResult,
    Latest,
    Layout,
    Point,
    Rejection,
    column_checks,
    parse_sample,
    refusal_texts,
    resolve_samples,
)
from loop.throttle import Throttle
from loop.windows import REFUSALS, Limits, WindowStore
from rules.catalog import Catalog

CONFLICT_MARK = -1 - len(REFUSALS)
"""A slot mark below the limits' (windows.REFUSALS): another label set owns the series."""

__all__ = [
    "CONFLICT_MARK",
    "COUNTED",
    "IngestResult",
    "Latest",
    "Layout",
    "Monitor",
    "Point",
    "Rejection",
    "parse_sample",
]


class Monitor:
    """The windows of every live series and the doors samples come in by (``ingest``,
    ``ingest_columns``, ``claim`` + ``ingest_slots``), with every refusal counted by reason.

    Why one class of ~330 lines: the doors, the series identities, the cardinality limits
    and the windows share one lock and one set of counters, so every point is counted
    exactly once whichever door it took; the rest lives beside it (validation and column
    checks: loop/intake.py, back-pressure: loop/throttle.py, the window arrays:
    loop/windows.py, identities: loop/identity.py, derived series: loop/derived.py).
    """

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
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.capacity = window_s
        self.max_age_s = max_age_s
        self.max_future_s = max_future_s
        self.expire_after_s = expire_after_s
        self.clock = clock
        self.limits = limits
        self._store = WindowStore(window_s, limits=limits)
        self._identities = Identities()
        self._deriver = Deriver(catalog)
        self._refusal_text = refusal_texts(limits)
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._throttle = Throttle(max_batch, max_in_flight)

    # -- intake -----------------------------------------------------------------------

    @property
    def max_batch(self) -> int:
        """The most samples one call takes (a larger batch is refused whole)."""
        return self._throttle.max_batch

    def _window_of_now(self) -> tuple[float, float]:
        """The oldest and newest timestamps taken now."""
        now = self.clock()
        return now - self.max_age_s, now + self.max_future_s

    def book(self, refused: Mapping[str, int]) -> None:
        """Count points a source refused before they reached the monitor, by reason."""
        self._throttle.book(refused)

    def ingest(
        self,
        batch: Sequence[Sample | Mapping[str, Any]] | Iterable[Any],
        *,
        owner: str | None = None,
        refused: Mapping[str, int] | None = None,
    ) -> IngestResult:
        """Validated path for JSON-ish input: each sample checked and rejected on its own.

        ``owner``: who pushes (an API token id), for the per-owner cardinality limits;
        ``refused``: points of the same push its source refused already, booked by reason.
        """
        if refused:
            self.book(refused)
        items = batch if isinstance(batch, Sequence) else list(batch)
        if (oversized := self._throttle.oversized(len(items))) is not None:
            return oversized
        with self._throttle.admitted(len(items)):
            rows, rejected = resolve_samples(
                items, self.catalog, self.clock(), self.max_age_s, self.max_future_s
            )
            return self._write(
                (rows.targets, rows.series, rows.identities),
                rows.ts,
                rows.values,
                rejected,
                indices=rows.indices,
                owner=owner,
            )

    def layout(self, targets: Sequence[str], series: Sequence[str]) -> Layout:
        """Resolve (target, series) to slots once; a bad target or an unknown series is
        marked (rejected on every ingest), as is a new series past the limits."""
        good_target = {t: is_identifier(t) for t in set(targets)}
        valid = np.fromiter((good_target[t] for t in targets), dtype=bool, count=len(targets))
        known = np.fromiter((s in self.catalog for s in series), dtype=bool, count=len(series))
        usable = known & valid
        with self._lock:
            slots = self._store.slots_for(
                [t for t, k in zip(targets, usable, strict=True) if k],
                [s for s, k in zip(series, usable, strict=True) if k],
            )
            full = np.full(len(series), -1, dtype=np.int64)
            full[usable] = slots
            generation = self._store.generation
        return Layout(tuple(targets), tuple(series), usable, full, generation, valid)

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
        if layout.generation != self._store.generation:  # slots were freed (room again)
            layout = self.layout(layout.targets, layout.series)
        n = len(layout.series)
        if (refused := self._throttle.oversized(n)) is not None:
            return refused
        with self._throttle.admitted(n):
            ts = np.asarray(ts, dtype=np.float64)
            values = np.asarray(values, dtype=np.float64)
            known = layout.known
            valid = layout.valid_target if layout.valid_target is not None else known
            good, rejected = column_checks(ts, values, self._window_of_now(), known, valid)
            return self._write(
                layout.slots[good],
                ts[good],
                values[good],
                rejected,
                want_latest,
                indices=np.flatnonzero(good),
            )

    def _write(
        self,
        slots: np.ndarray | tuple[list[str], list[str], list[tuple[tuple[str, str], ...]]],
        ts: np.ndarray,
        values: np.ndarray,
        rejected: list[Rejection],
        want_latest: bool = True,
        *,
        indices: np.ndarray,
        owner: str | None = None,
    ) -> IngestResult:
        """Append under the lock; a sample whose new series got no slot (a limit) is
        rejected under that limit's reason, pointing at its index in the batch."""
        with self._lock:
            if isinstance(slots, tuple):
                slots = self._claim(*slots, owner=owner)
            refused = slots < 0
            if refused.any():
                marks = slots[refused]
                for mark in np.unique(marks).tolist():
                    reason = REFUSALS[-1 - mark] if mark > CONFLICT_MARK else LABEL_CONFLICT
                    text = self._refusal_text.get(reason, CONFLICT_TEXT)
                    rejected.extend(
                        Rejection(i, text, reason) for i in indices[refused][marks == mark].tolist()
                    )
                rejected.sort(key=lambda r: r.index)
                keep = ~refused
                slots, ts, values = slots[keep], ts[keep], values[keep]
            outcome = self._store.append(slots, ts, values)
            touched = outcome.touched
            if self._deriver and len(touched):
                made = self._deriver.write(self._store, touched, self._counters)
                touched = np.union1d(touched, made)
            latest: Latest | tuple[()] = ()
            if want_latest:  # columns: no object per point (analysis reads them as arrays)
                last_ts, last_values = self._store.latest_many(touched)
                source = (self._store, self._store.generation)
                latest = Latest(self._store.keys_of(touched), last_ts, last_values, touched, source)
            self._counters["accepted"] += outcome.accepted
            self._counters["late"] += outcome.late
            self._counters["duplicate"] += outcome.duplicate
            self._counters.update(r.reason for r in rejected)
        return IngestResult(
            outcome.accepted, outcome.late, outcome.duplicate, tuple(rejected), latest
        )

    def _claim(
        self,
        targets: Sequence[str],
        series: Sequence[str],
        identities: Sequence[tuple[tuple[str, str], ...]],
        owner: str | None = None,
    ) -> np.ndarray:
        """Slots (under the lock) whose label set owns them; ``CONFLICT_MARK`` where another
        label set does (never merged), a limit's mark where a new series got no slot."""
        slots = self._store.slots_for(targets, series, owner=owner)
        return self._identities.mark_conflicts(slots, identities, CONFLICT_MARK)

    def claim(
        self,
        targets: Sequence[str],
        series: Sequence[str],
        identities: Sequence[tuple[tuple[str, str], ...]],
        owner: str | None = None,
    ) -> tuple[np.ndarray, int]:
        """Window slots of resolved rows for a caller that keeps them (the remote-write
        receiver), and the generation they hold for (see ``ingest_slots``). Negative marks:
        a limit (``windows.REFUSALS``) or ``CONFLICT_MARK``; ``refusal_of`` names them."""
        with self._lock:
            return self._claim(targets, series, identities, owner), self._store.generation

    @property
    def generation(self) -> int:
        """Bumped when series expire: slots from an earlier ``claim`` may be stale."""
        return self._store.generation

    @staticmethod
    def refusal_of(mark: int) -> str:
        """The counter a negative slot mark from ``claim`` is booked under."""
        return LABEL_CONFLICT if mark <= CONFLICT_MARK else REFUSALS[-1 - mark]

    def ingest_slots(
        self,
        slots: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        generation: int,
        *,
        refused: Mapping[str, int] | None = None,
        want_latest: bool = True,
    ) -> IngestResult | None:
        """Columns of samples whose slots came from ``claim`` (all >= 0), with what the
        caller refused before (booked by reason). ``None`` when the slots are stale (series
        expired meanwhile): claim again. Same time rules and counters as every door."""
        n = len(slots)
        if (oversized := self._throttle.oversized(n)) is not None:
            return oversized
        with self._throttle.admitted(n):
            if generation != self._store.generation:
                return None
            if refused:
                self.book(refused)
            good, rejected = column_checks(ts, values, self._window_of_now())
            return self._write(
                slots[good],
                ts[good],
                values[good],
                rejected,
                want_latest,
                indices=np.flatnonzero(good),
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

    def labels_of(self, target: str, series: str) -> tuple[tuple[str, str], ...]:
        """The label set (besides the target) that feeds ``series`` of ``target``: what a
        finding on it carries to a solution's ``from_label`` parameters."""
        with self._lock:
            slot = self._store.find(target, series)
            owner = None if slot is None else self._identities.owner(slot)
        return owner if isinstance(owner, tuple) else ()

    def targets(self) -> list[str]:
        with self._lock:
            return self._store.targets()

    def expire(self, now: float | None = None) -> int:
        """Forget series that sent nothing for ``expire_after_s`` (bounded memory)."""
        with self._lock:
            freed = self._store.expire(self.clock() if now is None else now, self.expire_after_s)
            if freed:
                self._identities.prune(self._store.is_live)
            self._counters["expired_series"] += freed
            return freed

    def owner_usage(self, owner: str) -> tuple[int, int]:
        """(live series, live targets) created by ``owner`` (an API token id)."""
        with self._lock:
            return self._store.owner_counts(owner)

    def stats(self) -> dict[str, Any]:
        """Counters by reason since start: what was taken, and everything that was not
        (the monitor's reasons always, any other a source booked as soon as it did)."""
        refused, in_flight = self._throttle.counts()
        with self._lock:
            taken = self._counters + refused
            counters = {reason: taken[reason] for reason in COUNTED}
            counters |= {r: n for r, n in sorted(taken.items()) if r not in counters}
            return {
                "counters": counters,
                "series": self._store.series_count,
                "targets": self._store.target_count,
                "window_bytes": self._store.nbytes,
                "in_flight": in_flight,
                "limits": {
                    "series": self.limits.series,
                    "targets": self.limits.targets,
                    "series_per_token": self.limits.series_per_owner,
                    "targets_per_token": self.limits.targets_per_owner,
                },
            }
