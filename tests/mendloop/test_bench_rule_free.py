"""bench rca's rule-free part runs end to end (figures are measured, never asserted)."""

import json

import numpy as np

from mendloop.bench_rule_free import bench_rule_free, site, target_series
from mendloop.cli import main


def test_the_synthetic_site_is_a_dag_with_a_culprit():
    deps = site(12, seed=3)
    order = list(deps)
    assert all(order.index(d) > order.index(c) for c, ds in deps.items() for d in ds)

    series, culprit, start = target_series(deps, 4, 120, np.random.default_rng(0))
    assert len(series) == 48 and culprit in deps and series[0].ts[-30] == start


def test_bench_rule_free_reports_its_figures(capsys):
    r = bench_rule_free(components=8, metrics=4, samples=120, targets=3)
    assert r["targets"] == 3 and r["metrics"] == 32
    assert r["p50_ms"] > 0 and 0 <= r["synthetic_top1"] <= 1
    args = ["bench", "rca", "--rule-free-only", "--components", "6", "--rule-free-targets", "2"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["components"] == 6 and out["unexplained_twin"]["top"] == "database"
    assert main([*args[:-1], "0"]) == 2
