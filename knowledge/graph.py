"""The Neo4j adapter: every Cypher statement mendloop runs lives in this module.

    graph = KnowledgeGraph.connect(settings)       # GraphUnavailable if it cannot
    graph.ensure_schema(domain)                    # versioned migrations + the vocabulary
    graph.write_cases(rows)                        # one transaction per batch
    hits = graph.candidates(vector, query, k=50)   # vector index + structured fields

The model (docs/KNOWLEDGE.md)::

    (Case)-[:SOLVED_BY {outcome}]->(Solution)-[:RUNS]->(Playbook)
    (Case)-[:DIAGNOSED_AS]->(Fault)-[:IN_COMPONENT]->(Component)-[:DEPENDS_ON]->(Component)
    (Case)-[:SHOWED]->(Symptom)    (Case)-[:ON_DEVICE]->(DeviceType)-[:PART_OF]->(Component)
    (Case)-[:IN_ENVIRONMENT]->(Environment)    (Solution)-[:FIXES]->(Fault)
    (Case)-[:AT]->(Target)-[:LOCATED_IN]->(Region)-[:WITHIN]->(Region)
    (Case)-[:IN_REGION]->(Region)    (Case)-[:SIMILAR_TO {similarity}]->(Case)

A Case also keeps the matching fields as properties (symptom_keys, environment pairs,
device type, component, fault), so candidates and their structured features come back in
the same round trip as the vector search. Solution success/failure counts move only with
the cases that name them, inside the transaction that writes the case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, LiteralString

import neo4j
from neo4j import GraphDatabase
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from kernel.config import Settings
from kernel.domain import Domain
from kernel.errors import GraphUnavailable, KnowledgeError
from kernel.models import Case, Solution
from knowledge import schema
from knowledge.embedding import DIMENSIONS
from knowledge.similarity import cosine_from_index_score

VECTOR_INDEX = "case_embedding"
SAME_RULE = "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"

_CASE_PROJECTION: LiteralString = (
    "c {.id, .title, .text, .symptoms, .device_type, .environment, .target, .region, "
    ".fault, .solution_id, .outcome, .time_to_resolve_s, .symptom_keys, .component} AS case"
)
_SOLUTION_PROJECTION: LiteralString = (
    "s {.id, .title, .playbook, .rollback_playbook, .risk, .fixes, .description, "
    ".successes, .failures, .resolve_s_total} AS solution"
)

_SYNC_DOMAIN: LiteralString = """
UNWIND $components AS comp
MERGE (c:Component {name: comp.name})
WITH c, comp
CALL (c, comp) {
    UNWIND comp.depends_on AS up
    MERGE (u:Component {name: up})
    MERGE (c)-[:DEPENDS_ON]->(u)
}
WITH count(*) AS _
UNWIND $faults AS fault
MERGE (f:Fault {name: fault.name}) SET f.title = fault.title
WITH f, fault
MATCH (c:Component {name: fault.component})
MERGE (f)-[:IN_COMPONENT]->(c)
WITH count(*) AS _
UNWIND $devices AS device
MERGE (d:DeviceType {name: device.name})
WITH d, device
MATCH (c:Component {name: device.component})
MERGE (d)-[:PART_OF]->(c)
WITH count(*) AS _
UNWIND $regions AS region
MERGE (r:Region {path: region.path})
SET r.name = region.name, r.level = region.level
WITH r, region
CALL (r, region) {
    MATCH (parent:Region {path: region.parent})
    MERGE (r)-[:WITHIN]->(parent)
}
WITH count(*) AS _
UNWIND $targets AS target
MERGE (t:Target {name: target.name})
WITH t, target
MATCH (r:Region {path: target.region})
MERGE (t)-[:LOCATED_IN]->(r)
"""

_UPSERT_SOLUTION: LiteralString = """
MERGE (s:Solution {id: $id})
ON CREATE SET s.successes = $successes, s.failures = $failures,
    s.resolve_s_total = $resolve_s_total
SET s.title = $title, s.playbook = $playbook, s.rollback_playbook = $rollback_playbook,
    s.risk = $risk, s.fixes = $fixes, s.description = $description
MERGE (p:Playbook {path: $playbook})
MERGE (s)-[:RUNS]->(p)
WITH s
CALL (s) {
    UNWIND [f IN split($fixes, ',') WHERE trim(f) <> '' | trim(f)] AS fault
    MERGE (f:Fault {name: fault})
    MERGE (s)-[:FIXES]->(f)
}
"""

# Stats move with the case: what the case counted for before is taken back (old
# solution, old outcome), what it counts for now is added, in the same transaction.
_WRITE_CASES: LiteralString = """
UNWIND $rows AS row
MATCH (s:Solution {id: row.solution_id})
MERGE (c:Case {id: row.id})
WITH c, s, row, c.solution_id AS old_sid, c.outcome AS old_outcome,
     coalesce(c.time_to_resolve_s, 0.0) AS old_ttr
CALL (old_sid, old_outcome, old_ttr) {
    MATCH (old:Solution {id: old_sid})
    SET old.successes = old.successes - CASE WHEN old_outcome = 'resolved' THEN 1 ELSE 0 END,
        old.failures = old.failures - CASE WHEN old_outcome = 'failed' THEN 1 ELSE 0 END,
        old.resolve_s_total = coalesce(old.resolve_s_total, 0.0)
            - CASE WHEN old_outcome = 'resolved' THEN old_ttr ELSE 0.0 END
}
CALL (c) {
    MATCH (c)-[r:SOLVED_BY|SHOWED|DIAGNOSED_AS|ON_DEVICE|IN_ENVIRONMENT|AT|IN_REGION]->()
    DELETE r
}
SET c += row.props, c.solution_id = row.solution_id, c.text_key = row.text_key,
    c.content_key = row.content_key, c.embedding = coalesce(row.embedding, c.embedding),
    c.updated_at = datetime(), c.created_at = coalesce(c.created_at, datetime())
SET s.successes = s.successes + CASE WHEN row.props.outcome = 'resolved' THEN 1 ELSE 0 END,
    s.failures = s.failures + CASE WHEN row.props.outcome = 'failed' THEN 1 ELSE 0 END,
    s.resolve_s_total = coalesce(s.resolve_s_total, 0.0)
        + CASE WHEN row.props.outcome = 'resolved'
          THEN coalesce(row.props.time_to_resolve_s, 0.0) ELSE 0.0 END
CREATE (c)-[:SOLVED_BY {outcome: row.props.outcome,
                        time_to_resolve_s: row.props.time_to_resolve_s}]->(s)
MERGE (f:Fault {name: row.props.fault})
CREATE (c)-[:DIAGNOSED_AS]->(f)
FOREACH (y IN row.symptoms |
    MERGE (n:Symptom {tag: y.tag})
    ON CREATE SET n.series = y.series, n.direction = y.direction, n.band = y.band
    CREATE (c)-[:SHOWED]->(n))
FOREACH (d IN CASE WHEN row.props.device_type = '' THEN [] ELSE [row.props.device_type] END |
    MERGE (n:DeviceType {name: d})
    CREATE (c)-[:ON_DEVICE]->(n))
FOREACH (e IN row.environment |
    MERGE (n:Environment {key: e.key})
    ON CREATE SET n.parameter = e.parameter, n.value = e.value
    CREATE (c)-[:IN_ENVIRONMENT]->(n))
FOREACH (t IN CASE WHEN row.props.target = '' THEN [] ELSE [row.props.target] END |
    MERGE (n:Target {name: t})
    CREATE (c)-[:AT]->(n))
FOREACH (p IN CASE WHEN row.region_path IS NULL THEN [] ELSE [row.region_path] END |
    MERGE (n:Region {path: p})
    CREATE (c)-[:IN_REGION]->(n))
RETURN count(c) AS written
"""

_STORED_KEYS: LiteralString = """
UNWIND $ids AS id
MATCH (c:Case {id: id})
RETURN c.id AS id, c.text_key AS text_key, c.content_key AS content_key
"""

_VECTORS_FOR: LiteralString = """
UNWIND $keys AS key
CALL (key) {
    MATCH (c:Case {text_key: key}) WHERE c.embedding IS NOT NULL
    RETURN c.embedding AS embedding LIMIT 1
}
RETURN key, embedding
"""

_CANDIDATES: LiteralString = (
    "CALL db.index.vector.queryNodes($index, $k, $embedding) YIELD node AS c, score "
    "MATCH (c)-[:SOLVED_BY]->(s:Solution) "
    "RETURN " + _CASE_PROJECTION + ", " + _SOLUTION_PROJECTION + ", score "
    "ORDER BY score DESC"
)

_LINK_REUSE: LiteralString = """
MATCH (c:Case {id: $case_id}), (m:Case {id: $matched_case_id})
WHERE c <> m
MERGE (c)-[x:SIMILAR_TO]->(m)
ON CREATE SET m.reuse_count = coalesce(m.reuse_count, 0) + 1,
    m.last_reused_at = datetime()
SET x.similarity = $similarity
"""

_GET_SOLUTION: LiteralString = "MATCH (s:Solution {id: $id}) RETURN " + _SOLUTION_PROJECTION
_SOLUTIONS: LiteralString = "MATCH (s:Solution) RETURN " + _SOLUTION_PROJECTION + " ORDER BY s.id"
_GET_CASE: LiteralString = "MATCH (c:Case {id: $id}) RETURN " + _CASE_PROJECTION

_DELETE_CASE: LiteralString = """
MATCH (c:Case {id: $id})
OPTIONAL MATCH (c)-[:SOLVED_BY]->(s:Solution)
FOREACH (_ IN CASE WHEN s IS NULL THEN [] ELSE [1] END |
    SET s.successes = s.successes - CASE WHEN c.outcome = 'resolved' THEN 1 ELSE 0 END,
        s.failures = s.failures - CASE WHEN c.outcome = 'failed' THEN 1 ELSE 0 END,
        s.resolve_s_total = coalesce(s.resolve_s_total, 0.0) - CASE
            WHEN c.outcome = 'resolved' THEN coalesce(c.time_to_resolve_s, 0.0) ELSE 0.0 END)
DETACH DELETE c
RETURN count(*) AS deleted
"""

_EXPORT: LiteralString = (
    "MATCH (c:Case) WHERE c.id > $after RETURN " + _CASE_PROJECTION + " ORDER BY c.id LIMIT $limit"
)

_LIST_CASES: LiteralString = (
    "MATCH (c:Case) WHERE c.id > $after AND ($fault IS NULL OR c.fault = $fault) "
    "RETURN " + _CASE_PROJECTION + " ORDER BY c.id LIMIT $limit"
)

_STATS: LiteralString = """
CALL () { MATCH (m:SchemaMigration) RETURN max(m.version) AS schema_version }
RETURN schema_version,
       COUNT { (:Case) } AS cases, COUNT { (:Solution) } AS solutions,
       COUNT { (:Symptom) } AS symptoms, COUNT { (:Fault) } AS faults,
       COUNT { (:Component) } AS components, COUNT { (:DeviceType) } AS device_types,
       COUNT { (:Environment) } AS environments, COUNT { (:Region) } AS regions,
       COUNT { (:Target) } AS targets, COUNT { (:Playbook) } AS playbooks,
       COUNT { ()-[:SIMILAR_TO]->() } AS reuse_links
"""
_CASES_BY_FAULT: LiteralString = (
    "MATCH (c:Case) RETURN c.fault AS fault, count(*) AS cases, "
    "sum(CASE WHEN c.outcome = 'resolved' THEN 1 ELSE 0 END) AS resolved ORDER BY fault"
)
_TOPOLOGY: LiteralString = (
    "MATCH (c:Component) OPTIONAL MATCH (c)-[:DEPENDS_ON]->(u:Component) "
    "RETURN c.name AS component, collect(u.name) AS depends_on ORDER BY component"
)


@dataclass(frozen=True)
class Candidate:
    """A case the vector index returned, with its solution and plain text cosine."""

    case: Case
    solution: Solution
    cosine: float
    symptom_keys: tuple[str, ...]
    component: str


def _solution(data: dict[str, Any]) -> Solution:
    return Solution.model_validate({k: v for k, v in data.items() if v is not None})


def case_from_record(data: dict[str, Any]) -> Case:
    """A Case from its stored properties (lists back into tuples, env pairs into a map)."""
    fields = {k: v for k, v in data.items() if v is not None and k in Case.model_fields}
    environment = fields.get("environment") or []
    fields["environment"] = dict(pair.split("=", 1) for pair in environment if "=" in pair)
    return Case.model_validate(fields)


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
                # "property key does not exist" on a fresh graph is expected, not news
                notifications_min_severity="OFF",
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
        """One managed transaction (the driver retries transient errors within it). A server
        that is gone, restarting or still starting is GraphUnavailable, which callers may
        retry: every write of ours is idempotent."""
        try:
            records, _, _ = self._driver.execute_query(query, params, database_=self._database)
        except (ServiceUnavailable, SessionExpired, TransientError, AuthError) as exc:
            raise GraphUnavailable(self.uri, str(exc) or type(exc).__name__) from exc
        return records

    # --- schema and vocabulary -------------------------------------------------------

    def schema_version(self) -> int | None:
        return self._run(schema.APPLIED)[0]["version"]

    def ensure_schema(self, domain: Domain | None = None) -> list[int]:
        """Apply pending migrations (idempotent), mirror the domain; returns what ran."""
        applied = self.schema_version()
        if applied is not None and applied > schema.LATEST:
            raise KnowledgeError(
                f"the graph is at schema version {applied}, this mendloop knows up to "
                f"{schema.LATEST}: upgrade mendloop"
            )
        ran = []
        for migration in schema.pending(applied):
            for statement in migration.statements:
                try:
                    self._run(statement, dims=DIMENSIONS)
                except ClientError as exc:  # two workers starting at once on a fresh graph:
                    if exc.code != SAME_RULE:  # IF NOT EXISTS is not atomic between them
                        raise
            self._run(schema.RECORD, version=migration.version, description=migration.description)
            ran.append(migration.version)
        self.sync_domain(domain or Domain.load())
        self.await_indexes()
        return ran

    def sync_domain(self, domain: Domain) -> None:
        regions: dict[str, dict[str, Any]] = {}
        for path in domain.region_paths():
            for depth in range(1, len(path) + 1):
                key = "/".join(path[:depth])
                regions[key] = {
                    "path": key,
                    "name": path[depth - 1],
                    "level": ("province", "city", "district", "station_area")[depth - 1],
                    "parent": "/".join(path[: depth - 1]) or None,
                }
        self._run(
            _SYNC_DOMAIN,
            components=[{"name": n, "depends_on": list(u)} for n, u in domain.components.items()],
            faults=[
                {"name": f, "component": c, "title": domain.fault_titles[f]}
                for f, c in domain.faults.items()
            ],
            devices=[{"name": d, "component": c} for d, c in domain.device_types.items()],
            regions=list(regions.values()),
            targets=[{"name": t, "region": "/".join(p)} for t, p in domain.targets.items()],
        )

    def await_indexes(self) -> None:
        """Index population is asynchronous: wait until new nodes are searchable."""
        self._run("CALL db.awaitIndexes(300)")

    def topology(self) -> dict[str, list[str]]:
        return {r["component"]: r["depends_on"] for r in self._run(_TOPOLOGY)}

    # --- writing ---------------------------------------------------------------------

    def upsert_solution(self, solution: Solution) -> None:
        self._run(_UPSERT_SOLUTION, **solution.model_dump())

    def stored_keys(self, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """id -> (text_key, content_key) of the cases already stored."""
        return {
            r["id"]: (r["text_key"], r["content_key"]) for r in self._run(_STORED_KEYS, ids=ids)
        }

    def vectors_for(self, text_keys: list[str]) -> dict[str, list[float]]:
        """Embeddings already stored for these texts: the graph is the embedding cache."""
        return {
            r["key"]: list(r["embedding"])
            for r in self._run(_VECTORS_FOR, keys=text_keys)
            if r["embedding"] is not None
        }

    def write_cases(self, rows: list[dict[str, Any]]) -> int:
        """Write prepared rows (knowledge.importer.case_row) in one transaction: all of
        them, or none when any names a solution the graph does not have."""
        if not rows:
            return 0

        def work(tx: neo4j.ManagedTransaction) -> int:
            written: int = tx.run(_WRITE_CASES, rows=rows).single(strict=True)["written"]
            if written != len(rows):  # raising inside rolls the whole batch back
                known = {r["id"] for r in tx.run("MATCH (s:Solution) RETURN s.id AS id")}
                missing = sorted({r["solution_id"] for r in rows} - known)
                raise KnowledgeError(f"cases name unknown solutions: {', '.join(missing)}")
            return written

        try:
            with self._driver.session(database=self._database) as session:
                return session.execute_write(work)
        except (ServiceUnavailable, SessionExpired, TransientError, AuthError) as exc:
            raise GraphUnavailable(self.uri, str(exc) or type(exc).__name__) from exc

    def link_reuse(self, case_id: str, matched_case_id: str, similarity: float | None) -> None:
        """The new case reused the matched one's fix: link them and count the reuse once."""
        self._run(
            _LINK_REUSE, case_id=case_id, matched_case_id=matched_case_id, similarity=similarity
        )

    def delete_case(self, case_id: str) -> bool:
        return self._run(_DELETE_CASE, id=case_id)[0]["deleted"] > 0

    # --- reading ---------------------------------------------------------------------

    def candidates(self, embedding: list[float], k: int = 50) -> list[Candidate]:
        """Nearest cases by text embedding, with their solution and matching fields."""
        records = self._run(_CANDIDATES, index=VECTOR_INDEX, k=k, embedding=embedding)
        return [
            Candidate(
                case=case_from_record(r["case"]),
                solution=_solution(r["solution"]),
                cosine=cosine_from_index_score(r["score"]),
                symptom_keys=tuple(r["case"].get("symptom_keys") or ()),
                component=r["case"].get("component") or "",
            )
            for r in records
        ]

    def get_case(self, case_id: str) -> Case | None:
        records = self._run(_GET_CASE, id=case_id)
        return case_from_record(records[0]["case"]) if records else None

    def get_solution(self, solution_id: str) -> Solution | None:
        records = self._run(_GET_SOLUTION, id=solution_id)
        return _solution(records[0]["solution"]) if records else None

    def solutions(self) -> list[Solution]:
        return [_solution(r["solution"]) for r in self._run(_SOLUTIONS)]

    def export_cases(self, page: int = 1000) -> Iterator[Case]:
        """Every case in id order, a page per transaction (so a huge graph streams)."""
        after = ""
        while True:
            records = self._run(_EXPORT, after=after, limit=page)
            if not records:
                return
            for record in records:
                yield case_from_record(record["case"])
            after = records[-1]["case"]["id"]

    def list_cases(self, after: str = "", limit: int = 100, fault: str | None = None) -> list[Case]:
        """One page of cases in id order (the REST API's case list), optionally of one fault."""
        records = self._run(_LIST_CASES, after=after, limit=limit, fault=fault)
        return [case_from_record(r["case"]) for r in records]

    def stats(self) -> dict[str, Any]:
        record = self._run(_STATS)[0]
        result: dict[str, Any] = dict(record)
        result["cases_by_fault"] = {
            r["fault"]: {"cases": r["cases"], "resolved": r["resolved"]}
            for r in self._run(_CASES_BY_FAULT)
        }
        result["solutions_track_record"] = {
            s.id: {
                "successes": s.successes,
                "failures": s.failures,
                "success_rate": round(s.success_rate, 4),
                "mean_time_to_resolve_s": (
                    None if s.mean_time_to_resolve_s is None else round(s.mean_time_to_resolve_s)
                ),
            }
            for s in self.solutions()
        }
        return result

    def close(self) -> None:
        self._driver.close()
