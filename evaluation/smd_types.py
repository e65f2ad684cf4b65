"""SMD's labelled anomaly segment, shared by the SMD evaluation's modules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    start: int  # 0-based test row, inclusive
    end: int  # exclusive
    dims: tuple[int, ...]  # 0-based metric indices
