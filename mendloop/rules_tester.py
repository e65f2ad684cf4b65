"""The rule tester: replay samples through the daemon's own Monitor + Analyzer and say
which rules fire, when, on which target and on which facts.

    run = replay(catalog, specs, window_batches(Path("incident.jsonl")))
    run = replay(catalog, specs, twin_batches("voltage_sag", seconds=120), injected_at=...)

Nothing here re-implements a rule: samples go through ``Monitor.ingest`` (the REST door,
same rejections) and ``Analyzer.observe``/``sweep`` compiled from the same specs as the
daemon. Only the clock differs: it is the replay's time, so a replay is deterministic.

Window file (JSONL), one sample per line::

    {"target": "pm-site-1", "series": "pq_voltage_rms_pct", "ts": 1800000000.0, "value": 82.1}

optional ``labels`` (extra labels) and ``received`` (when the sample arrived, unix s;
default ``ts``): the replay clock follows ``received``, so clock skew can be replayed too.
Lines are replayed in ``received`` order; blank lines and ``#`` comments are skipped.
A ``.gz`` file is read through gzip (the daemon's incident recordings, loop/recorder.py).
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kernel.errors import RuleFileError
from kernel.models import Finding
from loop.analyze import Analyzer
from loop.monitor import Monitor
from rules.catalog import Catalog
from rules.compiler import RuleSpec
from twin.model import Twin

Batch = tuple[float, Sequence[Any]]


@dataclass(frozen=True)
class Firing:
    """One rule firing: when (replay clock), where, and the facts that made it fire."""

    rule: RuleSpec
    finding: Finding
    at: float


@dataclass
class TestRun:
    rules: tuple[RuleSpec, ...]
    start: float | None = None
    end: float | None = None
    injected_at: float | None = None
    counters: Counter[str] = field(default_factory=Counter)
    firings: list[Firing] = field(default_factory=list)
    quality: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        origin = self.injected_at if self.injected_at is not None else self.start or 0.0
        return {
            "rules": [r.id for r in self.rules],
            "start": self.start,
            "end": self.end,
            "injected_at": self.injected_at,
            "samples": dict(self.counters),
            "fired": [
                {
                    "rule": f.rule.id,
                    "faults": list(f.rule.faults),
                    "severity": str(f.rule.severity),
                    "target": f.finding.target,
                    "at": f.at,
                    "at_utc": iso(f.at),
                    "after_s": round(f.at - origin, 3),
                    "facts": [
                        {**e.model_dump(), "since_after_s": round(e.since - origin, 3)}
                        for e in f.finding.evidence
                    ],
                }
                for f in self.firings
            ],
            "quality": [
                {
                    "kind": str(q.kind),
                    "reason": q.rule_id.removeprefix("data:"),
                    "target": q.target,
                    "series": q.series[0],
                    "since": q.started_at,
                    "value": q.evidence[0].value,
                    "limit": q.evidence[0].threshold,
                }
                for q in self.quality
            ],
        }


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(
    catalog: Catalog,
    specs: Iterable[RuleSpec],
    batches: Iterable[Batch],
    injected_at: float | None = None,
) -> TestRun:
    """Feed ``(clock, samples)`` batches through a fresh Monitor and Analyzer."""
    run = TestRun(rules=tuple(specs), injected_at=injected_at)
    now = 0.0

    def clock() -> float:
        return now

    monitor = Monitor(catalog, clock=clock)
    analyzer = Analyzer(catalog, run.rules, clock=clock)
    try:
        for now, batch in batches:
            if run.start is None:
                run.start = now
            run.end = now
            result = monitor.ingest(batch)
            run.counters["accepted"] += result.accepted
            run.counters["late"] += result.late
            run.counters["duplicate"] += result.duplicate
            run.counters.update(r.reason for r in result.rejected)
            fired = analyzer.observe(result.latest) + analyzer.sweep()
            run.firings += [Firing(analyzer.rules[f.rule_id], f, now) for f in fired]
            run.quality += analyzer.quality_findings()
    finally:
        analyzer.close()
    return run


def window_batches(path: Path) -> list[Batch]:
    """A JSONL window as replay batches; RuleFileError (file:line) on a line that is not a
    JSON object with target, series, ts and value."""
    rows: list[tuple[float, int, dict[str, Any]]] = []
    if path.name.endswith(".gz"):  # an incident recording (loop/recorder.py)
        with gzip.open(path, "rt", encoding="utf-8") as recording:
            text = recording.read()
    else:
        text = path.read_text()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in ("target", "series", "ts", "value") if k not in raw]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            labels = {**(raw.get("labels") or {}), "target": raw["target"]}
            sample = {"series": raw["series"], "labels": labels, "ts": raw["ts"]}
            sample["value"] = raw["value"]
            received = float(raw["received"] if "received" in raw else raw["ts"])
            if not math.isfinite(received):
                received = float(raw["ts"])
        except (ValueError, TypeError) as exc:
            raise RuleFileError(str(path), number, f"bad sample: {exc}") from exc
        rows.append((received, number, sample))
    rows.sort(key=lambda r: (r[0], r[1]))
    grouped: list[tuple[float, list[dict[str, Any]]]] = []
    for received, _, sample in rows:
        if grouped and grouped[-1][0] == received:
            grouped[-1][1].append(sample)
        else:
            grouped.append((received, [sample]))
    return list(grouped)


def twin_batches(
    fault: str | None,
    *,
    target: str = "pm-site-1",
    intensity: float = 1.0,
    seconds: int = 120,
    warmup_s: int = 10,
    start: float = 1_800_000_000.0,
    seed: int = 0,
) -> Iterator[Batch]:
    """The twin stepped once a simulated second, ``fault`` injected after ``warmup_s``."""
    twin = Twin(targets=(target,), seed=seed)
    for tick in range(1, warmup_s + seconds + 1):
        now = start + tick
        if fault is not None and tick == warmup_s + 1:
            twin.inject(target, fault, now=now - 1, intensity=intensity)
        yield now, twin.step(now)


def render(run: TestRun) -> str:
    """The human view: one block per firing, then bad input."""
    data = run.as_dict()
    origin = "injection" if run.injected_at is not None else "start"
    lines = [
        f"{len(run.rules)} rule(s); replayed {iso(run.start) if run.start else '-'} .. "
        f"{iso(run.end) if run.end else '-'}; samples: "
        + ", ".join(f"{k} {v}" for k, v in sorted(run.counters.items()))
    ]
    if not data["fired"]:
        lines.append("no rule fired")
    for item in data["fired"]:
        lines.append(
            f"FIRED {item['rule']} on {item['target']} at {item['at_utc']} "
            f"({item['after_s']:+.1f} s after {origin}) -> {', '.join(item['faults'])} "
            f"[{item['severity']}]"
        )
        for fact in item["facts"]:
            lines.append(
                f"    {fact['series']} = {fact['value']:g} ({fact['direction']} vs "
                f"{fact['threshold']:g}), since {fact['since_after_s']:+.1f} s"
            )
    for q in data["quality"]:
        lines.append(
            f"{q['kind'].upper()} {q['target']} {q['series']}: {q['reason']} "
            f"({q['value']:g} vs limit {q['limit']:g}) at {iso(q['since'])}"
        )
    return "\n".join(lines)
