"""The Prometheus text exposition parser: pure, so every case is spelled out."""

from __future__ import annotations

import doctest

import pytest

import loop.sources
import loop.sources.base
import loop.sources.promtext
from kernel.errors import InvalidSample
from loop.sources import parse_text, rename
from loop.sources.promtext import parse_line, parse_value

NOW = 1_700_000_000.0


def one(text: str, **kw):
    result = parse_text(text, now=NOW, **kw)
    assert result.issues == (), result.issues
    (sample,) = result.samples
    return sample


def issues(text: str, **kw) -> list[tuple[int | None, str, str]]:
    return [(i.line, i.reason, i.error) for i in parse_text(text, now=NOW, **kw).issues]


@pytest.mark.parametrize(
    "module", [loop.sources, loop.sources.base, loop.sources.promtext], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


def test_a_full_exposition_with_help_type_and_comments():
    text = (
        "# HELP cache_hit_ratio Share of lookups served from the cache.\n"
        "# TYPE cache_hit_ratio gauge\n"
        "# a free comment, ignored\n"
        "\n"
        'cache_hit_ratio{subsystem="cache",target="pm-site-1"} 0.93\n'
        "# TYPE db_io_wait_pct gauge\n"
        'db_io_wait_pct{target="pm-site-1"} 7.5 1700000001500\n'
    )
    result = parse_text(text, now=NOW)
    assert result.issues == ()
    assert [(s.series, s.labels, s.ts, s.value) for s in result.samples] == [
        ("cache_hit_ratio", {"subsystem": "cache", "target": "pm-site-1"}, NOW, 0.93),
        ("db_io_wait_pct", {"target": "pm-site-1"}, 1_700_000_001.5, 7.5),
    ]
    assert [o.line for o in result.origins] == [5, 7]


def test_twin_output_round_trips():
    from kernel.models import Sample
    from twin.server import prometheus_text  # the format we scrape in production

    sent = [
        Sample(
            series="cache_hit_ratio",
            labels={"target": "a", "note": 'we"ird\\site {x}'},
            ts=NOW,
            value=0.5,
        ),
        Sample(series="db_io_wait_pct", labels={"target": "b"}, ts=NOW, value=1e-7),
    ]
    got = parse_text(prometheus_text(sent), now=NOW)
    assert got.issues == ()
    assert [(s.series, s.labels, s.value) for s in got.samples] == [
        (s.series, s.labels, s.value) for s in sent
    ]


def test_label_escapes_and_spacing():
    _, labels, value, _ = parse_line('m { target = "a\\\\b\\"c\\nd" , x="}{,=" , } 1')
    assert labels == {"target": 'a\\b"c\nd', "x": "}{,="} and value == 1
    sample = one('cache_hit_ratio { target = "a" , x="}{,=\\\\ \\"q\\"" , } 1\n')
    assert sample.labels == {"target": "a", "x": '}{,=\\ "q"'}


def test_hostile_targets_and_newlines_in_labels_are_issues_never_samples():
    text = (
        'cache_hit_ratio{target="{{ lookup(\'pipe\',\'id\') }}"} 1\n'
        'cache_hit_ratio{target="a\\nb"} 1\n'
        'cache_hit_ratio{instance="$(id)"} 1\n'
        'cache_hit_ratio{target="ok",note="two\\nlines"} 1\n'
        'cache_hit_ratio{target="10.0.0.7:9100"} 1\n'
    )
    result = parse_text(text, now=NOW)
    assert [s.target for s in result.samples] == ["10.0.0.7:9100"]
    assert [(i.line, i.reason) for i in result.issues] == [
        (1, "bad_target"),
        (2, "bad_target"),
        (3, "bad_target"),
        (4, "bad_labels"),
    ]
    assert all("\n" not in str(i) for i in result.issues)


def test_whitespace_tabs_crlf_and_no_labels_with_default_target():
    sample = one("\t api_response_time_ms \t 12.5 \t 1000\r\n", default_target="site")
    assert (sample.series, sample.target, sample.ts, sample.value) == (
        "api_response_time_ms",
        "site",
        1.0,
        12.5,
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("-2.5e3", -2500.0), ("+3", 3.0), ("0x10", None), (".5", 0.5), ("1E-2", 0.01)],
)
def test_values(text, value):
    if value is None:
        with pytest.raises(InvalidSample, match="not a number"):
            parse_value(text)
    else:
        assert parse_value(text) == value


def test_nan_and_infinities_parse_but_are_not_samples():
    assert str(parse_value("NaN")) == "nan" and parse_value("+Inf") == float("inf")
    assert parse_value("-Inf") == float("-inf")
    text = 'm{target="a"} NaN\nm{target="a"} +Inf\nm{target="a"} -Inf\nm{target="a"} 1\n'
    result = parse_text(text, now=NOW)
    assert len(result.samples) == 1
    assert [(i.line, i.reason) for i in result.issues] == [(n, "invalid") for n in (1, 2, 3)]
    assert "not a finite number" in result.issues[0].error


def test_target_from_instance_when_there_is_no_target_label():
    sample = one('m{instance="10.0.0.7:9100",job="node"} 1\n')
    assert sample.target == "10.0.0.7:9100"
    assert sample.labels == {"instance": "10.0.0.7:9100", "job": "node", "target": "10.0.0.7:9100"}


def test_target_label_is_configurable_and_missing_target_is_reported():
    sample = one('m{site="s1",target="ignored"} 1\n', target_labels=("site",))
    assert sample.target == "s1"
    assert issues('m{job="x"} 1\n') == [
        (1, "bad_target", "no target: none of the labels target, instance is set")
    ]


def test_name_mapping_hook():
    mapping = rename({"redis_hit_ratio": "cache_hit_ratio"}, passthrough=False)
    text = 'redis_hit_ratio{target="a"} 0.9\nnode_load1{target="a"} 2\n'
    result = parse_text(text, now=NOW, name_map=mapping)
    assert [s.series for s in result.samples] == ["cache_hit_ratio"]
    assert [(i.line, i.reason, i.metric) for i in result.issues] == [
        (2, "unknown_metric", "node_load1")
    ]
    assert one('x{target="a"} 1\n', name_map=str.upper).series == "X"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1abc 1", "expected a metric name"),
        ('m{target="a" 1', "expected ',' or '}' after label 'target'"),
        ('m{target="a} 1', "value has no closing quote"),
        ("m{target=a} 1", "value must be in double quotes"),
        ('m{target "a"} 1', "expected '=' after label 'target'"),
        ('m{1x="a"} 1', "expected a label name"),
        ('m{a="1",a="2"} 1', "label 'a' appears twice"),
        ('m{a="\\t"} 1', "invalid escape sequence \\t"),
        ("m", "has no value"),
        ("m{}", "has no value"),
        ("m{}x 1", "unexpected 'x'"),
        ("m one", "value 'one' is not a number"),
        ("m 1_000", "value '1_000' is not a number"),
        ("m 0x10", "not a number"),
        ("m 1 12.5", "timestamp '12.5' is not an integer"),
        ("m 1 2 3", "unexpected text after the timestamp"),
        ("# TYPE m wibble", "unknown type 'wibble'"),
        ("# TYPE", "needs a valid metric name"),
        ("# HELP 9 help", "needs a valid metric name"),
    ],
)
def test_malformed_lines_are_issues_with_line_and_reason(line, reason):
    text = f'ok{{target="a"}} 1\n{line}\nok{{target="a"}} 2\n'
    result = parse_text(text, now=NOW)
    assert [s.value for s in result.samples] == [1.0, 2.0]  # the neighbours survive
    ((number, kind, error),) = [(i.line, i.reason, i.error) for i in result.issues]
    assert number == 2 and kind == "parse_error" and reason in error, error


def test_garbage_never_raises():
    blob = '\x00\x01{}}"\\ \n' * 50 + 'é{ü="x"} 1\n' + "m{" * 1000
    result = parse_text(blob, now=NOW)
    assert result.samples == () and len(result.issues) == 52


def test_histogram_lines_are_plain_samples():
    text = (
        "# TYPE rt histogram\n"
        'rt_bucket{le="0.1",target="a"} 3\n'
        'rt_bucket{le="+Inf",target="a"} 5\n'
        'rt_sum{target="a"} 0.7\n'
        'rt_count{target="a"} 5\n'
    )
    result = parse_text(text, now=NOW)
    assert [(s.series, s.labels.get("le")) for s in result.samples] == [
        ("rt_bucket", "0.1"),
        ("rt_bucket", "+Inf"),
        ("rt_sum", None),
        ("rt_count", None),
    ]


def test_parse_line_returns_the_raw_parts():
    assert parse_line('m{a="b"} 1.5 -20') == ("m", {"a": "b"}, 1.5, -20)
    assert parse_line("m:sub_total 2") == ("m:sub_total", {}, 2.0, None)


def test_without_now_the_wall_clock_stamps_samples():
    import time

    before = time.time()
    (sample,) = parse_text('m{target="a"} 1').samples
    assert before <= sample.ts <= time.time()
