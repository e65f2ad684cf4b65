"""The rule-free component ranking: known culprits on synthetic graphs, the direction blame
flows, ties, and degenerate input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.component_rca import (
    MetricDeviation,
    RcaSettings,
    Series,
    metric_deviations,
    propagation_of,
    rank_components,
    rca_grid,
)

T0 = 1_700_000_000.0
START = T0 + 60 * 60  # one hour of baseline at 1 min, then the incident


def _series(component, metric, shift=0.0, seed=0, noise=1.0, level=50.0, n=70, slope=0.0):
    rng = np.random.default_rng(seed)
    ts = T0 + 60.0 * np.arange(n)
    values = level + noise * rng.normal(size=n) + slope * np.arange(n)
    values[ts >= START] += shift
    return Series(component, metric, ts, values)


def _site(shifts, seed=0):
    """Components x 3 metrics; ``shifts``: component -> shift of its first metric."""
    out = []
    for k, comp in enumerate(sorted(shifts)):
        for m, metric in enumerate(("latency", "cpu", "errors")):
            shift = shifts[comp] if m == 0 else 0.0
            out.append(_series(comp, metric, shift, seed=seed + 10 * k + m))
    return out


CHAIN = {"web": ["api"], "api": ["db"], "db": []}  # web calls api calls db
Z = RcaSettings(score="z")  # magnitude counts (the tail score saturates past the baseline)


def _z(propagation):
    return RcaSettings(score="z", propagation=propagation)


@pytest.mark.parametrize("propagation", ["none", "pagerank"])
def test_the_culprit_with_the_largest_deviation_ranks_first(propagation):
    devs = metric_deviations(_site({"web": 4.0, "api": 6.0, "db": 30.0}), START, settings=Z)
    ranked = rank_components(devs, CHAIN, _z(propagation))
    assert ranked[0].component == "db"
    top = ranked[0]
    assert top.anomalous and top.evidence[0].metric == "latency"
    assert top.evidence[0].z > 0 and top.evidence[0].onset == START
    assert top.evidence[0].value > top.evidence[0].baseline + 20


def test_blame_flows_to_dependencies_not_dependants():
    # every component equally abnormal: the walk ends at the one the others depend on
    shifts = {"web": 20.0, "api": 20.0, "db": 20.0}
    devs = metric_deviations(_site(shifts), START)
    down = rank_components(devs, CHAIN, RcaSettings(propagation="pagerank"))
    assert down[0].component == "db"
    reversed_graph = {"db": ["api"], "api": ["web"], "web": []}
    up = rank_components(devs, reversed_graph, RcaSettings(propagation="pagerank"))
    assert up[0].component == "web"
    # an abnormal dependency that is the deeper one wins even when it moved a bit less
    devs = metric_deviations(_site({"web": 25.0, "api": 25.0, "db": 15.0}), START, settings=Z)
    assert rank_components(devs, CHAIN, _z("pagerank"))[0].component == "db"
    assert rank_components(devs, CHAIN, _z("none"))[0].component != "db"


def test_a_healthy_dependency_does_not_take_the_blame():
    devs = metric_deviations(_site({"web": 30.0, "api": 0.0, "db": 0.0}), START)
    ranked = rank_components(devs, CHAIN, RcaSettings(propagation="pagerank"))
    assert ranked[0].component == "web"
    assert not ranked[1].anomalous and not ranked[2].anomalous


def test_the_walk_can_start_at_a_symptom():
    # two independent abnormal branches; the symptom says which one the user cares about
    graph = {"shop": ["pay"], "pay": [], "report": ["batch"], "batch": []}
    shifts = {"shop": 10.0, "pay": 12.0, "report": 10.0, "batch": 14.0}
    devs = metric_deviations(_site(shifts), START, settings=Z)
    cfg = _z("pagerank")
    assert rank_components(devs, graph, cfg)[0].component == "batch"
    ranked = rank_components(devs, graph, cfg, symptom=("shop", "latency"))
    assert ranked[0].component == "pay"
    with pytest.raises(ValueError, match="symptom"):
        rank_components(devs, graph, cfg, symptom=("nowhere", "latency"))


def test_ties_are_broken_by_name_and_confidences_add_up():
    devs = [
        MetricDeviation("b", "m", 5.0, 5.0, 0.0, 5.0, START),
        MetricDeviation("a", "m", 5.0, 5.0, 0.0, 5.0, START),
        MetricDeviation("c", "m", 1.0, 1.0, 0.0, 1.0, None),
    ]
    for propagation in ("none", "pagerank"):
        ranked = rank_components(devs, {}, RcaSettings(propagation=propagation))
        assert [c.component for c in ranked] == ["a", "b", "c"]
        assert ranked[0].score == ranked[1].score
        assert math.isclose(sum(c.confidence for c in ranked), 1.0)


def test_empty_and_degenerate_input():
    assert rank_components([], {}) == []
    assert metric_deviations([], START) == []
    # a graph and no deviation: every component listed, none to blame
    ranked = rank_components([], CHAIN)
    assert {c.component for c in ranked} == {"web", "api", "db"}
    assert all(c.score == 0 and c.confidence == 0 and not c.anomalous for c in ranked)
    # too little baseline, nothing in the window, all missing, constant: no false blame
    short = Series("a", "m", np.array([START - 60, START]), np.array([1.0, 9.0]))
    late = Series("b", "m", T0 + 60.0 * np.arange(10), np.arange(10.0))
    missing = Series("c", "m", T0 + 60.0 * np.arange(70), np.full(70, np.nan))
    flat = Series("d", "m", T0 + 60.0 * np.arange(70), np.full(70, 3.0))
    devs = metric_deviations([short, late, missing, flat], START)
    assert [d.component for d in devs] == ["d"]
    assert devs[0].score == 0 and not devs[0].abnormal


def test_a_series_several_components_report_identically_is_split_between_them():
    node = _series("x", "node_cpu", shift=40.0, seed=1)
    same = [Series(c, "node_cpu", node.ts, node.values) for c in ("a", "b", "c")]
    own = _series("c", "cpu", shift=40.0, seed=2)
    devs = metric_deviations([*same, own], START, settings=RcaSettings())
    node_devs = [d for d in devs if d.metric == "node_cpu"]
    assert all(d.shared_with == 3 for d in node_devs)
    alone = metric_deviations([*same, own], START, settings=RcaSettings(split_shared=False))
    assert node_devs[0].score == pytest.approx(alone[0].score / 3)
    assert rank_components(devs, {})[0].component == "c"


def test_detrend_forgives_a_steady_climb_but_not_a_jump():
    climb = _series("mem", "used", slope=1.0, noise=0.3, seed=3)
    jump = _series("cpu", "used", shift=5.0, noise=0.3, seed=4)
    plain = {d.component: d for d in metric_deviations([climb, jump], START)}
    cfg = RcaSettings(detrend=True)
    detrended = {d.component: d for d in metric_deviations([climb, jump], START, settings=cfg)}
    assert plain["mem"].abnormal  # beyond its baseline because it keeps growing
    assert not detrended["mem"].abnormal and detrended["cpu"].abnormal


def test_the_window_and_baseline_bounds_are_respected():
    s = _series("a", "m", shift=30.0)
    # a window that ends before the incident sees nothing abnormal
    assert not metric_deviations([s], START - 600, START - 60)[0].abnormal
    # a baseline that holds the incident's samples absorbs it
    assert metric_deviations([s], START, baseline_s=600)[0].abnormal


def test_settings_are_validated():
    with pytest.raises(ValueError):
        RcaSettings(typical_quantile=1.0)
    with pytest.raises(ValueError):
        RcaSettings(damping=1.0)
    with pytest.raises(ValueError):
        RcaSettings(min_baseline=1)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(
        st.tuples(
            st.sampled_from("abcdef"),
            st.floats(0, 1e6, allow_nan=False),
        ),
        max_size=20,
    ),
    edges=st.lists(st.tuples(st.sampled_from("abcdefg"), st.sampled_from("abcdefg")), max_size=15),
    propagation=st.sampled_from(["none", "pagerank", "callers"]),
)
def test_any_input_gives_a_ranking_of_every_component(scores, edges, propagation):
    devs = [MetricDeviation(c, f"m{i}", s, s, 0.0, s, None) for i, (c, s) in enumerate(scores)]
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    ranked = rank_components(devs, graph, RcaSettings(propagation=propagation))
    names = {c for c, _ in scores} | set(graph) | {b for _, b in edges}
    assert sorted(c.component for c in ranked) == sorted(names)
    assert all(c.score >= 0 and 0 <= c.confidence <= 1 + 1e-9 for c in ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    total = sum(c.confidence for c in ranked)
    assert total == 0 or math.isclose(total, 1.0)


def test_a_grid_propagation_is_parsed_into_typed_values():
    assert propagation_of("none") == ("none", None)
    assert propagation_of("pagerank@0.5") == ("pagerank", 0.5)
    assert propagation_of("callers@3") == ("callers", 3.0)
    with pytest.raises(ValueError, match="unknown propagation"):
        propagation_of("walk@1")


def test_rca_grid_varies_the_given_values_and_keeps_the_defaults():
    assert rca_grid() == [RcaSettings()]
    grid = rca_grid(scores=("z", "tail"), propagations=("none", "pagerank@0.5", "callers@3"))
    assert [(g.score, g.propagation, g.damping, g.caller_weight) for g in grid] == [
        ("z", "none", 0.85, 1.0),
        ("z", "pagerank", 0.5, 1.0),
        ("z", "callers", 0.85, 3.0),
        ("tail", "none", 0.85, 1.0),
        ("tail", "pagerank", 0.5, 1.0),
        ("tail", "callers", 0.85, 3.0),
    ]
    assert {g.statistic for g in grid} == {RcaSettings().statistic}
