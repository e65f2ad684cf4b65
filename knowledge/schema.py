"""Versioned schema migrations of the knowledge graph, applied idempotently at start.

Each migration is a version number and Cypher statements that are safe to run twice
(``IF NOT EXISTS``, guarded updates). The graph records what it has applied as
``(:SchemaMigration {version})`` nodes, so a restart runs only what is new and an older
mendloop refuses a graph migrated past what it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import LiteralString


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[LiteralString, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cases, solutions and the cosine vector index on case embeddings",
        (
            "CREATE CONSTRAINT case_id IF NOT EXISTS FOR (c:Case) REQUIRE c.id IS UNIQUE",
            "CREATE CONSTRAINT solution_id IF NOT EXISTS FOR (s:Solution) REQUIRE s.id IS UNIQUE",
            "CREATE VECTOR INDEX case_embedding IF NOT EXISTS FOR (c:Case) ON (c.embedding) "
            "OPTIONS {indexConfig: {`vector.dimensions`: $dims, "
            "`vector.similarity_function`: 'cosine'}}",
        ),
    ),
    Migration(
        2,
        "symptom, fault, component, device type, environment, region, target and playbook "
        "nodes; text_key index so an embedding is computed once per distinct text",
        (
            "CREATE CONSTRAINT schema_version IF NOT EXISTS "
            "FOR (m:SchemaMigration) REQUIRE m.version IS UNIQUE",
            "CREATE CONSTRAINT symptom_tag IF NOT EXISTS FOR (s:Symptom) REQUIRE s.tag IS UNIQUE",
            "CREATE CONSTRAINT fault_name IF NOT EXISTS FOR (f:Fault) REQUIRE f.name IS UNIQUE",
            "CREATE CONSTRAINT component_name IF NOT EXISTS "
            "FOR (c:Component) REQUIRE c.name IS UNIQUE",
            "CREATE CONSTRAINT device_type_name IF NOT EXISTS "
            "FOR (d:DeviceType) REQUIRE d.name IS UNIQUE",
            "CREATE CONSTRAINT environment_key IF NOT EXISTS "
            "FOR (e:Environment) REQUIRE e.key IS UNIQUE",
            "CREATE CONSTRAINT region_path IF NOT EXISTS FOR (r:Region) REQUIRE r.path IS UNIQUE",
            "CREATE CONSTRAINT target_name IF NOT EXISTS FOR (t:Target) REQUIRE t.name IS UNIQUE",
            "CREATE CONSTRAINT playbook_path IF NOT EXISTS "
            "FOR (p:Playbook) REQUIRE p.path IS UNIQUE",
            "CREATE INDEX case_text_key IF NOT EXISTS FOR (c:Case) ON (c.text_key)",
            "CREATE INDEX case_fault IF NOT EXISTS FOR (c:Case) ON (c.fault)",
            # environment was one free-text word before; it is a list of key=value now
            "MATCH (c:Case) WHERE c.environment IS :: STRING SET c.environment = []",
        ),
    ),
    Migration(
        3,
        "cases written before version 2 keep their solution and symptom keys as properties "
        "(candidates are read without a second hop)",
        (
            "MATCH (c:Case)-[:SOLVED_BY]->(s:Solution) WHERE c.solution_id IS NULL "
            "SET c.solution_id = s.id",
            "MATCH (c:Case) WHERE c.symptom_keys IS NULL "
            "SET c.symptom_keys = [t IN coalesce(c.symptoms, []) | "
            "split(t, ':')[0] + ':' + split(t, ':')[1]]",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version

APPLIED: LiteralString = "MATCH (m:SchemaMigration) RETURN max(m.version) AS version"
RECORD: LiteralString = (
    "MERGE (m:SchemaMigration {version: $version}) "
    "ON CREATE SET m.description = $description, m.applied_at = datetime()"
)


def pending(applied: int | None) -> list[Migration]:
    """Migrations newer than ``applied`` (None: a graph that has never been migrated)."""
    return [m for m in MIGRATIONS if applied is None or m.version > applied]
