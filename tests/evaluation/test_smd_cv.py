"""SMD leave-one-machine-out: a machine's own labels never choose its setting; the cached
tables give the same answer; a truncated real run through the CLI."""

import json

import numpy as np
import pytest

from evaluation.smd import Segment
from evaluation.smd_cv import (
    BASELINE_DETECTOR,
    BASELINE_RANKER,
    MachineTable,
    choose_detector,
    choose_ranker,
    detector_keys,
    evaluate_lomo,
    lomo,
    ranker_settings,
)
from mendloop.cli import main


def _table(name, best_detector, best_ranker, n_det=3, n_rank=3):
    """A machine of 20 rows, one segment at rows 5..10; detector ``best_detector`` flags
    exactly it (the others flag noise), ranker ``best_ranker`` always hits."""
    truth = np.zeros(20, dtype=bool)
    truth[5:10] = True
    preds = np.zeros((n_det, 20), dtype=bool)
    preds[:, 15:18] = True
    preds[best_detector] = truth
    preds[:, 5] = True  # every detector finds the segment's first row
    entries = np.arange(5, 10)
    hits = np.full((n_rank, 5, 2), 0.2, dtype=np.float32)
    hits[best_ranker] = 1.0
    return MachineTable(name, truth, (Segment(5, 10, (0,)),), preds, entries, hits)


def test_a_machine_is_scored_with_what_the_others_chose():
    tables = [_table("a", 0, 0), _table("b", 0, 0), _table("odd", 2, 2)]
    assert choose_detector(tables) == 0 and choose_ranker(tables, 0) == 0
    # "odd" would be perfect with detector 2 / ranker 2, but the others choose 0 / 0
    odd = [t for t in tables if t.machine != "odd"]
    assert choose_detector(odd) == 0 and choose_ranker(odd, 0) == 0
    # the fold code is written against the real grids' keys; a toy table needs their size
    det, rank = len(detector_keys()), len(ranker_settings())
    tables = [_table(n, 1, 2, det, rank) for n in ("a", "b")] + [_table("odd", 3, 4, det, rank)]
    r = lomo(tables)
    assert r["machines"]["odd"]["detector"] == detector_keys()[1]
    assert r["machines"]["odd"]["point_wise"]["f1"] < 1.0  # detector 3 would have been 1.0
    assert r["machines"]["odd"]["hitrate_per_point"]["@150%"] == pytest.approx(0.2)
    assert r["machines"]["a"]["hitrate_per_point"]["@150%"] == 1.0
    assert r["mean"]["segments_found"] == 3 and r["mean"]["segments"] == 3
    with pytest.raises(ValueError, match="at least 2"):
        lomo(tables[:1])


def test_the_grids_hold_the_baselines():
    assert BASELINE_DETECTOR in detector_keys() and len(detector_keys()) == 20
    settings = ranker_settings()
    assert BASELINE_RANKER in settings and len(settings) == 1 + 351 * 4
    assert all(s["window"] in (60, 360, 1440) for k, s in settings.items() if k != "abs_z")


def test_truncated_real_machines(smd_root, tmp_path):
    machines = ["machine-1-6", "machine-3-10"]
    cold = evaluate_lomo(smd_root, machines, limit=2500, cache_dir=tmp_path)
    warm = evaluate_lomo(smd_root, machines, limit=2500, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    for r in (cold, warm):
        r.pop("run_time_s")
    assert cold == warm  # the cached tables are the tables
    for m in machines:
        res = cold["machines"][m]
        assert res["detector"] in detector_keys()
        assert res["segments"] >= 1
        assert 0 <= res["point_wise"]["f1"] <= res["point_adjusted"]["f1"] <= 1
    # far better than a random order of 38 metrics (~1.5 |G| / 38) on the labelled rows
    assert cold["mean"]["hitrate_all_labelled_rows"]["@150%"] > 0.4


def test_cli_lomo(smd_root, capsys):
    rc = main(
        ["eval", "smd", "--machines", "machine-1-6,machine-3-10", "--limit", "1500", "--json",
         "--no-cache"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.out)
    assert result["protocol"]["name"] == "leave-one-machine-out"
    assert set(result["machines"]) == {"machine-1-6", "machine-3-10"}
    assert main(["eval", "smd", "--machines", "machine-1-6,machine-3-10", "--limit", "10"]) == 2
    assert "--limit must be at least" in capsys.readouterr().err
