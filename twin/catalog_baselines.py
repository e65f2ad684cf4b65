"""Healthy behaviour of every catalog series, derived from the catalog itself.

The twin must never raise a false incident, so a healthy series is placed *inside* its
warn threshold by construction, and the import refuses any row whose envelope (daily
peak plus the largest noise excursion) would touch warn:

    >>> from rules.catalog import load_catalog
    >>> rows = baseline_rows(load_catalog())
    >>> rows["api_response_time_ms"].base, rows["api_response_time_ms"].load_amp > 0
    (120.0, True)

Derivation (per catalog row):
- bad ``high``: mean level 45 % of warn, noise sd 2.5 % of warn;
- bad ``low``: warn plus 60 % of the headroom (warn - crit, capped by the physical
  bound), noise sd 6 % of that headroom;
- ``OVERRIDES`` replace the mean (and optionally the noise) where the generic rule would
  be physically wrong (voltage is ~100 % of rated, not 94 %; a cache runs ~55 % full);
- load-driven series (``LOAD_DRIVEN``) follow ``load_shape``, with an amplitude that is
  cut until the peak still clears warn.
Noise is a normal clipped at 3 sd (``NOISE_CLIP``), so the envelope is a hard bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rules.catalog import Catalog, MetricSpec

NOISE_CLIP = 3.0  # noise is drawn from N(0, sd) clipped to +-3 sd
LOAD_AMP = 0.35  # default daily swing: +-35 % of the mean level at peak/trough
TZ_OFFSET_H = 8.0  # the platform's local time (China Standard Time) drives the load shape

# Series that follow the daily load of the marketing platform (payments, calls, traffic).
LOAD_DRIVEN = re.compile(
    r"(_ms|_tps|_per_s|_per_h|_per_min|_qps|_util_pct|_utilization_pct|queue_depth|backlog"
    r"|sessions|clients|concurrency|_load_pct|_calls_per_h|_kvar|_neutral_current_a)$"
)
# ...except these: latency of physics or of radio, not of load.
NOT_LOAD_DRIVEN = frozenset(
    {
        "pq_voltage_sag_duration_ms",
        "nbiot_uplink_latency_ms",
        "edge_latency_ms",
        "dtx_consistency_window_ms",
        "esb_soap_rest_conversion_ms",
        "cache_eviction_failures_per_s",
        "pq_voltage_sag_events_per_h",
        "pq_voltage_swell_events_per_h",
        "pq_interruptions_per_h",
        "pq_transients_per_h",
    }
)

# name -> (mean level, noise sd or None for the generic one)
OVERRIDES: dict[str, tuple[float, float | None]] = {
    "cache_utilization_pct": (55.0, 0.8),
    "cache_hit_ratio": (0.95, 0.004),
    "db_penetration_pct": (1.0, 0.1),
    "db_query_latency_ms": (40.0, 2.0),
    "db_io_wait_pct": (8.0, 0.5),
    "api_response_time_ms": (120.0, 4.0),
    "payment_success_rate_pct": (99.9, 0.02),
    "ehcache_heap_util_pct": (50.0, 1.0),
    "payment_tps": (2200.0, 40.0),
    "payment_latency_ms": (150.0, 5.0),
    "dtx_consistency_window_ms": (180.0, 8.0),  # 2PC: 150-300 ms (paper 1.1)
    "dtx_inconsistency_rate_pct": (0.003, 0.0005),
    "dtx_consistency_pct": (99.997, 0.0005),
    "esb_soap_rest_conversion_ms": (60.0, 4.0),
    "esb_pv_collection_delay_h": (0.5, 0.05),
    "esb_conversion_cache_hit_ratio": (0.93, 0.01),
    "db_query_share_pct": (30.0, 1.0),
    "db_transactions_per_day_k": (320.0, 2.0),
    "db_buffer_pool_hit_ratio": (0.99, 0.002),
    "bank_recon_latency_ms": (220.0, 10.0),
    "bank_recon_share_of_tx_pct": (25.0, 1.0),
    "meter_chip_temp_c": (42.0, 0.5),
    "meter_chip_temp_mean_c": (35.0, 0.3),
    "meter_metering_deviation_pct": (0.05, 0.004),
    "meter_battery_voltage_v": (3.6, 0.01),
    "nbiot_rsrp_dbm": (-88.0, 1.0),
    "nbiot_sinr_db": (12.0, 0.5),
    "nbiot_uplink_latency_ms": (1200.0, 60.0),
    "edge_sampling_rate_pts_per_s": (300.0, 1.0),
    "edge_cpu_util_pct": (45.0, 1.5),
    "edge_latency_ms": (35.0, 2.0),
    "edge_load_forecast_error_pct": (4.5, 0.3),
    "edge_temp_c": (48.0, 0.5),
    "pq_voltage_rms_pct": (100.0, 0.4),
    "pq_voltage_phase_a_pct": (100.0, 0.4),
    "pq_voltage_phase_b_pct": (100.0, 0.4),
    "pq_voltage_phase_c_pct": (100.0, 0.4),
    "pq_voltage_swell_max_pct": (102.0, 0.4),
    "pq_voltage_deviation_pct": (1.5, 0.2),
    "pq_voltage_sag_depth_pct": (1.0, 0.2),
    "pq_voltage_sag_duration_ms": (2.0, 0.3),
    "pq_voltage_sag_events_per_h": (0.1, 0.03),
    "pq_voltage_swell_events_per_h": (0.1, 0.03),
    "pq_interruptions_per_h": (0.05, 0.01),
    "pq_interruption_duration_s": (0.1, 0.02),
    "pq_thd_voltage_pct": (2.0, 0.1),
    "pq_thd_current_pct": (2.5, 0.1),
    "pq_power_factor": (0.95, 0.004),
    "pq_frequency_deviation_hz": (0.03, 0.01),
    "pq_transient_peak_pu": (1.1, 0.02),
    "cs_complaints_per_h": (11.0, 0.6),
    "cs_complaint_rate_vs_regional_mean": (1.0, 0.03),
    "cs_satisfaction_pct": (97.5, 0.2),
}
for _i in range(1, 7):
    OVERRIDES[f"edge_term_{_i:02d}_sampling_pts_per_s"] = (300.0, 1.0)
    OVERRIDES[f"edge_term_{_i:02d}_cpu_util_pct"] = (45.0, 1.5)
for _h in ("app_01", "app_02", "app_03", "app_04", "db_01", "db_02", "cache_01", "cache_02"):
    OVERRIDES[f"host_{_h}_mem_util_pct"] = (60.0, 1.0)

# Physical bounds by unit; series-specific bounds win.
UNIT_BOUNDS: dict[str, tuple[float, float]] = {
    "%": (0.0, 100.0),
    "ratio": (0.0, 1.0),
    "dBm": (-140.0, -40.0),
    "dB": (-20.0, 40.0),
    "C": (-40.0, 150.0),
}
SERIES_BOUNDS: dict[str, tuple[float, float]] = {
    "pq_voltage_rms_pct": (0.0, 200.0),
    "pq_voltage_phase_a_pct": (0.0, 200.0),
    "pq_voltage_phase_b_pct": (0.0, 200.0),
    "pq_voltage_phase_c_pct": (0.0, 200.0),
    "pq_voltage_swell_max_pct": (0.0, 200.0),
    "pq_transformer_load_pct": (0.0, 200.0),
    "redis_fragmentation_ratio": (0.0, math.inf),
    "cs_complaint_rate_vs_regional_mean": (0.0, math.inf),
}


class BaselineError(ValueError):
    """A healthy envelope would touch warn: the twin would raise false incidents."""


@dataclass(frozen=True)
class Baseline:
    """How one series behaves when nothing is wrong."""

    series: str
    subsystem: str
    unit: str
    base: float  # mean level
    noise: float  # sd of the (clipped) output noise
    load_amp: float  # relative daily swing, 0 for series the load does not drive
    lo: float
    hi: float
    ideal: float  # the best value (where tuning actions push towards)
    help: str


def _bounds(spec: MetricSpec) -> tuple[float, float]:
    return SERIES_BOUNDS.get(spec.name) or UNIT_BOUNDS.get(spec.unit, (0.0, math.inf))


def derive(spec: MetricSpec) -> Baseline:
    """One catalog row -> its healthy behaviour; BaselineError if it cannot be healthy."""
    lo, hi = _bounds(spec)
    if spec.bad == "high":
        base, noise = 0.45 * spec.warn, 0.025 * abs(spec.warn)
        ideal = lo
    else:
        headroom = spec.warn - spec.crit
        if math.isfinite(hi):
            headroom = min(headroom, hi - spec.warn)
        base, noise = spec.warn + 0.6 * headroom, 0.06 * headroom
        ideal = hi if math.isfinite(hi) else base
    if spec.name in OVERRIDES:
        base, override_noise = OVERRIDES[spec.name]
        noise = noise if override_noise is None else override_noise
    amp = 0.0
    if spec.bad == "high" and LOAD_DRIVEN.search(spec.name) and spec.name not in NOT_LOAD_DRIVEN:
        # peak + noise must stay 5 % of warn below warn
        room = (0.95 * spec.warn - NOISE_CLIP * noise - base) / base if base > 0 else 0.0
        amp = max(0.0, min(LOAD_AMP, room))
    row = Baseline(
        spec.name, spec.subsystem, spec.unit, base, noise, amp, lo, hi, ideal, spec.description
    )
    low, high = envelope(row)
    if spec.is_breach(high, "warn") or spec.is_breach(low, "warn") or not lo <= base <= hi:
        raise BaselineError(
            f"{spec.name}: healthy envelope [{low:g}, {high:g}] touches warn {spec.warn:g}"
        )
    return row


def envelope(row: Baseline) -> tuple[float, float]:
    """Lowest and highest value a healthy series can ever emit (before clipping)."""
    spread = NOISE_CLIP * row.noise
    return row.base * (1 - row.load_amp) - spread, row.base * (1 + row.load_amp) + spread


def baseline_rows(catalog: Catalog) -> Mapping[str, Baseline]:
    """Every catalog series in catalog order; an override for an unknown series is refused."""
    if unknown := (OVERRIDES.keys() | SERIES_BOUNDS.keys()) - set(catalog):
        raise BaselineError(f"baseline tables name unknown series: {sorted(unknown)}")
    return {name: derive(spec) for name, spec in catalog.items()}


def _circular_gap(hour: np.ndarray | float, peak: float) -> np.ndarray | float:
    d = np.abs(np.asarray(hour) - peak) % 24.0
    return np.minimum(d, 24.0 - d)


def load_shape(now: float) -> float:
    """Daily load in [-1, 1] at unix time ``now``: trough ~04:00, peaks ~10:00 and ~20:00
    local time (bill payment in the morning, households in the evening)."""
    hour = ((now / 3600.0) + TZ_OFFSET_H) % 24.0
    morning = math.exp(-(float(_circular_gap(hour, 10.0)) ** 2) / (2 * 2.5**2))
    evening = 0.9 * math.exp(-(float(_circular_gap(hour, 20.0)) ** 2) / (2 * 2.0**2))
    return 2.0 * max(morning, evening) - 1.0
