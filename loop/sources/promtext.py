"""Prometheus text exposition format 0.0.4 -> ``Sample``s (a pure parser).

    >>> text = '''# HELP cache_hit_ratio Share of hits.
    ... # TYPE cache_hit_ratio gauge
    ... cache_hit_ratio{target="pm-site-1",subsystem="cache"} 0.93 1700000000000
    ... cache_hit_ratio{instance="10.0.0.7:9100"} NaN
    ... '''
    >>> result = parse_text(text, now=1700000001.0)
    >>> [(s.series, s.target, s.ts, s.value) for s in result.samples]
    [('cache_hit_ratio', 'pm-site-1', 1700000000.0, 0.93)]
    >>> str(result.issues[0])
    'line 4: value nan is not a finite number'

Format (https://prometheus.io/docs/instrumenting/exposition_formats/): one sample per line,
``name{label="value",...} value [timestamp_ms]``; ``# HELP`` / ``# TYPE`` lines and other
``#`` comments; label values escape ``\\\\``, ``\\"`` and ``\\n``; values are Go floats
(``NaN``, ``+Inf``, ``-Inf`` included). Samples without a timestamp get ``now``.

A line that cannot be parsed becomes an ``Issue`` with its line number and the reason; the
parser never raises on input. NaN and infinities parse but are refused as issues, because a
``Sample`` holds finite values only. Histogram and summary lines (``_bucket``, ``_sum``,
``_count``, ``quantile``) are plain samples here: map them with ``name_map`` if wanted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from kernel.errors import InvalidSample
from loop.sources.base import (
    DEFAULT_TARGET_LABELS,
    NameMap,
    Origin,
    ParseResult,
    ResultBuilder,
    SampleMapper,
    identity,
)

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
BLANKS = " \t"


class LineError(InvalidSample):
    """One line of exposition text is malformed (internal; becomes an ``Issue``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "parse_error")


def parse_text(
    text: str,
    *,
    name_map: NameMap = identity,
    target_labels: Sequence[str] = DEFAULT_TARGET_LABELS,
    default_target: str | None = None,
    now: float | None = None,
) -> ParseResult:
    """Every sample line of ``text`` as a ``Sample``, every bad line as an ``Issue``.

    ``target_labels``: the labels that may carry the target, first present wins (copied to
    ``target``); ``default_target`` for lines with none of them (else they are issues).
    ``now``: unix seconds given to samples without a timestamp (default: the wall clock).
    """
    mapper = SampleMapper(name_map, tuple(target_labels), default_target)
    return parse_with(text, mapper, now=now)


def parse_with(text: str, mapper: SampleMapper, *, now: float | None = None) -> ParseResult:
    """``parse_text`` with a ready ``SampleMapper`` (what the ingest endpoint holds)."""
    stamp = time.time() if now is None else now
    out = ResultBuilder()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip(BLANKS)
        if not line:
            continue
        try:
            if line.startswith("#"):
                _check_comment(line)
                continue
            name, labels, value, ts_ms = parse_line(line)
        except LineError as exc:
            out.issue(str(exc), exc.reason, line=number)
            continue
        ts = stamp if ts_ms is None else ts_ms / 1000.0
        out.convert(mapper, name, labels, ts, value, Origin(line=number, metric=name))
    return out.result()


def _check_comment(line: str) -> None:
    """HELP and TYPE lines must be well formed; any other comment is free text."""
    parts = line[1:].strip(BLANKS).split(None, 2)
    if not parts or parts[0] not in ("HELP", "TYPE"):
        return
    if len(parts) < 2 or not METRIC_NAME.fullmatch(parts[1]):
        raise LineError(f"# {parts[0]} needs a valid metric name")
    if parts[0] == "TYPE":
        kind = parts[2].strip(BLANKS) if len(parts) == 3 else ""
        if kind not in METRIC_TYPES:
            known = ", ".join(sorted(METRIC_TYPES))
            raise LineError(f"# TYPE {parts[1]}: unknown type {kind!r} (one of {known})")


def parse_line(line: str) -> tuple[str, dict[str, str], float, int | None]:
    """One sample line -> (name, labels, value, timestamp in ms or None); raises LineError."""
    m = METRIC_NAME.match(line)
    if m is None:
        raise LineError(f"expected a metric name at {_excerpt(line)}")
    name, pos = m.group(), m.end()
    labels: dict[str, str] = {}
    brace = _skip_blanks(line, pos)  # blanks may separate any two tokens
    if brace < len(line) and line[brace] == "{":
        labels, pos = _parse_labels(line, brace + 1)
    rest = line[pos:]
    if rest and rest[0] not in BLANKS:
        raise LineError(f"unexpected {rest[0]!r} after the metric name {name!r}")
    fields = rest.split()
    if not fields:
        raise LineError(f"sample {name!r} has no value")
    if len(fields) > 2:
        raise LineError(f"unexpected text after the timestamp: {_excerpt(' '.join(fields[2:]))}")
    value = parse_value(fields[0])
    ts_ms = _parse_timestamp(fields[1]) if len(fields) == 2 else None
    return name, labels, value, ts_ms


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Labels from just after ``{`` to just after ``}``; returns them and the position."""
    labels: dict[str, str] = {}
    while True:
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME.match(line, pos)
        if m is None:
            raise LineError(f"expected a label name or '}}' at column {pos + 1}")
        label = m.group()
        if label in labels:
            raise LineError(f"label {label!r} appears twice")
        pos = _skip_blanks(line, m.end())
        if pos >= len(line) or line[pos] != "=":
            raise LineError(f"expected '=' after label {label!r}")
        pos = _skip_blanks(line, pos + 1)
        if pos >= len(line) or line[pos] != '"':
            raise LineError(f"label {label!r}: value must be in double quotes")
        labels[label], pos = _parse_quoted(line, pos + 1, label)
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos >= len(line) or line[pos] != "}":
            raise LineError(f"expected ',' or '}}' after label {label!r}")


def _parse_quoted(line: str, pos: int, label: str) -> tuple[str, int]:
    chars: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            escaped = line[pos + 1 : pos + 2]
            if escaped not in ESCAPES:
                raise LineError(f"label {label!r}: invalid escape sequence \\{escaped}")
            chars.append(ESCAPES[escaped])
            pos += 2
            continue
        chars.append(char)
        pos += 1
    raise LineError(f"label {label!r}: value has no closing quote")


def parse_value(text: str) -> float:
    """A Go float as Prometheus writes it (``NaN``, ``+Inf``, ``1.5e3``); raises LineError."""
    # Python's float() also takes "1_000"; Go's ParseFloat (Prometheus') does not
    if "_" in text:
        raise LineError(f"value {text!r} is not a number")
    try:
        return float(text)
    except ValueError:
        raise LineError(f"value {text!r} is not a number") from None


def _parse_timestamp(text: str) -> int:
    try:
        if "_" in text:
            raise ValueError(text)
        return int(text, 10)
    except ValueError:
        raise LineError(f"timestamp {text!r} is not an integer (milliseconds)") from None


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in BLANKS:
        pos += 1
    return pos


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
