"""Healthy behaviour: a fault-free twin never raises a false incident, the day has a
shape, and a step for 10 targets x 286 series is cheap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rules.catalog import load_catalog
from twin.catalog_baselines import BaselineError, derive, load_shape
from twin.model import SERIES, Twin

CATALOG = load_catalog()
DAY = 86_400.0
T0 = 1_700_000_000.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fault_free_twin_stays_inside_every_warn_threshold_for_24h(seed: int) -> None:
    twin = Twin(targets=("pm-site-1", "pm-site-2"), seed=seed)
    specs = [CATALOG[s] for s in SERIES]
    warn = np.array([s.warn for s in specs])
    high = np.array([s.bad == "high" for s in specs])
    for k in range(0, int(DAY / 60) + 1):
        values = twin.advance(T0 + 60.0 * k)
        breach = np.where(high, values > warn, values < warn)
        assert not breach.any(), [SERIES[i] for i in np.flatnonzero(breach.any(axis=0))]


def test_load_driven_series_follow_the_day() -> None:
    twin = Twin(seed=0)
    hours = {}
    for hour in range(24):
        twin.advance(T0 - (T0 % DAY) + hour * 3600.0 - 8 * 3600.0)  # local (UTC+8) hour
        hours[hour] = twin.levels("pm-site-1")
    tps = [hours[h]["payment_tps"] for h in range(24)]
    assert np.argmax(tps) in (9, 10, 11, 19, 20, 21)
    assert np.argmin(tps) in (2, 3, 4, 5)
    assert max(tps) > 1.5 * min(tps)
    # physics does not follow the payment day
    assert hours[4]["pq_voltage_rms_pct"] == hours[10]["pq_voltage_rms_pct"]
    assert -1.0 <= min(load_shape(T0 + 600.0 * k) for k in range(144)) < -0.8
    assert max(load_shape(T0 + 600.0 * k) for k in range(144)) == pytest.approx(1.0, abs=0.02)


def test_a_baseline_that_would_touch_warn_is_refused() -> None:
    spec = CATALOG["api_response_time_ms"]
    derive(spec)
    too_close = spec.model_copy(update={"warn": 130.0})
    with pytest.raises(BaselineError, match="api_response_time_ms"):
        derive(too_close)


def test_step_for_10_targets_is_fast() -> None:
    twin = Twin(targets=[f"pm-site-{i}" for i in range(10)], seed=0)
    for i, fault in enumerate(["cache_saturation", "voltage_sag", "db_io_wait"]):
        twin.inject(f"pm-site-{i}", fault)
    twin.step(T0)
    advance, step = [], []
    for k in range(1, 41):
        t = time.perf_counter()
        twin.advance(T0 + k)
        advance.append(time.perf_counter() - t)
        t = time.perf_counter()
        samples = twin.step(T0 + k + 0.5)
        step.append(time.perf_counter() - t)
    assert len(samples) == 2860
    # generous bounds for slow CI machines; measured ~0.4 ms and ~5 ms on 2 cores
    assert float(np.median(advance)) < 0.01
    assert float(np.median(step)) < 0.05
