"""`kb import` against the real Neo4j: bad rows reported, good rows stored, re-import
idempotent, and a Neo4j restart in the middle of an import loses and doubles nothing."""

import json
import threading
import time

import pytest

from kernel.config import REPO_ROOT
from kernel.domain import Domain
from knowledge.importer import Importer
from knowledge.matcher import Matcher
from knowledge.similarity import MatchQuery
from knowledge.tickets import ticket_of
from loop.solutions import load_solutions
from mendloop import local_neo4j
from mendloop.cli import main
from mendloop.generator import Generator
from rules.catalog import load_catalog

pytestmark = pytest.mark.neo4j

SOLUTIONS = load_solutions(REPO_ROOT / "packs" / "power-marketing")


def generator(stories=3) -> Generator:
    catalog = load_catalog(REPO_ROOT / "packs" / "power-marketing" / "metrics.yaml")
    return Generator(Domain.load(), catalog, list(SOLUTIONS.values()), stories_per_pool=stories)


def statistics_agree_with_cases(graph) -> bool:
    """Every solution's counters equal what its cases say (seeded solutions start at 0)."""
    rows = graph._run(
        "MATCH (s:Solution) "
        "OPTIONAL MATCH (c:Case)-[r:SOLVED_BY]->(s) "
        "WITH s, sum(CASE r.outcome WHEN 'resolved' THEN 1 ELSE 0 END) AS ok, "
        "     sum(CASE r.outcome WHEN 'failed' THEN 1 ELSE 0 END) AS failed "
        "RETURN s.id AS id, s.successes = ok AND s.failures = failed AS agree"
    )
    return all(r["agree"] for r in rows)


def test_cli_import_reports_bad_rows_and_reimport_is_idempotent(
    graph, neo4j_settings, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NEO4J_URI", neo4j_settings.neo4j_uri)
    monkeypatch.setenv("MENDLOOP_VAR_DIR", str(tmp_path / "var"))  # its own embedding cache
    cases = list(generator().cases(40, seed=3))
    lines = [json.dumps(ticket_of(c)) for c in cases]
    lines.insert(5, json.dumps({**ticket_of(cases[0]), "id": "bad-1", "device": "toaster"}))
    lines.insert(9, "{not json")
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n")

    assert main(["kb", "import", str(path), "--check", "--json"]) == 1  # validates only
    checked = json.loads(capsys.readouterr().out)
    assert (checked["good"], checked["bad"], "import" in checked) == (40, 2, False)
    assert graph.stats()["cases"] == 0

    assert main(["kb", "import", str(path), "--json", "--batch", "16"]) == 1  # bad rows: 1
    first = json.loads(capsys.readouterr().out)
    assert (first["rows"], first["good"], first["bad"]) == (42, 40, 2)
    assert {(b["line"], b["id"]) for b in first["bad_rows"]} == {(6, "bad-1"), (10, "")}
    assert first["import"]["written"] == 40 and first["import"]["embedded"] > 0

    assert main(["kb", "import", str(path), "--json", "--allow-bad"]) == 0
    again = json.loads(capsys.readouterr().out)["import"]
    assert again["written"] == 0 and again["unchanged"] == 40 and again["embedded"] == 0
    assert graph.stats()["cases"] == 40 and statistics_agree_with_cases(graph)

    # a new, empty graph: the vectors come from the on-disk cache, not from the model
    graph._run("MATCH (n) DETACH DELETE n")
    assert main(["kb", "import", str(path), "--json", "--allow-bad"]) == 0
    fresh = json.loads(capsys.readouterr().out)["import"]
    assert fresh["written"] == 40 and fresh["embedded"] == 0
    assert fresh["vectors_from_disk"] == first["import"]["embedded"]

    assert main(["kb", "export", "--out", str(tmp_path / "out.jsonl")]) == 0
    exported = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in exported) == sorted(c.id for c in cases)

    assert main(["kb", "search", "cache hit ratio collapsed", "--json", "-k", "3"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found["matches"]) == 3 and found["timing_ms"]["query_ms"] > 0

    assert main(["kb", "import", str(tmp_path / "nothing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_neo4j_restart_mid_import_loses_and_doubles_nothing(graph, embedder, neo4j_settings):
    if not neo4j_settings.uses_local_neo4j:
        pytest.skip("needs the local test Neo4j, which this test restarts")
    graph.ensure_schema()
    for solution in SOLUTIONS.values():
        graph.upsert_solution(solution)
    cases = list(generator().cases(1500, seed=5))
    restarted = threading.Event()
    messages: list[str] = []

    def start_again() -> None:
        time.sleep(8)  # longer than the driver's own retries: the importer's must act
        local_neo4j.start(neo4j_settings)
        restarted.set()

    def progress(message: str) -> None:
        # called between batches: Neo4j is down before the next batch is written, for sure
        messages.append(message)
        if len(messages) == 2:
            local_neo4j.stop(neo4j_settings)
            threading.Thread(target=start_again, daemon=True).start()

    importer = Importer(graph, embedder, Domain.load(), batch_size=100, progress=progress)
    counts = importer.write(cases)
    assert restarted.wait(120)
    assert counts.retries > 0 and any("retrying" in m for m in messages)
    assert counts.written + counts.unchanged == 1500
    assert graph.stats()["cases"] == 1500 and statistics_agree_with_cases(graph)

    # a query while Neo4j restarts waits for it instead of failing the decision
    local_neo4j.stop(neo4j_settings)
    starter = threading.Timer(1.0, local_neo4j.start, args=(neo4j_settings,))
    starter.start()
    scored, _ = Matcher(graph, embedder, retry_s=120).match(
        MatchQuery(text="cache hit ratio collapsed", fault="cache_saturation")
    )
    starter.join()  # start() returns only once it has checked the server is fully up
    assert scored and scored[0].candidate.case.fault == "cache_saturation"
