"""Neo4j over Bolt: schema migrations, the domain mirror, case writes and their statistics,
candidates by vector index, learning, export, on the real server."""

import pytest

from kernel.config import Settings
from kernel.domain import Domain
from kernel.errors import GraphUnavailable, KnowledgeError
from kernel.models import Case, Decision, DecisionMode, Evidence, RCAReport, RootCause
from knowledge import schema
from knowledge.graph import KnowledgeGraph
from knowledge.importer import Importer
from knowledge.seed import load_cases, seed_graph
from loop.decide import Decider
from loop.learn import outcome_case, record_outcome
from loop.solutions import load_library, load_solutions

pytestmark = pytest.mark.neo4j


@pytest.fixture
def seeded(graph, embedder, neo4j_settings):
    solutions = load_solutions()  # the power-marketing pack's
    first = seed_graph(graph, embedder, list(solutions.values()), load_cases())
    return graph, solutions, first


def test_migrations_are_recorded_idempotent_and_refuse_a_newer_graph(graph):
    assert graph.ensure_schema() == [m.version for m in schema.MIGRATIONS]
    assert graph.schema_version() == schema.LATEST
    assert graph.ensure_schema() == []  # a restart runs nothing new
    graph._run("CREATE (:SchemaMigration {version: $v})", v=schema.LATEST + 1)
    with pytest.raises(KnowledgeError, match="upgrade mendloop"):
        graph.ensure_schema()


def test_a_graph_written_by_the_walking_skeleton_is_migrated_and_readable(graph, embedder):
    vector = embedder.embed("cache hit ratio collapsed")
    graph._run(  # what the first version wrote: no solution_id, no symptom keys, env a word
        "CREATE (s:Solution {id: 'sol-old', title: 't', playbook: 'p.yml', risk: 'low', "
        "fixes: 'cache_saturation', description: '', successes: 1, failures: 0}) "
        "CREATE (c:Case {id: 'incident-old', title: 't', text: 'cache hit ratio collapsed', "
        "symptoms: ['cache_hit_ratio:low'], device_type: 'cache', environment: 'pm-site-1', "
        "fault: 'cache_saturation', outcome: 'resolved', embedding: $v})"
        "-[:SOLVED_BY {outcome: 'resolved'}]->(s)",
        v=vector,
    )
    graph.ensure_schema()
    [hit] = graph.candidates(vector, k=1)
    assert hit.case.solution_id == "sol-old" and hit.solution.id == "sol-old"
    assert hit.symptom_keys == ("cache_hit_ratio:low",) and hit.case.environment == {}


def test_the_domain_is_mirrored_with_its_topology(graph):
    graph.ensure_schema()
    domain = Domain.load()
    topology = graph.topology()
    assert {k: sorted(v) for k, v in topology.items()} == {
        k: sorted(v) for k, v in domain.components.items()
    }
    located = graph._run(
        "MATCH (:Target {name: 'pm-site-1'})-[:LOCATED_IN]->(a:Region)-[:WITHIN*3]->(p:Region) "
        "RETURN a.level AS area, p.name AS province, p.level AS level"
    )
    assert [dict(r) for r in located] == [
        {"area": "station_area", "province": "Zhejiang", "level": "province"}
    ]


def test_seed_is_idempotent_and_embeds_only_changes(seeded, embedder):
    graph, solutions, first = seeded
    assert first["embedded"] == len({c.text for c in load_cases()}) > 0
    again = seed_graph(graph, embedder, list(solutions.values()), load_cases())
    assert again["embedded"] == 0
    stats = graph.stats()
    assert stats["cases"] == len(load_cases()) and stats["solutions"] == len(solutions)
    assert stats["schema_version"] == schema.LATEST
    assert stats["faults"] == len(Domain.load().faults)


def test_cases_are_linked_to_what_they_name(seeded):
    graph, _, _ = seeded
    row = graph._run(
        "MATCH (c:Case {id: 'seed-cache-001'}) RETURN "
        "[(c)-[:SHOWED]->(s) | s.tag] AS symptoms, [(c)-[:DIAGNOSED_AS]->(f) | f.name] AS fault,"
        "[(c)-[:ON_DEVICE]->(d)-[:PART_OF]->(x) | x.name] AS component, "
        "[(c)-[:IN_ENVIRONMENT]->(e) | e.key] AS env, "
        "[(c)-[:SOLVED_BY]->(:Solution)-[:RUNS]->(p) | p.path] AS playbook"
    )[0]
    assert "cache_hit_ratio:low" in row["symptoms"] and row["fault"] == ["cache_saturation"]
    assert row["component"] == ["cache"] and sorted(row["env"]) == [
        "load=peak",
        "period=billing-peak",
    ]
    assert row["playbook"] == ["cache_scale_out.yml"]


def test_candidates_come_with_their_matching_fields(seeded, embedder):
    graph, _, _ = seeded
    vector = embedder.embed(
        "cache utilisation above 80 %, LRU eviction failed, hit ratio collapsed and queries "
        "penetrate to the database"
    )
    hits = graph.candidates(vector, k=3)
    assert hits[0].case.fault == "cache_saturation"
    assert hits[0].solution.id == "sol-cache-scale-out" and hits[0].component == "cache"
    assert "cache_hit_ratio:low" in hits[0].symptom_keys and hits[0].cosine > 0.5
    assert [h.cosine for h in hits] == sorted((h.cosine for h in hits), reverse=True)


def test_solution_statistics_follow_the_cases_that_name_them(seeded, embedder):
    graph, _, _ = seeded
    importer = Importer(graph, embedder, Domain.load())
    before = graph.get_solution("sol-db-io-tune")
    case = Case(
        id="t-1",
        title="t",
        text="database io wait",
        fault="db_io_wait",
        solution_id="sol-db-io-tune",
        outcome="resolved",
        time_to_resolve_s=100,
    )
    importer.write([case])
    importer.write([case])  # unchanged: skipped, counted once
    after = graph.get_solution("sol-db-io-tune")
    assert after.successes == before.successes + 1
    assert after.resolve_s_total == before.resolve_s_total + 100
    # the same ticket corrected: it failed after all, with another solution
    importer.write(
        [case.model_copy(update={"outcome": "failed", "solution_id": "sol-cache-scale-out"})]
    )
    assert graph.get_solution("sol-db-io-tune") == before
    moved = graph.get_solution("sol-cache-scale-out")
    assert graph.delete_case("t-1") and not graph.delete_case("t-1")
    assert graph.get_solution("sol-cache-scale-out").failures == moved.failures - 1


def test_learning_counts_once_links_the_match_and_feeds_the_next_decision(seeded, embedder):
    graph, _, _ = seeded
    report = RCAReport(
        incident_id="x1",
        target="pm-site-1",
        latency_ms=1,
        candidates=(
            RootCause(
                fault="cache_saturation",
                component="cache",
                score=0.9,
                summary="Cache cluster saturated: hit ratio collapsed",
                evidence=(
                    Evidence(
                        series="cache_hit_ratio", value=0.4, threshold=0.7, direction="low", since=0
                    ),
                ),
            ),
        ),
    )
    decider = Decider(graph, embedder, 0.8, library=load_library())
    outcome = decider.decide(report)
    assert outcome.decision is not None
    assert outcome.decision.solution_id == "sol-cache-scale-out"
    decision: Decision = outcome.decision
    assert decision.mode == DecisionMode.auto and decision.match.similarity >= 0.8
    case = outcome_case("x1", report, decision, resolved=True, seconds=30)
    before = graph.get_solution("sol-cache-scale-out")
    for _ in range(2):  # a retried write must not count twice
        record_outcome(graph, embedder, case, decision)
    after = graph.get_solution("sol-cache-scale-out")
    assert after.successes == before.successes + 1 and after.failures == before.failures
    linked = graph._run(
        "MATCH (:Case {id: 'incident-x1'})-[s:SIMILAR_TO]->(m:Case) "
        "RETURN m.id AS id, s.similarity AS sim, m.reuse_count AS reuses"
    )
    assert [tuple(r) for r in linked] == [(decision.match.case_id, decision.match.similarity, 1)]
    again = decider.decide(report.model_copy(update={"incident_id": "x2"}))
    assert again.decision.match.case_id == "incident-x1"  # its own words, verified, now first
    stored = graph.get_case("incident-x1")
    assert stored.target == "pm-site-1" and stored.outcome == "resolved"


def test_export_gives_back_what_was_imported(seeded):
    graph, _, _ = seeded
    exported = {c.id: c for c in graph.export_cases(page=7)}
    assert exported == {c.id: c for c in load_cases()}


def test_a_batch_naming_an_unknown_solution_is_refused_whole(seeded, embedder):
    graph, _, _ = seeded
    good = Case(id="ok", title="t", text="x", fault="db_io_wait", solution_id="sol-db-io-tune")
    bad = Case(id="c", title="t", text="y", fault="db_io_wait", solution_id="missing")
    before = graph.get_solution("sol-db-io-tune")
    with pytest.raises(KnowledgeError, match="missing"):
        Importer(graph, embedder, Domain.load()).write([good, bad])
    assert graph.get_case("c") is None and graph.get_case("ok") is None  # nothing half-written
    assert graph.get_solution("sol-db-io-tune") == before


def test_unreachable_neo4j_names_the_uri_and_the_fix():
    settings = Settings(neo4j_uri="bolt://127.0.0.1:1")
    with pytest.raises(GraphUnavailable) as err:
        KnowledgeGraph.connect(settings)
    message = str(err.value)
    assert "NEO4J_URI=bolt://127.0.0.1:1" in message and "mendloop neo4j start" in message
