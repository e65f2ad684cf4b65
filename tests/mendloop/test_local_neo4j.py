"""The local Neo4j launcher against the real thing: Maven build, JVM, Bolt, vector index.

No mocks: this builds deploy/neo4j (once; ~125 MB from Maven Central into ~/.m2 the first
time), starts the JVM through mendloop.local_neo4j and talks Bolt to it with the driver.
It uses the tests' own instance (tests/conftest.py), never the development one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from neo4j import Driver, GraphDatabase

from kernel.config import Settings
from mendloop import local_neo4j

pytestmark = pytest.mark.neo4j

LABEL = "LocalNeo4jTestDoc"
INDEX = "local_neo4j_test_embedding"
DIMS = 384


def _one_hot(i: int, scale: float = 1.0) -> list[float]:
    vector = [0.0] * DIMS
    vector[i] = scale
    return vector


@pytest.fixture(scope="module")
def local(neo4j_settings: Settings) -> tuple[Settings, local_neo4j.LocalNeo4jStatus]:
    """The tests' local Neo4j (conftest starts it and stops it after the session)."""
    if not neo4j_settings.uses_local_neo4j:
        pytest.skip(f"tests use NEO4J at {neo4j_settings.neo4j_uri}, not the local launcher")
    return neo4j_settings, local_neo4j.start(neo4j_settings)  # idempotent: already running


@pytest.fixture(scope="module")
def driver(local: tuple[Settings, local_neo4j.LocalNeo4jStatus]) -> Iterator[Driver]:
    settings, _ = local
    with GraphDatabase.driver(
        settings.neo4j_uri, auth=(settings.neo4j_user, settings.neo4j_password)
    ) as drv:
        drv.verify_connectivity()
        yield drv


def test_start_reports_a_running_server(
    local: tuple[Settings, local_neo4j.LocalNeo4jStatus],
) -> None:
    settings, started = local
    assert started.running and started.bolt_ok
    assert started.pid is not None
    assert started.uri == settings.neo4j_uri
    # idempotent: a second start returns the same process
    again = local_neo4j.start(settings)
    assert again.pid == started.pid and again.bolt_ok


def test_cypher_round_trip(driver: Driver) -> None:
    key = str(uuid.uuid4())
    try:
        driver.execute_query(f"CREATE (:{LABEL} {{key: $key, name: 'round-trip'}})", key=key)
        records, _, _ = driver.execute_query(
            f"MATCH (n:{LABEL} {{key: $key}}) RETURN n.name AS name", key=key
        )
        assert [r["name"] for r in records] == ["round-trip"]
        records, _, _ = driver.execute_query(
            "CALL dbms.components() YIELD name, versions, edition "
            "RETURN versions[0] AS version, edition"
        )
        assert records[0]["edition"] == "community"
        assert records[0]["version"].startswith("5.26.")
    finally:
        driver.execute_query(f"MATCH (n:{LABEL} {{key: $key}}) DELETE n", key=key)


def test_wrong_password_is_refused(local: tuple[Settings, local_neo4j.LocalNeo4jStatus]) -> None:
    from neo4j.exceptions import AuthError

    settings, _ = local
    with (
        pytest.raises(AuthError),
        GraphDatabase.driver(settings.neo4j_uri, auth=("neo4j", "not-the-password")) as bad,
    ):
        bad.verify_connectivity()


def test_vector_index_nearest_neighbour(driver: Driver) -> None:
    run = str(uuid.uuid4())
    driver.execute_query(f"DROP INDEX {INDEX} IF EXISTS")
    try:
        driver.execute_query(
            f"CREATE VECTOR INDEX {INDEX} IF NOT EXISTS FOR (n:{LABEL}) ON (n.embedding) "
            "OPTIONS {indexConfig: {`vector.dimensions`: $dims, "
            "`vector.similarity_function`: 'cosine'}}",
            dims=DIMS,
        )
        docs = [
            {"name": "disk", "embedding": _one_hot(0)},
            {"name": "cpu", "embedding": _one_hot(1)},
            {"name": "memory", "embedding": _one_hot(2)},
        ]
        driver.execute_query(
            f"UNWIND $docs AS d CREATE (n:{LABEL} {{run: $run, name: d.name}}) "
            "SET n.embedding = d.embedding",
            docs=docs,
            run=run,
        )
        driver.execute_query("CALL db.awaitIndexes(300)")

        query = _one_hot(1, 0.9)
        query[0] = 0.1  # mostly "cpu", a little "disk"
        records, _, _ = driver.execute_query(
            "CALL db.index.vector.queryNodes($index, 3, $vector) YIELD node, score "
            "WHERE node.run = $run RETURN node.name AS name, score ORDER BY score DESC",
            index=INDEX,
            vector=query,
            run=run,
        )
        names = [r["name"] for r in records]
        scores = [r["score"] for r in records]
        assert names[0] == "cpu", records
        assert names[1] == "disk", records
        assert scores[0] > scores[1] > scores[2]
        assert 0.0 <= scores[-1] <= scores[0] <= 1.0
    finally:
        driver.execute_query(f"MATCH (n:{LABEL} {{run: $run}}) DELETE n", run=run)
        driver.execute_query(f"DROP INDEX {INDEX} IF EXISTS")


def test_status_shows_running(local: tuple[Settings, local_neo4j.LocalNeo4jStatus]) -> None:
    settings, started = local
    status = local_neo4j.status(settings)
    assert status.running
    assert status.bolt_ok, status.detail
    assert status.pid == started.pid
    assert status.uri == settings.neo4j_uri
