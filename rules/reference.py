"""The catalog thresholds sample by sample: the readable reference of rules/thresholds.py.

    tracker = ThresholdTracker(catalog)            # every catalog series, crit + duration
    change = tracker.update("t", "cache_hit_ratio", ts, value)   # Change | None
    changes = tracker.sweep("t", now)                             # gaps: retract, no_data

The analyzer runs ``ThresholdColumns`` (rules/thresholds.py), the same state machine over
``[targets, series]`` arrays; tests/rules/test_thresholds.py checks the two against each
other sample for sample. Read this one for the rules: a breach held ``duration_s`` makes a
series abnormal, it is normal again back within warn (hysteresis), and the input guards of
rules/signals.py (flat-lining, gaps) apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.catalog import Catalog, MetricSpec
from rules.compiler import AbnormalFact
from rules.signals import NOISY_RUN, Change, QualityEvent


@dataclass
class _SeriesState:
    last_ts: float | None = None
    last_value: float = 0.0
    last_change_ts: float = 0.0
    ever_varied: bool = False
    run: int = 0  # consecutive samples that each changed the value
    breach_noisy: bool = False
    breach_since: float | None = None
    breach_first: float = 0.0
    breach_varied: bool = False
    fact: AbnormalFact | None = None
    flat_reported: bool = False
    gap_reported: bool = False


class ThresholdTracker:
    """Catalog thresholds: normal -> breaching -> abnormal (after ``duration_s``) -> normal
    (back within warn: hysteresis, so a value hovering at the line does not flap)."""

    def __init__(self, catalog: Catalog, flat_after_s: float = 120.0, gap_s: float = 60.0) -> None:
        self.catalog = catalog
        self.flat_after_s = flat_after_s
        self.gap_s = gap_s
        self.events: list[QualityEvent] = []
        self._states: dict[str, dict[str, _SeriesState]] = {}

    def _state(self, target: str, series: str) -> _SeriesState:
        return self._states.setdefault(target, {}).setdefault(series, _SeriesState())

    def update(self, target: str, series: str, ts: float, value: float) -> Change | None:
        spec: MetricSpec = self.catalog[series]
        state = self._state(target, series)
        if state.last_ts is None or value != state.last_value:
            state.ever_varied = state.ever_varied or state.last_ts is not None
            state.run = state.run + 1 if state.last_ts is not None else 0
            state.last_change_ts = ts
            state.flat_reported = False
        else:
            state.run = 0
        state.last_ts, state.last_value, state.gap_reported = ts, value, False
        frozen = state.ever_varied and ts - state.last_change_ts >= self.flat_after_s
        if state.fact is not None:
            if spec.is_healthy(value):
                return self._recover(state)
            if frozen:
                self._flat(target, series, state, spec)
                return self._recover(state)
            return None
        if not spec.is_breach(value, "crit"):
            state.breach_since = None
            return None
        if state.breach_since is None:
            state.breach_since, state.breach_first, state.breach_varied = ts, value, False
            state.breach_noisy = state.run >= NOISY_RUN
        state.breach_varied = state.breach_varied or value != state.breach_first
        if ts - state.breach_since < spec.duration_s or state.flat_reported:
            return None  # (a frozen series is judged again once its value moves)
        if state.breach_noisy and not state.breach_varied and spec.duration_s > 0:
            # a series that used to move repeats one bad value: a stuck source, not a fault
            if ts - state.breach_since >= self.flat_after_s:
                self._flat(target, series, state, spec)
            return None
        state.fact = AbnormalFact(
            target=target,
            series=series,
            value=value,
            threshold=spec.crit,
            direction=spec.bad,
            since=state.breach_since,
        )
        return Change(state.fact, abnormal=True)

    @staticmethod
    def _recover(state: _SeriesState) -> Change:
        assert state.fact is not None
        fact, state.fact, state.breach_since = state.fact, None, None
        return Change(fact, abnormal=False)

    def _flat(self, target: str, series: str, state: _SeriesState, spec: MetricSpec) -> None:
        if state.flat_reported:
            return
        state.flat_reported = True
        self.events.append(
            QualityEvent(
                "stale", "flat", target, series, state.last_value, spec.crit, state.last_change_ts
            )
        )

    def sweep(self, target: str, now: float, forget_after_s: float = 3600.0) -> list[Change]:
        """Series of ``target`` silent for ``gap_s`` at ``now``: retract, report no_data."""
        changes: list[Change] = []
        states = self._states.get(target, {})
        for series, state in list(states.items()):
            if state.last_ts is None or now - state.last_ts < self.gap_s:
                continue
            if now - state.last_ts >= forget_after_s:
                if state.fact is not None:
                    changes.append(self._recover(state))
                del states[series]
                continue
            if not state.gap_reported:
                state.gap_reported = True
                self.events.append(
                    QualityEvent(
                        "no_data",
                        "gap",
                        target,
                        series,
                        now - state.last_ts,
                        self.gap_s,
                        state.last_ts,
                    )
                )
            if state.fact is not None:
                changes.append(self._recover(state))
            state.breach_since = None
        return changes

    def abnormal(self, target: str) -> list[AbnormalFact]:
        return [s.fact for s in self._states.get(target, {}).values() if s.fact is not None]

    def last_seen(self, target: str, series: str) -> float | None:
        state = self._states.get(target, {}).get(series)
        return state.last_ts if state else None

    def last_value(self, target: str, series: str) -> float | None:
        state = self._states.get(target, {}).get(series)
        return state.last_value if state else None

    def targets(self) -> list[str]:
        return list(self._states)
