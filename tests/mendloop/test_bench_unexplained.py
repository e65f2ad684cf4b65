"""bench rca's unexplained part: the daemon's ranking on the twin's site runs end to end
(its times are measured, never asserted)."""

from mendloop.bench_unexplained import bench_trigger, bench_unexplained
from rules.catalog import load_catalog


def test_bench_unexplained_ranks_the_twin_fault_and_reports_figures():
    r = bench_unexplained(load_catalog(), fault="cache_saturation", runs=2)
    assert r["series"] == 286 and r["components"] == 11 and r["runs"] == 2
    assert r["top"] == r["fault_component"] == "cache"
    assert r["p50_ms"] > 0 and r["read_windows_p50_ms"] > 0 and 0 < r["top_confidence"] <= 1


def test_bench_trigger_raises_once_per_broken_target():
    r = bench_trigger(load_catalog(), targets=20, runs=3)
    assert r["targets"] == 20 and r["series"] == 20 * 286 and r["broken"] == 1
    assert r["raised"] == 1  # the first check raises it, the next two see the same episode
    assert r["p50_ms"] >= 0
