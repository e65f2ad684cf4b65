"""SMD's labelled anomaly segment, shared by the SMD evaluation's modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class Segment:
    start: int  # 0-based test row, inclusive
    end: int  # exclusive
    dims: tuple[int, ...]  # 0-based metric indices


class RankerSetting(TypedDict, total=False):
    """``DeviationRanker`` keyword arguments as the SMD grids write them (``{}``: its
    defaults; ``absolute`` only in the cross-validated grid, evaluation/smd_cv.py)."""

    window: int
    gap: int
    quantile: float
    corr: float
    share: float
    smooth: int
    absolute: float
