"""The values the rule-free ranking passes between its modules (:mod:`ml.component_rca`,
:mod:`ml.rca_sharing`): a series in, a deviation out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Series:
    """One metric of one component: timestamps (seconds, any order) and values (NaN =
    missing)."""

    component: str
    metric: str
    ts: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class MetricDeviation:
    """How far one series strayed in the window. ``score`` is in units of its usual
    deviation (>= 0); ``z`` the signed peak in baseline scales. The series is abnormal
    when ``score`` is beyond the setting's limit; ``onset`` is then the time of its
    first window sample beyond that limit (None: not abnormal)."""

    component: str
    metric: str
    score: float
    z: float
    baseline: float
    value: float
    onset: float | None
    shared_with: int = 1  # components reporting the identical series
    alike: int = 1  # series of the same component that move with it (merge_alike)

    @property
    def abnormal(self) -> bool:
        return self.onset is not None


