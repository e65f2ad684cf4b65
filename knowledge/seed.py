"""Load a site's seed cases and solution library into the graph, idempotently.

The same batch path as `mendloop kb import`: texts are embedded only when new or changed,
so re-seeding an unchanged graph costs a round trip per batch, not a model pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from kernel.config import TWIN_PACK
from kernel.domain import Domain
from kernel.errors import KnowledgeError
from kernel.models import Case, Solution
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer

# the power-marketing pack's seed cases (a site's come through sites/, checked line by line)
SEED_CASES = TWIN_PACK / "cases" / "seed.jsonl"


def load_cases(path: Path = SEED_CASES) -> list[Case]:
    """The cases of a JSON-lines file (one case per line) or a YAML ``cases:`` list."""
    try:
        text = path.read_text()
        if path.suffix == ".jsonl":
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            entries = (yaml.safe_load(text) or {}).get("cases", [])
        return [Case.model_validate(entry) for entry in entries]
    except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
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
