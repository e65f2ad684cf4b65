import numpy as np
import pytest

from evaluation.smd import (
    evaluate_machine,
    hit_rate,
    label_runs,
    parse_interpretation,
    point_adjust,
    prf,
)


def test_parse_interpretation_is_zero_based_end_exclusive():
    segs = parse_interpretation("15849-16368:1,9,10\n\n3-5:2\n")
    assert segs[0].start == 15849 and segs[0].end == 16368
    assert segs[0].dims == (0, 8, 9)
    assert segs[1].dims == (1,)


def test_point_adjust_and_f1_by_hand():
    truth = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    pred = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    assert label_runs(truth) == [(1, 4), (6, 8)]
    adj = point_adjust(pred, truth)
    assert adj.tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    # point-wise: tp 1, fp 1, fn 4 -> p 0.5, r 0.2
    assert prf(pred, truth) == {"precision": 0.5, "recall": 0.2, "f1": pytest.approx(0.2857)}
    # adjusted: tp 3, fp 1, fn 2 -> p 0.75, r 0.6, f1 = 2*.45/1.35
    assert prf(adj, truth)["f1"] == pytest.approx(0.6667)


def test_hit_rate_by_hand():
    ranking = [5, 1, 7, 2, 0]
    assert hit_rate(ranking, [1, 2], 100) == 0.5  # top 2 = {5, 1}
    assert hit_rate(ranking, [1, 2], 150) == 0.5  # top floor(3) = {5, 1, 7}
    assert hit_rate(ranking, [1, 2, 0], 150) == pytest.approx(2 / 3)  # top 4
    assert hit_rate(ranking, [5], 150) == 1.0


def test_one_machine_truncated(smd_root):
    r = evaluate_machine(smd_root, "machine-1-6", limit=4000, select="fixed")
    assert r["train_rows"] == r["test_rows"] == 4000
    assert r["segments"] >= 3 and r["segments_detected"] >= 1
    assert r["point_adjusted"]["f1"] >= r["point_wise"]["f1"] > 0
    # better than ranking the 38 metrics at random (which gets ~1.5|G|/38 at 150 %)
    assert r["hitrate_per_point"]["@150%"] > 0.5
    # the earlier ranking (|z| against training) is reported next to it
    assert r["hitrate_per_point_abs_z"]["@150%"] > 0.5


def test_one_machine_with_the_setting_chosen_on_synthetic_faults(smd_root):
    from evaluation.smd_select import GRID, MIN_TRAIN_ROWS

    r = evaluate_machine(smd_root, "machine-1-6", limit=MIN_TRAIN_ROWS)
    setting = r["ranker_setting"]
    assert setting["window"] in GRID["window"] and setting["smooth"] in GRID["smooth"]
    scores = [row["synthetic_hitrate@150%"] for row in r["ranker_selection_top"]]
    assert scores == sorted(scores, reverse=True)
    # the library default is reported beside the chosen setting, on the same rows
    assert r["hitrate_per_point"]["@150%"] > 0.3
    assert r["hitrate_per_point_fixed_setting"]["@150%"] > 0.3
    with pytest.raises(ValueError, match="select"):
        evaluate_machine(smd_root, "machine-2-1", limit=100, select="labels")
