"""Sustained anomalies no rule explains: when they become an incident of their own.

    watch = SustainedAnomalies(SustainedPolicy(min_series=3, min_duration_s=30))
    if watch.due(time.monotonic()):
        engine.hand_over(watch.check(analyzer.deviating()))   # [Finding(kind=anomaly)]

Incidents open from rule findings. A fault nobody wrote a rule for moves metrics too:
series past their catalog threshold (for its ``duration_s``) or beyond their learnt ML
baseline. When at least ``min_series`` series of one target have been so for
``min_duration_s`` (counted from the moment the ``min_series``-th of them went wrong, on
the samples' clock), one ``anomaly`` finding (rule id ``unexplained``) is handed to the
consumer, which opens an incident for it like any other (admission, budget per minute),
unless a rule finding of that target is held or an incident of it is in flight
(loop/consume.py: released as ``explained``). Once per episode: the target must fall
below ``min_series`` before it can raise another, so an escalated unknown fault does not
page again every few seconds. ``min_series=0`` turns the trigger off.

The incident's analysis ranks the target's components without rules
(loop/unexplained.py) and decide escalates it (loop/steps/analysis.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kernel.models import Evidence, Finding, FindingKind

RULE_ID = "unexplained"  # the rule id of an unexplained-anomaly finding (no such rule)
EVIDENCE = 20  # evidence kept on the finding (the earliest first)


@dataclass(frozen=True)
class SustainedPolicy:
    """How many series of a target must stay abnormal, how long, before it pages."""

    min_series: int = 3  # 0: off
    min_duration_s: float = 30.0
    every_s: float = 5.0  # how often the targets are checked

    def __post_init__(self) -> None:
        if self.min_series < 0 or self.min_duration_s < 0 or self.every_s <= 0:
            raise ValueError("min_series and min_duration_s must be >= 0, every_s > 0")


def sustained_since(evidence: Sequence[Evidence], min_series: int) -> float | None:
    """Pure: since when at least ``min_series`` distinct series have been abnormal (the
    ``min_series``-th earliest onset), or None when fewer are."""
    first: dict[str, float] = {}
    for e in evidence:
        first[e.series] = min(e.since, first.get(e.series, math.inf))
    if min_series <= 0 or len(first) < min_series:
        return None
    return sorted(first.values())[min_series - 1]


def unexplained_finding(target: str, evidence: Sequence[Evidence]) -> Finding:
    """Pure: the finding an episode raises: every abnormal series, the earliest onsets as
    evidence; ``score`` grows with how many series are abnormal (10 or more: 1)."""
    ordered = sorted(evidence, key=lambda e: (e.since, e.series))
    series = tuple(dict.fromkeys(e.series for e in ordered))
    return Finding(
        kind=FindingKind.anomaly,
        target=target,
        series=series,
        rule_id=RULE_ID,
        started_at=ordered[0].since,
        score=min(1.0, len(series) / 10),
        evidence=tuple(ordered[:EVIDENCE]),
    )


class SustainedAnomalies:
    """The trigger (see the module docstring); ``counts``: episodes ``raised``."""

    def __init__(self, policy: SustainedPolicy) -> None:
        self.policy = policy
        self.counts: Counter[str] = Counter()
        self._latched: set[str] = set()  # targets whose episode has raised its finding
        self._checked = -math.inf

    def due(self, now: float) -> bool:
        """Whether a check is due at ``now`` (monotonic seconds); off: never."""
        if self.policy.min_series <= 0 or now - self._checked < self.policy.every_s:
            return False
        self._checked = now
        return True

    def check(self, deviating: Mapping[str, tuple[float, Sequence[Evidence]]]) -> list[Finding]:
        """One finding per target whose episode has lasted long enough and has not raised
        one yet; ``deviating``: target -> (its newest sample time, abnormal series)."""
        out = []
        ongoing = set()
        for target, (now, evidence) in deviating.items():
            since = sustained_since(evidence, self.policy.min_series)
            if since is None:
                continue
            ongoing.add(target)
            if target in self._latched or now - since < self.policy.min_duration_s:
                continue
            self._latched.add(target)
            self.counts["raised"] += 1
            out.append(unexplained_finding(target, evidence))
        self._latched &= ongoing  # an episode ends below min_series: the next may raise
        return out
