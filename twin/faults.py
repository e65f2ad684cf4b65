"""The twin's failure modes, its component dependency graph and its remedies, as data.

A fault names its component and the effects on that component's own series. What it does
to the rest of the platform is *not* written on the fault: it follows from
``DEPENDENCIES``, a table of (upstream -> dependant, delay, effects on the dependant,
carry), walked from the fault's component at import. So cache saturation reaches the
database after 2 s, the API 1 s later, payments 1 s after that and complaints 15 s
later, because those edges exist, not because the fault lists them.

    >>> [(c, d) for c, d, _ in reach("cache", 1.0)][:3]
    [('cache', 0.0), ('database', 2.0), ('api', 3.0)]

Figures are the paper's (../shared/seed/paper-digest.md); the paper's delays (complaints
x3.2 *within 2 h* of a sag) are compressed to seconds so a demo closes a loop in under a
minute, but their order is kept. ``docs/TWIN.md`` renders these tables.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Effect:
    """Drive ``series`` (an fnmatch glob allowed) towards ``value`` from ``delay_s`` after
    the fault reaches the component, with time constant ``tau_s``. ``relative``: ``value``
    multiplies the healthy level instead (complaints x3.2)."""

    series: str
    value: float
    delay_s: float = 0.0
    tau_s: float = 1.0
    relative: bool = False


@dataclass(frozen=True)
class Dependency:
    """``dependant`` degrades ``delay_s`` after ``upstream`` does; ``carry`` is the share
    of the upstream's strength passed on to the dependant's own dependants."""

    upstream: str
    dependant: str
    delay_s: float
    effects: tuple[Effect, ...]
    carry: float = 1.0


@dataclass(frozen=True)
class FaultSpec:
    name: str
    component: str
    description: str
    paper: str  # the figure the fault reproduces
    effects: tuple[Effect, ...]  # on the component's own series
    spread: float = 1.0  # strength handed to the dependants (0: stays local)
    propagates_after_s: float = 0.0  # when the failure reaches the component's outputs


# Hosts are grouped with the component they serve.
HOST_COMPONENT: dict[str, str] = {
    "host_app_": "api",
    "host_db_": "database",
    "host_cache_": "cache",
    "host_esb_": "esb",
}


def component_of(series: str, subsystem: str) -> str:
    """The dependency-graph node a series belongs to (its subsystem; hosts by role)."""
    for prefix, component in HOST_COMPONENT.items():
        if series.startswith(prefix):
            return component
    return subsystem


E = Effect
_PAYMENT_COMPLAINTS = (
    E("cs_complaints_payment_status_per_h", 16.0, 0.0, 6.0),
    E("cs_complaints_per_h", 2.2, 0.0, 6.0, relative=True),
    E("cs_hotline_calls_per_h", 2.0, 0.0, 6.0, relative=True),
    E("cs_hotline_wait_s", 70.0, 2.0, 6.0),
    E("cs_repeat_complaint_rate_pct", 16.0, 5.0, 8.0),
)

DEPENDENCIES: tuple[Dependency, ...] = (
    # cache misses fall through to the database (paper: 12 % penetration)
    Dependency(
        "cache",
        "database",
        2.0,
        (
            E("db_query_latency_ms", 800.0),
            E("db_io_wait_pct", 12.0),
            E("db_qps", 2.2, relative=True),
            E("db_active_sessions", 380.0),
            E("db_connections_used_pct", 93.0),
            E("db_slow_queries_per_min", 75.0, 0.5),
            E("db_query_share_pct", 72.0),
            E("host_db_0*_cpu_util_pct", 93.0),
        ),
    ),
    # every core service reads the database (paper: DB 72 % of 980 ms)
    Dependency(
        "database",
        "api",
        1.0,
        (
            E("api_response_time_ms", 1000.0),
            E("api_p99_response_time_ms", 2600.0),
            E("api_error_rate_pct", 2.6),
            E("api_gateway_5xx_per_s", 30.0),
            E("svc_*_response_time_ms", 980.0),
            E("svc_*_p99_ms", 2500.0),
            E("svc_*_error_rate_pct", 2.4),
        ),
    ),
    # the bus carries PV and settlement calls to the core services
    Dependency(
        "esb",
        "api",
        1.5,
        (
            E("svc_pv_response_time_ms", 950.0),
            E("svc_settlement_response_time_ms", 900.0),
            E("svc_pv_p99_ms", 2400.0),
        ),
        carry=0.0,
    ),
    Dependency(
        "api",
        "payment",
        1.0,
        (
            E("payment_success_rate_pct", 98.5, 0.0, 1.5),
            E("payment_latency_ms", 1300.0),
            E("payment_timeout_rate_pct", 1.6),
            E("payment_order_backlog", 2600.0, 1.0, 2.0),
        ),
    ),
    # third-party share of transaction time 63 % (paper)
    Dependency(
        "third_party",
        "payment",
        1.0,
        (
            E("payment_latency_ms", 2100.0),
            E("payment_timeout_rate_pct", 2.2),
            E("payment_success_rate_pct", 98.7, 0.0, 1.5),
            E("payment_order_backlog", 2800.0, 1.0, 2.0),
        ),
    ),
    # wrong payment status: 22.4 % of one month's complaints
    Dependency("payment", "customer_service", 15.0, _PAYMENT_COMPLAINTS),
    # PV data > 24 h late -> settlement disputes
    Dependency(
        "esb",
        "customer_service",
        20.0,
        (E("cs_settlement_disputes_per_day", 24.0, 0.0, 6.0),),
    ),
    # metering drift: 31.5 % of billing disputes in hot regions
    Dependency(
        "meter",
        "customer_service",
        20.0,
        (
            E("cs_billing_disputes_per_day", 40.0, 0.0, 6.0),
            E("cs_complaints_metering_per_h", 14.0, 0.0, 6.0),
            E("cs_complaints_billing_per_h", 13.0, 2.0, 6.0),
            E("cs_complaints_per_h", 1.6, 0.0, 6.0, relative=True),
        ),
    ),
    # no reading -> estimated bills
    Dependency(
        "nbiot",
        "meter",
        3.0,
        (E("meter_reading_success_pct", 90.0, 0.0, 2.0), E("meter_online_pct", 93.0, 0.0, 2.0)),
        carry=0.6,
    ),
    # after a sag complaints x3.2 within 2 h; harmonics x2.1 (paper 2.1)
    Dependency(
        "power_quality",
        "customer_service",
        20.0,
        (
            E("cs_complaints_per_h", 3.2, 0.0, 8.0, relative=True),
            E("cs_complaints_power_quality_per_h", 15.0, 0.0, 8.0),
            E("cs_complaints_outage_per_h", 13.0, 2.0, 8.0),
            E("cs_area_01_complaints_per_h", 10.0, 0.0, 8.0),
            E("cs_complaint_rate_vs_regional_mean", 2.2, 0.0, 8.0),
            E("cs_hotline_calls_per_h", 2.6, 0.0, 8.0, relative=True),
            E("cs_hotline_wait_s", 75.0, 3.0, 8.0),
        ),
    ),
)

FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "cache_saturation",
            "cache",
            "Cache cluster above 80 % utilisation: LRU eviction fails, queries penetrate "
            "to the database, response time explodes.",
            "> 80 % utilisation, 12 % penetration, 50 -> 800 ms+",
            (
                E("cache_utilization_pct", 92.0, 0.0, 0.8),
                E("redis_node_*_mem_util_pct", 93.0, 0.0, 0.8),
                E("ehcache_heap_util_pct", 91.0, 0.0, 0.8),
                E("ehcache_app_*_heap_util_pct", 90.0, 0.0, 0.8),
                E("cache_hit_ratio", 0.45, 0.0, 0.8),
                E("redis_hit_ratio", 0.5, 0.0, 0.8),
                E("ehcache_hit_ratio", 0.5, 0.0, 0.8),
                E("cache_eviction_failures_per_s", 60.0, 0.0, 0.8),
                E("db_penetration_pct", 12.0, 0.5, 0.8),
                E("cache_latency_ms", 28.0, 0.5, 0.8),
                E("host_cache_0*_mem_util_pct", 97.0, 0.0, 0.8),
            ),
        ),
        FaultSpec(
            "db_io_wait",
            "database",
            "Database IO saturated at high volume: IO wait ~41 %, queries slow down, the "
            "API follows; the cache stays healthy.",
            "> 500k tx/day: core modules 980 ms, DB 72 %, IO wait 41 %",
            (
                E("db_io_wait_pct", 41.0, 0.0, 0.8),
                E("host_db_0*_disk_io_util_pct", 97.0, 0.0, 0.8),
                E("db_transactions_per_day_k", 560.0, 0.0, 0.8),
                E("db_read_latency_ms", 48.0, 0.5, 1.0),
                E("db_write_latency_ms", 42.0, 0.5, 1.0),
                E("db_redo_log_wait_ms", 70.0, 0.5, 1.0),
                E("db_query_latency_ms", 600.0, 1.0, 1.0),
                E("db_query_share_pct", 72.0, 1.0, 1.0),
                E("db_slow_queries_per_min", 70.0, 1.5, 1.0),
            ),
            propagates_after_s=1.0,
        ),
        FaultSpec(
            "twopc_inconsistency",
            "payment",
            "2PC payments above 5000 TPS: the sync window widens and transactions are "
            "left inconsistent, so users see a wrong payment status.",
            "> 5000 TPS: inconsistency 7.3 %, window 150-300 ms",
            (
                E("payment_tps", 5600.0, 0.0, 1.0),
                E("dtx_coordinator_util_pct", 94.0, 0.0, 1.0),
                E("dtx_consistency_window_ms", 650.0, 0.5, 1.0),
                E("dtx_prepare_latency_ms", 320.0, 0.5, 1.0),
                E("dtx_commit_latency_ms", 300.0, 0.5, 1.0),
                E("dtx_lock_wait_ms", 260.0, 0.5, 1.0),
                E("dtx_inconsistency_rate_pct", 7.3, 1.0, 1.0),
                E("dtx_consistency_pct", 92.7, 1.0, 1.0),
                E("dtx_in_doubt_tx", 180.0, 1.0, 1.5),
                E("payment_status_mismatch_per_min", 45.0, 1.5, 1.5),
            ),
        ),
        FaultSpec(
            "esb_conversion_delay",
            "esb",
            "Service bus SOAP<->REST conversion takes 800 ms: queues build up and PV "
            "generation data reaches settlement more than 24 h late.",
            "conversion 800 ms, PV data > 24 h late",
            (
                E("esb_soap_rest_conversion_ms", 800.0, 0.0, 1.0),
                E("esb_route_latency_ms", 1100.0, 0.5, 1.0),
                E("esb_thread_pool_util_pct", 92.0, 0.5, 1.0),
                E("esb_queue_depth", 8000.0, 1.0, 1.5),
                E("esb_timeout_rate_pct", 2.6, 1.0, 1.0),
                E("host_esb_0*_cpu_util_pct", 93.0, 0.5, 1.0),
                E("esb_pv_collection_delay_h", 26.0, 3.0, 3.0),
                E("esb_pv_data_completeness_pct", 90.0, 3.0, 3.0),
            ),
        ),
        FaultSpec(
            "bank_recon_slow",
            "third_party",
            "Bank reconciliation interface answers in 1.8 s instead of <= 500 ms and "
            "dominates the payment transaction time.",
            "bank reconciliation 1.8 s vs 500 ms; third-party share 63 %",
            (
                E("bank_recon_latency_ms", 1800.0, 0.0, 1.0),
                E("third_party_bank_latency_ms", 1800.0, 0.0, 1.0),
                E("bank_recon_share_of_tx_pct", 63.0, 0.5, 1.0),
                E("bank_api_concurrency", 900.0, 0.5, 1.0),
                E("bank_api_timeout_rate_pct", 3.0, 0.5, 1.0),
                E("third_party_bank_success_pct", 98.6, 0.5, 1.0),
                E("bank_recon_backlog", 6500.0, 1.0, 2.0),
            ),
        ),
        FaultSpec(
            "meter_chip_overheat",
            "meter",
            "Metering chips above 60 C in a hot zone drift beyond accuracy class 0.2.",
            "chip > 60 C drifts beyond class 0.2 (31.5 % of billing disputes)",
            (
                E("meter_chip_temp_c", 68.0, 0.0, 1.5),
                E("meter_zone_south_chip_temp_c", 68.0, 0.0, 1.5),
                E("meter_chip_temp_mean_c", 57.0, 0.0, 2.0),
                E("meter_metering_deviation_pct", 0.35, 4.0, 2.0),
                E("meter_zone_south_deviation_pct", 0.35, 4.0, 2.0),
                E("meter_class_breach_share_pct", 4.0, 5.0, 2.0),
            ),
        ),
        FaultSpec(
            "meter_calibration_drift",
            "meter",
            "Meters drift out of accuracy class at normal temperature (ageing reference): "
            "same billing symptom as overheating, different cause and fix.",
            "metering error beyond class 0.2 (target class 0.1)",
            (
                E("meter_metering_deviation_pct", 0.32, 0.0, 2.0),
                E("meter_zone_north_deviation_pct", 0.32, 0.0, 2.0),
                E("meter_class_breach_share_pct", 3.5, 1.0, 2.0),
            ),
        ),
        FaultSpec(
            "nbiot_deep_coverage",
            "nbiot",
            "NB-IoT meters in deep coverage (underground garages) lose signal: collection "
            "success falls to 78 %.",
            "deep-coverage collection 78 % (22 points below normal)",
            (
                E("nbiot_rsrp_dbm", -122.0, 0.0, 1.0),
                E("nbiot_sinr_db", -4.0, 0.0, 1.0),
                E("nbiot_ecl2_share_pct", 45.0, 0.0, 1.0),
                E("nbiot_retransmission_rate_pct", 18.0, 0.5, 1.0),
                E("nbiot_packet_loss_pct", 9.0, 0.5, 1.0),
                E("nbiot_uplink_latency_ms", 9000.0, 0.5, 1.0),
                E("nbiot_collection_success_pct", 78.0, 1.0, 1.5),
                E("nbiot_deep_coverage_success_pct", 60.0, 1.0, 1.5),
                E("nbiot_gw_03_success_pct", 78.0, 1.0, 1.5),
                E("nbiot_gw_04_success_pct", 81.0, 1.0, 1.5),
            ),
        ),
        FaultSpec(
            "edge_cpu_saturation",
            "edge",
            "Edge terminals (Cortex-A53 1.2 GHz) cannot sustain 300 points/s: CPU "
            "saturates, points are dropped and the load forecast error passes 15 %.",
            "300 points/s unsustainable, forecast error > 15 %",
            (
                E("edge_cpu_util_pct", 97.0, 0.0, 1.0),
                E("edge_term_0[123]_cpu_util_pct", 98.0, 0.0, 1.0),
                E("edge_latency_ms", 180.0, 0.5, 1.0),
                E("edge_sampling_rate_pts_per_s", 220.0, 0.5, 1.0),
                E("edge_term_0[123]_sampling_pts_per_s", 210.0, 0.5, 1.0),
                E("edge_dropped_points_per_s", 80.0, 0.5, 1.0),
                E("edge_upload_backlog", 30000.0, 2.0, 2.0),
                E("edge_load_forecast_error_pct", 18.0, 4.0, 3.0),
            ),
            spread=0.0,
        ),
        FaultSpec(
            "voltage_sag",
            "power_quality",
            "Repeated voltage sags below 90 % of rated for 10 ms-1 min in a station area; "
            "complaints follow.",
            "sag < 90 % rated; complaints x3.2 within 2 h",
            (
                E("pq_voltage_rms_pct", 82.0, 0.0, 0.5),
                E("pq_voltage_phase_a_pct", 80.0, 0.0, 0.5),
                E("pq_voltage_phase_b_pct", 84.0, 0.0, 0.5),
                E("pq_voltage_phase_c_pct", 86.0, 0.0, 0.5),
                E("pq_voltage_sag_depth_pct", 20.0, 0.0, 0.5),
                E("pq_voltage_sag_duration_ms", 400.0, 0.0, 0.5),
                E("pq_voltage_sag_events_per_h", 8.0, 0.5, 1.0),
                E("pq_transients_per_h", 7.0, 0.5, 1.0),
            ),
        ),
        FaultSpec(
            "harmonic_distortion",
            "power_quality",
            "Non-linear loads inject harmonics: current THD above 5 %, voltage THD and the "
            "5th/7th orders follow; complaints rise.",
            "THD > 5 %; complaints x2.1 during harmonic periods",
            (
                E("pq_thd_current_pct", 8.5, 0.0, 1.0),
                E("pq_harmonic_i_h05_pct", 7.0, 0.0, 1.0),
                E("pq_harmonic_i_h07_pct", 5.5, 0.0, 1.0),
                E("pq_harmonic_i_h03_pct", 4.6, 0.0, 1.0),
                E("pq_neutral_current_a", 140.0, 0.0, 1.0),
                E("pq_thd_voltage_pct", 6.2, 0.5, 1.0),
                E("pq_harmonic_v_h05_pct", 4.8, 0.5, 1.0),
                E("pq_harmonic_v_h07_pct", 4.3, 0.5, 1.0),
            ),
            spread=0.5,  # 1 + 0.5 x (3.2 - 1) = x2.1 complaints
        ),
        FaultSpec(
            "power_factor_drop",
            "power_quality",
            "Reactive load without compensation: power factor below 0.85, the "
            "transformer overloads and the voltage sags slightly.",
            "power factor < 0.85",
            (
                E("pq_power_factor", 0.78, 0.0, 1.0),
                E("pq_reactive_power_kvar", 620.0, 0.0, 1.0),
                E("pq_transformer_load_pct", 108.0, 0.5, 1.5),
                E("pq_voltage_deviation_pct", 7.6, 1.0, 1.5),
            ),
            spread=0.4,
        ),
    )
}


def reach(component: str, spread: float) -> Iterator[tuple[str, float, float]]:
    """(component, delay from the fault reaching ``component``, strength), the earliest
    path first; each dependant is reached once, along its earliest path."""
    best: dict[str, float] = {}
    queue: list[tuple[float, str, float]] = [(0.0, component, spread)]
    while queue:
        delay, node, strength = heapq.heappop(queue)
        if node in best:
            continue
        best[node] = delay
        yield node, delay, strength
        if strength <= 0:
            continue
        for dep in DEPENDENCIES:
            if dep.upstream == node and dep.dependant not in best:
                heapq.heappush(queue, (delay + dep.delay_s, dep.dependant, strength * dep.carry))


def edges_into(dependant: str, reached: dict[str, float]) -> Iterator[Dependency]:
    """Edges from an already reached component into ``dependant`` (several may apply)."""
    for dep in DEPENDENCIES:
        if dep.dependant == dependant and dep.upstream in reached:
            yield dep
