"""Shared fixtures: real services only (Neo4j over Bolt, SQLite/PostgreSQL, the model)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loop.config import Settings
from loop.errors import GraphUnavailable


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", verify_hold_s=2.0, verify_timeout_s=60.0)


@pytest.fixture(scope="session")
def neo4j_settings() -> Iterator[Settings]:
    """The Neo4j the tests use: NEO4J_URI if it answers, else the local one started here
    (and stopped again at the end of the session)."""
    from knowledge import local_neo4j
    from knowledge.graph import KnowledgeGraph

    settings = Settings()
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
def graph(neo4j_settings: Settings):
    """A connected graph, emptied first: tests own the whole database while they run."""
    from knowledge.graph import KnowledgeGraph

    graph = KnowledgeGraph.connect(neo4j_settings)
    graph._run("MATCH (n) DETACH DELETE n")
    yield graph
    graph.close()


@pytest.fixture(scope="session")
def embedder():
    from knowledge.embedding import Embedder

    return Embedder.shared()
