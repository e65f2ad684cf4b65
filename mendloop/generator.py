"""Synthetic but varied historical cases for scale tests, and labelled queries to score them.

    for case in generate_cases(100_000, seed=7): ...
    queries = generate_queries(500, seed=11)            # RCA-style, with the true fault

A case draws a fault, a subset of that fault's symptoms with magnitude bands, a device of
the fault's component, environment parameters, a place, an outcome (mostly resolved by a
solution that fixes the fault, sometimes failed, sometimes a wrong fix that failed) and a
text composed from several independent phrase pools, with numbers from the symptoms'
catalog thresholds, so that the corpus is large and varied, yet like real ticket systems
repeats its stock phrases (texts are far fewer than cases; each is embedded once).

Queries are written from other pools than cases (the RCA report's own wording, terse
alerts), so matching them is a test of meaning, not of copy-paste.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from kernel.domain import BANDS, Domain
from kernel.models import Case, Solution
from knowledge.similarity import MatchQuery, environment_pairs
from rules.catalog import Catalog

# Per fault: the symptoms a case may show (the first ones nearly always), what people say
# caused it, and what the environment tends to be.
PROFILES: dict[str, dict[str, list[str]]] = {
    "cache_saturation": {
        "symptoms": [
            "cache_utilization_pct:high",
            "cache_hit_ratio:low",
            "db_penetration_pct:high",
            "db_query_latency_ms:high",
            "api_response_time_ms:high",
        ],
        "causes": [
            "the cache cluster ran out of memory and LRU eviction could not keep up",
            "hot keys of the billing campaign filled the cache tier",
            "cache capacity was sized for last year's customer count",
        ],
        "env": ["load=peak", "period=billing-peak", "period=month-end"],
    },
    "db_io_wait": {
        "symptoms": [
            "db_io_wait_pct:high",
            "db_query_latency_ms:high",
            "api_response_time_ms:high",
        ],
        "causes": [
            "the database disks were saturated by a settlement batch",
            "a full table scan pushed the storage array to its IO limit",
            "redo logs and data files shared one overloaded volume",
        ],
        "env": ["period=batch-window", "period=month-end", "load=normal"],
    },
    "twopc_inconsistency": {
        "symptoms": [
            "payment_status_mismatch_per_min:high",
            "dtx_inconsistency_rate_pct:high",
            "dtx_in_doubt_tx:high",
            "dtx_coordinator_util_pct:high",
            "dtx_prepare_latency_ms:high",
            "dtx_consistency_pct:low",
            "payment_tps:high",
        ],
        "causes": [
            "the two-phase commit coordinator was overloaded at high payment concurrency",
            "prepared transactions stayed in doubt after a coordinator timeout",
            "order and account services committed at different times under load",
        ],
        "env": ["load=peak", "period=holiday", "period=billing-peak"],
    },
    "esb_conversion_delay": {
        "symptoms": [
            "esb_soap_rest_conversion_ms:high",
            "esb_route_latency_ms:high",
            "esb_queue_depth:high",
            "esb_thread_pool_util_pct:high",
            "esb_pv_collection_delay_h:high",
            "svc_pv_response_time_ms:high",
        ],
        "causes": [
            "SOAP to REST conversion on the service bus took most of each call",
            "the new-energy interfaces doubled the bus's conversion work",
            "the bus thread pool was exhausted by XML transformations",
        ],
        "env": ["load=normal", "period=month-end", "area=suburban"],
    },
    "bank_recon_slow": {
        "symptoms": [
            "bank_recon_latency_ms:high",
            "third_party_bank_latency_ms:high",
            "payment_order_backlog:high",
            "payment_timeout_rate_pct:high",
            "bank_recon_backlog:high",
            "payment_success_rate_pct:low",
        ],
        "causes": [
            "the bank's reconciliation interface answered slowly",
            "synchronous reconciliation calls to the partner bank blocked payments",
            "a partner bank throttled our reconciliation requests",
        ],
        "env": ["load=peak", "period=month-end", "period=holiday"],
    },
    "meter_chip_overheat": {
        "symptoms": [
            "meter_chip_temp_c:high",
            "meter_metering_deviation_pct:high",
            "meter_chip_temp_mean_c:high",
            "meter_zone_south_chip_temp_c:high",
            "meter_class_breach_share_pct:high",
            "cs_billing_disputes_per_day:high",
        ],
        "causes": [
            "meter chips overheated in sun-facing metal boxes",
            "a heat wave pushed meter chip temperatures past their rating",
            "poor ventilation in meter cabinets overheated the metering chips",
        ],
        "env": ["temperature=hot", "season=summer", "area=urban"],
    },
    "meter_calibration_drift": {
        "symptoms": [
            "meter_metering_deviation_pct:high",
            "meter_class_breach_share_pct:high",
            "meter_zone_north_deviation_pct:high",
            "cs_complaints_metering_per_h:high",
        ],
        "causes": [
            "the reference of an ageing meter batch drifted out of its accuracy class",
            "meters installed years ago lost calibration at normal temperature",
            "a firmware calibration table was wrong for one meter model",
        ],
        "env": ["temperature=normal", "season=winter", "season=spring"],
    },
    "nbiot_deep_coverage": {
        "symptoms": [
            "nbiot_collection_success_pct:low",
            "nbiot_rsrp_dbm:low",
            "nbiot_sinr_db:low",
            "nbiot_retransmission_rate_pct:high",
            "nbiot_deep_coverage_success_pct:low",
            "nbiot_packet_loss_pct:high",
            "meter_reading_success_pct:low",
        ],
        "causes": [
            "meters in underground garages were beyond NB-IoT coverage",
            "concrete basements attenuated the NB-IoT signal",
            "a cell was re-planned and deep-coverage meters lost the link",
        ],
        "env": ["coverage=underground", "coverage=deep", "coverage=indoor"],
    },
    "edge_cpu_saturation": {
        "symptoms": [
            "edge_cpu_util_pct:high",
            "edge_dropped_points_per_s:high",
            "edge_upload_backlog:high",
            "edge_latency_ms:high",
            "edge_sampling_rate_pts_per_s:low",
            "edge_load_forecast_error_pct:high",
        ],
        "causes": [
            "the sampling rate was raised beyond what the edge terminals can process",
            "a new analytics app saturated the edge terminals' CPUs",
            "edge gateways of the station area were undersized for the load",
        ],
        "env": ["area=industrial", "area=urban", "load=peak"],
    },
    "voltage_sag": {
        "symptoms": [
            "pq_voltage_rms_pct:low",
            "pq_voltage_sag_events_per_h:high",
            "pq_voltage_sag_depth_pct:high",
            "pq_voltage_sag_duration_ms:high",
            "pq_voltage_phase_a_pct:low",
            "cs_complaints_power_quality_per_h:high",
        ],
        "causes": [
            "faults on a neighbouring feeder caused repeated voltage sags",
            "large motor starts at an industrial customer dipped the voltage",
            "a weak supply transformer could not hold voltage during load steps",
        ],
        "env": ["area=industrial", "season=summer", "load=peak"],
    },
    "harmonic_distortion": {
        "symptoms": [
            "pq_thd_current_pct:high",
            "pq_thd_voltage_pct:high",
            "pq_harmonic_i_h05_pct:high",
            "pq_harmonic_i_h07_pct:high",
            "pq_neutral_current_a:high",
        ],
        "causes": [
            "EV chargers and inverters injected harmonic currents",
            "variable-frequency drives distorted the current waveform",
            "non-linear lighting and UPS loads raised harmonic distortion",
        ],
        "env": ["area=urban", "area=industrial", "load=normal"],
    },
    "power_factor_drop": {
        "symptoms": [
            "pq_power_factor:low",
            "pq_reactive_power_kvar:high",
            "pq_transformer_load_pct:high",
            "pq_voltage_deviation_pct:high",
        ],
        "causes": [
            "inductive motor loads drew large reactive power",
            "irrigation pumps pulled the power factor down",
            "capacitor compensation was out of service",
        ],
        "env": ["area=rural", "area=industrial", "season=summer"],
    },
}

OPENINGS = [
    "{where}: {cause}.",
    "Ticket from {team}: {cause}.",
    "During {when}, {cause}.",
    "Incident at {where} {when}; root cause: {cause}.",
    "{cause_cap} ({where}).",
]
TEAMS = [
    "the operations centre",
    "customer service",
    "the metering team",
    "the network team",
    "the DBA on call",
    "the marketing platform team",
]
WHENS = [
    "the evening peak",
    "month-end settlement",
    "the night batch window",
    "a holiday",
    "the billing run",
    "a heat wave",
    "the morning ramp",
]
RISES = ["rose to", "reached", "climbed to", "went up to", "stood at"]
FALLS = ["fell to", "dropped to", "sank to", "went down to", "stood at"]
CLOSINGS = [
    "Fixed by: {solution}.",
    "Resolved after we applied: {solution}.",
    "{solution} brought the metrics back.",
    "Remediation: {solution}; verified the next day.",
]
FAILED_CLOSINGS = [
    "Tried: {solution}; it did not help.",
    "{solution} was applied without effect; escalated.",
]
BAND_FACTOR = {"slight": 1.05, "moderate": 1.2, "severe": 1.5}


def _humanise(series: str) -> str:
    return series.replace("_pct", " %").replace("_ms", " (ms)").replace("_", " ")


def _value(catalog: Catalog, series: str, band: str) -> str:
    spec = catalog[series]
    factor = BAND_FACTOR[band]
    value = spec.crit * factor if spec.bad == "high" else spec.crit / factor
    if spec.unit in ("%", "pct", "percent"):
        value = min(value, 99.5)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _symptom_phrase(rng: random.Random, catalog: Catalog, tag: str) -> str:
    series, direction, band = tag.split(":")
    verb = rng.choice(RISES if direction == "high" else FALLS)
    return f"{_humanise(series)} {verb} {_value(catalog, series, band)}"


def solutions_for(solutions: list[Solution]) -> dict[str, list[Solution]]:
    """fault -> the solutions that fix it (first is the primary one)."""
    fixes: dict[str, list[Solution]] = {}
    for solution in solutions:
        for fault in (f.strip() for f in solution.fixes.split(",")):
            if fault:
                fixes.setdefault(fault, []).append(solution)
    return fixes


@dataclass(frozen=True)
class Story:
    text: str
    symptoms: tuple[str, ...]
    area: tuple[str, str, str, str]


@dataclass(frozen=True)
class LabelledMatchQuery:
    fault: str
    query: MatchQuery


class Generator:
    def __init__(
        self,
        domain: Domain,
        catalog: Catalog,
        solutions: list[Solution],
        stories_per_pool: int = 400,
    ) -> None:
        self.domain = domain
        self.stories_per_pool = stories_per_pool
        self._stories: dict[tuple[str, str, bool], list[Story]] = {}
        self.catalog = catalog
        self.fixes = solutions_for(solutions)
        self.all_solutions = solutions
        self.faults = sorted(PROFILES)
        self.devices = {
            comp: sorted(d for d, c in domain.device_types.items() if c == comp)
            for comp in domain.components
        }
        self.areas = list(domain.region_paths())
        missing = [f for f in self.faults if f not in self.fixes]
        if missing:
            raise ValueError(f"no solution fixes {', '.join(missing)}")

    def _symptoms(self, rng: random.Random, fault: str, fewest: int) -> list[str]:
        pool = PROFILES[fault]["symptoms"]
        count = rng.randint(min(fewest, len(pool)), len(pool))
        chosen = pool[:2] + rng.sample(pool[2:], max(0, count - 2))
        return [f"{tag}:{rng.choice(BANDS)}" for tag in chosen[:count]]

    def _story(self, rng: random.Random, fault: str, failed: bool, solution: Solution) -> Story:
        """One ticket text and the symptoms it reports."""
        profile = PROFILES[fault]
        symptoms = self._symptoms(rng, fault, fewest=2)
        area = rng.choice(self.areas)
        cause = rng.choice(profile["causes"])
        opening = rng.choice(OPENINGS).format(
            where=f"{area[1]} {area[3]}",
            team=rng.choice(TEAMS),
            when=rng.choice(WHENS),
            cause=cause,
            cause_cap=cause[0].upper() + cause[1:],
        )
        observed = "; ".join(_symptom_phrase(rng, self.catalog, t) for t in symptoms[:4])
        closing = rng.choice(FAILED_CLOSINGS if failed else CLOSINGS).format(
            solution=solution.title.lower()
        )
        text = f"{opening} Observed: {observed}. {closing[0].upper()}{closing[1:]}"
        return Story(text, tuple(symptoms), area)

    def _pick_story(
        self, rng: random.Random, fault: str, failed: bool, solution: Solution
    ) -> Story:
        """Ticket systems repeat their stock texts: a case takes one of a bounded pool of
        stories per (fault, solution, outcome); everything else about it varies freely."""
        pool = self._stories.setdefault((fault, solution.id, failed), [])
        if len(pool) < self.stories_per_pool:
            pool.append(self._story(rng, fault, failed, solution))
            return pool[-1]
        return rng.choice(pool)

    def case(self, rng: random.Random, index: int) -> Case:
        fault = rng.choice(self.faults)
        component = self.domain.faults[fault]
        roll = rng.random()
        solution = rng.choice(self.fixes[fault])
        outcome = "resolved"
        if roll > 0.97:  # a wrong fix was tried and failed
            solution = rng.choice([s for s in self.all_solutions if s not in self.fixes[fault]])
            outcome = "failed"
        elif roll > 0.9:
            outcome = "failed"
        story = self._pick_story(rng, fault, outcome == "failed", solution)
        environment = dict(
            pair.split("=", 1) for pair in rng.sample(PROFILES[fault]["env"], rng.randint(0, 2))
        )
        return Case(
            id=f"gen-{index:07d}",
            title=f"{self.domain.fault_titles[fault]} at {story.area[3]}",
            text=story.text,
            symptoms=story.symptoms,
            device_type=rng.choice(self.devices[component] or [""]),
            environment=environment,
            region=story.area,
            fault=fault,
            solution_id=solution.id,
            outcome=outcome,
            time_to_resolve_s=(
                round(rng.lognormvariate(7.5, 0.6)) if outcome == "resolved" else None
            ),
        )

    def cases(self, count: int, seed: int = 7) -> Iterator[Case]:
        rng = random.Random(seed)
        self._stories = {}
        for index in range(count):
            yield self.case(rng, index)

    def query(
        self, rng: random.Random, named_fault: bool, fault: str | None = None
    ) -> LabelledMatchQuery:
        """A new incident as the RCA reports it: summary, component, observed values."""
        fault = fault or rng.choice(self.faults)
        symptoms = self._symptoms(rng, fault, fewest=1)[: rng.randint(1, 3)]
        component = self.domain.faults[fault]
        parts = []
        for tag in symptoms:
            series, direction, band = tag.split(":")
            side = "above" if direction == "high" else "below"
            value = _value(self.catalog, series, band)
            parts.append(f"{series} {side} {self.catalog[series].crit:g} at {value}")
        observed = "; ".join(parts)
        text = (
            f"{self.domain.fault_titles[fault].capitalize()} (component {component}; "
            f"observed: {observed})"
        )
        return LabelledMatchQuery(
            fault,
            MatchQuery(
                text=text,
                fault=fault if named_fault else None,
                symptom_keys=tuple(sorted({":".join(t.split(":")[:2]) for t in symptoms})),
                component=component,
                environment=environment_pairs({}),
            ),
        )

    def queries(
        self, count: int, seed: int = 11, named_fault: bool = True
    ) -> list[LabelledMatchQuery]:
        rng = random.Random(seed)
        return [self.query(rng, named_fault) for _ in range(count)]
