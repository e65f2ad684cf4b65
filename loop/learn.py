"""Learn: every finished remediation goes back into the graph as a case of its own.

The new case carries the RCA text (embedded like any case), the symptoms, the target,
which solution was used and whether verification passed; the solution's success
statistics (a Beta posterior over verified outcomes) move with it, which is what later
decisions weigh. The case whose fix was reused is linked (SIMILAR_TO) and its reuse count
goes up: the past case is strengthened, the new one kept for the audit trail. The daemon
queues every outcome in SQL first (loop/outbox.py), so Neo4j being down loses none.
"""

from __future__ import annotations

from kernel.domain import Domain
from kernel.models import Case, Decision, RCAReport
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer


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
        target=report.target,
        fault=top.fault,
        solution_id=decision.solution_id,
        outcome="resolved" if resolved else "failed",
        time_to_resolve_s=round(seconds, 1) if resolved else None,
    )


def record_outcome(
    graph: KnowledgeGraph,
    embedder: Embedder,
    case: Case,
    decision: Decision,
    retry_s: float = 90.0,
    domain: Domain | None = None,
) -> None:
    """Same write path as an import: idempotent, so a retried write never counts twice.
    Neo4j away for longer than ``retry_s``: KnowledgeError (the daemon's outbox keeps the
    outcome and tries again later, loop/outbox.py)."""
    Importer(graph, embedder, domain or Domain.load(), retry_s=retry_s).write([case])
    if decision.match is not None:
        graph.link_reuse(case.id, decision.match.case_id, decision.match.similarity)
