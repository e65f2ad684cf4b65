"""Metric pushes are audited per caller, route and outcome and minute, not per request.

A Prometheus remote-writing through four shards posts ~250 times a second: one audit row
each grew the table by ~20 M rows a day and cost a push more than its samples did (a
SQLite commit per request: docs/BENCHMARKS.md). So the push routes (``PUSH_PATHS``) are
tallied: the first call of a (caller, method, path, status) in a window is written at once,
as any call is (a new token pushing, a sender starting to be refused: seen immediately);
its repeats in that window become one row, ``N more like this`` with their first and last
time, written when the window closes (at the next push after it) or when the daemon stops
(``flush``). A crash loses at most one window's repeat count, never a first row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kernel.models import utcnow

PUSH_PATHS = frozenset(
    {
        "/v1/samples",
        "/v1/samples/prometheus",
        "/v1/metrics",
        "/api/v1/write",
        "/v1/write",
        "/v1/cluster/write",
    }
)
WINDOW_S = 60.0


@dataclass(frozen=True)
class Call:
    """One audited call: ``actor`` is the request's principal (or None), ``who`` its name."""

    actor: Any
    who: str
    method: str
    path: str
    status: int
    client: str = ""

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.who, self.method, self.path, self.status)


@dataclass
class _Repeats:
    call: Call
    count: int = 0
    first: datetime = field(default_factory=utcnow)
    last: datetime = field(default_factory=utcnow)


Row = tuple[Call, str]  # a call and the detail of its audit row


class PushTally:
    """The pushes of the current window, by key (thread-safe: requests run concurrently)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str, int], _Repeats] = {}
        self._since = clock()

    def note(self, call: Call) -> list[Row]:
        """The rows to write now: the closed window's repeats, and ``call`` if it is the
        first of its key in this window."""
        with self._lock:
            rows = self._close() if self._clock() - self._since >= self.window_s else []
            repeats = self._open.get(call.key)
            if repeats is None:
                self._open[call.key] = _Repeats(call)
                rows.append((call, "push: the first like this in the window; repeats are tallied"))
            else:
                repeats.count += 1
                repeats.last = utcnow()
            return rows

    def flush(self) -> list[Row]:
        """Every pending repeat count (the daemon stops)."""
        with self._lock:
            return self._close()

    def _close(self) -> list[Row]:
        rows = [
            (r.call, f"{r.count} more like this, {r.first:%H:%M:%S}-{r.last:%H:%M:%S} UTC")
            for r in self._open.values()
            if r.count
        ]
        self._open = {}
        self._since = self._clock()
        return rows
