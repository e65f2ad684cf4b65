"""The rule-free ranking's second round: a window judged against the baseline's own
windows, evidence given twice counted once, only abnormal series summed, and a fault
named from its callers' symptoms."""

import numpy as np
import pytest

from ml.component_rca import RcaSettings, Series, metric_deviations, rank_components
from ml.rca_walk import caller_evidence

T0 = 1_700_000_000.0
START = T0 + 120 * 60  # two hours of baseline at 1 min, then a 5-minute window
N = 125
TS = T0 + 60.0 * np.arange(N)
WINDOW = (START, START + 240)


def _noise(seed, level=10.0, noise=1.0):
    return level + noise * np.random.default_rng(seed).normal(size=N)


def test_history_forgives_a_series_that_often_has_such_excursions():
    spiky = _noise(1)
    for at in range(3, 110, 12):  # an idle service's latency artefacts, minutes long
        spiky[at : at + 3] = 400.0
    spiky[N - 4] = 400.0  # one more in the window
    steady = _noise(2)
    steady[TS >= START] += 6.0  # a small but new shift that holds over the window
    series = [Series("idle", "latency", TS, spiky), Series("busy", "cpu", TS, steady)]
    history = RcaSettings(score="history", propagation="none")
    devs = {d.component: d for d in metric_deviations(series, *WINDOW, settings=history)}
    assert devs["busy"].abnormal and not devs["idle"].abnormal
    assert devs["busy"].score > devs["idle"].score
    assert devs["busy"].onset == START
    z = RcaSettings(score="z", typical_quantile=None, propagation="none")
    by_z = {d.component: d for d in metric_deviations(series, *WINDOW, settings=z)}
    assert by_z["idle"].score > by_z["busy"].score  # magnitude alone is fooled
    ranked = rank_components(list(devs.values()), {}, history)
    assert ranked[0].component == "busy"


def test_history_needs_baseline_windows():
    short = Series("a", "m", TS[:8], _noise(3)[:8])
    devs = metric_deviations([short], TS[5], TS[7], settings=RcaSettings(score="history"))
    # 5 baseline samples, a 3-sample window: 3 baseline windows, never abnormal
    assert len(devs) == 1 and not devs[0].abnormal


def test_series_that_move_together_count_once():
    base = _noise(4)
    base[TS >= START] += 30.0
    twins = [
        Series("a", "cpu_millicores", TS, base),
        Series("a", "cpu_percent", TS, base / 5.0),  # the same counter in other units
        Series("a", "memory", TS, _noise(5)),
    ]
    single = [Series("b", "cpu", TS, base.copy())]
    cfg = RcaSettings(merge_alike=0.95, propagation="none")
    devs = metric_deviations(twins + single, *WINDOW, settings=cfg)
    by = {(d.component, d.metric): d for d in devs}
    assert by[("a", "cpu_millicores")].alike == 2 and by[("a", "memory")].alike == 1
    plain = {
        (d.component, d.metric): d
        for d in metric_deviations(twins + single, *WINDOW, settings=RcaSettings())
    }
    assert by[("a", "cpu_percent")].score == pytest.approx(plain[("a", "cpu_percent")].score / 2)
    a, b = (
        sum(d.score for d in devs if d.component == c and d.metric.startswith("cpu"))
        for c in "ab"
    )
    assert a == pytest.approx(b)  # two views of one counter weigh as one
    with pytest.raises(ValueError):
        RcaSettings(merge_alike=0.0)


def test_abnormal_only_does_not_add_up_noise():
    many = [Series("noisy", f"m{i}", TS, _noise(10 + i, noise=3.0)) for i in range(19)]
    jump = _noise(40)
    jump[TS >= START] += 50.0
    one = [Series("broken", "cpu", TS, jump)]
    for i in range(18):
        one.append(Series("broken", f"flat{i}", TS, np.full(N, 2.0)))
    devs = metric_deviations(many + one, *WINDOW, settings=RcaSettings())
    summed = rank_components(devs, {}, RcaSettings(propagation="none"))
    only = rank_components(devs, {}, RcaSettings(propagation="none", abnormal_only=True))
    assert summed[0].component == "noisy"  # 19 ordinary wiggles outweigh one clear jump
    assert only[0].component == "broken"


def test_callers_name_a_dependency_whose_own_metrics_say_nothing():
    # a network delay on db: db looks normal, both of its callers' latencies jump
    graph = {"api": ["db", "cache"], "jobs": ["db", "queue"], "cache": [], "queue": []}
    series = []
    for k, comp in enumerate(("api", "jobs", "db", "cache", "queue")):
        lat = _noise(50 + k)
        if comp in ("api", "jobs"):
            lat[TS >= START] += 40.0
        series.append(Series(comp, "latency_ms", TS, lat))
        series.append(Series(comp, "cpu", TS, _noise(60 + k)))
    devs = metric_deviations(series, *WINDOW, settings=RcaSettings())
    callers = rank_components(devs, graph, RcaSettings(propagation="callers", caller_weight=3))
    assert callers[0].component == "db"  # the one both abnormal callers have in common
    alone = rank_components(devs, graph, RcaSettings(propagation="none"))
    assert alone[0].component in ("api", "jobs")
    walk = rank_components(devs, graph, RcaSettings(propagation="pagerank"))
    assert walk[0].component != "db"  # the walk only blames what is abnormal itself
    # what counts as a symptom is a setting: cpu alone says nothing here
    cpu_only = RcaSettings(propagation="callers", caller_weight=3, symptoms="cpu")
    assert rank_components(devs, graph, cpu_only)[0].component in ("api", "jobs")


def test_caller_evidence_by_hand():
    names = ["a", "b", "c", "d"]
    own = np.array([1.0, 0.0, 0.0, 0.5])
    symptom = np.array([2.0, 0.0, 0.0, 0.0])
    out = caller_evidence(names, own, symptom, {"a": ["b", "c", "a"], "d": ["c"]}, 0.5)
    # a's symptom (2) halved by the weight, split between b and c (itself left out)
    assert out.tolist() == [1.0, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError):
        RcaSettings(caller_weight=-1.0)
