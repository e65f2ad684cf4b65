"""Replay: recorded incidents through today's analysis and decision, to backtest a change
of rules, knowledge or policy before it goes live.

    decider = Decider(graph, embedder, settings.match_min_similarity, library=lib)
    summary = backtest(store.list(limit=500), analyzer, decider)
    summary["same_solution"], summary["changed"]      # what the change would do differently

Two depths:
- from the *samples* (``replay_samples``): an incident recorded by loop/recorder.py (the
  raw samples of its target from before it opened until it ended) goes through a fresh
  Monitor and Analyzer built from the rules and ML baselines under test, on the
  recording's own clock, exactly as the daemon would have seen it: does a rule still
  fire, how much earlier or later than the recorded incident opened, which root cause
  does the report name, which fix would be decided;
- from the *findings* (``replay_incident``, for incidents without a recording): the
  rule hits stored with the incident are ranked again by the current rules and topology
  and matched again; detection itself is then not replayed.
In both, the decider should be built without the live autonomy callback, so a backtest
never touches the autonomy ledger; its mode is then the risk-only one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernel.config import Settings
from kernel.errors import MendloopError
from kernel.models import Finding, RCAReport
from knowledge.embedding import Embedder
from loop.analyze import Analyzer
from loop.anomaly import BaselineBank
from loop.decide import Decider
from loop.monitor import Monitor
from loop.recorder import recording_path
from loop.store import IncidentStore, IncidentView
from mendloop.output import print_json, stderr_progress
from mendloop.rules_tester import window_batches
from mendloop.service import connect_graph
from rules.catalog import Catalog
from rules.compiler import RuleSpec, load_rules
from sites import load_site

Batch = tuple[float, Sequence[Any]]


@dataclass(frozen=True)
class ReplayResult:
    incident_id: str
    target: str
    recorded_fault: str | None
    replayed_fault: str | None
    recorded_solution: str | None
    replayed_solution: str | None
    replayed_mode: str | None
    reason: str
    source: str = "findings"  # findings | samples
    detected: bool = True
    detected_after_s: float | None = None  # replayed first firing - recorded opening

    @property
    def same_fault(self) -> bool:
        return self.recorded_fault == self.replayed_fault

    @property
    def same_solution(self) -> bool:
        return self.recorded_solution == self.replayed_solution


def _result(
    incident: IncidentView, report: RCAReport | None, decider: Decider, **extra: Any
) -> ReplayResult:
    top = report.top if report is not None else None
    outcome = decider.decide(report) if report is not None and top is not None else None
    decision = outcome.decision if outcome else None
    return ReplayResult(
        incident_id=incident.id,
        target=incident.target,
        recorded_fault=incident.fault,
        replayed_fault=top.fault if top else None,
        recorded_solution=incident.decision.solution_id if incident.decision else None,
        replayed_solution=decision.solution_id if decision else None,
        replayed_mode=str(decision.mode) if decision else None,
        reason=outcome.reason if outcome else "no rule explains the findings",
        **extra,
    )


def replay_incident(incident: IncidentView, analyzer: Analyzer, decider: Decider) -> ReplayResult:
    """One recorded incident's findings through the current analysis and decision."""
    report = analyzer.report(incident.id, incident.target, incident.findings)
    return _result(incident, report, decider)


def first_report(
    incident: IncidentView,
    batches: Iterable[Batch],
    catalog: Catalog,
    rules: Sequence[RuleSpec],
    model_dir: Path | None = None,
) -> tuple[RCAReport | None, float | None]:
    """The report the daemon would have built from these samples: at the first batch in
    which a rule fires on the incident's target, over that batch's findings (as the
    daemon opens an incident), with the analyzer's context at that moment; and when.
    ``model_dir``: the ML baselines to judge with (a fresh copy per replay: their
    streaming state must not leak from one incident into the next)."""
    now = 0.0
    baselines = BaselineBank(catalog, model_dir=model_dir) if model_dir else None
    if baselines is not None:
        baselines.load()

    def clock() -> float:
        return now

    monitor = Monitor(catalog, clock=clock)
    analyzer = Analyzer(catalog, rules, clock=clock, baselines=baselines)
    try:
        for now, batch in batches:
            result = monitor.ingest(batch)
            fired: list[Finding] = analyzer.observe(result.latest) + analyzer.sweep()
            mine = [f for f in fired if f.target == incident.target]
            if mine:
                return analyzer.report(incident.id, incident.target, mine), now
        return None, None
    finally:
        analyzer.close()


def replay_samples(
    incident: IncidentView,
    batches: Iterable[Batch],
    catalog: Catalog,
    rules: Sequence[RuleSpec],
    decider: Decider,
    model_dir: Path | None = None,
) -> ReplayResult:
    """One recorded incident's raw samples through the rules, ML and knowledge under test."""
    report, fired_at = first_report(incident, batches, catalog, rules, model_dir)
    opened = incident.opened_at.timestamp()
    return _result(
        incident,
        report,
        decider,
        source="samples",
        detected=report is not None,
        detected_after_s=round(fired_at - opened, 3) if fired_at is not None else None,
    )


def summarise(results: Sequence[ReplayResult]) -> dict[str, Any]:
    """What a backtest found: how many replayed, and every incident that would change."""
    changed = [asdict(r) for r in results if not (r.detected and r.same_fault and r.same_solution)]
    return {
        "incidents": len(results),
        "from_samples": sum(r.source == "samples" for r in results),
        "detected": sum(r.detected for r in results),
        "same_fault": sum(r.same_fault for r in results),
        "same_solution": sum(r.same_solution for r in results),
        "changed": changed,
        "results": [asdict(r) for r in results],
    }


def backtest(
    incidents: Iterable[IncidentView],
    analyzer: Analyzer,
    decider: Decider,
    recording: Callable[[IncidentView], Iterable[Batch] | None] | None = None,
    model_dir: Path | None = None,
) -> dict[str, Any]:
    """Replay every incident: from its samples when ``recording`` has them, else from its
    findings (skipped when it has none); count what would change."""
    results = []
    for incident in incidents:
        batches = recording(incident) if recording is not None else None
        if batches is not None:
            rules = list(analyzer.active_rules.values())
            results.append(
                replay_samples(incident, batches, analyzer.catalog, rules, decider, model_dir)
            )
        elif incident.findings:
            results.append(replay_incident(incident, analyzer, decider))
    return summarise(results)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop replay`: recorded incidents through the rules, ML baselines and knowledge
    on disk now (or ``--rules DIR`` / ``--models DIR``), from their recorded samples where
    there are any (else from their findings)."""
    site = load_site(settings.site_dir)
    catalog = site.catalog
    rules = load_rules(catalog, args.rules, dict(site.domain.faults)) if args.rules else site.rules
    store = IncidentStore(settings.database_url)
    if args.incident:
        found = [store.get(i) for i in args.incident]
        missing = [i for i, view in zip(args.incident, found, strict=True) if view is None]
        if missing:
            raise MendloopError(f"no incident {', '.join(missing)} in {settings.database_url}")
        incidents = [view for view in found if view is not None]
    else:
        incidents = store.list(target=args.target, limit=args.limit)
    recordings = settings.var_dir / "recordings"
    model_dir = args.models or settings.var_dir / "models"

    def recording(incident: IncidentView) -> Iterable[Batch] | None:
        path = recording_path(recordings, incident.id)
        if not path.exists():
            return None
        try:
            return window_batches(path)
        except (OSError, EOFError, MendloopError) as exc:  # a damaged file: say so, go on
            stderr_progress(f"{incident.id}: recording unreadable ({exc}); replaying findings")
            return None

    graph = connect_graph(settings)
    try:
        decider = Decider(
            graph,
            Embedder.shared(),
            settings.match_min_similarity,
            library=site.library,
        )
        analyzer = Analyzer(catalog, rules)
        stderr_progress(f"replaying {len(incidents)} incident(s) with {len(rules)} rule(s)")
        summary = backtest(incidents, analyzer, decider, recording, model_dir)
        analyzer.close()
    finally:
        graph.close()
        store.close()
    if args.json:
        print_json(summary)
        return 0
    for r in summary["results"]:
        when = (
            f"fires {r['detected_after_s']:+.1f} s vs recorded"
            if r["detected_after_s"] is not None
            else ("not detected" if not r["detected"] else "from findings")
        )
        print(
            f"{r['incident_id']} {r['target']}: {r['recorded_fault']} -> "
            f"{r['replayed_fault']}; {r['recorded_solution']} -> {r['replayed_solution']} "
            f"({r['source']}, {when})"
        )
    print(
        f"{summary['incidents']} replayed ({summary['from_samples']} from samples): "
        f"{summary['detected']} detected, {summary['same_fault']} same fault, "
        f"{summary['same_solution']} same fix, {len(summary['changed'])} would change"
    )
    return 0
