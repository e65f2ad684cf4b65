"""Signals: pure per-(target, series) state machines that turn samples into facts.

    signals = SignalTracker(conditions, catalog)   # the rules' own thresholds, rates, absences
    changes = signals.update("t", series, ts, value) + signals.sweep("t", now, last_seen)

The catalog thresholds of every series are rules/thresholds.py's (its sample-by-sample
reference: rules/reference.py); both speak this module's ``Change`` and ``QualityEvent``.
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

from rules.catalog import Catalog
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
class _Signal:
    breach_since: float | None = None
    fact: AbnormalFact | None = None


@dataclass
class _History:
    points: deque[tuple[float, float]] = field(default_factory=deque)


class SignalTracker:
    """The rules' own conditions (custom thresholds, rates of change, absences) for the
    series they name; plain catalog thresholds are rules/thresholds.py's."""

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
