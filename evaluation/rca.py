"""`mendloop eval rca`: root-cause accuracy on the digital twin's fault scenarios.

    result = run_rca_eval(settings, args)        # args: --quick, --seeds (add_arguments)

Everything runs in process on simulated time, no servers: the twin (twin/model.py, fixed
seeds) is stepped once a simulated second and its values go through the daemon's own
``Monitor.ingest_columns`` and ``Analyzer`` (rules compiled from the shipped rule files,
ML baselines, SQI, the RCA ranking), as ``mendloop rules test`` does.

- **ML baselines** are learnt first from one simulated fault-free day of the twin (own
  seed, sampled every ``stride_s``), exactly as the daemon learns them (BaselineBank.fit).
- **Single faults**: each of the twin's 12 faults at several intensities and local times
  of day (the load shape moves the healthy levels), after a healthy warm-up.
- **Overlapping pairs**: every pair of faults on different components, the second a few
  seconds after the first.
- **Control hours**: fault-free simulated hours at several times of day.

Per scenario, the *report* is what an operator sees ``observe_s`` after the injection:
the ranking (loop/rca.py) of every rule finding of the target since the injection, with
the analyzer's context at that moment. ``top1`` counts single faults whose report names
the injected fault first; ``top3`` counts pairs with *both* faults among the first three.
``first_report_top1`` is the daemon's view: the first incident's report, built the moment
the first rule fires. Detection delay is injection -> first rule finding (simulated s).
A false incident is a rule finding on a fault-free target (control hours, and warm-ups),
or one naming a fault that was not injected.

Seeds: the reported figures use ``EVAL_SEEDS``; the rules and the ranking were developed
on ``DEV_SEEDS`` only (and on tests/loop/test_starter_rules.py's seed 11); the baseline
day uses ``TRAIN_SEED``. None of them overlap.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine is imported by the command, not by `mendloop --help`
    from kernel.config import Settings
    from kernel.models import Finding, RCAReport
    from loop.anomaly import BaselineBank, TargetBaseline
    from rules.catalog import Catalog
    from rules.compiler import RuleSpec

DEV_SEEDS = (101, 102, 103)
EVAL_SEEDS = (7001, 7002, 7003)
TRAIN_SEED = 9001
DAY = 86_400.0
MIDNIGHT_UTC = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # the twin's shape is local UTC+8

INTENSITIES = (0.8, 1.0, 1.3)
HOURS = (4.0, 10.0, 20.0)  # local: night trough, morning peak, evening peak
CONTROL_HOURS = (3.0, 10.0, 15.0, 20.0)


def local_time(hour: float, day: int = 0) -> float:
    """A unix timestamp at ``hour`` o'clock local time (UTC+8) on day ``day``."""
    return MIDNIGHT_UTC + day * DAY + ((hour - 8) % 24) * 3600


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: tuple[str, ...]
    intensity: float
    hour: float
    seed: int
    stagger_s: float = 0.0  # the second fault this long after the first


@dataclass
class Outcome:
    scenario: Scenario
    detected_after_s: float | None = None
    first_top: str | None = None
    ranked: tuple[str, ...] = ()
    wrong: list[str] = field(default_factory=list)  # findings naming a fault not injected
    fired: set[str] = field(default_factory=set)  # faults named by a rule that fired
    warmup_false: int = 0
    time_to_report_s: float | None = None
    report_ms: float = 0.0
    report: RCAReport | None = None

    @property
    def detected(self) -> bool:
        return self.detected_after_s is not None

    @property
    def top1(self) -> bool:
        """A rule fired (so there is an incident) and the report names the fault first."""
        return self.detected and bool(self.ranked) and self.ranked[0] == self.scenario.faults[0]

    @property
    def top3(self) -> bool:
        return self.detected and set(self.scenario.faults) <= set(self.ranked[:3])

    @property
    def signature_only(self) -> bool:
        """No rule fired, but the ranking (ML + rule signatures) still names the fault."""
        return not self.detected and self.scenario.faults[0] in self.ranked[:1]


def train_baseline(
    catalog: Catalog, bank: BaselineBank, seed: int = TRAIN_SEED, days: float = 1.0
) -> TargetBaseline:
    """A fault-free simulated day of the twin, sampled like the daemon samples its
    baseline window, fitted with the daemon's own BaselineBank.fit."""
    import numpy as np

    from twin.model import Twin

    twin = Twin(targets=("baseline",), seed=seed)
    order = [bank.index[s] for s in twin.series]
    stride = bank.policy.stride_s
    start = local_time(0.0) - 30 * DAY
    ts = start + np.arange(0.0, days * DAY, stride)
    rows = np.full((ts.size, len(bank.series)), np.nan)
    for i, now in enumerate(ts):
        rows[i, order] = twin.advance(float(now))[0]
    model, _ = bank.fit("baseline", ts, rows, now=float(ts[-1]))
    return model


class Bench:
    """One Monitor + Analyzer shared by all scenarios; each scenario has its own target
    name (so no state leaks between them) and its own twin."""

    def __init__(self, catalog: Catalog, rules: Sequence[RuleSpec], baseline: TargetBaseline):
        from loop.analyze import Analyzer
        from loop.monitor import Monitor

        self.catalog = catalog
        self.now = 0.0
        self.monitor = Monitor(catalog, clock=lambda: self.now)
        self.analyzer = Analyzer(catalog, rules)
        self.baseline = baseline
        self._n = 0

    def close(self) -> None:
        self.analyzer.close()

    def _target(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:04d}"

    def _tick(self, twin: Any, layout: Any, now: float) -> list[Finding]:
        import numpy as np

        self.now = now
        values = twin.advance(now).reshape(-1)
        result = self.monitor.ingest_columns(layout, ts=np.full(values.shape, now), values=values)
        return self.analyzer.observe(result.latest)

    def _start(self, targets: Sequence[str], seed: int) -> tuple[Any, Any]:
        from twin.model import Twin

        twin = Twin(targets=tuple(targets), seed=seed)
        for target in targets:
            self.analyzer.baselines.install(target, self.baseline)
        col_t = [t for t in targets for _ in twin.series]
        col_s = [s for _ in targets for s in twin.series]
        return twin, self.monitor.layout(col_t, col_s)

    def scenario(self, sc: Scenario, warmup_s: int, observe_s: int) -> Outcome:
        target = self._target("sc")
        twin, layout = self._start([target], sc.seed)
        out = Outcome(sc)
        injected = local_time(sc.hour, day=sc.seed % 7)
        t = injected - warmup_s
        for _ in range(warmup_s):
            t += 1.0
            out.warmup_false += len(self._tick(twin, layout, t))
        twin.inject(target, sc.faults[0], now=t, intensity=sc.intensity)
        pending = list(sc.faults[1:])
        found: list[Finding] = []
        for _ in range(observe_s):
            if pending and t >= injected + sc.stagger_s:
                twin.inject(target, pending.pop(0), now=t, intensity=sc.intensity)
            t += 1.0
            fired = self._tick(twin, layout, t)
            if not fired:
                continue
            for finding in fired:
                fault = self.analyzer.rules[finding.rule_id].fault
                out.fired.add(fault)
                if fault not in sc.faults:
                    out.wrong.append(fault)
            if out.detected_after_s is None:
                out.detected_after_s = t - injected
                first = self.analyzer.report("first", target, fired)
                out.first_top = first.top.fault if first.top else None
                out.time_to_report_s = first.time_to_report_s
                out.report_ms = first.latency_ms
            found += fired
        report = self.analyzer.report("scenario", target, found)
        out.ranked = tuple(c.fault for c in report.candidates)
        out.report = report
        self.analyzer.baselines.forget(target)
        return out

    def control(self, hours: Sequence[float], seed: int, seconds: int) -> tuple[int, float]:
        """Fault-free runs, one target per hour of the day (their clocks differ, so they
        are separate twins); returns (rule findings, simulated hours)."""
        false = 0
        for hour in hours:
            target = self._target("ctl")
            twin, layout = self._start([target], seed)
            t = local_time(hour, day=seed % 7)
            for _ in range(seconds):
                t += 1.0
                false += len(self._tick(twin, layout, t))
            self.analyzer.baselines.forget(target)
        return false, len(hours) * seconds / 3600.0


def scenarios(seeds: Sequence[int], quick: bool) -> tuple[list[Scenario], list[Scenario]]:
    """Single faults (every fault x intensity x hour, one seed each, rotating) and pairs
    (every two faults on different components, at intensity 1, staggered 0-10 s)."""
    from twin.faults import FAULTS

    faults = sorted(FAULTS)
    intensities = (1.0,) if quick else INTENSITIES
    hours = (10.0,) if quick else HOURS
    singles = []
    for n, (fault, intensity, hour) in enumerate(itertools.product(faults, intensities, hours)):
        seed = seeds[n % len(seeds)]
        name = f"{fault}@{intensity:g}/{hour:g}h"
        singles.append(Scenario(name, (fault,), intensity, hour, seed))
    pairs = []
    combos = [
        (a, b)
        for a, b in itertools.combinations(faults, 2)
        if FAULTS[a].component != FAULTS[b].component
    ]
    if quick:
        combos = combos[:: max(1, len(combos) // 6)]
    for n, (a, b) in enumerate(combos):
        hour = HOURS[n % len(HOURS)]
        stagger = float((n * 3) % 11)
        seed = seeds[n % len(seeds)]
        pairs.append(Scenario(f"{a}+{b}/{hour:g}h", (a, b), 1.0, hour, seed, stagger))
    return singles, pairs


def _pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(values, q)), 2) if values else None


def evaluate(
    catalog: Catalog,
    rules: Sequence[RuleSpec],
    seeds: Sequence[int] = EVAL_SEEDS,
    quick: bool = False,
    warmup_s: int = 60,
    observe_s: int = 90,
    control_s: int = 3600,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run every scenario and the control hours; the figures of docs/EVALUATION.md."""
    from loop.anomaly import BaselineBank

    started = time.perf_counter()
    bank = BaselineBank(catalog)
    baseline = train_baseline(catalog, bank)
    progress(f"baseline learnt from a fault-free simulated day (seed {TRAIN_SEED})")
    bench = Bench(catalog, rules, baseline)
    try:
        singles, pairs = scenarios(seeds, quick)
        single_out = [bench.scenario(sc, warmup_s, observe_s) for sc in singles]
        progress(f"{len(singles)} single-fault scenarios done")
        pair_out = [bench.scenario(sc, warmup_s, observe_s) for sc in pairs]
        progress(f"{len(pairs)} overlapping pairs done")
        control_hours = CONTROL_HOURS[:1] if quick else CONTROL_HOURS
        control_false, hours = 0, 0.0
        for seed in seeds[:1] if quick else seeds:
            f, h = bench.control(control_hours, seed, control_s if not quick else 600)
            control_false, hours = control_false + f, hours + h
        progress(f"{hours:.2f} fault-free hours done")
    finally:
        bench.close()
    everything = single_out + pair_out
    delays = [o.detected_after_s for o in everything if o.detected_after_s is not None]
    ttr = [o.time_to_report_s for o in everything if o.time_to_report_s is not None]
    warm_false = sum(o.warmup_false for o in everything)
    warm_hours = len(everything) * warmup_s / 3600.0
    by_fault: dict[str, dict[str, int]] = {}
    for o in single_out:
        row = by_fault.setdefault(
            o.scenario.faults[0],
            {"runs": 0, "top1": 0, "detected": 0, "time_to_report_s_max": None},
        )
        row["runs"] += 1
        row["top1"] += o.top1
        row["detected"] += o.detected_after_s is not None
        if o.time_to_report_s is not None:
            row["time_to_report_s_max"] = max(
                row["time_to_report_s_max"] or 0.0, o.time_to_report_s
            )
    misses = [
        {
            "scenario": o.scenario.name,
            "seed": o.scenario.seed,
            "ranked": list(o.ranked[:3]),
            "detected_after_s": o.detected_after_s,
        }
        for o in single_out
        if not o.top1
    ] + [
        {"scenario": o.scenario.name, "seed": o.scenario.seed, "ranked": list(o.ranked[:3])}
        for o in pair_out
        if not o.top3
    ]
    n_single, n_pair = len(single_out), len(pair_out)
    return {
        "scenarios": n_single + n_pair,
        "single": n_single,
        "pairs": n_pair,
        "top1": round(sum(o.top1 for o in single_out) / max(1, n_single), 4),
        "top3": round(sum(o.top3 for o in pair_out) / max(1, n_pair), 4),
        # what the rules alone would give (both faults named by a fired rule): the rest
        # of top3 is the ranking's signature candidates (rules vetoed by the other fault)
        "pairs_both_fired": round(
            sum(set(o.scenario.faults) <= o.fired for o in pair_out) / max(1, n_pair), 4
        ),
        "pairs_top1_either": round(
            sum(bool(o.ranked) and o.ranked[0] in o.scenario.faults for o in pair_out)
            / max(1, n_pair),
            4,
        ),
        "first_report_top1": round(
            sum(o.first_top == o.scenario.faults[0] for o in single_out) / max(1, n_single), 4
        ),
        "detected": round(sum(o.detected for o in single_out) / max(1, n_single), 4),
        "undetected_but_ranked_first": sum(o.signature_only for o in single_out),
        "false_incidents_per_hour": round((control_false + warm_false) / (hours + warm_hours), 4),
        "false_incidents": control_false + warm_false,
        "fault_free_hours": round(hours + warm_hours, 2),
        "wrong_fault_findings": sum(len(o.wrong) for o in everything),
        "wrong_faults": dict(Counter(f for o in everything for f in o.wrong)),
        "detection_delay_s_p50": _pct(delays, 50),
        "detection_delay_s_p95": _pct(delays, 95),
        "time_to_report_s_p50": _pct(ttr, 50),
        "time_to_report_s_p95": _pct(ttr, 95),
        "time_to_report_s_max": max(ttr) if ttr else None,
        "report_compute_ms_p95": _pct([o.report_ms for o in everything], 95),
        "by_fault": by_fault,
        "misses": misses,
        "intensities": list((1.0,) if quick else INTENSITIES),
        "hours_local": list((10.0,) if quick else HOURS),
        "seeds": list(seeds),
        "train_seed": TRAIN_SEED,
        "quick": quick,
        "run_time_s": round(time.perf_counter() - started, 1),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mendloop eval rca` (the eval parser is shared with nab/smd)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rca, forest: a CI-sized subset (intensity 1, one hour)",
    )
    parser.add_argument(
        "--seeds",
        help=f"rca, forest: comma-separated twin seeds (default {','.join(map(str, EVAL_SEEDS))}; "
        f"the rules were developed on {','.join(map(str, DEV_SEEDS))})",
    )


def run_rca_eval(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """`mendloop eval rca [--quick] [--seeds A,B]`: the JSON object of the command."""
    from kernel.config import TWIN_PACK
    from rules.catalog import load_catalog
    from rules.compiler import load_rules

    # the twin's estate: the power-marketing pack's catalog and rules
    catalog = load_catalog(TWIN_PACK / "metrics.yaml")
    rules = load_rules(catalog, TWIN_PACK / "rules")
    raw = getattr(args, "seeds", None)
    seeds = tuple(int(s) for s in raw.split(",") if s.strip()) if raw else EVAL_SEEDS
    return evaluate(
        catalog,
        rules,
        seeds,
        quick=bool(getattr(args, "quick", False)),
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )


def summary(result: dict[str, Any]) -> str:
    """The human view of `mendloop eval rca` (without --json)."""
    return "\n".join(
        [
            f"{result['scenarios']} scenarios ({result['single']} single faults, "
            f"{result['pairs']} overlapping pairs), seeds {result['seeds']}, "
            f"{result['run_time_s']} s",
            f"  top-1 on single faults: {result['top1']:.1%} (goal >= 90 %); detected by a "
            f"rule {result['detected']:.1%}",
            f"  top-3 on pairs (both faults): {result['top3']:.1%} (goal >= 90 %)",
            f"  false incidents per fault-free hour: {result['false_incidents_per_hour']} "
            f"({result['false_incidents']} in {result['fault_free_hours']} h; goal <= 0.1)",
            f"  detection delay p50 {result['detection_delay_s_p50']} s, p95 "
            f"{result['detection_delay_s_p95']} s; first abnormal sample -> report p50 "
            f"{result['time_to_report_s_p50']} s, p95 {result['time_to_report_s_p95']} s",
            *(
                f"  miss: {m['scenario']} (seed {m['seed']}): ranked {m['ranked']}"
                for m in result["misses"]
            ),
        ]
    )
