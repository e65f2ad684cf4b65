"""`mendloop bench ...`: measured figures for docs/BENCHMARKS.md (never asserted in tests).

    mendloop bench ingest --targets 10 --ticks 3600 --json

ingest: 286 metrics (the catalog) x N targets at 1 s for ``ticks`` simulated seconds
through the monitor's vectorised path, timing only the ingest calls; memory is read from
/proc before and after, so a window store that grows with traffic would show here.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np

from loop.monitor import Monitor
from rules.catalog import Catalog

T0 = 1_800_000_000.0


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def register_rca(bench_sub: Any) -> None:
    """`mendloop bench rca`: analysis compute per tick for 286 metrics x N targets."""
    rca = bench_sub.add_parser("rca", help="analysis compute latency (p50/p95 per tick)")
    rca.set_defaults(func=_cmd_bench_rca)
    rca.add_argument("--json", action="store_true")


def _cmd_bench_rca(args: Any, settings: Any) -> int:
    from loop.errors import MendloopError

    raise MendloopError("bench rca is not implemented yet")
