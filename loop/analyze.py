"""Analyze: samples -> signals -> durable_rules facts -> findings -> a ranked RCA report.

    analyzer = Analyzer(catalog, load_rules(catalog), clock=time.time)
    findings = analyzer.observe(samples)          # after monitor.ingest: rule findings
    analyzer.sweep()                              # housekeeping: gaps, absences, windows
    analyzer.quality_findings()                   # no_data / stale findings (bad input)
    analyzer.sqi_findings()                       # SQI < 80 per target (context, opens nothing)
    analyzer.deviating()                          # series past thresholds/baselines per target
    result = analyzer.reload(new_specs)           # hot reload: atomic swap, state kept
    report = analyzer.report(incident_id, target, findings)   # ranked RCA (loop/rca.py)

A series becomes *abnormal* when it has been past its crit threshold for the catalog's
``duration_s`` and stays abnormal until it is back within warn (hysteresis, so a value
hovering at the line does not flap); rules add their own signals (thresholds, rates,
absences: rules/signals.py). Only these transitions reach the rules engine, never the raw
samples: durable_rules costs ~15 us per fact. Time is the samples' time: a replay
(``mendloop rules test``) judges exactly like the daemon.

A batch is judged as if sample by sample (rules/signals.py is the reference) but in numpy
passes over its columns: the catalog thresholds of every target at once
(rules/thresholds.py), admissibility as masks and the batch's bookkeeping (loop/tick.py);
only the series a rule's own condition watches go through ``SignalTracker`` per sample.

Bad input never becomes an abnormal fact: samples too far in the future or past (against
``clock``, when given), frozen series and gaps become ``no_data``/``stale`` findings,
kept apart from rule findings so they cannot open a remediation.

Two more evidence sources run on the same points: the SQI (loop/sqi.py, one pass over
every target's newest SQI metrics; below 80 is an ``sqi`` finding) and the ML baselines
(loop/anomaly.py: per-target seasonal baselines learnt from normal operation, anomaly
scores and onsets). Neither opens an incident; the RCA ranking
(loop/rca.py) weighs them with the rule hits and the component topology.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from kernel.models import Evidence, Finding, RCAReport, Sample
from loop.anomaly import BaselineBank
from loop.findings import ReloadResult, quality_finding
from loop.judge import Judge
from loop.monitor import Latest, Point
from loop.rca import Context, Topology, threshold_evidence
from loop.report import build_report, default_topology, rank_causes
from loop.sqi import SQIModel, SQIResult, SQITracker, sqi_finding
from loop.tick import CellIndex, TimeGuard, by_target, columns_of, in_order, sweep_targets, waves
from rules.catalog import Catalog
from rules.compiler import AbnormalFact, RuleSpec
from rules.signals import Change, QualityEvent, SignalTracker
from rules.thresholds import ThresholdColumns

__all__ = [
    "Analyzer",
    "Change",
    "build_report",
    "rank_causes",
    "sqi_finding",
]


class Analyzer:
    """Owns the trackers and the compiled rules; ``observe``/``sweep``/``reload`` are
    thread-safe and serialised.

    ``rules`` maps every rule id ever loaded to its newest spec (so findings of a rule a
    reload removed can still be explained); ``active_rules`` is what runs now.

    Why one class of ~300 lines: the threshold and signal trackers, the rules, the SQI
    trackers and the ML baselines share one lock and one clock, and a hot reload swaps
    the rules while re-asserting the trackers' state into them; split, the lock (and the
    atomicity of a reload) would have to cross objects. What it calls under the lock
    lives beside it: the tick's bookkeeping (loop/tick.py) and the rules' side (facts,
    windows' onsets, firings held for their moment: loop/judge.py, loop/gate.py); what
    does not need the lock too: findings (loop/findings.py), ranking (loop/rca.py),
    reports (loop/report.py), SQI (loop/sqi.py), baselines (loop/anomaly.py).
    """

    def __init__(
        self,
        catalog: Catalog,
        rules: Iterable[RuleSpec],
        *,
        clock: Callable[[], float] | None = None,
        max_future_s: float = 30.0,
        max_lag_s: float = 600.0,
        gap_s: float = 60.0,
        flat_after_s: float = 120.0,
        baselines: BaselineBank | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.catalog = catalog
        self.baselines = baselines or BaselineBank(catalog)
        self.topology = topology or default_topology()
        self.sqi_tracker = SQITracker(SQIModel(catalog))
        self.clock = clock
        self.max_future_s = max_future_s
        self.max_lag_s = max_lag_s
        self.tracker = ThresholdColumns(catalog, flat_after_s=flat_after_s, gap_s=gap_s)
        self._cells = CellIndex(self.tracker)
        ml_index, sqi_index = self.baselines.index, self.sqi_tracker.model.index
        self._ml_col = np.array([ml_index[s] for s in self.tracker.series], dtype=np.int64)
        self._sqi_col = np.array([sqi_index.get(s, -1) for s in self.tracker.series])
        self.active_rules: dict[str, RuleSpec] = {r.id: r for r in rules}
        self.rules: dict[str, RuleSpec] = dict(self.active_rules)
        self._fired: list[Finding] = []
        self._quality: list[Finding] = []
        self._time = TimeGuard(max_future_s, max_lag_s)
        self._fired_lock = threading.Lock()
        self._observe_lock = threading.Lock()
        self._now: dict[str, float] = {}
        self._swept: dict[str, float] = {}
        self._plan(self.active_rules.values())
        self.out_of_order = 0  # points older than one already judged (racing submits)
        self._judge = self._judge_of(self.active_rules.values())

    def _plan(self, rules: Iterable[RuleSpec]) -> None:
        rules = list(rules)
        self._signals = SignalTracker((c for r in rules for c in r.conditions), self.catalog)
        self._watched = np.array([self._signals.watches(s) for s in self.tracker.series])

    def _judge_of(self, rules: Iterable[RuleSpec]) -> Judge:
        """The rules compiled, judged on this analyzer's samples (loop/judge.py)."""
        return Judge(rules, self.tracker.last_seen, self._time_of, self.tracker.gap_s)

    def _time_of(self, target: str) -> float:
        """How far the target's time has gone: its newest sample, or the last sweep."""
        return max(self._now.get(target, -math.inf), self._swept.get(target, -math.inf))

    # -- feeding ---------------------------------------------------------------------

    def observe(self, samples: Iterable[Sample | Point]) -> list[Finding]:
        """Feed accepted samples (or each series' newest point, best as the monitor's
        columns); return the rule findings that fired since the last call.

        Judged as if sample by sample, in order (rules/signals.py is the reference), but
        each step is a numpy pass over the batch (loop/tick.py, rules/thresholds.py)."""
        with self._observe_lock:
            now = self.clock() if self.clock is not None else None
            changes = self._feed(columns_of(samples), now)
            due = [
                (target, tnow)
                for target, tnow in self._now.items()
                if tnow - self._swept.get(target, -math.inf) >= 1.0
            ]
            changes += self._sweep_targets(due)
            self._apply(changes)
        return self._drain()

    def _feed(self, batch: Latest, now: float | None) -> list[Change]:
        keys, ts, values = batch.keys, batch.ts, batch.values
        cells = self._cells.cells(batch)
        ok = (cells >= 0) & np.isfinite(ts) & np.isfinite(values)
        ok, late = in_order(self.tracker.last_ts(), cells, ts, ok)
        self.out_of_order += late
        ok, skewed = self._time.admit(keys, cells, ts, now, ok)
        self._quality += [quality_finding(event) for event in skewed]
        pos = np.flatnonzero(ok)
        if pos.size == 0:
            return []
        cell, ts, values = cells[pos], ts[pos], values[pos]
        rows, cols = np.divmod(cell, self._cells.width)
        tagged: list[tuple[int, int, Change]] = []
        events: list[tuple[int, QualityEvent]] = []
        for wave in waves(cell):
            made, noticed = self.tracker.update(rows[wave], cols[wave], ts[wave], values[wave])
            tagged += [(int(wave[i]), 0, change) for i, change in made]
            events += [(int(wave[i]), event) for i, event in noticed]
        names = self.tracker.names
        groups = list(by_target(rows))
        for row, at in groups:
            self._signals.seen(names[row], float(ts[at[0]]))
        for i in np.flatnonzero(self._watched[cols]).tolist():
            target, series = keys[int(pos[i])]
            found = self._signals.update(target, series, float(ts[i]), float(values[i]))
            tagged += [(i, 1 + k, change) for k, change in enumerate(found)]
        tagged.sort(key=lambda item: (item[0], item[1]))
        events.sort(key=lambda item: item[0])
        self.tracker.events += [event for _, event in events]
        for row, at in groups:
            target, tnow = names[row], float(ts[at].max())
            if tnow > self._now.get(target, -math.inf):
                self._now[target] = tnow
        self._evidence([names[row] for row, _ in groups], groups, cols, ts, values)
        return [change for _, _, change in tagged]

    def sweep(self, now: float | None = None) -> list[Finding]:
        """Housekeeping between samples: gaps, absences, expired windows; at ``now`` (the
        clock's time by default, else each target's newest sample)."""
        with self._observe_lock:
            if now is None and self.clock is not None:
                now = self.clock()
            due = [
                (target, tnow if now is None else max(now, tnow))
                for target, tnow in self._now.items()
            ]
            self._apply(self._sweep_targets(due))
        return self._drain()

    def _sweep_targets(self, due: list[tuple[str, float]]) -> list[Change]:
        for target, now in due:
            self._swept[target] = now
        judge = self._judge
        return sweep_targets(due, self.tracker, self._signals, judge.occurrences, judge.keep)

    def _apply(self, changes: list[Change]) -> None:
        """Quality events to findings; the changes to the rules, as one batch (loop/judge.py)."""
        for event in self.tracker.events:
            self._quality.append(quality_finding(event))
        self.tracker.events.clear()
        found = self._judge.apply(changes)
        if found:
            with self._fired_lock:
                self._fired += found

    def _evidence(
        self,
        targets: list[str],
        groups: list[tuple[int, np.ndarray]],
        cols: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """The ML baselines and the SQI, each one pass over every target, on the newest
        points."""
        group = np.empty(len(cols), dtype=np.int64)
        nows, healthy = [], []
        for g, (target, (_, at)) in enumerate(zip(targets, groups, strict=True)):
            group[at] = g
            tnow = float(ts[at].max())
            nows.append(tnow)
            ok = False
            if self.baselines.wants_row(target, tnow):  # a baseline row: normal operation only
                ok = not self.tracker.any_abnormal(target)
                ok = ok and not self._signals.any_abnormal(target)
            healthy.append(ok)
        self.baselines.update_many(targets, group, self._ml_col[cols], ts, values, healthy)
        self.sqi_tracker.update_many(targets, self._sqi_col[cols], values, group, nows)

    def _drain(self) -> list[Finding]:
        with self._fired_lock:
            fired, self._fired = self._fired, []
        return fired

    # -- reading -----------------------------------------------------------------------

    def quality_findings(self) -> list[Finding]:
        """The ``no_data``/``stale`` findings since the last call (bad input, not faults)."""
        with self._observe_lock:
            found, self._quality = self._quality, []
        return found

    def abnormal(self, target: str) -> list[AbnormalFact]:
        """Every signal true on ``target`` now (catalog thresholds and the rules' own)."""
        with self._observe_lock:
            return self.tracker.abnormal(target) + self._signals.abnormal(target)

    def sqi_findings(self) -> list[Finding]:
        """``sqi`` findings since the last call: a target's SQI fell below 80 (once per
        episode). Context for people and the RCA; they never open an incident."""
        with self._observe_lock:
            return self.sqi_tracker.drain()

    def sqi(self, target: str) -> SQIResult | None:
        """The target's SQI on its newest values."""
        with self._observe_lock:
            return self.sqi_tracker.current(target)

    def anomalies(self, target: str) -> list[Evidence]:
        """Series of ``target`` beyond their learnt baseline now (empty before training)."""
        with self._observe_lock:
            return self.baselines.anomalies(target)

    def deviating(self) -> dict[str, tuple[float, list[Evidence]]]:
        """Per target with any: (its newest sample time, every series past its catalog
        threshold or beyond its learnt baseline now), for the sustained-anomaly trigger
        (loop/sustained.py). The rules' own signals are left out: they are rule evidence.
        The lock is taken per target, so ingest waits for one target at a time, not all."""
        with self._observe_lock:
            targets = self.tracker.targets()
        out = {}
        for target in targets:
            with self._observe_lock:
                found = [threshold_evidence(f, self.catalog) for f in self.tracker.abnormal(target)]
                found += self.baselines.anomalies(target)
                if found:
                    out[target] = (self._now.get(target, -math.inf), found)
        return out

    def context(self, target: str, findings: Iterable[Finding] = ()) -> Context:
        """Everything the ranking weighs besides the incident's findings, at this moment."""
        with self._observe_lock:
            return Context(
                abnormal=tuple(self.tracker.abnormal(target) + self._signals.abnormal(target)),
                anomalies=tuple(self.baselines.anomalies(target)),
                findings=tuple(findings),
                sqi=self.sqi_tracker.current(target),
                # the report's time: the clock when there is one (the daemon), else the
                # target's newest sample (a replay)
                now=self.clock() if self.clock is not None else self._now.get(target),
            )

    def report(
        self,
        incident_id: str,
        target: str,
        findings: Iterable[Finding],
        started: float | None = None,
    ) -> RCAReport:
        """The ranked RCA report of an incident's findings, with the target's context."""
        t0 = time.perf_counter() if started is None else started
        context = self.context(target)
        return build_report(
            incident_id,
            target,
            findings,
            self.rules,
            t0,
            catalog=self.catalog,
            topology=self.topology,
            context=context,
            active=self.active_rules,
        )

    def retrain_due(self, now: float) -> list[str]:
        """Retrain the baselines that are due (fitting runs outside the observe lock, so
        call it from a worker thread); returns the targets retrained."""
        with self._observe_lock:
            due = self.baselines.due(now)
            windows = {t: self.baselines.training_window(t) for t in due}
        done = []
        for target in due:
            ts, rows = windows[target]
            if ts.size < 2:
                continue
            model, meta = self.baselines.fit(target, ts, rows, now)
            with self._observe_lock:
                self.baselines.install(target, model, meta)
            done.append(target)
        return done

    # -- hot reload --------------------------------------------------------------------

    def reload(self, rules: Iterable[RuleSpec]) -> ReloadResult:
        """Swap in a new rule set atomically: compiled off to the side, then the signals
        true now (and the onsets windows still remember) are re-asserted into it, so
        nothing in flight is lost. Rules that did not change do not fire again."""
        specs = {r.id: r for r in rules}
        judge = self._judge_of(specs.values())  # the slow part, outside the lock
        with self._observe_lock:
            old_rules, old_judge, old_signals = self.active_rules, self._judge, self._signals
            self._plan(specs.values())
            self._signals.adopt(old_signals)
            targets = set(self.tracker.targets()) | {t for t, _ in old_judge.occurrences}
            live = [f for t in targets for f in self.tracker.abnormal(t)]
            live += [f for t in targets for f in self._signals.abnormal(t)]
            unchanged = {
                i
                for i, r in specs.items()
                if i in old_rules and old_rules[i].semantics() == r.semantics()
            }
            fresh = judge.take_over(old_judge, live, unchanged)
            self._judge = judge
            self.active_rules = specs
            self.rules.update(specs)
        old_judge.close()
        fired = tuple(f for f in fresh if f.rule_id not in unchanged)
        with self._fired_lock:
            self._fired += fired
        return ReloadResult(
            added=tuple(sorted(set(specs) - set(old_rules))),
            removed=tuple(sorted(set(old_rules) - set(specs))),
            changed=tuple(sorted(set(specs) & set(old_rules) - unchanged)),
            fired=fired,
        )

    def close(self) -> None:
        self._judge.close()
