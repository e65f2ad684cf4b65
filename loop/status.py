"""What the engine reports of itself to /metrics (api/metrics.py reads it at scrape time).

    status = engine.status()          # LoopStatus: plain numbers, no live objects
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoopStatus:
    """What /metrics exports of the loop (api/metrics.py), read at scrape time."""

    failures: Mapping[str, int]  # supervised tasks and dependencies, since start
    failing: Mapping[str, int]  # failures in a row now
    findings: Mapping[str, int]  # what became of findings (opened, joined, deferred, ...)
    held: int
    runs_busy: int
    runs_waiting: int
    outcomes_pending: int | None  # None: the outbox could not be read (SQL out)
    input_quality: Mapping[str, int]
    decider_refusals: Mapping[str, int]  # graph solutions refused by the library
    # faults no rule names, escalated with their ranking, by top component
    unexplained: Mapping[str, int] = field(default_factory=dict)
    # points the monitor took that analysis did not judge, by reason (loop/tick.py in_order)
    analysis_dropped: Mapping[str, int] = field(default_factory=dict)
