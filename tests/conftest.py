"""Shared fixtures: real services only (Neo4j over Bolt, SQLite/PostgreSQL, the model).

The tests get a Neo4j of their own (bolt://127.0.0.1:7688, data in var/test-neo4j), so
they may empty it at will without touching the development graph on 7687. Set
MENDLOOP_TEST_NEO4J_URI (with NEO4J_USER/NEO4J_PASSWORD) to use another server instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.config import REPO_ROOT, Settings
from kernel.errors import GraphUnavailable

TEST_NEO4J_URI = os.environ.get("MENDLOOP_TEST_NEO4J_URI", "bolt://127.0.0.1:7688")
# another port gets its own data directory, so two test runs never share a store
_TEST_PORT = TEST_NEO4J_URI.rsplit(":", 1)[-1]
TEST_NEO4J_HOME = (
    REPO_ROOT / "var" / ("test-neo4j" if _TEST_PORT == "7688" else f"test-neo4j-{_TEST_PORT}")
)


@pytest.fixture(scope="session")
def neo4j_settings() -> Iterator[Settings]:
    """The tests' Neo4j: started here when it is local and not running (and stopped again
    at the end of the session unless MENDLOOP_KEEP_NEO4J is set)."""
    from knowledge.graph import KnowledgeGraph
    from mendloop import local_neo4j

    settings = Settings(neo4j_uri=TEST_NEO4J_URI, var_dir=TEST_NEO4J_HOME)
    started = False
    try:
        KnowledgeGraph.connect(settings).close()
    except GraphUnavailable:
        if not settings.uses_local_neo4j:
            raise
        local_neo4j.ensure_built()
        local_neo4j.start(settings)
        started = True
    yield settings
    if started and not os.environ.get("MENDLOOP_KEEP_NEO4J"):
        local_neo4j.stop(settings)


@pytest.fixture
def make_settings(tmp_path: Path, neo4j_settings: Settings) -> Callable[..., Settings]:
    """Settings for one test: its own var/ (so its own SQLite file), the tests' Neo4j."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "var_dir": tmp_path / "var",
            "neo4j_uri": neo4j_settings.neo4j_uri,
            "neo4j_user": neo4j_settings.neo4j_user,
            "neo4j_password": neo4j_settings.neo4j_password,
        }
        return Settings(**(values | overrides))

    return make


@pytest.fixture
def graph(neo4j_settings: Settings):
    """A connected graph, emptied first: tests own the whole test database while they run."""
    from knowledge.graph import KnowledgeGraph

    graph = KnowledgeGraph.connect(neo4j_settings)
    graph._run("MATCH (n) DETACH DELETE n")
    yield graph
    graph.close()


@pytest.fixture(scope="session")
def embedder():
    from knowledge.embedding import Embedder

    return Embedder.shared()


def analyzed(engine: Any, target: str, rule_id: str = "cache-saturation-penetration") -> str:
    """An incident as the daemon leaves it after analysis: the rule's finding (every
    series of the rule past its crit line) and the report (tests of what people do)."""
    from kernel.state import State
    from loop.findings import finding_from_rule
    from rules.compiler import AbnormalFact

    rule = engine.analyzer.rules[rule_id]
    facts = [
        AbnormalFact(
            target=target,
            series=c.series,
            value=engine.catalog[c.series].crit
            * (1.2 if engine.catalog[c.series].bad == "high" else 0.8),
            threshold=engine.catalog[c.series].crit,
            direction=engine.catalog[c.series].bad,
            since=1.0,
        )
        for c in rule.all_of
    ]
    findings = [finding_from_rule(rule, facts)]
    incident_id = engine.store.open_incident(target, findings)
    report = engine.analyzer.report(incident_id, target, findings)
    engine.store.transition(
        incident_id, State.analyzed, "test", report=report, fault=report.top.fault
    )
    return incident_id


def library_plan(
    incident_id: str,
    target: str,
    base_vars: dict[str, str | int | float | bool],
    solution_id: str = "sol-cache-scale-out",
    **changes: Any,
) -> Any:
    """The RemediationPlan the daemon would make from the shipped library (loop/planner.py),
    with ``changes`` applied (e.g. ``rollback_playbook=None``)."""
    import dataclasses

    from kernel.config import DEFAULT_SITE
    from loop.planner import Planner, Subject
    from sites import load_site

    site = load_site(DEFAULT_SITE)
    planner = Planner(dataclasses.replace(site, defaults=base_vars), 5.0, 600.0)
    plan = planner.resolve(Subject(incident_id, target), solution_id)
    return plan.model_copy(update=changes) if changes else plan
