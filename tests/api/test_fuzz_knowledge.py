"""Property-based tests (Hypothesis) of the two upload intakes of a running engine (real
Neo4j, SQLite, rules, catalog): case import (JSONL and CSV) and rule validation.

Whatever the body: never a 500; every row of an import is accounted for (good + bad =
rows, each bad row with its line); every rule error names the posted file and a line;
nothing of the server's own file system (its temporary upload path) leaks into an answer."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .test_engine_api import client, engine, tokens  # noqa: F401 (module fixtures)

pytestmark = pytest.mark.neo4j
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = st.sampled_from(
    [
        "{{ lookup('pipe','id') }}",
        "{% raw %}",
        "$(reboot)",
        "`id`",
        "a\nb",
        "\u2028",
        "'; DROP TABLE incident; --",
        "MATCH (n) DETACH DELETE n",
        "../../etc/passwd",
        "cache_saturation",
        "sol-cache-scale-out",
        "cache_hit_ratio:low",
        "",
    ]
)
TEXT = st.one_of(HOSTILE, st.text(max_size=30))
SCALAR = st.one_of(TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
JSONISH = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
TICKET_FIELDS = [
    "id",
    "title",
    "text",
    "symptoms",
    "device_type",
    "environment",
    "fault",
    "solution",
    "outcome",
    "time_to_resolve",
    "region",
]
TICKET = st.dictionaries(st.one_of(st.sampled_from(TICKET_FIELDS), TEXT), JSONISH, max_size=8)


def leaks_nothing(text: str) -> bool:
    return "mendloop-import-" not in text and "mendloop-rules-" not in text and "/tmp/" not in text


@FUZZ
@given(
    lines=st.lists(
        st.one_of(TICKET.map(json.dumps), st.text(max_size=40).filter(lambda s: "\n" not in s)),
        min_size=1,
        max_size=8,
    )
)
@example(lines=["[" * 5_000 + "]" * 5_000])
def test_jsonl_import_accounts_for_every_row(client, tokens, lines) -> None:  # noqa: F811
    from api.auth import Role

    body = "\n".join(lines).encode()
    answer = client.post(
        "/v1/cases/import",
        params={"check": "true"},
        content=body,
        headers=tokens[Role.operator] | {"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code < 500, answer.text
    assert leaks_nothing(answer.text), answer.text
    if answer.status_code != 200:
        return
    out = answer.json()
    rows = sum(1 for line in body.split(b"\n") if line.strip())
    assert out["rows"] == rows == out["good"] + out["bad"]
    assert all(1 <= bad["line"] <= len(lines) for bad in out["bad_rows"])


@FUZZ
@given(records=st.lists(TICKET, min_size=1, max_size=6))
def test_csv_import_accounts_for_every_row(client, tokens, records) -> None:  # noqa: F811
    from api.auth import Role

    columns = ["id", *sorted({k for r in records for k in r} - {"id"})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()})
    answer = client.post(
        "/v1/cases/import",
        params={"check": "true"},
        content=buffer.getvalue().encode(),
        headers=tokens[Role.operator] | {"Content-Type": "text/csv"},
    )
    assert answer.status_code < 500, answer.text
    assert leaks_nothing(answer.text), answer.text
    if answer.status_code == 200:
        out = answer.json()
        assert out["rows"] == out["good"] + out["bad"]
        assert out["rows"] == len(records)


RULE = st.fixed_dictionaries(
    {"id": TEXT, "fault": TEXT},
    optional={
        "all": st.lists(st.one_of(TEXT, JSONISH), max_size=3),
        "none": st.lists(TEXT, max_size=2),
        "within": SCALAR,
        "sequence": st.lists(TEXT, max_size=3),
        "severity": SCALAR,
        "confidence": SCALAR,
        "targets": JSONISH,
        "extra": JSONISH,
    },
)


@FUZZ
@given(
    document=st.one_of(
        st.lists(RULE, max_size=3).map(lambda rules: yaml.safe_dump({"rules": rules})),
        JSONISH.map(yaml.safe_dump),
        st.text(max_size=200),
    )
)
@example(document="rules:\n" + "  - " * 1 + "[" * 3_000 + "]" * 3_000)
@example(document="&a [*a, *a, *a]")
@example(document="rules:\n  - &r {id: x, fault: y, all: [*r]}\n")
def test_rule_validation_names_the_file_and_a_line_for_every_error(
    client,  # noqa: F811
    tokens,  # noqa: F811
    document: Any,
) -> None:
    from api.auth import Role

    answer = client.post(
        "/v1/rules/validate",
        params={"name": "posted.yaml"},
        content=document.encode(),
        headers=tokens[Role.viewer] | {"Content-Type": "application/yaml"},
    )
    assert answer.status_code < 500, answer.text
    assert leaks_nothing(answer.text), answer.text
    if answer.status_code != 200:
        return
    out = answer.json()
    assert out["ok"] == (not out["errors"])
    for error in out["errors"]:
        assert error["file"] == "posted.yaml", error
        assert error["line"] is None or error["line"] >= 1, error
