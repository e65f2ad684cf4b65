"""The remote-write receiver: decoded request columns -> catalog series -> the monitor, with
no Python work per sample and none per label set it has seen before.

    receiver = RemoteWriteReceiver(monitor, took=engine.took)
    outcome = receiver.receive(body, owner=token_id)   # raises RemoteWriteError (a 4xx)
    outcome.accepted, outcome.refused                  # points by reason; receiver.counters()

Each label set is resolved once through the catalog (rules/selectors.py: its ``__name__``,
matchers, target label) and claimed in the monitor (series identity: loop/identity.py); the
answer is kept per decoder cache slot, with the label set it is for, until the decoder
re-fills that slot or series expire (the monitor's generation): a request decoded before
another one re-filled its slot (requests in flight at once) never takes that one's answer.
Refusals that depend on the moment (a cardinality limit, a label conflict) are not kept:
they are asked again next time. Every point of a decoded request is accounted for: accepted
+ late + duplicate + refused by reason; stale markers (Prometheus' "series ended" NaN) are
counted as ``stale_marker``. What the request held besides float samples (histograms,
exemplars, metadata) and its out-of-order samples are counted here (``counters()``), never
silently skipped.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kernel.errors import InvalidSample
from kernel.ids import label_problem
from loop.monitor import IngestResult, Monitor
from loop.sources.base import DEFAULT_TARGET_LABELS, resolve_target
from loop.sources.remote_write import (
    STALE_NAN_BITS,
    RefusalReason,
    RemoteWriteBatch,
    RemoteWriteDecoder,
    RemoteWriteError,
)
from rules.selectors import identity_of

Took = Callable[[IngestResult], None]


class Decoder(Protocol):
    """What a receiver decodes with: ``RemoteWriteDecoder``, or the frames one worker
    forwards to another (loop/cluster/remote_write.py), each with its own slot cache."""

    @property
    def cache_size(self) -> int: ...

    def decode(self, body: bytes) -> RemoteWriteBatch: ...


COUNTED = (
    "requests",
    "samples",
    "out_of_order",
    "duplicate_timestamps",
    "histograms_skipped",
    "exemplars_skipped",
    "metadata_skipped",
    "series_without_samples",
)


@dataclass
class RemoteWriteOutcome:
    """What became of one request's samples (points by reason)."""

    samples: int
    accepted: int = 0
    late: int = 0
    duplicate: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """The answer to the sender (the route's and a peer's forward alike)."""
        return {
            "samples": self.samples,
            "accepted": self.accepted,
            "late": self.late,
            "duplicate": self.duplicate,
            "refused": dict(sorted(self.refused.items())),
        }


class RemoteWriteReceiver:
    """One per worker: a decoder, its per-slot resolution cache, and counters."""

    def __init__(
        self,
        monitor: Monitor,
        *,
        decoder: Decoder | None = None,
        target_labels: Sequence[str] = DEFAULT_TARGET_LABELS,
        took: Took | None = None,
    ) -> None:
        self.monitor = monitor
        self.decoder: Decoder = decoder or RemoteWriteDecoder()
        self.target_labels = tuple(target_labels)
        self.took = took
        size = self.decoder.cache_size
        self._slot = np.full(size, -1, dtype=np.int64)  # window slot per decoder slot
        self._generation = np.full(size, -1, dtype=np.int64)  # -1: not resolved
        self._reason = np.full(size, None, dtype=object)  # a refusal that always holds
        # the label set (canonical blob) the slot held when resolved: a request decoded
        # before another one refilled its slot must not take that one's answer
        self._key = np.full(size, None, dtype=object)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def receive(self, body: bytes, owner: str | None = None) -> RemoteWriteOutcome:
        """Decode, resolve and ingest one request; ``RemoteWriteError`` refuses it whole."""
        return self.ingest(self.decode(body), owner)

    def decode(self, body: bytes) -> RemoteWriteBatch:
        """Decode one request and count it (a refusal by reason); nothing is ingested yet:
        several workers split a request by target first (loop/cluster/remote_write.py)."""
        try:
            batch = self.decoder.decode(body)
        except RemoteWriteError as exc:
            with self._lock:
                self._counts[f"refused_{exc.reason}"] += 1
            raise
        with self._lock:
            self._count(batch)
        return batch

    def ingest(self, batch: RemoteWriteBatch, owner: str | None = None) -> RemoteWriteOutcome:
        """Resolve and ingest a decoded request (or the part of one this worker keeps)."""
        with self._lock:
            return self._ingest(batch, owner)

    def counters(self) -> dict[str, int]:
        """Requests, samples and what they held besides float samples, by name."""
        with self._lock:
            counts = {name: self._counts[name] for name in COUNTED}
            return counts | {k: v for k, v in sorted(self._counts.items()) if k not in counts}

    def _count(self, batch: RemoteWriteBatch) -> None:
        c = batch.counts
        self._counts.update(
            requests=1,
            samples=c.samples,
            out_of_order=c.out_of_order,
            duplicate_timestamps=c.duplicate_timestamps,
            histograms_skipped=c.histograms_skipped,
            exemplars_skipped=c.exemplars_skipped,
            metadata_skipped=c.metadata_skipped,
            series_without_samples=c.series_without_samples,
        )

    def _ingest(self, batch: RemoteWriteBatch, owner: str | None) -> RemoteWriteOutcome:
        outcome = RemoteWriteOutcome(samples=len(batch.values))
        stale = batch.values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
        for _ in range(3):  # series may expire between claim and write: claim again
            resolved = self._rows(batch, owner)
            if resolved is None:
                continue
            rows, reasons, generation = resolved
            per_row = np.bincount(batch.series, minlength=len(rows))
            refused: Counter[str] = Counter()
            for row, reason in reasons.items():
                refused[reason] += int(per_row[row])
            slots = rows[batch.series]
            taken = slots >= 0
            markers = int(np.count_nonzero(stale & taken))
            if markers:
                refused["stale_marker"] += markers
                taken &= ~stale
            columns = (slots[taken], batch.timestamps_ms[taken] / 1000.0, batch.values[taken])
            if self._write(*columns, generation, refused, outcome):
                return outcome
        raise RemoteWriteError("series kept expiring during this request", RefusalReason.INTERNAL)

    def _write(
        self,
        slots: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        generation: int,
        refused: Counter[str],
        outcome: RemoteWriteOutcome,
    ) -> bool:
        """Write in chunks the monitor takes; False when its slots were stale before any
        was written (claim again). Chunks after a stale one are refused and counted."""
        step = self.monitor.max_batch
        for start in range(0, max(len(slots), 1), step):
            part = slice(start, start + step)
            result = self.monitor.ingest_slots(
                slots[part],
                ts[part],
                values[part],
                generation,
                refused=refused if start == 0 else None,
                want_latest=self.took is not None,
            )
            if result is None and start == 0:
                return False
            if result is None:  # series expired between two chunks of one request
                lost = Counter({"expired_during_write": len(slots) - start})
                self.monitor.book(lost)
                outcome.refused.update(lost)
                return True
            if start == 0:
                outcome.refused.update(refused)
            outcome.accepted += result.accepted
            outcome.late += result.late
            outcome.duplicate += result.duplicate
            outcome.refused.update(r.reason for r in result.rejected)
            if self.took is not None:
                self.took(result)
        return True

    def _rows(
        self, batch: RemoteWriteBatch, owner: str | None
    ) -> tuple[np.ndarray, dict[int, str], int] | None:
        """Per label set of the request: its window slot, or -1 and the refusal reason, and
        the monitor generation they hold for; None when series expired meanwhile."""
        if batch.cache_slots is None:
            raise RemoteWriteError("decoder gave no cache slots", RefusalReason.INTERNAL)
        cached = batch.cache_slots
        if batch.refilled:
            refilled = np.asarray(batch.refilled, dtype=np.int64)
            self._generation[refilled] = -1
            self._reason[refilled] = None
        generation = self.monitor.generation
        reasons: dict[int, str] = {}
        keys = np.empty(len(batch.keys), dtype=object)
        keys[:] = batch.keys
        same = (self._key[cached] == keys).astype(bool)
        fresh = (self._generation[cached] == generation) & same
        known = self._reason[cached].copy()
        known[~same] = None  # another label set's refusal
        pending: list[tuple[int, str, str, tuple[tuple[str, str], ...]]] = []
        for row in np.flatnonzero(~fresh).tolist():
            reason = known[row]
            if reason is not None:
                reasons[row] = reason
                continue
            labels = dict(batch.label_sets[row])
            name = labels.pop("__name__", "")
            target = resolve_target(labels, self.target_labels)
            if target is not None:
                labels["target"] = target
            try:
                if (problem := label_problem(labels)) is not None and target is not None:
                    raise InvalidSample(problem[1], problem[0])
                resolved = self.monitor.catalog.index.resolve(name, labels)
            except InvalidSample as exc:
                self._reason[cached[row]] = reasons[row] = exc.reason
                self._key[cached[row]] = keys[row]
                self._generation[cached[row]] = -1
                continue
            pending.append((row, resolved.target, resolved.series, identity_of(labels)))
        if pending:
            rows, targets, series, identities = zip(*pending, strict=True)
            slots, claimed_at = self.monitor.claim(targets, series, identities, owner)
            if claimed_at != generation:
                return None
            for row, slot in zip(rows, slots.tolist(), strict=True):
                if slot >= 0:
                    self._slot[cached[row]] = slot
                    self._generation[cached[row]] = claimed_at
                    self._key[cached[row]], self._reason[cached[row]] = keys[row], None
                else:
                    reasons[row] = self.monitor.refusal_of(slot)
        current = (self._generation[cached] == generation) & (self._key[cached] == keys)
        out = np.where(current.astype(bool), self._slot[cached], -1)
        return out, reasons, generation
