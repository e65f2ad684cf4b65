"""The RCA report: ranked causes (loop/rca.py) plus what an operator needs around them,
as JSON (the pydantic model) and as Markdown for chat and the web page.

    report = build_report(incident_id, target, findings, rules, catalog=..., context=...)
    render_markdown(report)               # the report for chat and the web page
                                          # (an unexplained fault: its component ranking)

``first_abnormal_at`` is the first sample past a threshold among the fired causes'
evidence (an ML onset is earlier: where a deviation began, not a sample anybody would call
abnormal yet); ``time_to_report_s`` runs from it to the report's clock.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from kernel.models import Evidence, Finding, RCAReport, RootCause, UnexplainedFault
from loop.rca import Context, Topology, component_onsets, rank
from rules.catalog import Catalog, load_catalog
from rules.compiler import RuleSpec

__all__ = ["assemble", "build_report", "default_topology", "rank_causes", "render_markdown"]


def rank_causes(findings: Iterable[Finding], rules: dict[str, RuleSpec]) -> tuple[RootCause, ...]:
    """Ranked causes of ``findings`` alone (no context): see loop/rca.py."""
    return rank(findings, rules, default_catalog(), default_topology(), Context(), active={})


@functools.cache
def default_catalog() -> Catalog:
    return load_catalog()


@functools.cache
def default_topology() -> Topology:
    return Topology.from_domain()


def build_report(
    incident_id: str,
    target: str,
    findings: Iterable[Finding],
    rules: dict[str, RuleSpec],
    started: float | None = None,
    *,
    catalog: Catalog | None = None,
    topology: Topology | None = None,
    context: Context | None = None,
    active: dict[str, RuleSpec] | None = None,
) -> RCAReport:
    """The RCA report; ``latency_ms`` is the compute time from ``started`` (perf_counter).
    Without ``context`` only the findings themselves are ranked."""
    t0 = time.perf_counter() if started is None else started
    catalog = catalog or default_catalog()
    context = context or Context()
    candidates = rank(
        findings,
        rules,
        catalog,
        topology or default_topology(),
        context,
        active=active if active is not None else {},
    )
    return assemble(
        incident_id,
        target,
        candidates,
        context,
        (time.perf_counter() - t0) * 1000,
        catalog,
    )


def assemble(
    incident_id: str,
    target: str,
    candidates: tuple[RootCause, ...],
    context: Context,
    latency_ms: float,
    catalog: Catalog | None = None,
) -> RCAReport:
    """The report around ranked candidates: first abnormal sample, time to report, SQI."""
    named = [c for c in candidates if c.fired] or list(candidates)
    # the first sample past a threshold behind the named causes (an ML onset is earlier:
    # where a deviation began, not a sample anybody would call abnormal yet)
    crossings = [e.since for c in named for e in c.evidence if e.source != "anomaly"]
    first = min(crossings) if crossings else None
    ttr = max(0.0, context.now - first) if first is not None and context.now is not None else None
    comps = component_onsets((), context, catalog) if catalog is not None else {}
    for cand in candidates:
        if cand.onset is not None:
            comps[cand.component] = min(cand.onset, comps.get(cand.component, cand.onset))
    return RCAReport(
        incident_id=incident_id,
        target=target,
        candidates=candidates,
        latency_ms=latency_ms,
        first_abnormal_at=first,
        reported_at=context.now,
        time_to_report_s=ttr,
        sqi=None if context.sqi is None else round(context.sqi.sqi, 2),
        sqi_roles={}
        if context.sqi is None
        else {k: round(v, 2) for k, v in context.sqi.roles.items()},
        abnormal_components=dict(sorted(comps.items(), key=lambda kv: (kv[1], kv[0]))),
    )


def _when(ts: float | None, origin: float | None) -> str:
    if ts is None:
        return "-"
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")
    return f"{stamp}Z" if origin is None else f"{stamp}Z ({ts - origin:+.1f} s)"


def _evidence_line(e: Evidence, origin: float | None) -> str:
    side = "above" if e.direction == "high" else "below"
    what = "baseline bound" if e.source == "anomaly" else "threshold"
    off = ""
    if e.deviation is not None:
        off = (
            f", {e.deviation:.1f}x its learnt threshold"
            if e.source == "anomaly"
            else f", {e.deviation:+.2f} of warn..crit past it"
        )
    rule = (
        f" [rule {e.rule_id}]" if e.rule_id else " [ML baseline]" if e.source == "anomaly" else ""
    )
    return (
        f"- `{e.series}` = {e.value:g}, {side} {what} {e.threshold:g}{off}, "
        f"since {_when(e.since, origin)}{rule}"
    )


def render_markdown(report: RCAReport) -> str:
    """The report for chat and the web page: headline, table, evidence per candidate."""
    origin = report.first_abnormal_at
    top = report.top
    lines = [f"### Root-cause analysis: {report.target} (incident `{report.incident_id}`)", ""]
    if report.unexplained is not None:
        lines += _unexplained_lines(report.unexplained)
        if report.candidates:
            lines += ["", "Rule signatures partly present (context, no rule fired):"]
            lines += [f"- `{c.fault}` ({c.component}): {c.why}" for c in report.candidates[:5]]
        return "\n".join(lines)
    if top is None:
        lines.append("No candidate: no rule explains the findings.")
        return "\n".join(lines)
    conf = f"{top.confidence:.0%}" if top.confidence is not None else f"score {top.score:.2f}"
    lines.append(f"**Most likely cause: `{top.fault}` on {top.component}** ({conf}). {top.summary}")
    facts = []
    if report.time_to_report_s is not None:
        facts.append(f"first abnormal sample -> report: {report.time_to_report_s:.1f} s")
    facts.append(f"analysis {report.latency_ms:.1f} ms")
    if report.sqi is not None:
        roles = ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in report.sqi_roles.items())
        facts.append(f"SQI {report.sqi:.1f}{' (below 80)' if report.sqi < 80 else ''}: {roles}")
    lines += ["", "; ".join(facts), ""]
    lines += [
        "| # | fault | component | confidence | onset | explains | basis |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(report.candidates, 1):
        basis = ("rule " if c.fired else "signature ") + ", ".join(c.rules)
        confidence = f"{c.confidence:.0%}" if c.confidence is not None else f"{c.score:.2f}"
        lines.append(
            f"| {i} | `{c.fault}` | {c.component} | {confidence} | {_when(c.onset, origin)} "
            f"| {', '.join(c.explains) or '-'} | {basis} |"
        )
    for i, c in enumerate(report.candidates, 1):
        lines += ["", f"**{i}. `{c.fault}`** ({c.component}): {c.why}"]
        lines += [_evidence_line(e, origin) for e in (*c.evidence, *c.anomalies)]
    if report.abnormal_components:
        order = ", ".join(f"{k} {_when(v, origin)}" for k, v in report.abnormal_components.items())
        lines += ["", f"Abnormal components in onset order: {order}"]
    return "\n".join(lines)


def _unexplained_lines(fault: UnexplainedFault) -> list[str]:
    """An unexplained fault: the ranking, each component's evidence, the similar cases."""
    lines = [
        f"**{fault.headline()[0].upper()}{fault.headline()[1:]}.** No rule explains the "
        "findings: the components are ranked by their metrics' deviations and the "
        "dependency graph, without rules. Nothing is run for a fault nobody named.",
        "",
        f"window {_when(fault.window_start, None)} .. {_when(fault.window_end, None)}; "
        f"{fault.series_scored} of {fault.series} series scored in {fault.latency_ms:.1f} ms",
        "",
        "| # | component | confidence | abnormal | onset |",
        "|---|---|---|---|---|",
    ]
    origin = fault.window_start
    for i, c in enumerate(fault.components, 1):
        lines.append(
            f"| {i} | {c.component} | {c.confidence:.0%} | {'yes' if c.anomalous else 'no'} "
            f"| {_when(c.onset, origin)} |"
        )
    for i, c in enumerate(fault.components, 1):
        if not c.evidence:
            continue
        lines += ["", f"**{i}. {c.component}**"]
        lines += [
            f"- `{e.metric}` = {e.value:g}, usually {e.baseline:g} (z {e.z:+.1f}, score "
            f"{e.score:.2f}{', abnormal since ' + _when(e.onset, origin) if e.onset else ''})"
            for e in c.evidence
        ]
    lines += ["", "Similar past cases (shown, not applied):"]
    if not fault.similar:
        lines.append("- none")
    lines += [
        f"- `{m.case_id}` similarity {m.similarity:.2f}, fixed by `{m.solution_id}` "
        f"(success rate {m.solution_success_rate:.0%})"
        for m in fault.similar
    ]
    return lines
