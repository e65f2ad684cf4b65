"""Load the built-in cases and the solution library into the graph, idempotently.

The same batch path as `mendloop kb import`: texts are embedded only when new or changed,
so re-seeding an unchanged graph costs a round trip per batch, not a model pass.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from kernel.domain import Domain
from kernel.errors import KnowledgeError
from kernel.models import Case, Solution
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer

SEED_CASES = Path(__file__).resolve().parent / "seed_cases.yaml"


def load_cases(path: Path = SEED_CASES) -> list[Case]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return [Case.model_validate(entry) for entry in data.get("cases", [])]
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc


def seed_graph(
    graph: KnowledgeGraph,
    embedder: Embedder,
    solutions: list[Solution],
    cases: list[Case],
    domain: Domain | None = None,
) -> dict[str, int]:
    """Schema, vocabulary, solutions, then cases; says how many texts were (re-)embedded."""
    domain = domain or Domain.load()
    graph.ensure_schema(domain)
    known = {s.id for s in solutions}
    orphans = [c.id for c in cases if c.solution_id not in known]
    if orphans:
        raise KnowledgeError(f"cases name unknown solutions: {', '.join(orphans)}")
    for solution in solutions:
        graph.upsert_solution(solution)
    counts = Importer(graph, embedder, domain).write(cases)
    return {"solutions": len(solutions), "cases": len(cases), "embedded": counts.embedded}
