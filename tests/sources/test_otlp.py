"""The OTLP/HTTP JSON parser: pure, every metric type and every way a payload goes wrong."""

from __future__ import annotations

import doctest
import json
from typing import Any

import pytest

import loop.sources.otlp
from loop.sources import rename
from loop.sources.otlp import (
    OtlpPayloadError,
    parse_otlp_json,
    partial_success,
    quantile_suffix,
)

NOW = 1_700_000_000.0
NANOS = "1700000000500000000"


def attr(key: str, **value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def request(*metrics: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> dict:
    attrs = resource if resource is not None else [attr("service.instance.id", stringValue="s1")]
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": attrs},
                "scopeMetrics": [{"scope": {"name": "test"}, "metrics": list(metrics)}],
            }
        ]
    }


def gauge(name: str, *points: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "unit": "1", "gauge": {"dataPoints": list(points)}}


def point(value: Any = 0.5, key: str = "asDouble", **extra: Any) -> dict[str, Any]:
    return {"timeUnixNano": NANOS, key: value, **extra}


def parse(payload: Any, **kw: Any):
    return parse_otlp_json(payload, now=NOW, **kw)


def test_docstring_example():
    assert doctest.testmod(loop.sources.otlp).failed == 0


def test_gauge_and_sum_with_double_and_int():
    result = parse(
        request(
            gauge("cache_hit_ratio", point(0.93, attributes=[attr("tier", stringValue="l2")])),
            {
                "name": "db_io_wait_pct",
                "sum": {
                    "aggregationTemporality": 2,
                    "isMonotonic": False,
                    "dataPoints": [point("12", key="asInt"), point(7, key="asInt")],
                },
            },
        )
    )
    assert result.issues == ()
    assert [(s.series, s.labels, s.ts, s.value) for s in result.samples] == [
        ("cache_hit_ratio", {"tier": "l2", "service.instance.id": "s1", "target": "s1"},
         1_700_000_000.5, 0.93),
        ("db_io_wait_pct", {"service.instance.id": "s1", "target": "s1"}, 1_700_000_000.5, 12.0),
        ("db_io_wait_pct", {"service.instance.id": "s1", "target": "s1"}, 1_700_000_000.5, 7.0),
    ]  # fmt: skip
    assert [o.metric for o in result.origins] == ["cache_hit_ratio"] + ["db_io_wait_pct"] * 2


def test_target_attribute_order_and_configuration():
    host_only = [attr("host.name", stringValue="h1"), attr("service.name", stringValue="pay")]
    (sample,) = parse(request(gauge("m", point()), resource=host_only)).samples
    assert sample.target == "h1"
    both = [attr("host.name", stringValue="h1"), attr("service.instance.id", stringValue="i1")]
    (sample,) = parse(request(gauge("m", point()), resource=both)).samples
    assert sample.target == "i1"
    (sample,) = parse(
        request(gauge("m", point()), resource=host_only), target_attributes=("service.name",)
    ).samples
    assert sample.target == "pay"
    # a data point's own attribute of that name wins over the resource
    own = point(attributes=[attr("host.name", stringValue="h2")])
    (sample,) = parse(request(gauge("m", own), resource=host_only)).samples
    assert sample.target == "h2"


def test_no_target_is_an_issue_unless_defaulted():
    payload = request(gauge("m", point(), point()), resource=[])
    result = parse(payload)
    assert result.samples == () and [i.reason for i in result.issues] == ["bad_target"] * 2
    assert "service.instance.id, host.name" in result.issues[0].error
    assert parse(payload, default_target="dflt").samples[0].target == "dflt"


def test_attribute_value_kinds_are_stringified():
    attrs = [
        attr("s", stringValue="x"),
        attr("b", boolValue=True),
        attr("i", intValue="42"),
        attr("d", doubleValue=0.25),
        attr("a", arrayValue={"values": [{"stringValue": "p"}, {"intValue": 1}]}),
        attr("k", kvlistValue={"values": [attr("in", stringValue="v")]}),
        attr("e"),
    ]
    (sample,) = parse(request(gauge("m", point(attributes=attrs)))).samples
    own = {k: v for k, v in sample.labels.items() if k not in ("target", "service.instance.id")}
    assert own == {
        "s": "x", "b": "true", "i": "42", "d": "0.25", "a": '["p", "1"]', "k": '{"in": "v"}',
        "e": "",
    }  # fmt: skip


def test_histogram_becomes_count_sum_min_max():
    histogram = {
        "name": "rt",
        "histogram": {
            "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "dataPoints": [
                {"timeUnixNano": NANOS, "count": "5", "sum": 0.7, "min": 0.01, "max": 0.4,
                 "bucketCounts": ["3", "2"], "explicitBounds": [0.1]}
            ],
        },
    }  # fmt: skip
    result = parse(request(histogram))
    assert [(s.series, s.value) for s in result.samples] == [
        ("rt_count", 5.0),
        ("rt_sum", 0.7),
        ("rt_min", 0.01),
        ("rt_max", 0.4),
    ]
    assert {o.metric for o in result.origins} == {"rt"}


def test_exponential_histogram_and_summary():
    metrics = [
        {"name": "eh", "exponentialHistogram": {"dataPoints": [{"timeUnixNano": NANOS,
                                                                "count": 2, "sum": 3}]}},
        {"name": "lat", "summary": {"dataPoints": [{
            "timeUnixNano": NANOS, "count": "10", "sum": 12.5,
            "quantileValues": [{"quantile": 0.5, "value": 1}, {"quantile": 0.99, "value": 4},
                               {"quantile": 0.999, "value": 9}]}]}},
    ]  # fmt: skip
    result = parse(request(*metrics))
    assert result.issues == ()
    assert [(s.series, s.value) for s in result.samples] == [
        ("eh_count", 2.0),
        ("eh_sum", 3.0),
        ("lat_count", 10.0),
        ("lat_sum", 12.5),
        ("lat_p50", 1.0),
        ("lat_p99", 4.0),
        ("lat_p99_9", 9.0),
    ]


@pytest.mark.parametrize(("q", "suffix"), [(0, "p0"), (0.5, "p50"), (0.999, "p99_9"), (1, "p100")])
def test_quantile_suffix(q, suffix):
    assert quantile_suffix(q) == suffix


def test_unsupported_and_broken_metrics_are_issues_per_metric():
    metrics = [
        {"name": "weird", "futureType": {"dataPoints": [{}, {}, {}]}},
        {"name": "", "gauge": {"dataPoints": [point()]}},
        {"name": "notlist", "gauge": {"dataPoints": {"x": 1}}},
        gauge("ok", point(1.0)),
        gauge("bad", "not an object", point([1]), point("abc"), point(float("nan")),
              point(1.0, flags=1), {"timeUnixNano": "soon", "asDouble": 1},
              {"timeUnixNano": NANOS}),
    ]  # fmt: skip
    result = parse(request(*metrics))
    assert [s.series for s in result.samples] == ["ok"]
    got = [(i.metric, i.reason, i.points) for i in result.issues]
    assert got == [
        ("weird", "unsupported", 3),
        ("", "parse_error", 1),
        ("notlist", "parse_error", 1),
        ("bad", "parse_error", 1),
        ("bad", "invalid", 1),
        ("bad", "invalid", 1),
        ("bad", "invalid", 1),
        ("bad", "invalid", 1),
        ("bad", "invalid", 1),
        ("bad", "invalid", 1),
    ]
    errors = [i.error for i in result.issues[3:]]
    assert "must be an object" in errors[0]
    assert "[1] is not a number" in errors[1] and "'abc' is not a number" in errors[2]
    assert "not a finite number" in errors[3] and "no recorded value" in errors[4]
    assert "timeUnixNano 'soon'" in errors[5] and "neither asDouble nor asInt" in errors[6]
    assert result.rejected_points == 12


def test_strings_for_special_doubles_and_missing_time_uses_now():
    payload = request(gauge("m", {"asDouble": "Infinity"}, {"asDouble": "1.5"}))
    result = parse(payload)
    assert [(s.ts, s.value) for s in result.samples] == [(NOW, 1.5)]
    assert result.issues[0].reason == "invalid"


def test_snake_case_keys_are_accepted_too():
    payload = {
        "resource_metrics": [
            {
                "resource": {"attributes": [attr("host.name", string_value="h")]},
                "scope_metrics": [
                    {"metrics": [{"name": "m", "gauge": {"data_points": [
                        {"time_unix_nano": NANOS, "as_int": "3"}]}}]}
                ],
            }
        ]
    }  # fmt: skip
    (sample,) = parse(payload).samples
    assert (sample.target, sample.value) == ("h", 3.0)


def test_name_mapping():
    mapping = rename({"http.server.duration": "api_response_time_ms"}, passthrough=False)
    payload = request(gauge("http.server.duration", point(80)), gauge("other", point(1)))
    result = parse(payload, name_map=mapping)
    assert [s.series for s in result.samples] == ["api_response_time_ms"]
    assert [(i.metric, i.reason) for i in result.issues] == [("other", "unknown_metric")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"resourceMetrics": {"a": 1}}, "resourceMetrics must be a list"),
    ],
)
def test_payloads_that_are_not_requests_raise(body, reason):
    with pytest.raises(OtlpPayloadError, match=reason):
        parse(body)


def test_odd_but_tolerable_shapes_are_empty_not_errors():
    assert parse({}).samples == ()
    assert parse({"resourceMetrics": [None, {"scopeMetrics": "x"}, {"scopeMetrics": [1]}]}) == (
        parse({})
    )
    assert parse(json.dumps(request(gauge("m", point()))).encode()).samples[0].value == 0.5


def test_partial_success_shape():
    assert partial_success(0, []) == {}
    assert partial_success(2, ["a", "b"]) == {
        "partialSuccess": {"rejectedDataPoints": "2", "errorMessage": "a; b"}
    }
    long = partial_success(30, [str(i) for i in range(30)])["partialSuccess"]["errorMessage"]
    assert long.endswith("; 19; and 10 more")
    assert partial_success(0, ["3 duplicates"]) == {
        "partialSuccess": {"rejectedDataPoints": "0", "errorMessage": "3 duplicates"}
    }


def test_a_unit_that_disagrees_with_the_catalog_is_refused_whole():
    units = {"api_response_time_ms": "ms", "cache_hit_ratio": "ratio"}
    seconds = {**gauge("api_response_time_ms", point(0.25), point(0.3)), "unit": "s"}
    millis = {**gauge("api_response_time_ms", point(250.0)), "unit": "ms"}
    dimensionless = {**gauge("cache_hit_ratio", point(0.9)), "unit": "1"}
    result = parse(request(seconds, millis, dimensionless), units=units)
    assert sorted(s.series for s in result.samples) == ["api_response_time_ms", "cache_hit_ratio"]
    (issue,) = result.issues
    assert issue.reason == "bad_unit" and issue.points == 2
    assert "'s' does not match the catalog's 'ms'" in issue.error
