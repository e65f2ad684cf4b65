"""Load the built-in cases and the solution library into the graph, idempotently.

Texts are embedded only when new or changed (the case keeps the hash of the text it was
embedded from), so re-seeding an unchanged graph costs a round trip, not a model pass.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from knowledge.embedding import Embedder, text_key
from knowledge.graph import KnowledgeGraph
from loop.errors import KnowledgeError
from loop.models import Case, Solution

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
) -> dict[str, int]:
    """Schema, solutions, then cases; returns how many case texts were (re-)embedded."""
    graph.ensure_schema()
    known = {s.id for s in solutions}
    for solution in solutions:
        graph.upsert_solution(solution)
    orphans = [c.id for c in cases if c.solution_id not in known]
    if orphans:
        raise KnowledgeError(f"cases name unknown solutions: {', '.join(orphans)}")
    stored = graph.case_text_keys([c.id for c in cases])
    stale = [c for c in cases if stored.get(c.id) != text_key(c.text)]
    vectors = embedder.embed_many([c.text for c in stale]) if stale else []
    for case, vector in zip(stale, vectors, strict=True):
        graph.upsert_case(case, vector, text_key(case.text))
    graph.await_indexes()
    return {"solutions": len(solutions), "cases": len(cases), "embedded": len(stale)}
