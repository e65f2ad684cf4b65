"""Root-cause ranking: rule hits + ML anomalies + onset order + the dependency topology.

    topology = Topology.from_domain()                       # kernel/domain.yaml
    causes = rank(findings, rules, catalog, topology, context)
    # loop/report.py turns them into the RCAReport (and its Markdown)

Pure functions (no I/O, no clock): the analyzer gathers the :class:`Context` under its
lock and calls these. How a candidate is scored:

1. **Candidates.** Every fault a fired rule names (``fired``), and every fault whose rule
   *signature* is more than half present right now although the rule did not fire (its
   conditions abnormal by threshold, or beyond their ML baseline in the bad direction; a
   vetoed rule is one). Signature candidates are context: they always rank below fired
   ones, never reach the case matcher (``RCAReport.text``), and so cannot start a fix.
2. **Onsets.** Each component's onset is its earliest abnormal sample: rule evidence,
   catalog-threshold facts, or the start of an ML excursion (which often precedes the
   crit crossing).
3. **Topology.** A candidate on component C *explains* every abnormal dependant of C
   (transitively, ``depends_on`` reversed) whose onset is not before C's. ``coverage`` is
   the share of the abnormal components it accounts for (itself included). If an
   upstream of C went abnormal strictly earlier, C is likely a symptom: halved.
4. **Score** = strength x (1 + coverage) / 2 x (1/2 if a symptom), where strength is the
   rule's confidence (x the matched share for a signature). Ties: earlier onset first.
   ``confidence`` is the candidate's share of all candidates' scores.

So the earliest abnormal upstream component whose symptoms explain the most downstream
findings ranks first, as issue 4 asks, without ever letting context outrank a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kernel.domain import Domain
from kernel.models import Evidence, Finding, FindingKind, RootCause
from loop.sqi import SQIResult
from rules.catalog import Catalog
from rules.compiler import AbnormalFact
from rules.spec import Condition, ConditionKind, RuleSpec

SEVERITY_ORDER = ("critical", "major", "minor", "warning")
MIN_SIGNATURE = 0.5  # a signature candidate needs more than half of its rule's conditions


class Topology:
    """Component dependencies (``component -> upstreams``) and their transitive closures."""

    def __init__(self, upstreams: Mapping[str, Sequence[str]]) -> None:
        self.upstreams = {c: tuple(u) for c, u in upstreams.items()}
        dependants: dict[str, set[str]] = {c: set() for c in self.upstreams}
        for comp, ups in self.upstreams.items():
            for up in ups:
                dependants.setdefault(up, set()).add(comp)
        self.dependants = {c: frozenset(d) for c, d in dependants.items()}
        self._down = {c: self._closure(c, self.dependants) for c in self.dependants}
        self._up = {c: self._closure(c, self.upstreams) for c in self.dependants}

    @staticmethod
    def _closure(start: str, edges: Mapping[str, Iterable[str]]) -> frozenset[str]:
        seen: set[str] = set()
        todo = list(edges.get(start, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return frozenset(seen)

    @classmethod
    def from_domain(cls) -> Topology:
        """The platform topology of kernel/domain.yaml (also mirrored in Neo4j)."""
        return cls(Domain.load().components)

    def downstream(self, component: str) -> frozenset[str]:
        return self._down.get(component, frozenset())

    def upstream(self, component: str) -> frozenset[str]:
        return self._up.get(component, frozenset())


@dataclass(frozen=True)
class Context:
    """What the analyzer knows of the target besides the incident's own findings."""

    abnormal: tuple[AbnormalFact, ...] = ()  # signals true now (catalog and rule thresholds)
    anomalies: tuple[Evidence, ...] = ()  # ML: series beyond their baseline
    findings: tuple[Finding, ...] = ()  # other rule findings of the target (context only)
    sqi: SQIResult | None = None
    now: float | None = None  # the samples' clock at report time
    extra: dict[str, float] = field(default_factory=dict)


def threshold_evidence(
    fact: AbnormalFact, catalog: Catalog, rule_id: str | None = None
) -> Evidence:
    """A fact as evidence, with how far past its threshold in units of warn..crit."""
    spec = catalog.get(fact.series)
    span = abs(spec.crit - spec.warn) if spec is not None else 0.0
    past = fact.value - fact.threshold if fact.direction == "high" else fact.threshold - fact.value
    return Evidence(
        series=fact.series,
        value=fact.value,
        threshold=fact.threshold,
        direction="high" if fact.direction == "high" else "low",
        since=fact.since,
        source="rule" if rule_id else "threshold",
        rule_id=rule_id,
        component=spec.component if spec is not None else None,
        deviation=past / span if span > 0 else None,
    )


def _annotate(ev: Evidence, catalog: Catalog, rule_id: str) -> Evidence:
    spec = catalog.get(ev.series)
    if spec is None:
        return ev.model_copy(update={"rule_id": rule_id})
    span = abs(spec.crit - spec.warn)
    past = ev.value - ev.threshold if ev.direction == "high" else ev.threshold - ev.value
    return ev.model_copy(
        update={
            "rule_id": rule_id,
            "component": spec.component,
            "deviation": past / span if span > 0 else None,
        }
    )


def _bad_direction(cond: Condition, catalog: Catalog) -> str | None:
    if cond.kind == ConditionKind.absent:
        return None
    if cond.kind == ConditionKind.rate:
        return "high" if cond.rises_by is not None else "low"
    if cond.above is not None:
        return "high"
    if cond.below is not None:
        return "low"
    spec = catalog.get(cond.series)
    return spec.bad if spec is not None else None


@dataclass
class _Candidate:
    fault: str
    component: str
    summary: str
    strength: float
    fired: bool
    evidence: tuple[Evidence, ...]
    rules: tuple[str, ...]
    severity: str | None
    since: float


def _fired(
    findings: Iterable[Finding], rules: Mapping[str, RuleSpec], catalog: Catalog
) -> dict[str, _Candidate]:
    best: dict[str, tuple[tuple[float, int, float], _Candidate]] = {}
    seen_rules: dict[str, list[str]] = {}
    severities: dict[str, list[str]] = {}
    for finding in findings:
        if finding.kind != FindingKind.rule or finding.rule_id not in rules:
            continue
        rule = rules[finding.rule_id]
        seen_rules.setdefault(rule.fault, []).append(rule.id)
        severities.setdefault(rule.fault, []).append(str(rule.severity))
        key = (finding.score, len(finding.evidence), -finding.started_at)
        cand = _Candidate(
            fault=rule.fault,
            component=rule.component,
            summary=rule.summary,
            strength=finding.score,
            fired=True,
            evidence=tuple(_annotate(e, catalog, rule.id) for e in finding.evidence),
            rules=(),
            severity=None,
            since=finding.started_at,
        )
        if rule.fault not in best or key > best[rule.fault][0]:
            best[rule.fault] = (key, cand)
    out = {}
    for fault, (_, cand) in best.items():
        cand.rules = tuple(dict.fromkeys(seen_rules[fault]))
        cand.severity = min(severities[fault], key=SEVERITY_ORDER.index)
        out[fault] = cand
    return out


def _signatures(
    rules: Mapping[str, RuleSpec],
    skip: set[str],
    context: Context,
    catalog: Catalog,
) -> dict[str, _Candidate]:
    """Faults whose rule conditions are mostly present now although the rule did not fire."""
    facts = {f.signal: f for f in context.abnormal}
    anomalous: dict[tuple[str, str], Evidence] = {
        (e.series, e.direction): e for e in context.anomalies
    }
    out: dict[str, _Candidate] = {}
    for rule in rules.values():
        if rule.fault in skip:
            continue
        matched: list[Evidence] = []
        for cond in rule.conditions:
            if cond.key in facts:
                matched.append(threshold_evidence(facts[cond.key], catalog, rule.id))
                continue
            direction = _bad_direction(cond, catalog)
            hit = anomalous.get((cond.series, direction)) if direction else None
            if hit is not None:
                matched.append(hit.model_copy(update={"rule_id": rule.id}))
        share = len(matched) / len(rule.conditions)
        if share <= MIN_SIGNATURE:
            continue
        cand = _Candidate(
            fault=rule.fault,
            component=rule.component,
            summary=rule.summary,
            strength=rule.confidence * share,
            fired=False,
            evidence=tuple(matched),
            rules=(rule.id,),
            severity=str(rule.severity),
            since=min(e.since for e in matched),
        )
        if rule.fault not in out or cand.strength > out[rule.fault].strength:
            out[rule.fault] = cand
    return out


def component_onsets(
    candidates: Iterable[_Candidate], context: Context, catalog: Catalog
) -> dict[str, float]:
    """Earliest abnormal sample per component, from every kind of evidence."""
    onsets: dict[str, float] = {}

    def see(component: str | None, since: float) -> None:
        if component is not None and since < onsets.get(component, float("inf")):
            onsets[component] = since

    for fact in context.abnormal:
        spec = catalog.get(fact.series)
        see(spec.component if spec else None, fact.since)
    for ev in context.anomalies:
        see(ev.component, ev.since)
    for finding in context.findings:
        for ev in finding.evidence:
            spec = catalog.get(ev.series)
            see(spec.component if spec else None, ev.since)
    for cand in candidates:
        for ev in cand.evidence:
            see(ev.component, ev.since)
    return onsets


def rank(
    findings: Iterable[Finding],
    rules: Mapping[str, RuleSpec],
    catalog: Catalog,
    topology: Topology,
    context: Context | None = None,
    active: Mapping[str, RuleSpec] | None = None,
) -> tuple[RootCause, ...]:
    """Ranked root causes (see the module docstring). ``rules`` explains the findings;
    ``active`` (default: ``rules``) is the rule set whose signatures are looked for."""
    context = context or Context()
    fired = _fired(findings, rules, catalog)
    signatures = _signatures(active if active is not None else rules, set(fired), context, catalog)
    candidates = [*fired.values(), *signatures.values()]
    if not candidates:
        return ()
    onsets = component_onsets(candidates, context, catalog)
    abnormal = set(onsets)
    scored: list[tuple[tuple[bool, float, float, str], RootCause, float]] = []
    for cand in candidates:
        comp = cand.component
        t_c = onsets.get(comp, cand.since)
        considered = abnormal | {comp}
        explains = sorted(d for d in topology.downstream(comp) & abnormal if onsets[d] >= t_c)
        coverage = (1 + len(explains)) / len(considered)
        earlier_up = sorted(
            (u for u in topology.upstream(comp) & abnormal if onsets[u] < t_c),
            key=lambda u: onsets[u],
        )
        score = cand.strength * (1 + coverage) / 2 * (0.5 if earlier_up else 1.0)
        why = [
            f"rule {', '.join(cand.rules)} fired (confidence {cand.strength:.2f})"
            if cand.fired
            else f"signature of rule {cand.rules[0]} present ({len(cand.evidence)} condition(s))"
        ]
        why.append(f"explains {', '.join(explains)}" if explains else "explains no dependant")
        if earlier_up:
            why.append(f"upstream {', '.join(earlier_up)} abnormal earlier: may be a symptom")
        anomalies = sorted(
            (e for e in context.anomalies if e.component == comp),
            key=lambda e: -(e.deviation or 0.0),
        )[:8]
        if anomalies:
            why.append(f"{len(anomalies)} series of {comp} beyond their learnt baseline")
        cause = RootCause(
            fault=cand.fault,
            component=comp,
            score=min(1.0, max(0.0, score)),
            summary=cand.summary,
            evidence=cand.evidence,
            fired=cand.fired,
            rules=cand.rules,
            severity=cand.severity,
            onset=t_c,
            explains=tuple(explains),
            anomalies=tuple(anomalies),
            why="; ".join(why),
        )
        scored.append(((cand.fired, score, -t_c, cand.fault), cause, score))
    scored.sort(key=lambda item: (not item[0][0], -item[0][1], -item[0][2], item[0][3]))
    total = sum(s for _, _, s in scored) or 1.0
    return tuple(c.model_copy(update={"confidence": s / total}) for _, c, s in scored)


def independent_problems(
    findings: Sequence[Finding], component_of: Callable[[Finding], str], topology: Topology
) -> list[list[Finding]]:
    """Findings that arrive together, split into problems of their own: two findings stay
    in one problem when their components are the same or one depends on the other (the
    ranking then says which is the cause); findings on unrelated components (an edge
    terminal and the power quality of the same site) are separate incidents, so neither
    fault is swallowed by the other's remediation."""
    groups: list[tuple[set[str], list[Finding]]] = []
    for finding in findings:
        component = component_of(finding)
        related = [
            g
            for g in groups
            if any(
                c == component
                or c in topology.upstream(component)
                or c in topology.downstream(component)
                for c in g[0]
            )
        ]
        merged: tuple[set[str], list[Finding]] = ({component}, [finding])
        for group in related:
            merged[0].update(group[0])
            merged[1][:0] = group[1]
            groups.remove(group)
        groups.append(merged)
    return [members for _, members in groups]
