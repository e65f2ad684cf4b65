"""The MicroRCA baseline: its detector, its PageRank (networkx's semantics), and one real
fault through the whole method; the metrics-free control."""

import numpy as np
import pytest

from evaluation.microrca import (
    MicroRcaSettings,
    birch_anomalous,
    day_frame,
    grid,
    pagerank,
    rank_microrca,
)
from evaluation.trainticket import FRONTEND, load_day, load_faults
from evaluation.trainticket_cv import topology_only


@pytest.fixture(scope="module")
def tt_root():
    from evaluation.cli import DEFAULT_DATASETS

    root = DEFAULT_DATASETS / "nezha-trainticket"
    if not root.is_dir():
        pytest.skip(f"dataset {root} not present")
    return root


def test_birch_flags_a_step_not_a_flat_line():
    flat = np.full(30, 0.2)
    assert not birch_anomalous(flat, 0.045, 1)
    step = flat.copy()
    step[25:] = 2.0
    assert birch_anomalous(step, 0.045, 1)
    assert not birch_anomalous(np.zeros(30), 0.045, 1)  # nothing to normalise
    assert not birch_anomalous(np.full(30, np.nan), 0.045, 1)


def test_pagerank_by_hand():
    # a -> b -> c, c dangling; all restarts at a: the walk's shares, solved by hand
    nodes = ["a", "b", "c"]
    edges = {("a", "b"): 1.0, ("b", "c"): 2.0}
    pr = pagerank(nodes, edges, {"a": 1.0}, 0.85)
    d = 0.85
    # x_a = (1-d) + d*x_c, x_b = d*x_a, x_c = d*x_b  (the dangling c jumps back to a)
    xa = (1 - d) / (1 - d**3)
    assert pr["a"] == pytest.approx(xa, abs=1e-6)
    assert pr["b"] == pytest.approx(d * xa, abs=1e-6)
    assert pr["c"] == pytest.approx(d * d * xa, abs=1e-6)
    assert sum(pr.values()) == pytest.approx(1.0)


def test_one_real_fault_through_the_method(tt_root):
    frame = day_frame(load_day(tt_root, "2023-01-29"))
    assert len(set(frame.host.values())) == 12  # nodes found from identical node series
    assert frame.host["ts-ui-dashboard"] == frame.host["ts-travel-service"]
    fault = next(f for f in load_faults(tt_root, ["2023-01-29"]) if f.kind == "cpu_contention")
    ranked = rank_microrca(frame, fault.at, MicroRcaSettings())
    assert ranked and len(ranked) == len(set(ranked)) <= 46
    assert all(r.startswith("ts-") for r in ranked) and fault.service in ranked
    assert len(grid()) == 16 and MicroRcaSettings() in grid()


def test_the_metrics_free_control(tt_root):
    faults = load_faults(tt_root)
    names = sorted({s.component for s in load_day(tt_root, "2023-01-30")})
    ranks = topology_only(faults, names)
    assert FRONTEND in names and len(names) == 46
    basic = [r for r, f in zip(ranks, faults, strict=True) if f.service == "ts-basic-service"]
    assert set(basic) == {3}  # order-other and order have more callers
