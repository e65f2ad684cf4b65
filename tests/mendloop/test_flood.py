"""The flood bench's client sends what it says: each of its three bodies, made from the
split templates, parses with the project's own parsers into targets x series samples of
the new names, at the time given."""

import json

from loop.sources.otlp import parse_otlp_json
from loop.sources.promtext import parse_text
from mendloop.floodclient import _render, _templates

SERIES = ["cache_hit_ratio", "db_io_wait_pct", "api_response_time_ms"]
VALUES = [0.12, 88.5, 1e-07]
NOW = 1_800_000_000.25


def bodies(names):
    templates = _templates(SERIES, VALUES, len(names))
    return {fmt: _render(parts, names, NOW) for fmt, parts in templates.items()}


def test_every_format_carries_each_new_target_times_each_series():
    names = ["flood-w0-7-0", "flood-w0-7-1"]
    made = bodies(names)
    expected = sorted((t, s, v) for t in names for s, v in zip(SERIES, VALUES, strict=True))

    rows = json.loads(made["json"])
    assert sorted((r["labels"]["target"], r["series"], r["value"]) for r in rows) == expected
    assert {r["ts"] for r in rows} == {NOW}

    text = parse_text(made["text"])
    assert text.issues == ()
    assert sorted((s.target, s.series, s.value) for s in text.samples) == expected
    assert {s.ts for s in text.samples} == {int(NOW * 1000) / 1000}

    otlp = parse_otlp_json(made["otlp"])
    assert otlp.issues == ()
    assert sorted((s.target, s.series, s.value) for s in otlp.samples) == expected


def test_names_change_per_request_and_nothing_is_left_of_the_marks():
    first, second = bodies(["a-0", "a-1"]), bodies(["b-0", "b-1"])
    for fmt in first:
        assert "__" not in first[fmt] and first[fmt] != second[fmt]
        assert "b-0" in second[fmt] and "a-0" not in second[fmt]
