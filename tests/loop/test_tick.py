"""The analyzer's batch bookkeeping (loop/tick.py) with a real monitor and analyzer."""

import numpy as np

from loop.analyze import Analyzer
from loop.monitor import Monitor
from loop.tick import CellIndex, columns_of
from rules.catalog import load_catalog
from rules.compiler import load_rules

NOW = 1_800_000_000.0


def test_cells_by_window_slot_follow_a_slot_reused_after_expiry():
    """A freed slot that names another (target, series) after expiry is never read from the
    old cache: the store's generation changed."""
    catalog = load_catalog()
    clock = [NOW]
    monitor = Monitor(catalog, clock=lambda: clock[0], expire_after_s=10.0)
    analyzer = Analyzer(catalog, load_rules(catalog))
    try:
        first = monitor.ingest_columns(["a"], ["cache_hit_ratio"], np.array([NOW]), np.array([0.9]))
        assert first.latest.slots is not None
        analyzer.observe(first.latest)
        clock[0] = NOW + 100
        assert monitor.expire() == 1
        again = monitor.ingest_columns(
            ["b"], ["db_penetration_pct"], np.array([NOW + 100]), np.array([3.0])
        )
        assert again.latest.slots.tolist() == first.latest.slots.tolist()  # the slot reused
        analyzer.observe(again.latest)
        assert analyzer.tracker.last_seen("b", "db_penetration_pct") == NOW + 100
        assert analyzer.tracker.last_value("b", "db_penetration_pct") == 3.0
        assert analyzer.tracker.last_value("a", "cache_hit_ratio") == 0.9  # untouched
        assert analyzer.tracker.last_seen("b", "cache_hit_ratio") is None
    finally:
        analyzer.close()


def test_cells_by_slot_equal_cells_by_key():
    catalog = load_catalog()
    monitor = Monitor(catalog, clock=lambda: NOW)
    names = list(catalog)[:20]
    targets = [t for t in ("x", "y", "z") for _ in names]
    series = names * 3
    result = monitor.ingest_columns(
        targets, series, np.full(len(series), NOW), np.arange(len(series), dtype=float)
    )
    analyzer = Analyzer(catalog, [])
    try:
        by_slot = CellIndex(analyzer.tracker).cells(result.latest)
        by_key = CellIndex(analyzer.tracker).lookup(columns_of(list(result.latest)).keys)
        assert by_slot.tolist() == by_key.tolist() and (by_slot >= 0).all()
        again = CellIndex(analyzer.tracker)
        again.cells(result.latest)
        assert again.cells(result.latest).tolist() == by_slot.tolist()  # from the cache
    finally:
        analyzer.close()
