"""Analyze: threshold breaches -> durable_rules facts -> findings -> a ranked RCA report.

    analyzer = Analyzer(catalog, load_rules(catalog))
    findings = analyzer.observe(samples)          # after monitor.ingest
    report = build_report(incident_id, target, findings, latency_ms)

A series becomes *abnormal* when it has been past its crit threshold for the catalog's
``duration_s`` and stays abnormal until it is back within warn (hysteresis, so a value
hovering at the line does not flap). Only these transitions reach the rules engine, never
the raw samples: durable_rules costs ~15 us per fact, the ingest path far less.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from loop.models import Evidence, Finding, FindingKind, RCAReport, RootCause, Sample
from loop.monitor import Point
from rules.catalog import Catalog, MetricSpec
from rules.compiler import AbnormalFact, CompiledRules, RuleSpec


@dataclass
class _SeriesState:
    breach_since: float | None = None
    fact: AbnormalFact | None = None
    last_value: float = 0.0


@dataclass(frozen=True)
class Change:
    """A series crossed into or out of abnormal."""

    fact: AbnormalFact
    abnormal: bool


class ThresholdTracker:
    """Pure state machine per (target, series): normal -> breaching -> abnormal -> normal."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._states: dict[tuple[str, str], _SeriesState] = {}

    def update(self, target: str, series: str, ts: float, value: float) -> Change | None:
        spec: MetricSpec = self.catalog[series]
        state = self._states.setdefault((target, series), _SeriesState())
        state.last_value = value
        if state.fact is not None:
            if spec.is_healthy(value):
                fact, state.fact, state.breach_since = state.fact, None, None
                return Change(fact, abnormal=False)
            return None
        if not spec.is_breach(value, "crit"):
            state.breach_since = None
            return None
        if state.breach_since is None:
            state.breach_since = ts
        if ts - state.breach_since >= spec.duration_s:
            state.fact = AbnormalFact(
                target=target,
                series=series,
                value=value,
                threshold=spec.crit,
                direction=spec.bad,
                since=state.breach_since,
            )
            return Change(state.fact, abnormal=True)
        return None

    def abnormal(self, target: str) -> list[AbnormalFact]:
        return [s.fact for (t, _), s in self._states.items() if t == target and s.fact is not None]

    def last_value(self, target: str, series: str) -> float | None:
        state = self._states.get((target, series))
        return state.last_value if state else None


def finding_from_rule(rule: RuleSpec, facts: list[AbnormalFact]) -> Finding:
    evidence = tuple(
        Evidence(
            series=f.series,
            value=f.value,
            threshold=f.threshold,
            direction="high" if f.direction == "high" else "low",
            since=f.since,
        )
        for f in facts
    )
    return Finding(
        kind=FindingKind.rule,
        target=facts[0].target,
        series=tuple(f.series for f in facts),
        rule_id=rule.id,
        started_at=min(f.since for f in facts),
        score=rule.confidence,
        evidence=evidence,
    )


class Analyzer:
    """Owns the threshold tracker and the compiled rules; thread-safe ``observe``."""

    def __init__(self, catalog: Catalog, rules: Iterable[RuleSpec]) -> None:
        self.tracker = ThresholdTracker(catalog)
        self.rules = {r.id: r for r in rules}
        self._fired: list[Finding] = []
        self._fired_lock = threading.Lock()
        self._observe_lock = threading.Lock()
        self._engine = CompiledRules(self.rules.values(), self._on_fire)
        self._veto_series = {c.series for r in self.rules.values() for c in r.none_of}

    def _on_fire(self, rule: RuleSpec, facts: list[AbnormalFact]) -> None:
        finding = finding_from_rule(rule, facts)
        with self._fired_lock:
            self._fired.append(finding)

    def observe(self, samples: Iterable[Sample | Point]) -> list[Finding]:
        """Feed accepted samples (or each series' newest point); return the findings that
        fired since the last call."""
        with self._observe_lock:
            changes = [
                change
                for sample in samples
                if (
                    change := self.tracker.update(
                        sample.target, sample.series, sample.ts, sample.value
                    )
                )
            ]
            # durable_rules judges each fact as it arrives; so that one batch is judged as a
            # whole, recoveries go first and facts that can veto a rule (`none`) before
            # the ones that complete it.
            changes.sort(key=lambda ch: (ch.abnormal, ch.fact.series not in self._veto_series))
            for change in changes:
                if change.abnormal:
                    self._engine.assert_abnormal(change.fact)
                else:
                    self._engine.retract_abnormal(change.fact)
        with self._fired_lock:
            fired, self._fired = self._fired, []
        return fired

    def close(self) -> None:
        self._engine.close()


def rank_causes(findings: Iterable[Finding], rules: dict[str, RuleSpec]) -> tuple[RootCause, ...]:
    """One candidate per fault: the best-scoring finding, more evidence and earlier onset
    breaking ties (the cause shows before its effects)."""
    best: dict[str, tuple[tuple[float, int, float], RootCause]] = {}
    for finding in findings:
        rule = rules[finding.rule_id]
        key = (finding.score, len(finding.evidence), -finding.started_at)
        cause = RootCause(
            fault=rule.fault,
            component=rule.component,
            score=finding.score,
            summary=rule.summary,
            evidence=finding.evidence,
        )
        if rule.fault not in best or key > best[rule.fault][0]:
            best[rule.fault] = (key, cause)
    return tuple(cause for _, cause in sorted(best.values(), key=lambda kv: kv[0], reverse=True))


def build_report(
    incident_id: str,
    target: str,
    findings: Iterable[Finding],
    rules: dict[str, RuleSpec],
    started: float | None = None,
) -> RCAReport:
    """The RCA report; ``latency_ms`` is the compute time from ``started`` (perf_counter)."""
    t0 = time.perf_counter() if started is None else started
    candidates = rank_causes(findings, rules)
    return RCAReport(
        incident_id=incident_id,
        target=target,
        candidates=candidates,
        latency_ms=(time.perf_counter() - t0) * 1000,
    )
