"""Neo4j over Bolt: schema, vector search, seeding and learning, on the real server."""

import pytest

from knowledge.embedding import text_key
from knowledge.graph import KnowledgeGraph
from knowledge.seed import load_cases, seed_graph
from loop.config import Settings
from loop.errors import GraphUnavailable, KnowledgeError
from loop.models import Case
from loop.solutions import load_solutions

pytestmark = pytest.mark.neo4j


@pytest.fixture
def seeded(graph, embedder, neo4j_settings):
    solutions = load_solutions(neo4j_settings.playbooks_dir)
    first = seed_graph(graph, embedder, list(solutions.values()), load_cases())
    return graph, solutions, first


def test_seed_is_idempotent_and_embeds_only_changes(seeded, embedder):
    graph, solutions, first = seeded
    assert first["embedded"] == len(load_cases()) > 0
    again = seed_graph(graph, embedder, list(solutions.values()), load_cases())
    assert again["embedded"] == 0
    stats = graph.stats()
    assert stats["cases"] == len(load_cases()) and stats["solutions"] == len(solutions)


def test_vector_search_finds_the_matching_fault(seeded, embedder):
    graph, _, _ = seeded
    vector = embedder.embed(
        "cache utilisation above 80 %, LRU eviction failed, hit ratio collapsed and queries "
        "penetrate to the database"
    )
    hits = graph.similar_cases(vector, k=3)
    case, solution, cosine = hits[0]
    assert case.fault == "cache_saturation" and solution.id == "sol-cache-scale-out"
    assert cosine > 0.5
    assert [h[2] for h in hits] == sorted((h[2] for h in hits), reverse=True)


def test_record_outcome_counts_once_and_links_the_match(seeded, embedder):
    graph, _, _ = seeded
    case = Case(
        id="incident-x1",
        title="t",
        text="cache saturated on pm-site-1",
        symptoms=("cache_hit_ratio:low",),
        fault="cache_saturation",
        solution_id="sol-cache-scale-out",
        outcome="resolved",
        time_to_resolve_s=30,
    )
    vector = embedder.embed(case.text)
    before = graph.get_solution("sol-cache-scale-out")
    for _ in range(2):  # a retried write must not count twice
        graph.record_outcome(
            case,
            vector,
            text_key(case.text),
            success=True,
            matched_case_id="seed-cache-001",
            similarity=0.91,
        )
    after = graph.get_solution("sol-cache-scale-out")
    assert after.successes == before.successes + 1 and after.failures == before.failures
    linked = graph._run(
        "MATCH (:Case {id: 'incident-x1'})-[s:SIMILAR_TO]->(m:Case) RETURN m.id AS id, "
        "s.similarity AS sim"
    )
    assert [(r["id"], r["sim"]) for r in linked] == [("seed-cache-001", 0.91)]
    hits = graph.similar_cases(vector, k=1)
    assert hits[0][0].id == "incident-x1"


def test_case_with_unknown_solution_is_refused(graph, embedder):
    graph.ensure_schema()
    case = Case(id="c", title="t", text="x", fault="f", solution_id="missing")
    with pytest.raises(KnowledgeError, match="missing"):
        graph.upsert_case(case, embedder.embed("x"), text_key("x"))


def test_unreachable_neo4j_names_the_uri_and_the_fix():
    settings = Settings(neo4j_uri="bolt://127.0.0.1:1")
    with pytest.raises(GraphUnavailable) as err:
        KnowledgeGraph.connect(settings)
    message = str(err.value)
    assert "NEO4J_URI=bolt://127.0.0.1:1" in message and "mendloop neo4j start" in message
