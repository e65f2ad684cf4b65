"""`eval rca` runner on a tiny subset: real twin, monitor, durable_rules, baselines."""

from __future__ import annotations

import argparse

import pytest

from evaluation.rca import (
    DEV_SEEDS,
    EVAL_SEEDS,
    TRAIN_SEED,
    Bench,
    Scenario,
    add_arguments,
    run_rca_eval,
    scenarios,
    train_baseline,
)
from kernel.config import Settings
from loop.anomaly import BaselineBank
from rules.catalog import load_catalog
from rules.compiler import load_rules


@pytest.fixture(scope="module")
def bench():
    catalog = load_catalog()
    made = Bench(catalog, load_rules(catalog), train_baseline(catalog, BaselineBank(catalog)))
    yield made
    made.close()


def test_seeds_for_reporting_are_not_the_development_ones():
    assert not set(EVAL_SEEDS) & set(DEV_SEEDS) and TRAIN_SEED not in EVAL_SEEDS + DEV_SEEDS


def test_the_scenario_grid_covers_every_fault_and_cross_component_pairs():
    singles, pairs = scenarios(EVAL_SEEDS, quick=False)
    assert len({s.faults[0] for s in singles}) == 12
    assert len(singles) == 12 * 3 * 3
    assert {s.intensity for s in singles} == {0.8, 1.0, 1.3}
    assert all(len(p.faults) == 2 for p in pairs) and len(pairs) >= 50
    quick_singles, quick_pairs = scenarios(EVAL_SEEDS, quick=True)
    assert len(quick_singles) == 12 and 0 < len(quick_pairs) < len(pairs)


def test_a_single_fault_and_a_pair_are_found_and_ranked(bench):
    single = bench.scenario(Scenario("s", ("bank_recon_slow",), 1.0, 10.0, 41), 30, 40)
    assert single.top1 and single.detected_after_s is not None and single.warmup_false == 0
    assert single.first_top == "bank_recon_slow" and not single.wrong
    assert 0 < single.time_to_report_s <= 10
    pair = bench.scenario(
        Scenario("p", ("cache_saturation", "db_io_wait"), 1.0, 20.0, 42, 5.0), 30, 40
    )
    # the db rule is vetoed while the cache is broken: its signature still ranks it
    assert pair.top3 and pair.ranked[0] == "cache_saturation"


def test_control_time_raises_no_incident(bench):
    false, hours = bench.control([4.0], seed=43, seconds=300)
    assert false == 0 and hours == pytest.approx(300 / 3600)


def test_the_command_returns_the_documented_shape():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quick", "--seeds", "7001"])
    result = run_rca_eval(Settings(), args)
    for key in ("scenarios", "top1", "top3", "false_incidents_per_hour", "detection_delay_s_p50"):
        assert key in result
    assert result["quick"] and result["seeds"] == [7001]
    assert result["scenarios"] == result["single"] + result["pairs"]
    assert 0 <= result["top1"] <= 1 and 0 <= result["top3"] <= 1
