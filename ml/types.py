"""Result types shared by the detectors: what one scored point or window says."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SeriesState(StrEnum):
    """What a detector can say about a point.

    Only ``ANOMALOUS`` is an anomaly finding. ``NO_DATA`` (NaN, inf, a gap) and ``STALE``
    (the series stopped moving) are findings of their own kind so that broken telemetry
    never masquerades as a root cause; ``WARMING_UP`` means the model has not learnt yet.
    """

    OK = "ok"
    ANOMALOUS = "anomalous"
    NO_DATA = "no_data"
    STALE = "stale"
    WARMING_UP = "warming_up"


@dataclass(frozen=True, slots=True)
class PointScore:
    """One scored sample of one series.

    ``score`` is the detector's deviation in units of its own learnt threshold scale
    (``score > threshold`` <=> anomalous); ``expected`` is the baseline value when the
    detector has one. Both are NaN when the state is NO_DATA/STALE/WARMING_UP.
    """

    ts: float
    value: float
    state: SeriesState
    score: float
    threshold: float
    expected: float = float("nan")
    alarm: bool = False  # the first anomalous point after a quiet spell: raise a finding

    @property
    def anomalous(self) -> bool:
        return self.state is SeriesState.ANOMALOUS


@dataclass(frozen=True, slots=True)
class Attribution:
    """How much one metric explains a multivariate anomaly (higher = more)."""

    metric: str
    contribution: float
    deviation: float  # signed robust z-score of the metric against its training baseline
