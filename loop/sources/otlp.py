"""OTLP/HTTP metrics, JSON encoding -> ``Sample``s (a pure parser), and the OTLP answer.

    >>> request = {"resourceMetrics": [{
    ...     "resource": {"attributes": [
    ...         {"key": "service.instance.id", "value": {"stringValue": "pm-site-1"}}]},
    ...     "scopeMetrics": [{"metrics": [{"name": "cache_hit_ratio", "gauge": {
    ...         "dataPoints": [{"timeUnixNano": "1700000000000000000", "asDouble": 0.93}]}}]}]}]}
    >>> result = parse_otlp_json(request)
    >>> [(s.series, s.target, s.ts, s.value) for s in result.samples]
    [('cache_hit_ratio', 'pm-site-1', 1700000000.0, 0.93)]

The body is an ``ExportMetricsServiceRequest`` in proto3 JSON (https://opentelemetry.io/docs/
specs/otlp/#json-protobuf-encoding): resourceMetrics -> scopeMetrics -> metrics. Keys are
lowerCamelCase (snake_case is accepted too, as proto3 JSON parsers do); 64-bit integers
may be strings; unknown fields are ignored, as the spec requires.

How each metric type becomes samples:

- gauge, sum: one sample per data point (``asDouble`` or ``asInt``); a sum is taken at face
  value, cumulative or delta, as its exporter reports it.
- histogram, exponentialHistogram: ``<name>_count`` and ``<name>_sum`` (as Prometheus names
  them), plus ``_min`` / ``_max`` when present; the buckets are not kept.
- summary: ``<name>_count``, ``<name>_sum`` and one ``<name>_p<q>`` per quantile
  (0.5 -> ``_p50``, 0.999 -> ``_p99_9``).
- anything else: an ``Issue`` for the metric, with its number of data points.

The target is the first resource attribute of ``target_attributes`` present (by default
``service.instance.id``, then ``host.name``); a data point attribute named like one of
them wins over the resource. Labels are the data point's attributes, stringified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kernel import untrusted
from kernel.errors import InvalidSample
from loop.sources.base import NameMap, Origin, ParseResult, ResultBuilder, SampleMapper, identity
from loop.sources.units import units_agree

DEFAULT_TARGET_ATTRIBUTES: tuple[str, ...] = ("service.instance.id", "host.name")
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
NUMBER_TYPES = ("gauge", "sum")
DISTRIBUTION_TYPES = ("histogram", "exponentialHistogram", "summary")


class OtlpPayloadError(InvalidSample):
    """The body is not an ExportMetricsServiceRequest at all (the whole request is refused)."""


def parse_otlp_json(
    payload: Mapping[str, Any] | str | bytes,
    *,
    name_map: NameMap = identity,
    target_attributes: Sequence[str] = DEFAULT_TARGET_ATTRIBUTES,
    default_target: str | None = None,
    now: float | None = None,
    units: Mapping[str, str] | None = None,
) -> ParseResult:
    """Every data point of the request as a ``Sample``; what cannot be one is an ``Issue``.

    ``units`` (catalog series -> unit): a gauge/sum whose declared unit disagrees with its
    series' catalog unit is refused whole (``bad_unit``): a value in s read as ms is worse
    than no value.

    Raises ``OtlpPayloadError`` only when the body as a whole is not a request (bad JSON,
    not an object, ``resourceMetrics`` not a list); a bad metric or data point is an issue.
    ``now`` (unix seconds) stamps data points without ``timeUnixNano``.
    """
    if isinstance(payload, str | bytes):
        try:
            payload = untrusted.loads(payload)
        except ValueError as exc:
            raise OtlpPayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise OtlpPayloadError("body must be a JSON object (ExportMetricsServiceRequest)")
    resources = _get(payload, "resourceMetrics", [])
    if not isinstance(resources, list):
        raise OtlpPayloadError("resourceMetrics must be a list")
    mapper = SampleMapper(name_map, tuple(target_attributes), default_target)
    stamp = time.time() if now is None else now
    out = ResultBuilder()
    for resource_metrics in resources:
        resource = _get(_obj(resource_metrics), "resource", {})
        resource_attrs = attributes(_get(_obj(resource), "attributes", []))
        for scope in _list(_get(_obj(resource_metrics), "scopeMetrics", [])):
            for metric in _list(_get(_obj(scope), "metrics", [])):
                _metric(out, mapper, _obj(metric), resource_attrs, stamp, units or {})
    return out.result()


def _metric(
    out: ResultBuilder,
    mapper: SampleMapper,
    metric: Mapping[str, Any],
    resource_attrs: dict[str, str],
    stamp: float,
    units: Mapping[str, str],
) -> None:
    name = str(metric.get("name") or "")
    kind = next((k for k in (*NUMBER_TYPES, *DISTRIBUTION_TYPES) if _has(metric, k)), None)
    if not name:
        out.issue("metric has no name", "parse_error", metric="", points=_count_points(metric))
        return
    if kind is None:
        reason = "no data of a supported type (gauge, sum, histogram, summary)"
        out.issue(reason, "unsupported", metric=name, points=_count_points(metric))
        return
    sent_unit = str(metric.get("unit") or "")
    series = mapper.name_map(name) if kind in NUMBER_TYPES else None
    if series is not None and series in units and not units_agree(sent_unit, units[series]):
        out.issue(
            f"unit {sent_unit!r} does not match the catalog's {units[series]!r} for {series}",
            "bad_unit",
            metric=name,
            points=_count_points(metric),
        )
        return
    points = _get(_obj(_get(metric, kind, {})), "dataPoints", [])
    if not isinstance(points, list):
        out.issue(f"{kind}.dataPoints must be a list", "parse_error", metric=name)
        return
    for point in points:
        if not isinstance(point, Mapping):
            out.issue("a data point must be an object", "parse_error", metric=name)
            continue
        try:
            ts = _timestamp(point, stamp)
            values = _values(name, kind, point)
        except InvalidSample as exc:
            out.issue(str(exc), exc.reason, metric=name)
            continue
        labels = attributes(_get(point, "attributes", []))
        for key in mapper.target_labels:  # the point's own target attribute wins
            if key not in labels and key in resource_attrs:
                labels[key] = resource_attrs[key]
        for series, value in values:
            out.convert(mapper, series, labels, ts, value, Origin(metric=name))


def _values(name: str, kind: str, point: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The (series name, value) pairs one data point stands for."""
    if int(_number(_get(point, "flags", 0) or 0, "flags")) & NO_RECORDED_VALUE:
        raise InvalidSample("data point flagged as having no recorded value")
    if kind in NUMBER_TYPES:
        if _has(point, "asDouble"):
            return [(name, _number(_get(point, "asDouble"), "asDouble"))]
        if _has(point, "asInt"):
            return [(name, _number(_get(point, "asInt"), "asInt"))]
        raise InvalidSample("data point has neither asDouble nor asInt")
    values = [(f"{name}_count", _number(_get(point, "count", 0), "count"))]
    for field in ("sum", "min", "max"):
        if _has(point, field):
            values.append((f"{name}_{field}", _number(_get(point, field), field)))
    if kind == "summary":
        for quantile in _list(_get(point, "quantileValues", [])):
            q = _number(_get(_obj(quantile), "quantile", 0), "quantile")
            value = _number(_get(_obj(quantile), "value", 0), "quantile value")
            values.append((f"{name}_{quantile_suffix(q)}", value))
    return values


def quantile_suffix(q: float) -> str:
    """0.5 -> ``p50``, 0.99 -> ``p99``, 0.999 -> ``p99_9``: a name-safe percentile."""
    return "p" + f"{q * 100:.6f}".rstrip("0").rstrip(".").replace(".", "_")


def attributes(items: Any) -> dict[str, str]:
    """OTLP ``KeyValue`` list -> labels; scalars as text, arrays and maps as compact JSON."""
    labels: dict[str, str] = {}
    for item in _list(items):
        item = _obj(item)
        key = item.get("key")
        if isinstance(key, str) and key:
            labels[key] = _any_value(_obj(item.get("value")))
    return labels


def _any_value(value: Mapping[str, Any]) -> str:
    for key in ("stringValue", "string_value"):
        if key in value:
            return str(value[key])
    for key, attr in (("boolValue", "bool_value"), ("intValue", "int_value")):
        if key in value or attr in value:
            raw = value.get(key, value.get(attr))
            return str(raw).lower() if isinstance(raw, bool) else str(raw)
    if _has(value, "doubleValue"):
        return repr(float(_get(value, "doubleValue")))
    if _has(value, "arrayValue"):
        items = _list(_get(_obj(_get(value, "arrayValue")), "values", []))
        return json.dumps([_any_value(_obj(v)) for v in items])
    if _has(value, "kvlistValue"):
        return json.dumps(attributes(_get(_obj(_get(value, "kvlistValue")), "values", [])))
    if _has(value, "bytesValue"):
        return str(_get(value, "bytesValue"))
    return ""


def _timestamp(point: Mapping[str, Any], stamp: float) -> float:
    raw = _get(point, "timeUnixNano", None)
    if raw in (None, "", 0, "0"):
        return stamp
    try:
        return int(raw) / 1e9
    except (TypeError, ValueError):
        raise InvalidSample(f"timeUnixNano {raw!r} is not an integer") from None


def _number(raw: Any, field: str) -> float:
    """proto3 JSON numbers: a JSON number, or a string ("12", "NaN", "Infinity")."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidSample(f"{field} {raw!r} is not a number")
    try:
        return float(raw)
    except ValueError:
        raise InvalidSample(f"{field} {raw!r} is not a number") from None


def _count_points(metric: Mapping[str, Any]) -> int:
    """How many data points a refused metric carried (so they are counted as rejected)."""
    for value in metric.values():
        if isinstance(value, Mapping):
            points = _get(value, "dataPoints", None)
            if isinstance(points, list):
                return max(1, len(points))
    return 1


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _get(obj: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A field by its lowerCamelCase JSON name or its proto (snake_case) name."""
    if key in obj:
        return obj[key]
    return obj.get(_snake(key), default)


def _has(obj: Mapping[str, Any], key: str) -> bool:
    return _get(obj, key, None) is not None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def partial_success(rejected_points: int, messages: Sequence[str]) -> dict[str, Any]:
    """The ExportMetricsServiceResponse body: empty when all was taken (as the spec asks),
    else ``partialSuccess`` with the count of rejected points and why (int64 as a string).

    A message with nothing rejected is a warning (e.g. duplicates), which the spec allows.
    """
    if not rejected_points and not messages:
        return {}
    message = "; ".join(messages[:20])
    if len(messages) > 20:
        message += f"; and {len(messages) - 20} more"
    return {"partialSuccess": {"rejectedDataPoints": str(rejected_points), "errorMessage": message}}
