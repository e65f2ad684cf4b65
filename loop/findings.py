"""Findings as the analyzer makes them: a rule that fired, bad input (gaps, stale samples),
and what a hot reload of the rules did.

    finding = finding_from_rule(rule, facts)      # a rule finding: opens an incident
    finding = quality_finding(event)              # no_data / stale: never a cause
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.models import Evidence, Finding, FindingKind
from rules.compiler import AbnormalFact, RuleSpec
from rules.signals import QualityEvent


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


def quality_finding(event: QualityEvent) -> Finding:
    """Bad input as a finding of its own kind; ``rule_id`` is ``data:<reason>``."""
    return Finding(
        kind=FindingKind(event.kind),
        target=event.target,
        series=(event.series,),
        rule_id=f"data:{event.reason}",
        started_at=event.since,
        score=1.0,
        evidence=(
            Evidence(
                series=event.series,
                value=event.value,
                threshold=event.limit,
                direction="high",
                since=event.since,
            ),
        ),
    )


@dataclass(frozen=True)
class ReloadResult:
    """What a hot reload did: rule ids added/removed/changed, findings it fired."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    fired: tuple[Finding, ...]
