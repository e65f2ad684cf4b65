"""The twin's simulation on simulated time: no clock, no threads, no network."""

from __future__ import annotations

import pytest

from loop.errors import MendloopError
from twin.model import (
    ACTIONS,
    FAULTS,
    METRICS,
    Twin,
    TwinError,
    UnknownAction,
    UnknownFault,
    UnknownTarget,
)

T0 = 1_000_000.0
SITE = "pm-site-1"
SERIES = (
    "cache_utilization_pct",
    "cache_hit_ratio",
    "db_penetration_pct",
    "db_query_latency_ms",
    "db_io_wait_pct",
    "api_response_time_ms",
    "payment_success_rate_pct",
)
HEALTHY = {  # generous bands around the baselines: noise must stay inside them
    "cache_utilization_pct": (50, 60),
    "cache_hit_ratio": (0.93, 0.97),
    "db_penetration_pct": (0.5, 1.5),
    "db_query_latency_ms": (30, 50),
    "db_io_wait_pct": (6, 10),
    "api_response_time_ms": (105, 135),
    "payment_success_rate_pct": (99.8, 100.0),
}


def run(twin: Twin, start: float, seconds: float, dt: float = 0.5) -> dict[str, float]:
    """Step from ``start`` for ``seconds`` and return the last values of SITE."""
    n = round(seconds / dt)
    for k in range(1, n + 1):
        twin.step(start + k * dt)
    return twin.state(SITE)["values"]


def healthy(values: dict[str, float]) -> bool:
    return all(lo <= values[s] <= hi for s, (lo, hi) in HEALTHY.items())


@pytest.fixture
def twin() -> Twin:
    t = Twin(targets=(SITE, "pm-site-2"), seed=7)
    t.step(T0)
    return t


def test_emits_every_series_per_target_with_labels(twin: Twin) -> None:
    samples = twin.step(T0 + 1)
    assert len(samples) == 2 * len(SERIES)
    assert {s.series for s in samples} == set(SERIES) == set(twin.series)
    assert {s.target for s in samples} == {SITE, "pm-site-2"}
    assert all(s.ts == T0 + 1 and s.labels["subsystem"] for s in samples)
    by_series = {s.series: s.labels["subsystem"] for s in samples}
    assert by_series["cache_hit_ratio"] == "cache"
    assert by_series["db_io_wait_pct"] == "database"


def test_baseline_stays_in_range_with_small_noise(twin: Twin) -> None:
    seen: dict[str, list[float]] = {s: [] for s in SERIES}
    for k in range(1, 301):
        for sample in twin.step(T0 + k):
            seen[sample.series].append(sample.value)
    for series, values in seen.items():
        lo, hi = HEALTHY[series]
        assert all(lo <= v <= hi for v in values), series
        assert max(values) > min(values), f"{series} has no noise"
    assert all(v <= 1.0 for v in seen["cache_hit_ratio"])
    assert all(v <= 100.0 for v in seen["payment_success_rate_pct"])


def test_cache_saturation_moves_cache_first_and_dependants_later(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    early = run(twin, T0, 1.5)
    assert early["cache_utilization_pct"] > 80
    assert early["cache_hit_ratio"] < 0.6
    assert early["db_query_latency_ms"] < 60  # causal delay: the DB has not noticed yet
    assert early["api_response_time_ms"] < 140

    at3 = run(twin, T0 + 1.5, 1.5)
    assert at3["cache_utilization_pct"] > 88
    assert at3["cache_hit_ratio"] < 0.5
    assert at3["db_penetration_pct"] > 10

    late = run(twin, T0 + 3, 7)
    assert late["db_query_latency_ms"] > 700
    assert late["api_response_time_ms"] > 900
    assert 97.5 < late["payment_success_rate_pct"] < 99.5
    assert twin.state("pm-site-2")["values"]["cache_utilization_pct"] < 60  # other target


def test_db_io_wait_leaves_the_cache_healthy(twin: Twin) -> None:
    twin.inject(SITE, "db_io_wait")
    early = run(twin, T0, 0.5)
    assert early["db_io_wait_pct"] > 20
    assert early["db_query_latency_ms"] < 60
    late = run(twin, T0 + 0.5, 9.5)
    assert late["db_io_wait_pct"] > 38
    assert late["db_query_latency_ms"] > 500
    assert late["api_response_time_ms"] > 600
    assert 50 <= late["cache_utilization_pct"] <= 60
    assert late["cache_hit_ratio"] > 0.93
    assert late["db_penetration_pct"] < 1.5


@pytest.mark.parametrize(
    ("fault", "action"), [("cache_saturation", "scale_out_cache"), ("db_io_wait", "tune_db_io")]
)
def test_right_repair_restores_baseline_within_seconds(twin: Twin, fault: str, action: str) -> None:
    twin.inject(SITE, fault)
    assert not healthy(run(twin, T0, 10))
    assert twin.repair(SITE, action) is True
    assert twin.state(SITE)["faults"] == []
    assert healthy(run(twin, T0 + 10, 8))


def test_recovery_is_smooth_not_a_jump(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    run(twin, T0, 10)
    twin.repair(SITE, "scale_out_cache")
    after1 = run(twin, T0 + 10, 0.5)
    assert 60 < after1["cache_utilization_pct"] < 88


def test_wrong_action_leaves_the_fault(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    run(twin, T0, 10)
    assert twin.repair(SITE, "tune_db_io") is False
    state = twin.state(SITE)
    assert state["faults"] == ["cache_saturation"]
    assert state["actions"][-1]["action"] == "tune_db_io"
    assert state["actions"][-1]["cleared"] == []
    values = run(twin, T0 + 10, 20)
    assert values["cache_hit_ratio"] < 0.5
    assert values["api_response_time_ms"] > 900


def test_actions_are_recorded_with_their_time(twin: Twin) -> None:
    twin.inject(SITE, "db_io_wait")
    run(twin, T0, 2)
    twin.repair(SITE, "tune_db_io", now=T0 + 2.25)
    twin.repair(SITE, "scale_out_cache")  # at the twin's clock
    actions = twin.state(SITE)["actions"]
    assert [(a["action"], a["at"], a["cleared"]) for a in actions] == [
        ("tune_db_io", T0 + 2.25, ["db_io_wait"]),
        ("scale_out_cache", T0 + 2, []),
    ]


def test_rollback_reinstates_the_fault_it_cleared(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    run(twin, T0, 10)
    twin.repair(SITE, "scale_out_cache")
    assert healthy(run(twin, T0 + 10, 8))
    assert twin.rollback(SITE, "scale_out_cache") is True
    assert twin.state(SITE)["faults"] == ["cache_saturation"]
    assert twin.state(SITE)["actions"][-1]["rolled_back_at"] == T0 + 18
    values = run(twin, T0 + 18, 8)
    assert values["cache_hit_ratio"] < 0.5
    assert values["db_query_latency_ms"] > 700
    assert twin.rollback(SITE, "scale_out_cache") is False  # nothing left to revert


def test_rollback_of_an_ineffective_action_changes_nothing(twin: Twin) -> None:
    twin.repair(SITE, "scale_out_cache")
    assert twin.rollback(SITE, "scale_out_cache") is True
    assert twin.state(SITE)["faults"] == []
    assert healthy(run(twin, T0, 5))
    assert twin.rollback(SITE, "tune_db_io") is False


def test_clear_ends_faults_and_forgets_actions(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    twin.inject(SITE, "db_io_wait")
    twin.inject(SITE, "db_io_wait")  # idempotent
    assert sorted(twin.state(SITE)["faults"]) == ["cache_saturation", "db_io_wait"]
    run(twin, T0, 10)
    twin.repair(SITE, "tune_db_io")
    twin.clear(SITE)
    assert twin.state(SITE)["faults"] == [] and twin.state(SITE)["actions"] == []
    assert healthy(run(twin, T0 + 10, 10))


def test_result_does_not_depend_on_step_size() -> None:
    """The lag is integrated exactly between breakpoints, so tick rate is irrelevant."""
    coarse, fine = Twin(seed=1), Twin(seed=1)
    for t in (coarse, fine):
        t.step(T0)
        t.inject(SITE, "cache_saturation", now=T0 + 0.3)
    coarse.step(T0 + 4)
    for k in range(1, 41):
        fine.step(T0 + k * 0.1)
    a, b = coarse._state[SITE].level, fine._state[SITE].level  # noise-free state
    assert a == pytest.approx(b, rel=1e-9)


def test_same_seed_same_samples_other_seed_differs() -> None:
    def trace(seed: int) -> list[float]:
        t = Twin(seed=seed)
        out = [s.value for s in t.step(T0)]
        t.inject(SITE, "db_io_wait")
        for k in range(1, 20):
            out += [s.value for s in t.step(T0 + k)]
        return out

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_control_before_first_step_happens_at_first_step() -> None:
    t = Twin(seed=0)
    t.inject(SITE, "cache_saturation")
    t.step(T0)
    assert t.state(SITE)["fault_since"] == {"cache_saturation": T0}
    assert t.latest()[0].ts == T0


def test_unknown_names_raise_a_twin_error(twin: Twin) -> None:
    with pytest.raises(UnknownTarget, match="unknown target 'nope'"):
        twin.inject("nope", "cache_saturation")
    with pytest.raises(UnknownFault, match="cache_saturation"):  # lists the known ones
        twin.inject(SITE, "meltdown")
    with pytest.raises(UnknownAction):
        twin.repair(SITE, "reboot")
    with pytest.raises(UnknownAction):
        twin.rollback(SITE, "reboot")
    for call in (twin.state, twin.clear):
        with pytest.raises(UnknownTarget):
            call("nope")
    assert issubclass(TwinError, MendloopError) and issubclass(TwinError, ValueError)
    assert twin.state(SITE)["faults"] == [] and twin.state(SITE)["actions"] == []
    with pytest.raises(TwinError):
        Twin(targets=())


def test_tables_are_consistent() -> None:
    names = {m.series for m in METRICS}
    assert names == set(SERIES)
    for fault in FAULTS.values():
        assert {e.series for e in fault.effects} <= names
    assert {f for a in ACTIONS.values() for f in a.clears} == set(FAULTS)
