"""When did a series start to deviate? Walk back from an alarm to the start of the
excursion that led to it.

The excursion is the run of points, ending at the alarm, whose score stays above the
``elevated`` level; that level is a quantile of the series' own training scores (by
default the median: "worse than usual"), so nothing here is a constant in data units.

    level = elevated_level(train_scores)
    start = onset_index(scores, level, alarm_index)
"""

from __future__ import annotations

import numpy as np


def elevated_level(train_scores: np.ndarray, quantile: float = 0.5) -> float:
    """The score above which a point counts as part of an excursion."""
    s = np.asarray(train_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite training scores")
    return float(np.quantile(s, quantile))


def onset_index(scores: np.ndarray, level: float, alarm_index: int) -> int:
    """First index of the unbroken run of scores > ``level`` that ends at ``alarm_index``.
    NaN (no data) does not break the run: a gap inside an excursion is still the
    excursion. Returns ``alarm_index`` itself when the point before it was normal."""
    s = np.asarray(scores, dtype=np.float64)
    if not 0 <= alarm_index < s.size:
        raise IndexError(f"alarm_index {alarm_index} outside 0..{s.size - 1}")
    normal = np.flatnonzero(s[:alarm_index] <= level)  # NaN compares False: not normal
    start = int(normal[-1]) + 1 if normal.size else 0
    # do not start an excursion on missing points
    while start < alarm_index and not np.isfinite(s[start]):
        start += 1
    return start


def onset_order(onsets: dict[str, float]) -> list[tuple[str, float]]:
    """Series sorted by onset time, earliest first (ties by name, for stable reports)."""
    return sorted(onsets.items(), key=lambda kv: (kv[1], kv[0]))
