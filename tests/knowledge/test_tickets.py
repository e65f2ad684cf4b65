"""Ticket files -> Cases: every bad row named with its line and reason, good rows kept."""

import json
from pathlib import Path

import pytest

from kernel.config import REPO_ROOT
from kernel.domain import Domain
from kernel.errors import KnowledgeError
from knowledge.tickets import BadRow, GoodRow, read_tickets, ticket_of
from loop.solutions import load_solutions
from rules.catalog import load_catalog

DOMAIN = Domain.load()
SERIES = load_catalog(REPO_ROOT / "packs" / "power-marketing" / "metrics.yaml")
SOLUTIONS = load_solutions(REPO_ROOT / "packs" / "power-marketing")

GOOD = {
    "id": "t-1",
    "title": "Redis full at peak",
    "description": "Cache cluster full, hit ratio down, database flooded.",
    "symptoms": ["cache_hit_ratio:low:severe", "db_penetration_pct:high"],
    "device": "redis-cluster",
    "environment": {"load": "peak"},
    "fault": "cache_saturation",
    "solution": "sol-cache-scale-out",
    "outcome": "resolved",
    "time_to_resolve_s": 1200,
    "region": "Zhejiang/Hangzhou",
}


def read(tmp_path: Path, name: str, content: bytes) -> list:
    path = tmp_path / name
    path.write_bytes(content)
    return list(read_tickets(path, DOMAIN, SERIES, SOLUTIONS))


def jsonl(*rows) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows)


def reasons(rows) -> dict[int, str]:
    return {r.line: r.reason for r in rows if isinstance(r, BadRow)}


def test_a_good_ticket_becomes_a_case(tmp_path):
    [row] = read(tmp_path, "t.jsonl", jsonl(GOOD))
    assert isinstance(row, GoodRow) and row.line == 1
    case = row.case
    assert case.text.startswith("Cache cluster full") and case.device_type == "redis-cluster"
    assert case.region == ("Zhejiang", "Hangzhou") and case.environment == {"load": "peak"}


def test_each_bad_row_is_named_and_the_good_ones_stay(tmp_path):
    rows = read(
        tmp_path,
        "t.jsonl",
        jsonl(
            GOOD,
            {**GOOD, "id": "t-2", "device": "toaster"},
            {**GOOD, "id": "t-3", "description": "   "},
            {**GOOD, "id": "t-4", "description": "x" * 20_001},
            {**GOOD, "id": "t-5", "symptoms": ["no_such_metric:high", "cache_hit_ratio:sideways"]},
            {**GOOD, "id": "t-6", "fault": "gremlins", "solution": "sol-nope"},
            b'{"id": "t-7", "title": "broken',
            {**GOOD, "id": "t-8", "title": "café, 电费 (non-ASCII is fine)"},
            {**GOOD},  # duplicate id of line 1
            {**GOOD, "id": "t-10", "environment": {"moon": "full"}},
            {**GOOD, "id": "t-11", "region": "Atlantis"},
            ["not", "an", "object"],
            {**GOOD, "id": "t-13"},
        ),
    )
    bad = reasons(rows)
    assert [r.case.id for r in rows if isinstance(r, GoodRow)] == ["t-1", "t-8", "t-13"]
    assert "unknown device type 'toaster'" in bad[2] and "domain.yaml" in bad[2]
    assert bad[3].startswith("text:") and "at least 1 character" in bad[3]
    assert "text" in bad[4] and "20000" in bad[4]
    assert "unknown series 'no_such_metric'" in bad[5] and "direction must be" in bad[5]
    assert "unknown fault 'gremlins'" in bad[6] and "unknown solution 'sol-nope'" in bad[6]
    assert bad[7].startswith("not JSON")
    assert "duplicate id (first at line 1)" in bad[9]
    assert "unknown environment parameter 'moon'" in bad[10]
    assert "unknown region Atlantis" in bad[11]
    assert "expected an object" in bad[12]


def test_bytes_that_are_not_utf8_are_a_bad_row_not_a_crash(tmp_path):
    raw = json.dumps({**GOOD, "id": "t-2", "title": "PLACEHOLDER"}).encode()
    raw = raw.replace(b"PLACEHOLDER", b"caf\xe9")  # latin-1 bytes in a UTF-8 file
    rows = read(tmp_path, "t.jsonl", jsonl(GOOD, raw))
    assert "not valid UTF-8" in reasons(rows)[2] and isinstance(rows[0], GoodRow)


def test_csv_with_lists_maps_and_a_multiline_description(tmp_path):
    content = (
        b"id,title,description,symptoms,device,environment,fault,solution,outcome,"
        b"time_to_resolve_s\n"
        b't-1,Redis full,"Cache full;\nhit ratio down",cache_hit_ratio:low;db_penetration_pct:high,'
        b"redis-cluster,load=peak;season=winter,cache_saturation,sol-cache-scale-out,resolved,60\n"
        b"t-2,Bad env,text,,,load,cache_saturation,sol-cache-scale-out,resolved,\n"
        b"t-3,Bad number,text,,,,cache_saturation,sol-cache-scale-out,resolved,soon\n"
    ) + b"t-4,Latin,caf\xe9,,,,cache_saturation,sol-cache-scale-out,resolved,\n"
    rows = read(tmp_path, "t.csv", content)
    good = [r for r in rows if isinstance(r, GoodRow)]
    assert len(good) == 1 and good[0].case.environment == {"load": "peak", "season": "winter"}
    assert good[0].case.symptoms == ("cache_hit_ratio:low", "db_penetration_pct:high")
    assert good[0].case.text == "Cache full;\nhit ratio down"
    bad = reasons(rows)
    assert "key=value" in bad[4] and "is not a number" in bad[5] and "UTF-8" in bad[6]


def test_an_export_imports_again_unchanged(tmp_path):
    [row] = read(tmp_path, "t.jsonl", jsonl(GOOD))
    [again] = read(tmp_path, "u.jsonl", jsonl(ticket_of(row.case)))
    assert again.case == row.case


def test_unreadable_or_unknown_files_are_one_clear_error(tmp_path):
    with pytest.raises(KnowledgeError, match="cannot read"):
        list(read_tickets(tmp_path / "missing.jsonl", DOMAIN, SERIES, SOLUTIONS))
    (tmp_path / "t.xml").write_text("<x/>")
    with pytest.raises(KnowledgeError, match="unknown format"):
        list(read_tickets(tmp_path / "t.xml", DOMAIN, SERIES, SOLUTIONS))
    (tmp_path / "t.csv").write_text("title,text\na,b\n")
    with pytest.raises(KnowledgeError, match="header"):
        list(read_tickets(tmp_path / "t.csv", DOMAIN, SERIES, SOLUTIONS))


def test_the_seed_cases_are_valid_against_the_domain():
    from knowledge.seed import load_cases

    cases = load_cases()
    assert {c.fault for c in cases} == set(DOMAIN.faults)
    assert all(DOMAIN.problems(c, SERIES) == [] for c in cases)
    assert all(c.solution_id in SOLUTIONS for c in cases)
