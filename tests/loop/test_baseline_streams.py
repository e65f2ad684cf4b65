"""The ML baselines' streaming state of every target in one array op (loop/baseline_streams.py)
is what scoring each target alone gives: a real baseline fitted on the twin's normal day,
installed on some targets (one with more hour buckets than the others), the twin's points
of a fault scored target by target in one bank and all at once in another; rows grow past
the first allocation and a forgotten target's row is blank for the next."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from evaluation.rca import local_time, train_baseline
from loop.anomaly import BaselineBank
from rules.catalog import load_catalog
from twin.model import Twin

STATE = ("value", "ts", "z", "expected", "beyond_since", "onset", "run")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def baseline(catalog):
    return train_baseline(catalog, BaselineBank(catalog), seed=31)


def test_every_target_at_once_is_each_target_alone(catalog, baseline) -> None:
    targets = [f"t{i}" for i in range(40)]  # more than the 16 rows allocated first
    finer = replace(
        baseline,
        bucket_s=baseline.bucket_s / 2,
        median=np.repeat(baseline.median, 2, axis=1),
        scale=np.repeat(baseline.scale, 2, axis=1),
        judged=np.repeat(baseline.judged, 2, axis=1),
    )
    alone, together = BaselineBank(catalog), BaselineBank(catalog)
    for bank in (alone, together):
        for i, target in enumerate(targets):
            if i % 3 == 0:
                bank.install(target, baseline)
            elif i % 3 == 1:
                bank.install(target, finer)
    twin = Twin(targets=tuple(targets), seed=5)
    for target in targets[::4]:
        twin.inject(target, "cache_saturation", now=local_time(10))
    order = np.array([alone.index[s] for s in twin.series])
    rng = np.random.default_rng(3)
    beyond = 0
    for k in range(240):
        now = local_time(10) + k
        values = twin.advance(now)
        values[:, ::50] = values[:, ::50] if k % 7 else 1.0  # frozen now and then
        chosen = [i for i in range(len(targets)) if rng.random() < 0.8]
        healthy = [bool(rng.random() < 0.5) for _ in chosen]
        for i, ok in zip(chosen, healthy, strict=True):
            alone.update(targets[i], order, np.full(order.size, now), values[i], ok)
        group = np.repeat(np.arange(len(chosen)), order.size)
        together.update_many(
            [targets[i] for i in chosen],
            group,
            np.tile(order, len(chosen)),
            np.full(group.size, now),
            values[chosen].ravel(),
            healthy,
        )
        beyond += sum(len(alone.anomalies(targets[i])) for i in chosen)
    assert beyond > 0  # the fault was seen: the comparison covers scored points
    for target in targets:
        a, b = alone._targets[target], together._targets[target]
        for name in STATE:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.row_ts == b.row_ts
        assert all(
            np.array_equal(x, y, equal_nan=True) for x, y in zip(a.rows, b.rows, strict=True)
        )
        assert alone.anomalies(target) == together.anomalies(target)


def test_a_forgotten_targets_row_is_blank_for_the_next(catalog, baseline) -> None:
    bank = BaselineBank(catalog)
    bank.install("old", baseline)
    idx = np.arange(len(bank.series))
    now = local_time(10)
    bank.update("old", idx, np.full(idx.size, now), np.full(idx.size, 1e9), False)
    assert bank.anomalies("old") == [] and np.isfinite(bank._targets["old"].z).any()
    row = bank._targets["old"].row
    bank.forget("old")
    bank.update("new", idx[:3], np.full(3, now), np.ones(3), False)
    state = bank._targets["new"]
    assert state.row == row and bank.model("new") is None
    assert np.isnan(state.z).all() and np.isnan(state.value[3:]).all()
    assert list(state.run[:4]) == [1.0, 1.0, 1.0, 0.0]
