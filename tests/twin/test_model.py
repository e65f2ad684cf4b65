"""The twin's simulation on simulated time: no clock, no threads, no network."""

from __future__ import annotations

import pytest

from kernel.errors import MendloopError
from rules.catalog import load_catalog
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
CATALOG = load_catalog()


def run(twin: Twin, start: float, seconds: float, dt: float = 0.5) -> dict[str, float]:
    """Step from ``start`` for ``seconds`` and return the last values of SITE."""
    n = round(seconds / dt)
    for k in range(1, n + 1):
        twin.step(start + k * dt)
    return twin.state(SITE)["values"]


def unhealthy(values: dict[str, float]) -> list[str]:
    """Series past their catalog warn threshold (what verification would refuse)."""
    return [s for s, v in values.items() if not CATALOG[s].is_healthy(v)]


def past_crit(values: dict[str, float], series: str) -> bool:
    return CATALOG[series].is_breach(values[series], "crit")


@pytest.fixture
def twin() -> Twin:
    t = Twin(targets=(SITE, "pm-site-2"), seed=7)
    t.step(T0)
    return t


def test_emits_every_catalog_series_per_target_with_labels(twin: Twin) -> None:
    samples = twin.step(T0 + 1)
    assert len(CATALOG) == 286
    assert len(samples) == 2 * 286
    assert {s.series for s in samples} == set(CATALOG) == set(twin.series)
    assert {s.target for s in samples} == {SITE, "pm-site-2"}
    assert all(s.ts == T0 + 1 and s.labels["subsystem"] for s in samples)
    by_series = {s.series: s.labels["subsystem"] for s in samples}
    assert by_series["cache_hit_ratio"] == "cache"
    assert by_series["db_io_wait_pct"] == "database"
    assert all(by_series[name] == spec.subsystem for name, spec in CATALOG.items())


def test_baseline_stays_healthy_with_noise(twin: Twin) -> None:
    seen: dict[str, list[float]] = {s: [] for s in CATALOG}
    for k in range(1, 301):
        for sample in twin.step(T0 + k):
            seen[sample.series].append(sample.value)
    for series, values in seen.items():
        assert all(CATALOG[series].is_healthy(v) for v in values), series
        assert max(values) > min(values), f"{series} has no noise"
    assert all(v <= 1.0 for v in seen["cache_hit_ratio"])
    assert all(v <= 100.0 for v in seen["payment_success_rate_pct"])


def test_cache_saturation_moves_cache_first_and_dependants_later(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    early = run(twin, T0, 1.5)
    assert early["cache_utilization_pct"] > 80
    assert early["cache_hit_ratio"] < 0.6
    # causal delay: the DB and the API have not noticed yet
    assert CATALOG["db_query_latency_ms"].is_healthy(early["db_query_latency_ms"])
    assert CATALOG["api_response_time_ms"].is_healthy(early["api_response_time_ms"])

    at3 = run(twin, T0 + 1.5, 1.5)
    assert at3["cache_utilization_pct"] > 88
    assert at3["cache_hit_ratio"] < 0.5
    assert at3["db_penetration_pct"] > 10

    late = run(twin, T0 + 3, 7)
    assert late["db_query_latency_ms"] > 700
    assert late["api_response_time_ms"] > 900
    assert 97.5 < late["payment_success_rate_pct"] < 99.5
    assert CATALOG["cs_complaints_per_h"].is_healthy(late["cs_complaints_per_h"])  # not yet
    assert unhealthy(twin.state("pm-site-2")["values"]) == []  # other target

    later = run(twin, T0 + 10, 50)
    assert past_crit(later, "cs_complaints_payment_status_per_h")


def test_db_io_wait_leaves_the_cache_healthy(twin: Twin) -> None:
    twin.inject(SITE, "db_io_wait")
    early = run(twin, T0, 0.5)
    assert early["db_io_wait_pct"] > 20
    assert early["db_query_latency_ms"] < 60
    late = run(twin, T0 + 0.5, 9.5)
    assert late["db_io_wait_pct"] > 38
    assert late["db_query_latency_ms"] > 500
    assert late["api_response_time_ms"] > 800  # paper: core modules 980 ms
    cache = [s for s in CATALOG if CATALOG[s].subsystem == "cache"]
    assert [s for s in unhealthy(late) if s in cache] == []


@pytest.mark.parametrize(
    ("fault", "action"), [("cache_saturation", "scale_out_cache"), ("db_io_wait", "tune_db_io")]
)
def test_right_repair_restores_baseline_within_seconds(twin: Twin, fault: str, action: str) -> None:
    twin.inject(SITE, fault)
    assert unhealthy(run(twin, T0, 10))
    assert twin.repair(SITE, action) is True
    assert twin.state(SITE)["faults"] == []
    values = run(twin, T0 + 10, 8)
    system = [s for s in CATALOG if CATALOG[s].layer != "customer_service"]
    assert [s for s in unhealthy(values) if s in system] == []


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
    assert not past_crit(run(twin, T0 + 10, 8), "cache_hit_ratio")
    assert twin.rollback(SITE, "scale_out_cache") is True
    assert twin.state(SITE)["faults"] == ["cache_saturation"]
    assert twin.state(SITE)["actions"][-1]["rolled_back_at"] == T0 + 18
    values = run(twin, T0 + 18, 8)
    assert values["cache_hit_ratio"] < 0.5
    assert values["db_query_latency_ms"] > 700
    assert twin.rollback(SITE, "scale_out_cache") is False  # nothing left to revert


def test_rollback_of_an_ineffective_action_changes_nothing(twin: Twin) -> None:
    before = twin.levels(SITE)
    twin.repair(SITE, "scale_out_cache")
    assert twin.rollback(SITE, "scale_out_cache") is True
    assert twin.state(SITE)["faults"] == []
    assert twin.levels(SITE) == pytest.approx(before)  # its tuning is undone too
    assert unhealthy(run(twin, T0, 5)) == []
    assert twin.rollback(SITE, "tune_db_io") is False


def test_remedies_make_a_lasting_change_until_rolled_back(twin: Twin) -> None:
    before = twin.levels(SITE)["dtx_consistency_window_ms"]
    twin.repair(SITE, "switch_2pc_to_tcc")
    after = twin.levels(SITE)["dtx_consistency_window_ms"]
    assert after < 0.5 * before and 60 < after < 100  # paper: 2PC 150-300 -> TCC 80 ms
    twin.rollback(SITE, "switch_2pc_to_tcc")
    assert twin.levels(SITE)["dtx_consistency_window_ms"] == pytest.approx(before)


def test_clear_ends_faults_and_forgets_actions(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    twin.inject(SITE, "db_io_wait")
    twin.inject(SITE, "db_io_wait")  # idempotent
    assert sorted(twin.state(SITE)["faults"]) == ["cache_saturation", "db_io_wait"]
    run(twin, T0, 10)
    twin.repair(SITE, "tune_db_io")
    twin.clear(SITE)
    assert twin.state(SITE)["faults"] == [] and twin.state(SITE)["actions"] == []
    assert unhealthy(run(twin, T0 + 10, 60)) == []


def test_intensity_scales_the_excursion(twin: Twin) -> None:
    twin.inject(SITE, "bank_recon_slow", intensity=0.5)
    twin.inject("pm-site-2", "bank_recon_slow")
    run(twin, T0, 20)
    half = twin.levels(SITE)["bank_recon_latency_ms"]
    full = twin.levels("pm-site-2")["bank_recon_latency_ms"]
    base = twin.levels(SITE)["bank_api_error_rate_pct"]  # untouched series as a sanity check
    assert full == pytest.approx(1800, rel=0.01)
    assert 900 < half < 1100 and base < 0.5
    assert twin.state(SITE)["fault_intensity"] == {"bank_recon_slow": 0.5}
    with pytest.raises(TwinError, match="intensity"):
        twin.inject(SITE, "voltage_sag", intensity=-1)


def test_overlapping_faults_each_need_their_own_remedy(twin: Twin) -> None:
    twin.inject(SITE, "cache_saturation")
    twin.inject(SITE, "voltage_sag")
    values = run(twin, T0, 10)
    assert past_crit(values, "cache_hit_ratio") and past_crit(values, "pq_voltage_rms_pct")
    assert twin.repair(SITE, "activate_dvr") is True
    values = run(twin, T0 + 10, 10)
    assert not past_crit(values, "pq_voltage_rms_pct")
    assert past_crit(values, "cache_hit_ratio")


def test_result_does_not_depend_on_step_size() -> None:
    """The lag is integrated exactly between breakpoints, so tick rate is irrelevant."""
    coarse, fine = Twin(seed=1), Twin(seed=1)
    for t in (coarse, fine):
        t.step(T0)
        t.inject(SITE, "cache_saturation", now=T0 + 0.3)
    coarse.step(T0 + 4)
    for k in range(1, 41):
        fine.step(T0 + k * 0.1)
    assert coarse.levels(SITE) == pytest.approx(fine.levels(SITE), rel=1e-9)


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
    for call in (twin.state, twin.clear, twin.levels):
        with pytest.raises(UnknownTarget):
            call("nope")
    assert issubclass(TwinError, MendloopError) and issubclass(TwinError, ValueError)
    assert twin.state(SITE)["faults"] == [] and twin.state(SITE)["actions"] == []
    with pytest.raises(TwinError):
        Twin(targets=())


def test_tables_are_consistent() -> None:
    assert [m.series for m in METRICS] == list(CATALOG)
    assert {f for a in ACTIONS.values() for f in a.clears} == set(FAULTS)
    assert all(FAULTS[f].component for f in FAULTS)


def test_samples_equal_validated_samples(twin: Twin) -> None:
    """The fast construction path builds exactly what validation would."""
    from kernel.models import Sample

    for sample in twin.step(T0 + 1)[:20]:
        assert Sample.model_validate(sample.model_dump()) == sample
