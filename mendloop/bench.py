"""`mendloop bench ...`: measured figures for docs/BENCHMARKS.md (never asserted in tests).

    mendloop bench ingest --targets 10 --ticks 3600 --json

ingest: 286 metrics (the catalog) x N targets at 1 s for ``ticks`` simulated seconds
through the monitor's vectorised path, timing only the ingest calls; memory is read from
/proc before and after, so a window store that grows with traffic would show here.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from evaluation.rca import Bench, Scenario, local_time, train_baseline
from kernel.config import TWIN_PACK, Settings
from kernel.errors import MendloopError
from loop.analyze import Analyzer
from loop.anomaly import BaselineBank
from loop.monitor import Monitor
from loop.windows import Limits
from mendloop.bench_rule_free import bench_rule_free
from mendloop.bench_unexplained import bench_trigger, bench_unexplained
from mendloop.measure import peak_rss_mb, rss_mb
from mendloop.output import print_json
from rules.catalog import Catalog, load_catalog
from rules.compiler import load_rules
from twin.faults import FAULTS
from twin.model import Twin

T0 = 1_800_000_000.0


def _columns(catalog: Catalog, targets: int) -> tuple[list[str], list[str]]:
    names = list(catalog)
    return (
        [f"site-{t}" for t in range(targets) for _ in names],
        [name for _ in range(targets) for name in names],
    )


def bench_ingest(catalog: Catalog, targets: int = 10, ticks: int = 3600) -> dict[str, Any]:
    clock = [T0]
    monitor = Monitor(
        catalog, window_s=300, clock=lambda: clock[0], max_batch=10**7, max_in_flight=10**8
    )
    target_col, series_col = _columns(catalog, targets)
    width = len(series_col)
    layout = monitor.layout(target_col, series_col)
    rng = np.random.default_rng(0)
    noise = rng.normal(50.0, 5.0, size=(16, width))  # values made up front: not timed
    warmup = min(60, ticks // 10)
    rss_warm = rss_mb()
    ingest_s = 0.0
    for tick in range(ticks):
        clock[0] = T0 + tick
        ts = np.full(width, T0 + tick)
        start = time.perf_counter()
        monitor.ingest_columns(layout, ts=ts, values=noise[tick % 16], want_latest=False)
        ingest_s += time.perf_counter() - start
        if tick == warmup:
            rss_warm = rss_mb()
    rss_end = rss_mb()

    # what the daemon does per tick: the same, plus each series' newest point for analysis
    with_latest_s = 0.0
    rounds = min(ticks, 300)
    for tick in range(ticks, ticks + rounds):
        clock[0] = T0 + tick
        start = time.perf_counter()
        monitor.ingest_columns(layout, ts=np.full(width, T0 + tick), values=noise[tick % 16])
        with_latest_s += time.perf_counter() - start

    # the validated per-sample path (REST JSON): pydantic per sample
    batch = [
        {"series": s, "labels": {"target": t}, "ts": T0 + ticks + rounds, "value": 1.0}
        for t, s in zip(target_col, series_col, strict=True)
    ]
    clock[0] = T0 + ticks + rounds
    start = time.perf_counter()
    monitor.ingest(batch)
    validated_s = time.perf_counter() - start

    stats = monitor.stats()
    return {
        "samples_per_s": round(width * ticks / ingest_s),
        "series": stats["series"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "metrics": len(catalog),
        "targets": targets,
        "ticks": ticks,
        "with_latest_samples_per_s": round(width * rounds / with_latest_s),
        "validated_samples_per_s": round(width / validated_s),
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_warm, 1),
        "window_mb": round(stats["window_bytes"] / 2**20, 1),
    }


def bench_rca(
    catalog: Catalog,
    rules: list[Any],
    targets: int = 10,
    ticks: int = 600,
    seed: int = 5,
) -> dict[str, Any]:
    """Analysis compute per tick: the twin's 286 series x ``targets`` (faults injected on
    some of them so rules fire and reports are built) through the monitor, then timed:
    ``Analyzer.observe`` (thresholds, signals, durable_rules, ML baselines, SQI) plus the
    RCA report of every incident the tick opens. Then, per twin fault, the time from the
    first abnormal sample to the report (simulated seconds, as the daemon sees them)."""
    baseline = train_baseline(catalog, BaselineBank(catalog))
    names = [f"site-{t}" for t in range(targets)]
    twin = Twin(targets=tuple(names), seed=seed)
    now = [local_time(10.0)]
    monitor = Monitor(  # no cardinality limit: every series of every target is analysed
        catalog, clock=lambda: now[0], max_batch=10**7, max_in_flight=10**8, limits=Limits()
    )
    analyzer = Analyzer(catalog, rules)
    for name in names:
        analyzer.baselines.install(name, baseline)
    layout = monitor.layout(
        [t for t in names for _ in twin.series], [s for _ in names for s in twin.series]
    )
    faults = sorted(FAULTS)
    per_tick: list[float] = []
    with_ingest: list[float] = []
    reports: list[float] = []
    try:
        for tick in range(ticks):
            now[0] += 1.0
            if tick % 60 == 30:  # a fault on one target every minute, cleared a minute later
                victim = names[(tick // 60) % targets]
                twin.clear(victim, now=now[0])
                twin.inject(victim, faults[(tick // 60) % len(faults)], now=now[0])
            values = twin.advance(now[0]).reshape(-1)
            t0 = time.perf_counter()
            result = monitor.ingest_columns(layout, ts=np.full(values.shape, now[0]), values=values)
            t1 = time.perf_counter()
            fired = analyzer.observe(result.latest)
            by_target: dict[str, list[Any]] = {}
            for finding in fired:
                by_target.setdefault(finding.target, []).append(finding)
            for target, group in by_target.items():
                report = analyzer.report("bench", target, group)
                reports.append(report.latency_ms)
            t2 = time.perf_counter()
            per_tick.append((t2 - t1) * 1000)
            with_ingest.append((t2 - t0) * 1000)
    finally:
        analyzer.close()

    # report latency on every twin fault: first abnormal sample -> report (simulated s)
    latency = Bench(catalog, rules, baseline)
    try:
        outcomes = [
            latency.scenario(Scenario(f, (f,), 1.0, 10.0, seed), warmup_s=30, observe_s=60)
            for f in faults
        ]
    finally:
        latency.close()
    ttr = {o.scenario.faults[0]: o.time_to_report_s for o in outcomes}
    found = [v for v in ttr.values() if v is not None]
    skip = min(60, ticks // 10)  # the first ticks allocate state
    warm, warm_ingest = per_tick[skip:], with_ingest[skip:]
    stats = monitor.stats()
    return {
        "series": stats["series"],
        "window_mb": round(stats["window_bytes"] / 2**20, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "p50_ms": round(float(np.percentile(warm, 50)), 2),
        "p95_ms": round(float(np.percentile(warm, 95)), 2),
        "metrics": len(catalog),
        "targets": targets,
        "ticks": ticks,
        "max_ms": round(max(warm), 2),
        "with_ingest_p95_ms": round(float(np.percentile(warm_ingest, 95)), 2),
        "reports": len(reports),
        "report_ms_p95": round(float(np.percentile(reports, 95)), 3) if reports else None,
        "time_to_report_s": ttr,
        "time_to_report_s_p50": round(float(np.median(found)), 2) if found else None,
        "time_to_report_s_max": round(max(found), 2) if found else None,
        "detected_after_injection_s": {o.scenario.faults[0]: o.detected_after_s for o in outcomes},
    }


def cmd_bench_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop bench ingest`: the monitor's paths, then remote-write (bench_remote_write)."""
    catalog = load_catalog(TWIN_PACK / "metrics.yaml")  # what the twin emits
    result: dict[str, Any] = {}
    if args.remote_write != "only":
        result = bench_ingest(catalog, targets=args.targets, ticks=args.ticks)
    if args.remote_write != "skip":
        from mendloop.bench_remote_write import bench_remote_write

        result["remote_write"] = bench_remote_write(
            catalog,
            targets=args.targets,
            requests=args.rw_requests,
            shards=args.rw_shards,
            prometheus_requests=args.rw_prometheus_requests,
        )
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


def cmd_bench_rca(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop bench rca`: the rule-based analysis per tick, then the rule-free ranking."""
    if args.components < 1 or args.rule_free_targets < 1:
        raise MendloopError("--components and --rule-free-targets must be positive")
    print(
        f"bench rca: rule-free ranking, {args.components} components x 20 metrics,"
        f" {args.rule_free_targets} targets ...",
        file=sys.stderr,
    )
    rule_free = bench_rule_free(args.components, targets=args.rule_free_targets)
    catalog = load_catalog(TWIN_PACK / "metrics.yaml")  # what the twin emits
    rule_free["unexplained_twin"] = bench_unexplained(catalog)
    if args.trigger_targets > 0:
        rule_free["unexplained_trigger"] = bench_trigger(catalog, args.trigger_targets)
    if args.rule_free_only:
        if args.json:
            print_json(rule_free)
        else:
            print(_rule_free_line(rule_free))
        return 0
    rules = load_rules(catalog, TWIN_PACK / "rules")
    print(f"bench rca: {len(catalog)} metrics x {args.targets} targets ...", file=sys.stderr)
    result = bench_rca(catalog, rules, targets=args.targets, ticks=args.ticks)
    result["rule_free"] = rule_free
    if args.json:
        print_json(result)
    else:
        print(
            f"analysis per tick ({result['metrics']} metrics x {result['targets']} targets): "
            f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms (max {result['max_ms']} ms); "
            f"report compute p95 {result['report_ms_p95']} ms; first abnormal sample -> "
            f"report p50 {result['time_to_report_s_p50']} s, max {result['time_to_report_s_max']} s"
        )
        print(_rule_free_line(rule_free))
    return 0


def _rule_free_line(r: dict[str, Any]) -> str:
    u = r["unexplained_twin"]
    return (
        f"rule-free ranking ({r['components']} components, {r['metrics']} series x "
        f"{r['samples_per_series']} samples): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms per "
        f"analysis over {r['targets']} targets; working set {r['analysis_working_set_mb']} MB, "
        f"RSS +{r['rss_growth_mb']} MB\n"
        f"unexplained analysis in the daemon (the twin's site, {u['series']} series x "
        f"{u['samples_per_series']} samples, windows read from the monitor): p50 {u['p50_ms']} "
        f"ms, p95 {u['p95_ms']} ms over {u['runs']} runs (reading the windows p50 "
        f"{u['read_windows_p50_ms']} ms); {u['fault']} -> top {u['top']}"
        + (
            f"\nunexplained-anomaly check over {t['targets']} targets ({t['series']} series): "
            f"p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms per check; {t['raised']} of "
            f"{t['broken']} broken targets raised"
            if (t := r.get("unexplained_trigger"))
            else ""
        )
    )
