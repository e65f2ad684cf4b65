"""One streaming detector per (target, series), turned into events the analyzer can use.

The analyzer feeds every sample it sees; the bank answers with a :class:`SeriesEvent`
only when something changes: an anomaly alarm (with the time the series *started* to
deviate: its onset), or the start of a STALE or NO_DATA spell. Silence is found by
:meth:`DetectorBank.silent`: a series that has sent nothing for longer than twice the
longest interval it showed while warming up is NO_DATA.

    bank = DetectorBank(StreamingParams(warmup=600))
    for s in samples:
        event = bank.observe(s.labels["target"], s.series, s.ts, s.value)
        if event is not None and event.state is SeriesState.ANOMALOUS:
            findings.append(...)          # event.onset_ts, event.kind, event.score
    for event in bank.silent(now): ...    # NO_DATA findings

Everything in it pickles, so ``save_model(bank, path, ...)`` persists the whole bank.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ml.onset import onset_index
from ml.types import SeriesState
from ml.univariate import StreamingDetector, StreamingParams

KINDS = ("level", "step", "shape")


@dataclass(frozen=True, slots=True)
class SeriesEvent:
    """A state change of one series worth a finding.

    ``kind`` says which deviation raised an alarm (level, step or shape) or is
    ``stale``/``no_data``; ``onset_ts`` is when the excursion began (for STALE: the first
    sample of the flat run; for NO_DATA: the last sample seen)."""

    target: str
    series: str
    state: SeriesState
    ts: float
    onset_ts: float
    score: float
    value: float
    kind: str


class _Track:
    def __init__(self, params: StreamingParams, history: int) -> None:
        self.detector = StreamingDetector(params)
        self.ts: deque[float] = deque(maxlen=history)
        self.scores: deque[float] = deque(maxlen=history)
        self.state = SeriesState.WARMING_UP
        self.last_ts = math.nan
        self.last_value = math.nan
        self.flat_since = math.nan
        self.max_interval = 0.0  # longest gap between samples during warm-up
        self.silent_reported = False


class DetectorBank:
    """See the module docstring. ``overrides`` maps a series name to its own parameters
    (e.g. a shorter warm-up for a slow series)."""

    def __init__(
        self,
        params: StreamingParams | None = None,
        overrides: dict[str, StreamingParams] | None = None,
        onset_history: int = 600,
    ) -> None:
        self.params = params or StreamingParams()
        self.overrides = dict(overrides or {})
        self.onset_history = onset_history
        self._tracks: dict[tuple[str, str], _Track] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def state(self, target: str, series: str) -> SeriesState | None:
        track = self._tracks.get((target, series))
        return track.state if track else None

    def observe(self, target: str, series: str, ts: float, value: float) -> SeriesEvent | None:
        """Feed one sample (in time order per series); an event when the state changed."""
        key = (target, series)
        track = self._tracks.get(key)
        if track is None:
            params = self.overrides.get(series, self.params)
            track = self._tracks[key] = _Track(params, self.onset_history)
        det = track.detector
        if math.isfinite(track.last_ts) and det.count <= det.p.warmup:
            track.max_interval = max(track.max_interval, ts - track.last_ts)
        if math.isfinite(value):
            if value != track.last_value:
                track.flat_since = ts
            track.last_value = value
            track.last_ts = ts
            track.silent_reported = False
        point = det.update(ts, value)
        previous, track.state = track.state, point.state
        track.ts.append(ts)
        track.scores.append(point.score)
        if point.alarm:
            scores = np.array(track.scores)
            finite = scores[np.isfinite(scores)]
            # "elevated" = above the median of the recent scores of this very series
            level = float(np.median(finite)) if finite.size else 0.0
            start = onset_index(scores, level, len(scores) - 1)
            kind = KINDS[int(np.argmax(det.last_ratios))]
            return SeriesEvent(
                target, series, point.state, ts, track.ts[start], point.score, value, kind
            )
        if point.state in (SeriesState.STALE, SeriesState.NO_DATA) and previous != point.state:
            onset = track.flat_since if point.state is SeriesState.STALE else track.last_ts
            kind = "stale" if point.state is SeriesState.STALE else "no_data"
            return SeriesEvent(target, series, point.state, ts, onset, math.nan, value, kind)
        return None

    def silent(self, now: float) -> list[SeriesEvent]:
        """NO_DATA events for series that stopped sending (each reported once per spell).
        A series still warming up has not shown its rhythm yet and is never reported."""
        out = []
        for (target, series), track in self._tracks.items():
            limit = 2 * track.max_interval
            if track.detector.count <= track.detector.p.warmup or limit <= 0:
                continue
            if now - track.last_ts > limit and not track.silent_reported:
                track.silent_reported = True
                track.state = SeriesState.NO_DATA
                out.append(
                    SeriesEvent(
                        target,
                        series,
                        SeriesState.NO_DATA,
                        now,
                        track.last_ts,
                        math.nan,
                        math.nan,
                        "no_data",
                    )
                )
        return out
