"""The Neo4j adapter: every Cypher statement mendloop runs lives in this module.

    graph = KnowledgeGraph.connect(settings)       # GraphUnavailable if it cannot
    graph.ensure_schema()
    hits = graph.similar_cases(vector, k=10)      # [(Case, Solution, cosine)]

Schema: (:Case)-[:SOLVED_BY {outcome}]->(:Solution); (:Case)-[:SIMILAR_TO {similarity}]->
(:Case) links a new case to the one whose fix it reused. Case.embedding carries a cosine
vector index (``case_embedding``, 384 dims).
"""

from __future__ import annotations

from typing import Any, LiteralString

import neo4j
from neo4j import GraphDatabase
from neo4j.exceptions import (
    AuthError,
    ConfigurationError,
    ServiceUnavailable,
    SessionExpired,
)

from knowledge.embedding import DIMENSIONS
from knowledge.similarity import cosine_from_index_score
from loop.config import Settings
from loop.errors import GraphUnavailable, KnowledgeError
from loop.models import Case, Solution

VECTOR_INDEX = "case_embedding"

_SCHEMA: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT case_id IF NOT EXISTS FOR (c:Case) REQUIRE c.id IS UNIQUE",
    "CREATE CONSTRAINT solution_id IF NOT EXISTS FOR (s:Solution) REQUIRE s.id IS UNIQUE",
    "CREATE VECTOR INDEX case_embedding IF NOT EXISTS FOR (c:Case) ON (c.embedding) "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dims, "
    "`vector.similarity_function`: 'cosine'}}",
)

_CASE_FIELDS = (
    "id",
    "title",
    "text",
    "symptoms",
    "device_type",
    "environment",
    "fault",
    "outcome",
    "time_to_resolve_s",
)
_CASE_PROJECTION = ", ".join(f".{f}" for f in _CASE_FIELDS)
_SOLUTION_PROJECTION: LiteralString = (
    "s {.id, .title, .playbook, .rollback_playbook, .risk, .fixes, .description, "
    ".successes, .failures} AS solution"
)

_UPSERT_SOLUTION: LiteralString = """
MERGE (s:Solution {id: $id})
ON CREATE SET s.successes = $successes, s.failures = $failures
SET s.title = $title, s.playbook = $playbook, s.rollback_playbook = $rollback_playbook,
    s.risk = $risk, s.fixes = $fixes, s.description = $description
"""

_UPSERT_CASE: LiteralString = """
MATCH (s:Solution {id: $solution_id})
MERGE (c:Case {id: $case.id})
SET c += $case, c.embedding = $embedding, c.text_key = $text_key
MERGE (c)-[r:SOLVED_BY]->(s)
SET r.outcome = $case.outcome
RETURN c.id AS id
"""

_CASE_TEXT_KEYS: LiteralString = """
MATCH (c:Case) WHERE c.id IN $ids RETURN c.id AS id, c.text_key AS text_key
"""

_SIMILAR: LiteralString = (
    "CALL db.index.vector.queryNodes($index, $k, $embedding) YIELD node, score "
    "MATCH (node)-[:SOLVED_BY]->(s:Solution) "
    "RETURN node {"
    + _CASE_PROJECTION
    + ", solution_id: s.id} AS case, "
    + _SOLUTION_PROJECTION
    + ", score ORDER BY score DESC"
)

_RECORD_OUTCOME: LiteralString = """
MATCH (s:Solution {id: $solution_id})
MERGE (c:Case {id: $case.id})
WITH c, s, c.recorded_at IS NULL AS fresh
SET c += $case, c.embedding = $embedding, c.text_key = $text_key,
    c.recorded_at = coalesce(c.recorded_at, datetime())
MERGE (c)-[r:SOLVED_BY]->(s)
SET r.outcome = $case.outcome
SET s.successes = s.successes + CASE WHEN fresh AND $success THEN 1 ELSE 0 END,
    s.failures = s.failures + CASE WHEN fresh AND NOT $success THEN 1 ELSE 0 END
WITH c
OPTIONAL MATCH (m:Case {id: $matched_case_id})
FOREACH (_ IN CASE WHEN m IS NULL OR m = c THEN [] ELSE [1] END |
    MERGE (c)-[x:SIMILAR_TO]->(m) SET x.similarity = $similarity)
RETURN c.id AS id
"""

_GET_SOLUTION: LiteralString = "MATCH (s:Solution {id: $id}) RETURN " + _SOLUTION_PROJECTION

_STATS: LiteralString = """
RETURN COUNT { (:Case) } AS cases, COUNT { (:Solution) } AS solutions,
       COUNT { (:Case)-[:SOLVED_BY {outcome: 'resolved'}]->(:Solution) } AS resolved
"""


def _solution(data: dict[str, Any]) -> Solution:
    return Solution.model_validate({k: v for k, v in data.items() if v is not None})


class KnowledgeGraph:
    def __init__(self, driver: neo4j.Driver, uri: str, database: str | None = None) -> None:
        self._driver = driver
        self.uri = uri
        self._database = database

    @classmethod
    def connect(cls, settings: Settings) -> KnowledgeGraph:
        """Open and check the connection; GraphUnavailable (naming NEO4J_URI) if it fails."""
        try:
            driver = GraphDatabase.driver(
                settings.neo4j_uri,
                auth=(settings.neo4j_user, settings.neo4j_password),
                connection_timeout=5.0,
                max_transaction_retry_time=5.0,
            )
            driver.verify_connectivity()
        except (
            ServiceUnavailable,
            SessionExpired,
            AuthError,
            ConfigurationError,
            ValueError,
            OSError,
        ) as exc:
            raise GraphUnavailable(settings.neo4j_uri, str(exc) or type(exc).__name__) from exc
        return cls(driver, settings.neo4j_uri)

    def _run(self, query: LiteralString, **params: Any) -> list[neo4j.Record]:
        try:
            records, _, _ = self._driver.execute_query(query, params, database_=self._database)
        except (ServiceUnavailable, SessionExpired, AuthError) as exc:
            raise GraphUnavailable(self.uri, str(exc) or type(exc).__name__) from exc
        return records

    def ensure_schema(self) -> None:
        for statement in _SCHEMA:
            self._run(statement, dims=DIMENSIONS)
        self.await_indexes()

    def await_indexes(self) -> None:
        """Index population is asynchronous: wait until new nodes are searchable."""
        self._run("CALL db.awaitIndexes(300)")

    def upsert_solution(self, solution: Solution) -> None:
        self._run(_UPSERT_SOLUTION, **solution.model_dump())

    def case_text_keys(self, ids: list[str]) -> dict[str, str | None]:
        return {r["id"]: r["text_key"] for r in self._run(_CASE_TEXT_KEYS, ids=ids)}

    def upsert_case(self, case: Case, embedding: list[float], text_key: str) -> None:
        props = case.model_dump(exclude={"solution_id"})
        props["symptoms"] = list(case.symptoms)
        if not self._run(
            _UPSERT_CASE,
            case=props,
            embedding=embedding,
            text_key=text_key,
            solution_id=case.solution_id,
        ):
            raise KnowledgeError(f"case {case.id}: solution {case.solution_id} does not exist")

    def similar_cases(
        self, embedding: list[float], k: int = 10
    ) -> list[tuple[Case, Solution, float]]:
        """Nearest cases by text embedding, with their solution and plain cosine."""
        records = self._run(_SIMILAR, index=VECTOR_INDEX, k=k, embedding=embedding)
        return [
            (
                Case.model_validate({f: v for f, v in r["case"].items() if v is not None}),
                _solution(r["solution"]),
                cosine_from_index_score(r["score"]),
            )
            for r in records
        ]

    def get_solution(self, solution_id: str) -> Solution | None:
        records = self._run(_GET_SOLUTION, id=solution_id)
        return _solution(records[0]["solution"]) if records else None

    def record_outcome(
        self,
        case: Case,
        embedding: list[float],
        text_key: str,
        success: bool,
        matched_case_id: str | None,
        similarity: float | None,
    ) -> None:
        """Write what happened back as a new case; solution statistics count it once."""
        props = case.model_dump(exclude={"solution_id"})
        props["symptoms"] = list(case.symptoms)
        self._run(
            _RECORD_OUTCOME,
            case=props,
            embedding=embedding,
            text_key=text_key,
            solution_id=case.solution_id,
            success=success,
            matched_case_id=matched_case_id,
            similarity=similarity,
        )

    def stats(self) -> dict[str, int]:
        record = self._run(_STATS)[0]
        return {
            "cases": record["cases"],
            "solutions": record["solutions"],
            "resolved_links": record["resolved"],
        }

    def close(self) -> None:
        self._driver.close()
