"""Back-pressure at the monitor's doors: how much may come in at once.

    throttle = Throttle(max_batch=100_000, max_in_flight=500_000)
    if (refused := throttle.oversized(len(batch))) is not None:
        return refused                              # a batch over max_batch: refused whole
    with throttle.admitted(len(batch)):             # Overloaded past max_in_flight (429)
        ...
    throttle.book({"parse_error": 2})               # refused by a source before the door

Kept apart from the windows (loop/monitor.py) because it needs none of their state and
its own lock: a caller waiting for room never holds the windows' lock. What it refuses is
counted here by reason (``counts``), and the monitor's ``stats`` adds it to its own.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from kernel.errors import Overloaded
from loop.intake import IngestResult, Rejection


class Throttle:
    """Batch size and samples in flight, with the refusals counted (see the module doc)."""

    def __init__(self, max_batch: int, max_in_flight: int) -> None:
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def oversized(self, n: int) -> IngestResult | None:
        """The refusal of a batch of ``n`` samples over ``max_batch`` (counted), else None."""
        if n <= self.max_batch:
            return None
        with self._lock:
            self._counts["oversized_batch"] += n
        message = f"batch of {n} samples exceeds the limit of {self.max_batch}; split it"
        return IngestResult(0, 0, 0, (Rejection(-1, message, "oversized_batch"),))

    @contextmanager
    def admitted(self, n: int) -> Iterator[None]:
        """``n`` samples in flight for the block; ``Overloaded`` (counted as
        ``shed_overload``) when that would pass ``max_in_flight``."""
        with self._lock:
            if self.in_flight + n > self.max_in_flight:
                self._counts["shed_overload"] += n
                raise Overloaded(
                    f"intake busy ({self.in_flight} samples in flight, limit "
                    f"{self.max_in_flight}); retry shortly",
                    retry_after_s=1.0,
                )
            self.in_flight += n
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= n

    def book(self, refused: Mapping[str, int]) -> None:
        """Count points a source refused before they reached the monitor, by reason."""
        counts = {reason: n for reason, n in refused.items() if n > 0}
        if counts:
            with self._lock:
                self._counts.update(counts)

    def counts(self) -> tuple[Counter[str], int]:
        """What was refused here by reason, and the samples in flight now."""
        with self._lock:
            return Counter(self._counts), self.in_flight
