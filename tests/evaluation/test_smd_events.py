"""SMD round 2: the event rankers join the leave-one-machine-out choice, each fold reads
the events of the detector it chose, and with no flagged row they are the plain rankers."""

from dataclasses import replace

import numpy as np

from evaluation.smd_cv import cached_table, describe_ranker, ranker_settings
from evaluation.smd_events import (
    EVENT_MODES,
    evaluate_events,
    event_hits,
    event_ranker_keys,
)


def test_the_event_grid():
    keys = event_ranker_keys()
    assert len(keys) == 352 and "abs_z" in keys  # the synthetic grid's 351 and |z|
    assert all(ranker_settings()[k].get("absolute", 0.0) == 0.0 for k in keys)
    assert describe_ranker("abs_z|event-max") == {"ranker": "abs_z", "event": "max"}
    assert describe_ranker("abs_z") == "abs_z"


def test_without_flagged_rows_event_rankers_are_the_plain_ones(smd_root):
    table = cached_table(smd_root, "machine-3-10", 1500, None, lambda m: None)
    quiet = replace(table, preds=np.zeros_like(table.preds))
    hits = event_hits(smd_root, quiet, [0], 1500)
    keys = list(ranker_settings())
    rows = [keys.index(k) for k in event_ranker_keys()]
    for b in range(len(EVENT_MODES)):
        np.testing.assert_allclose(hits[0, b], table.hits[rows], atol=1e-6)


def test_truncated_real_machines(smd_root, tmp_path):
    machines = ["machine-1-6", "machine-3-10"]
    cold = evaluate_events(smd_root, machines, limit=2500, cache_dir=tmp_path)
    warm = evaluate_events(smd_root, machines, limit=2500, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("events-*.npy"))) == 2
    for r in (cold, warm):
        r.pop("run_time_s")
    assert cold == warm
    assert "event rankers" in cold["protocol"]["ranker"]
    assert set(cold["round1"]) == set(cold["mean"])
    for m in machines:
        res = cold["machines"][m]
        assert 0 <= res["hitrate_per_point"]["@100%"] <= res["hitrate_per_point"]["@150%"] <= 1
