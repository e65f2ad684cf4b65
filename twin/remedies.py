"""The remedies the paper proposes, as the twin's control actions.

An action clears the faults it is the right fix for, and may make a lasting change to
healthy levels (``tunes``) until rolled back: switching 2PC to TCC really shrinks the
consistency window from ~180 to ~80 ms even when nothing was wrong. An action applied to
a fault it does not clear changes nothing about that fault.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    """A remedy: the faults it clears, and the lasting change it makes to healthy levels
    (``tunes``: series -> factor on the distance to the ideal value) until rolled back."""

    name: str
    clears: frozenset[str]
    description: str
    tunes: tuple[tuple[str, float], ...] = ()


ACTIONS: dict[str, ActionSpec] = {
    a.name: a
    for a in (
        ActionSpec(
            "scale_out_cache",
            frozenset({"cache_saturation"}),
            "Add cache nodes so utilisation falls back below the eviction cliff.",
            (("cache_utilization_pct", 0.85), ("redis_node_*_mem_util_pct", 0.85)),
        ),
        ActionSpec(
            "tune_db_io",
            frozenset({"db_io_wait"}),
            "Tune DB IO (buffer pool, IO scheduler, slow-query indexes).",
            (("db_io_wait_pct", 0.8),),
        ),
        ActionSpec(
            "switch_2pc_to_tcc",
            frozenset({"twopc_inconsistency"}),
            "Switch payments from 2PC to TCC (Seata): window 300 -> 80 ms, inconsistency < 0.01 %.",
            (("dtx_consistency_window_ms", 0.45), ("dtx_inconsistency_rate_pct", 0.3)),
        ),
        ActionSpec(
            "enable_esb_rest_route",
            frozenset({"esb_conversion_delay"}),
            "Route REST-native services around the SOAP conversion.",
            (("esb_soap_share_pct", 0.5),),
        ),
        ActionSpec(
            "enable_esb_conversion_cache",
            frozenset({"esb_conversion_delay"}),
            "Cache compiled SOAP<->REST conversion schemas.",
            (("esb_conversion_cache_hit_ratio", 0.5),),
        ),
        ActionSpec(
            "enable_bank_circuit_breaker",
            frozenset({"bank_recon_slow"}),
            "Circuit breaker + timeout on the bank API: slow calls fail fast and retry later.",
        ),
        ActionSpec(
            "enable_async_reconciliation",
            frozenset({"bank_recon_slow"}),
            "Take bank reconciliation off the payment path (queued, asynchronous).",
            (("bank_recon_share_of_tx_pct", 0.6),),
        ),
        ActionSpec(
            "cool_meter",
            frozenset({"meter_chip_overheat"}),
            "Ventilate / shade the hot meter boxes so the chips fall below 60 C.",
        ),
        ActionSpec(
            "recalibrate_meter",
            frozenset({"meter_calibration_drift"}),
            "Remote recalibration of the metering reference (useless while chips are hot).",
        ),
        ActionSpec(
            "switch_gateway_5g_redcap",
            frozenset({"nbiot_deep_coverage"}),
            "Move the deep-coverage meters' gateway from NB-IoT to 5G RedCap (99.2 %).",
            (("nbiot_collection_success_pct", 0.8),),
        ),
        ActionSpec(
            "add_edge_capacity",
            frozenset({"edge_cpu_saturation"}),
            "Add edge compute (or offload sampling) so 300 points/s are sustained.",
            (("edge_cpu_util_pct", 0.8),),
        ),
        ActionSpec(
            "activate_dvr",
            frozenset({"voltage_sag"}),
            "Switch in the dynamic voltage restorer of the station area.",
        ),
        ActionSpec(
            "activate_harmonic_filter",
            frozenset({"harmonic_distortion"}),
            "Switch in the active harmonic filter.",
            (("pq_thd_current_pct", 0.7),),
        ),
        ActionSpec(
            "switch_capacitor_bank",
            frozenset({"power_factor_drop"}),
            "Switch in the capacitor bank to compensate reactive power.",
            (("pq_power_factor", 0.6),),
        ),
    )
}
