"""Decide on the real Neo4j: the graph is outside data, so what a decision runs comes from
the solution library; a graph Solution naming another playbook or rollback (a path out of
the library, an absolute path, a link) or one the library lacks is refused, logged and
counted, and no decision is made."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator

import pytest

from kernel.config import DEFAULT_SITE
from kernel.models import Evidence, RCAReport, RootCause
from knowledge.graph import KnowledgeGraph
from knowledge.seed import load_cases, seed_graph
from loop.decide import Decider
from loop.planner import Planner, Subject
from loop.solutions import SolutionSpec, load_library, load_solutions
from sites import load_site

pytestmark = pytest.mark.neo4j

SOLUTION = "sol-cache-scale-out"
REPORT = RCAReport(
    incident_id="lib-1",
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


@pytest.fixture(scope="module")
def seeded(neo4j_settings, embedder) -> Iterator[tuple[KnowledgeGraph, dict[str, SolutionSpec]]]:
    graph = KnowledgeGraph.connect(neo4j_settings)
    graph._run("MATCH (n) DETACH DELETE n")
    seed_graph(graph, embedder, list(load_solutions().values()), load_cases())
    yield graph, load_library()
    graph.close()


def decider(seeded, embedder, library=None) -> Decider:
    graph, full = seeded
    return Decider(graph, embedder, 0.8, library=full if library is None else library)


def test_the_library_names_what_runs(seeded, embedder) -> None:
    d = decider(seeded, embedder)
    outcome = d.decide(REPORT)
    spec = seeded[1][SOLUTION]
    assert outcome.decision is not None and outcome.decision.solution_id == SOLUTION
    assert d.refusals == Counter()
    site = dataclasses.replace(
        load_site(DEFAULT_SITE), library=seeded[1], defaults={"twin_url": "http://127.0.0.1:9"}
    )
    planner = Planner(site, 5.0, 600.0)
    plan = planner.resolve(Subject("lib-1", "pm-site-1", report=REPORT), SOLUTION)
    assert plan.playbook == spec.playbook and plan.rollback_playbook == spec.rollback_playbook
    assert plan.extra_vars["target"] == "pm-site-1" and plan.risk == spec.risk
    assert plan.check_mode == spec.check_mode and plan.blast_radius == spec.blast_radius
    assert plan.verification.component == "cache"


def test_risk_comes_from_the_library_not_the_graph(seeded, embedder) -> None:
    """The graph's Solution.risk is a copy made at seed time; a graph that says otherwise
    changes nothing the decision reads."""
    graph, library = seeded
    spec = library[SOLUTION]
    other = "low" if spec.risk == "high" else "high"
    graph.upsert_solution(spec.solution().model_copy(update={"risk": other}))
    try:
        assert graph.get_solution(SOLUTION).risk == other
        outcome = decider(seeded, embedder).decide(REPORT)
    finally:
        graph.upsert_solution(spec.solution())
    assert outcome.decision is not None
    assert f"risk {spec.risk} -> {outcome.decision.mode}" in outcome.decision.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("playbook", "../../x.yml"),
        ("playbook", "/tmp/x.yml"),
        ("playbook", "evil_link.yml"),  # a link in the folder that points out of it
        ("rollback_playbook", "../cache_scale_out_rollback.yml"),
        ("rollback_playbook", None),
    ],
)
def test_a_graph_solution_that_disagrees_with_the_library_is_refused(
    seeded, embedder, caplog, field, value
) -> None:
    graph, library = seeded
    graph.upsert_solution(library[SOLUTION].solution().model_copy(update={field: value}))
    d = decider(seeded, embedder)
    try:
        with caplog.at_level(logging.WARNING, logger="mendloop.decide"):
            outcome = d.decide(REPORT)
    finally:
        graph.upsert_solution(library[SOLUTION].solution())  # as the library says again
    assert outcome.decision is None
    assert outcome.reason.startswith(f"decision refused: {SOLUTION}: the graph names {field}")
    assert repr(value) in outcome.reason and "the library is the source of truth" in outcome.reason
    assert d.refusals == Counter({"library_mismatch": 1})
    assert f"incident lib-1: decision refused: {SOLUTION}" in caplog.text


def test_a_graph_solution_the_library_lacks_is_refused(seeded, embedder) -> None:
    library = {k: v for k, v in seeded[1].items() if k != SOLUTION}
    d = decider(seeded, embedder, library)
    outcome = d.decide(REPORT)
    assert outcome.decision is None
    assert outcome.reason == f"decision refused: {SOLUTION!r} is not in the solution library"
    assert d.refusals == Counter({"not_in_library": 1})
