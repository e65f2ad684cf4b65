"""Learn: every finished remediation goes back into the graph as a case of its own.

The new case carries the RCA text (embedded like any case), the symptoms, which solution
was used and whether verification passed; the solution's success statistics move with it,
which is what later decisions weigh.
"""

from __future__ import annotations

from knowledge.embedding import Embedder, text_key
from knowledge.graph import KnowledgeGraph
from loop.models import Case, Decision, RCAReport


def outcome_case(
    incident_id: str, report: RCAReport, decision: Decision, resolved: bool, seconds: float
) -> Case:
    top = report.top
    assert top is not None, "an incident reaches learning only with a root cause"
    return Case(
        id=f"incident-{incident_id}",
        title=f"{top.fault} on {report.target}",
        text=report.text(),
        symptoms=report.symptoms(),
        device_type=top.component,
        environment=report.target,
        fault=top.fault,
        solution_id=decision.solution_id,
        outcome="resolved" if resolved else "failed",
        time_to_resolve_s=round(seconds, 1) if resolved else None,
    )


def record_outcome(
    graph: KnowledgeGraph, embedder: Embedder, case: Case, decision: Decision
) -> None:
    graph.record_outcome(
        case,
        embedder.embed(case.text),
        text_key(case.text),
        success=case.outcome == "resolved",
        matched_case_id=decision.match.case_id if decision.match else None,
        similarity=decision.match.similarity if decision.match else None,
    )
