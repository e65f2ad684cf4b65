"""`mendloop rca`: the rule-free component ranking on a user's own history, from files.

Reads the two files, validates every line (a bad line is refused with file:line and the
reason, never a traceback), and calls exactly what the daemon calls:
:func:`ml.component_rca.metric_deviations` then :func:`ml.component_rca.rank_components`.

Metrics (``--metrics``), long format, one sample per line:

- CSV with the header ``component,metric,timestamp,value`` (more columns are ignored), or
- JSON Lines: ``{"component": "db", "metric": "latency_ms", "timestamp": ..., "value": ...}``.

``timestamp``: epoch seconds or ISO 8601 (a time without a zone is UTC); ``value``: a
number, or empty / ``NaN`` / null for a missing sample. ``#`` lines and blank lines are
skipped.

Topology (``--topology``): an edge list, CSV with the header ``component,depends_on`` (one
row per dependency: ``component`` calls or needs ``depends_on``), or a YAML file in the
site domain format ``components: {api: {depends_on: [db, cache]}}``.

    mendloop rca --metrics history.csv --topology edges.csv --symptom web:latency_ms --json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kernel.errors import MendloopError
from ml.component_rca import (
    ComponentScore,
    RcaSettings,
    Series,
    metric_deviations,
    rank_components,
)

MAX_NAME = 200  # characters in a component or metric name
MAX_SAMPLES = 5_000_000  # per file: beyond this, aggregate or cut the export first
METRIC_FIELDS = ("component", "metric", "timestamp", "value")
EDGE_FIELDS = ("component", "depends_on")


class InputFileError(MendloopError):
    """A metrics or topology file that cannot be used, with ``file:line: reason``."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


def _name(raw: object, what: str, path: Path, line: int | None) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InputFileError(path, line, f"{what} is missing")
    name = raw.strip()
    if len(name) > MAX_NAME:
        raise InputFileError(path, line, f"{what} is longer than {MAX_NAME} characters")
    if not name.isprintable():
        raise InputFileError(path, line, f"{what} {name[:40]!r} has control characters")
    return name


def parse_time(raw: object) -> float:
    """Epoch seconds, or ISO 8601 (UTC when no zone is given). ValueError otherwise."""
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            value = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise ValueError("not a finite time")
    return value


def _value(raw: object) -> float:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "nan", "null")):
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("not a number or a numeric string")
    value = float(raw)
    if math.isinf(value):
        raise ValueError("an infinite value")
    return value


def _rows(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a CSV (header naming ``fields``) or JSON Lines file."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputFileError(path, None, f"cannot be read ({exc.strerror})") from exc
    with handle:
        try:
            first = ""
            for first in handle:
                if first.strip() and not first.lstrip().startswith("#"):
                    break
            handle.seek(0)
            if first.lstrip().startswith("{"):
                yield from _jsonl(path, handle)
            else:
                yield from _csv(path, handle, fields)
        except UnicodeDecodeError as exc:
            raise InputFileError(path, None, "is not UTF-8 text") from exc


def _jsonl(path: Path, handle: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in enumerate(handle, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(path, line_no, f"not a JSON object ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise InputFileError(path, line_no, "not a JSON object")
        yield line_no, record


def _csv(
    path: Path, handle: Any, fields: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(handle)
    header: list[str] | None = None
    for row in reader:
        line_no = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            missing = [f for f in fields if f not in header]
            if missing:
                raise InputFileError(
                    path,
                    line_no,
                    f"the header must name {', '.join(fields)} (missing: {', '.join(missing)})",
                )
            continue
        if len(row) < len(header):
            why = f"{len(row)} columns, the header has {len(header)}"
            raise InputFileError(path, line_no, why)
        yield line_no, dict(zip(header, row, strict=False))
    if header is None:
        raise InputFileError(path, None, f"is empty (expected a header: {','.join(fields)})")


def load_metrics(path: Path) -> list[Series]:
    """Every (component, metric) series of a long metrics file, samples in time order."""
    samples: dict[tuple[str, str], dict[float, tuple[float, int]]] = {}
    for count, (line_no, rec) in enumerate(_rows(path, METRIC_FIELDS), start=1):
        if count > MAX_SAMPLES:
            raise InputFileError(path, line_no, f"more than {MAX_SAMPLES:,} samples")
        comp = _name(rec.get("component"), "component", path, line_no)
        metric = _name(rec.get("metric"), "metric", path, line_no)
        try:
            ts = parse_time(rec.get("timestamp"))
        except (ValueError, TypeError, OverflowError) as exc:
            why = f"timestamp {rec.get('timestamp')!r} is not epoch seconds or ISO 8601"
            raise InputFileError(path, line_no, why) from exc
        try:
            value = _value(rec.get("value"))
        except (ValueError, TypeError) as exc:
            why = f"value {rec.get('value')!r} is not a number"
            raise InputFileError(path, line_no, why) from exc
        series = samples.setdefault((comp, metric), {})
        if ts in series:
            why = f"a second sample of {comp}:{metric} at {ts} (first on line {series[ts][1]})"
            raise InputFileError(path, line_no, why)
        series[ts] = (value, line_no)
    if not samples:
        raise InputFileError(path, None, "holds no sample")
    out = []
    for (comp, metric), by_ts in sorted(samples.items()):
        ts = np.array(sorted(by_ts))
        out.append(Series(comp, metric, ts, np.array([by_ts[t][0] for t in ts])))
    return out


def load_topology(path: Path) -> dict[str, list[str]]:
    """component -> the components it depends on (calls or needs)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_topology(path)
    deps: dict[str, list[str]] = {}
    for line_no, rec in _rows(path, EDGE_FIELDS):
        comp = _name(rec.get("component"), "component", path, line_no)
        dep = _name(rec.get("depends_on"), "depends_on", path, line_no)
        if comp == dep:
            raise InputFileError(path, line_no, f"{comp} depends on itself")
        if dep not in deps.setdefault(comp, []):
            deps[comp].append(dep)
        deps.setdefault(dep, [])
    return deps


def _yaml_topology(path: Path) -> dict[str, list[str]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(path, None, f"cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        why = f"not valid YAML ({getattr(exc, 'problem', exc)})"
        raise InputFileError(path, line, why) from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(path, None, "is not UTF-8 text") from exc
    comps = doc.get("components") if isinstance(doc, dict) else None
    if not isinstance(comps, dict):
        raise InputFileError(path, None, "needs `components: {name: {depends_on: [...]}}`")
    deps: dict[str, list[str]] = {}
    for raw, spec in comps.items():
        comp = _name(raw, "component", path, None)
        ups = (spec or {}).get("depends_on", []) if isinstance(spec, dict) else None
        if not isinstance(ups, list):
            raise InputFileError(path, None, f"components.{comp}.depends_on must be a list")
        deps[comp] = []
        for up in ups:
            dep = _name(up, f"a dependency of {comp}", path, None)
            if dep == comp:
                raise InputFileError(path, None, f"{comp} depends on itself")
            deps[comp].append(dep)
    for ups in list(deps.values()):
        for dep in ups:
            deps.setdefault(dep, [])
    return deps


def _symptom(text: str | None, series: list[Series]) -> tuple[str, str] | None:
    if not text:
        return None
    comp, sep, metric = text.partition(":")
    if not sep or not comp or not metric:
        raise MendloopError(f"--symptom {text!r}: expected COMPONENT:METRIC")
    if not any(s.component == comp and s.metric == metric for s in series):
        raise MendloopError(f"--symptom {text!r}: no such series in the metrics file")
    return comp, metric


def _component_json(c: ComponentScore) -> dict[str, Any]:
    return {
        "component": c.component,
        "score": round(c.score, 6),
        "confidence": round(c.confidence, 4),
        "anomaly": round(c.anomaly, 4),
        "anomalous": c.anomalous,
        "onset": c.onset,
        "evidence": [
            {
                "metric": d.metric,
                "score": round(d.score, 4),
                "z": round(d.z, 3),
                "baseline": d.baseline,
                "value": d.value,
                "onset": d.onset,
                "abnormal": d.abnormal,
                "shared_with": d.shared_with,
            }
            for d in c.evidence
        ],
    }


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def offline_rca(args: argparse.Namespace) -> dict[str, Any]:
    series = load_metrics(Path(args.metrics))
    deps = load_topology(Path(args.topology)) if args.topology else {}
    symptom = _symptom(args.symptom, series)
    last = max(float(s.ts.max()) for s in series if s.ts.size)
    try:
        end = parse_time(args.end) if args.end else last
        start = parse_time(args.start) if args.start else end - args.window
    except ValueError as exc:
        raise MendloopError(f"--start/--end: {exc} (epoch seconds or ISO 8601)") from exc
    if start > end:
        raise MendloopError("--start is after --end")
    if args.top < 1 or args.window <= 0:
        raise MendloopError("--top and --window must be positive")
    baseline = args.baseline if args.baseline is not None else math.inf
    if baseline <= 0:
        raise MendloopError("--baseline must be positive (seconds)")
    cfg = RcaSettings()
    devs = metric_deviations(series, start, end, baseline, cfg)
    ranked = rank_components(
        devs, deps, cfg, symptom=symptom, components={s.component for s in series}
    )
    return {
        "window": {
            "start": start,
            "end": end,
            "baseline_s": None if math.isinf(baseline) else baseline,
        },
        "series": len(series),
        "series_scored": len(devs),
        "symptom": ":".join(symptom) if symptom else None,
        "settings": asdict(cfg),
        "components": [_component_json(c) for c in ranked[: args.top]],
    }


def _print(result: dict[str, Any]) -> None:
    w = result["window"]
    print(
        f"window {_when(w['start'])} .. {_when(w['end'])}; {result['series_scored']} of "
        f"{result['series']} series scored"
    )
    for i, c in enumerate(result["components"], start=1):
        flag = "abnormal" if c["anomalous"] else "normal"
        print(
            f"{i:>2}. {c['component']}  score {c['score']:.4f}  confidence {c['confidence']:.0%}"
            f"  ({flag}, onset {_when(c['onset'])})"
        )
        for d in c["evidence"][:3]:
            shared = f", shared by {d['shared_with']}" if d["shared_with"] > 1 else ""
            print(
                f"      {d['metric']}: {d['baseline']:.4g} -> {d['value']:.4g} (z {d['z']:+.1f},"
                f" score {d['score']:.2f}, onset {_when(d['onset'])}{shared})"
            )


def cmd_rca(args: argparse.Namespace) -> int:
    result = offline_rca(args)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print(result)
    return 0
