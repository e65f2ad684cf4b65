"""Signals: pure per-(target, series) state machines that turn samples into facts.

    tracker = ThresholdTracker(catalog)            # every catalog series, crit + duration
    change = tracker.update("t", "cache_hit_ratio", ts, value)   # Change | None
    signals = SignalTracker(conditions)            # the rules' own thresholds, rates, absences
    changes = signals.update("t", series, ts, value) + signals.sweep("t", now, last_seen)

Both also guard against bad input, so that it cannot become a false root cause; what they
notice is a ``QualityEvent`` (the analyzer turns it into a ``no_data``/``stale`` finding):

- flat-lining: a noisy series (its last samples all differed) that jumps to the bad side
  and then repeats one value exactly is not confirmed abnormal (a stuck or zeroed source;
  a real fault keeps its noise), and an abnormal series that freezes for ``flat_after_s``
  is retracted; both are reported ``stale`` once per episode;
- gaps: ``sweep`` retracts an abnormal series that sent nothing for ``gap_s`` and reports it
  ``no_data`` (once per gap); a sample coming back re-arms it;
- counter resets: a ``counter: true`` rate condition reads a drop as a reset (Prometheus'
  ``increase``), never as a fall.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rules.catalog import Catalog, MetricSpec
from rules.compiler import AbnormalFact
from rules.spec import Condition, ConditionKind

NOISY_RUN = 3  # a series whose last 3 samples all changed is "noisy": it is expected to move


@dataclass(frozen=True)
class Change:
    """A signal turned true (``abnormal``) or false."""

    fact: AbnormalFact
    abnormal: bool


@dataclass(frozen=True)
class QualityEvent:
    """Input that cannot be trusted: ``kind`` no_data|stale, ``reason`` gap|flat|clock_skew|late."""

    kind: str
    reason: str
    target: str
    series: str
    value: float
    limit: float
    since: float


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


@dataclass
class _Signal:
    breach_since: float | None = None
    fact: AbnormalFact | None = None


@dataclass
class _History:
    points: deque[tuple[float, float]] = field(default_factory=deque)


class SignalTracker:
    """The rules' own conditions (custom thresholds, rates of change, absences) for the
    series they name; plain catalog thresholds are the ThresholdTracker's."""

    def __init__(self, conditions: Iterable[Condition], catalog: Catalog) -> None:
        self.catalog = catalog
        self.by_series: dict[str, list[Condition]] = {}
        self.absent: list[Condition] = []
        self.keep_s: dict[str, float] = {}
        seen: set[str] = set()
        for cond in conditions:
            if cond.key in seen or cond.key == cond.series:
                continue
            seen.add(cond.key)
            if cond.kind == ConditionKind.absent:
                self.absent.append(cond)
                continue
            self.by_series.setdefault(cond.series, []).append(cond)
            if cond.kind == ConditionKind.rate:
                window = cond.rate_window_s
                self.keep_s[cond.series] = max(self.keep_s.get(cond.series, 0.0), window)
        # per series, what ``update`` runs: (condition, its key, is a rate), the keys and
        # kinds computed once (they are properties that build strings)
        self._plan: dict[str, list[tuple[Condition, str, bool]]] = {
            series: [(c, c.key, c.kind == ConditionKind.rate) for c in conds]
            for series, conds in self.by_series.items()
        }
        self._absent_of: dict[str, list[tuple[Condition, str]]] = {}
        for cond in self.absent:
            self._absent_of.setdefault(cond.series, []).append((cond, cond.key))
        self._signals: dict[tuple[str, str], _Signal] = {}
        self._history: dict[tuple[str, str], _History] = {}
        self._first_seen: dict[str, float] = {}
        self._live: dict[str, int] = {}  # signals true per target (``any_abnormal``)

    @property
    def keys(self) -> set[str]:
        return {c.key for conds in self.by_series.values() for c in conds} | {
            c.key for c in self.absent
        }

    def adopt(self, other: SignalTracker) -> None:
        """Keep the state of every signal both trackers watch (hot reload)."""
        keys = self.keys
        self._signals = {k: s for k, s in other._signals.items() if k[1] in keys}
        self._history = {k: h for k, h in other._history.items() if k[1] in self.keep_s}
        self._first_seen = dict(other._first_seen)
        self._live = {}
        for (target, _), signal in self._signals.items():
            if signal.fact is not None:
                self._live[target] = self._live.get(target, 0) + 1

    def watches(self, series: str) -> bool:
        """Whether a sample of ``series`` can move any signal (else only ``seen`` matters)."""
        return series in self.by_series or series in self._absent_of

    def seen(self, target: str, ts: float) -> None:
        """A sample of ``target`` at ``ts`` (what ``update`` notes first for absences)."""
        self._first_seen.setdefault(target, ts)

    def update(self, target: str, series: str, ts: float, value: float) -> list[Change]:
        self._first_seen.setdefault(target, ts)
        changes = [
            change
            for cond, key in self._absent_of.get(series, ())
            if (change := self._set(target, cond, key, None, ts, value))
        ]
        conds = self._plan.get(series)
        if not conds:
            return changes
        history = None
        if series in self.keep_s:
            history = self._history.setdefault((target, series), _History()).points
            history.append((ts, value))
            while len(history) > 2 and history[1][0] <= ts - self.keep_s[series]:
                history.popleft()
        for cond, key, rate in conds:
            if rate:
                assert history is not None
                observed = _delta(history, ts, cond)
                true = observed is not None and (
                    observed > cond.rises_by
                    if cond.rises_by is not None
                    else observed < -(cond.falls_by or 0)
                )
                change = self._set(target, cond, key, ts if true else None, ts, observed or 0.0)
            else:
                change = self._threshold(target, cond, key, ts, value)
            if change:
                changes.append(change)
        return changes

    def _threshold(
        self, target: str, cond: Condition, key: str, ts: float, value: float
    ) -> Change | None:
        spec = self.catalog[cond.series]
        if cond.above is not None:
            breach = value > cond.above
        elif cond.below is not None:
            breach = value < cond.below
        else:
            breach = spec.is_breach(value, "crit")
        signal = self._signals.setdefault((target, key), _Signal())
        if signal.fact is not None:
            healthy = (
                not breach
                if cond.above is not None or cond.below is not None
                else spec.is_healthy(value)
            )
            return self._set(target, cond, key, None, ts, value) if healthy else None
        if not breach:
            signal.breach_since = None
            return None
        if signal.breach_since is None:
            signal.breach_since = ts
        held = cond.for_s if cond.for_s is not None else spec.duration_s
        if ts - signal.breach_since < held:
            return None
        return self._set(target, cond, key, signal.breach_since, ts, value)

    def _set(
        self, target: str, cond: Condition, key: str, since: float | None, ts: float, value: float
    ) -> Change | None:
        """Make the signal true from ``since`` (or false when None); a Change if it moved."""
        signal = self._signals.setdefault((target, key), _Signal())
        if since is None:
            signal.breach_since = None
            if signal.fact is None:
                return None
            fact, signal.fact = signal.fact, None
            self._live[target] -= 1
            return Change(fact, abnormal=False)
        if signal.fact is not None:
            return None
        signal.fact = _fact(target, cond, self.catalog, since, value)
        self._live[target] = self._live.get(target, 0) + 1
        return Change(signal.fact, abnormal=True)

    def sweep(self, target: str, now: float, last_seen: dict[str, float | None]) -> list[Change]:
        """Absence conditions: true once the series has been silent for ``absent_for``."""
        changes = []
        for cond in self.absent:
            seen = last_seen.get(cond.series)
            since = seen if seen is not None else self._first_seen.get(target)
            if since is None or now - since < (cond.absent_for or 0.0):
                continue
            if change := self._set(target, cond, cond.key, since, now, now - since):
                changes.append(change)
        return changes

    def abnormal(self, target: str) -> list[AbnormalFact]:
        if not self._live.get(target):
            return []
        return [s.fact for (t, _), s in self._signals.items() if t == target and s.fact]

    def any_abnormal(self, target: str) -> bool:
        return bool(self._live.get(target))


def _delta(history: deque[tuple[float, float]], ts: float, cond: Condition) -> float | None:
    """Change over the condition's window ending at ``ts`` (None until history covers it)."""
    start = ts - cond.rate_window_s
    if history[0][0] > start:
        return None
    points = [p for p in history if p[0] >= start]
    base = [p for p in history if p[0] <= start][-1]
    if not cond.counter:
        return points[-1][1] - base[1]
    total, previous = 0.0, base[1]
    for _, value in points:
        total += value - previous if value >= previous else value  # a drop is a reset
        previous = value
    return total


def _fact(
    target: str, cond: Condition, catalog: Catalog, since: float, value: float
) -> AbnormalFact:
    spec = catalog[cond.series]
    if cond.kind == ConditionKind.rate:
        up = cond.rises_by is not None
        limit = cond.rises_by if up else cond.falls_by
        return AbnormalFact(
            target=target,
            series=cond.series,
            value=value,
            threshold=float(limit or 0),
            direction="high" if up else "low",
            since=since,
            key=cond.key,
            kind="rate",
        )
    if cond.kind == ConditionKind.absent:
        return AbnormalFact(
            target=target,
            series=cond.series,
            value=value,
            threshold=float(cond.absent_for or 0),
            direction="high",
            since=since,
            key=cond.key,
            kind="absent",
        )
    threshold, direction = spec.crit, spec.bad
    if cond.above is not None:
        threshold, direction = cond.above, "high"
    elif cond.below is not None:
        threshold, direction = cond.below, "low"
    return AbnormalFact(
        target=target,
        series=cond.series,
        value=value,
        threshold=threshold,
        direction=direction,
        since=since,
        key=cond.key,
    )
