"""`mendloop bench rca` (unexplained part): what one unexplained analysis costs the daemon
on the twin's site. Figures for docs/BENCHMARKS.md, never asserted in tests.

One twin target (286 catalog series, 11 components of kernel/domain.yaml) feeds a real
monitor for ``window_s`` ticks of 1 s, a fault injected ``fault_s`` before the end; one
analysis = :meth:`loop.unexplained.ComponentRanker.rank`, exactly what the analyze step
runs when no rule explains an incident: the 286 windows copied out of the monitor, then
``metric_deviations`` + ``rank_components``. Timed ``runs`` times on the same windows.

:func:`bench_trigger` times the sustained-anomaly check (loop/sustained.py) the
housekeeping sweep runs every 5 s: ``Analyzer.deviating()`` over every target plus
``SustainedAnomalies.check``, with ``targets`` twin targets of which 5 % carry a fault.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from loop.analyze import Analyzer
from loop.monitor import Monitor
from loop.rca import Topology
from loop.sustained import SustainedAnomalies, SustainedPolicy
from loop.unexplained import ComponentRanker
from rules.catalog import Catalog

T0 = 1_800_000_000  # a fixed day, so every run sees the same load shape


def bench_unexplained(
    catalog: Catalog,
    fault: str = "db_io_wait",
    window_s: int = 300,
    fault_s: int = 40,
    runs: int = 50,
) -> dict[str, Any]:
    from twin.faults import FAULTS
    from twin.model import Twin

    clock = {"now": float(T0)}
    monitor = Monitor(catalog, window_s, clock=lambda: clock["now"])
    twin = Twin(targets=("bench-1",), seed=11)
    injected = T0 + window_s - fault_s
    for t in range(T0 + 1, T0 + window_s + 1):
        if t == injected:
            twin.inject("bench-1", fault, now=float(t))
        clock["now"] = float(t)
        monitor.ingest(twin.step(float(t)))
    topology = Topology.from_domain()
    ranker = ComponentRanker(monitor, catalog, topology.upstreams)
    now = float(T0 + window_s)
    took, read = [], []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        ranker.series("bench-1")  # the windows' share of it, alone
        t1 = time.perf_counter()
        result = ranker.rank("bench-1", onset=float(injected + 1), now=now)  # reads them too
        took.append((time.perf_counter() - t1) * 1000)
        read.append((t1 - t0) * 1000)
    assert result is not None and result.top is not None
    ms = np.array(took)
    return {
        "series": result.series,
        "components": len(topology.upstreams),
        "samples_per_series": window_s,
        "runs": runs,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "max_ms": round(float(ms.max()), 2),
        "read_windows_p50_ms": round(float(np.percentile(read, 50)), 2),
        "fault": fault,
        "fault_component": FAULTS[fault].component,
        "top": result.top.component,
        "top_confidence": round(result.top.confidence, 3),
    }


def bench_trigger(
    catalog: Catalog, targets: int, ticks: int = 12, runs: int = 20
) -> dict[str, Any]:
    from twin.model import Twin

    names = tuple(f"trig-{i:05d}" for i in range(targets))
    twin = Twin(targets=names, seed=13)
    broken = names[: max(1, targets // 20)]
    for name in broken:
        twin.inject(name, "db_io_wait", now=float(T0))
    analyzer = Analyzer(catalog, [])  # no rule: every deviation stays unexplained
    for k in range(1, ticks + 1):
        analyzer.observe(twin.step(float(T0 + k)))
    watch = SustainedAnomalies(SustainedPolicy(min_series=3, min_duration_s=5.0))
    took, raised = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        raised += len(watch.check(analyzer.deviating()))
        took.append((time.perf_counter() - t0) * 1000)
    analyzer.close()
    ms = np.array(took)
    return {
        "targets": targets,
        "series": targets * len(catalog),
        "broken": len(broken),
        "raised": raised,
        "runs": runs,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
    }
