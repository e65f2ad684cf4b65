"""A rule's veto (``none``) holds in the daemon as it does in a replay, whatever the batches.

The nginx pack's live e2e once named a dead upstream "a bad config" although the rule's veto
(the upstream does not answer) should have held it back, and `mendloop rules test` on the
same samples said nothing. The rule as it was then (before commit d278b61 added a positive
condition to it) is kept here, since it is the one the race showed on. Everything is real:
the monitor (its batches collapse to each series' newest point, as in the daemon), the
analyzer and durable_rules; the live side is cut into the batches the daemon can get (a
5 s Prometheus poll, two pushes), the replay side is `mendloop rules test`'s own replay.

What was found (the mechanism): within one batch the analyzer retracted veto facts before
the trigger facts they guard, so a batch holding both recoveries -- the upstream answers
again and so does the probe through nginx -- fired the vetoed rule in between; durable_rules
fires the moment a rule holds. A replay judges one timestamp per batch, so the probe's
recovery (scraped first) was in before the upstream's. And across batches: a trigger
judged in one batch fired before its veto's sample of the same moment, in the next batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import yaml

from kernel.config import PACKS_DIR
from kernel.models import Sample
from loop.analyze import Analyzer
from loop.monitor import Monitor
from loop.tick import in_order
from mendloop.rules_tester import replay
from rules.catalog import Catalog, load_catalog
from rules.compiler import AbnormalFact, CompiledRules, Firing, RuleSpec
from rules.loader import check_paths

TARGET = "web-1"
FAULTS = {
    "nginx_down": "nginx",
    "nginx_upstream_failed": "nginx_upstream",
    "nginx_bad_config": "nginx",
}
BAD_CONFIG_AS_IT_RACED = {  # packs/nginx/rules/nginx.yaml before d278b61
    "id": "nginx-bad-config",
    "fault": "nginx_bad_config",
    "component": "nginx",
    "confidence": 0.8,
    "summary": "requests through nginx fail while nginx and its upstream both answer",
    "all": [{"series": "nginx_probe_up", "for": "12s"}],
    "none": [{"series": "nginx_up"}, {"series": "nginx_upstream_up"}],
}
KILL, FIX = 1_800_000_010.0, 1_800_000_035.8  # the probe (:x.2) scraped good first
PHASES = {"nginx_up": 0.5, "nginx_probe_up": 0.2, "nginx_upstream_up": 0.7}  # scrape offsets


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(PACKS_DIR / "nginx" / "metrics.yaml")


def compile_rules(tmp_path: Path, catalog: Catalog, rules: Sequence[dict]) -> list[RuleSpec]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": list(rules)}))
    specs, errors = check_paths([path], catalog, FAULTS)
    assert errors == [], errors
    return specs


@pytest.fixture
def raced_rules(tmp_path: Path, catalog: Catalog) -> list[RuleSpec]:
    pack = yaml.safe_load((PACKS_DIR / "nginx" / "rules" / "nginx.yaml").read_text())["rules"]
    rules = [r for r in pack if r["id"] != "nginx-bad-config"] + [BAD_CONFIG_AS_IT_RACED]
    return compile_rules(tmp_path, catalog, rules)


def scrapes(start: float, end: float, kill: float = KILL, fix: float = FIX) -> list[Sample]:
    """Prometheus' three `up`s of the lab, one a second at their offsets; the upstream dead
    from ``kill`` to ``fix`` (so are requests through nginx to it)."""
    out = []
    for second in np.arange(start, end):
        for series, offset in PHASES.items():
            ts = float(second) + offset
            dead = series != "nginx_up" and kill <= ts < fix
            labels = {"target": TARGET}
            out.append(Sample(series=series, labels=labels, ts=ts, value=0.0 if dead else 1.0))
    return sorted(out, key=lambda s: s.ts)


def polls(
    samples: list[Sample], every: float, first: float = 0.0
) -> Iterator[tuple[float, list[Sample]]]:
    """What a poller every ``every`` s submits: all samples since the last poll, one batch
    (the first poll ``first`` s after the first sample)."""
    at = samples[0].ts + first
    batch: list[Sample] = []
    for sample in samples:
        while sample.ts > at:
            yield at, batch
            batch, at = [], at + every
        batch.append(sample)
    yield at, batch


def live(catalog: Catalog, rules: list[RuleSpec], batches) -> list[tuple[str, float]]:
    """The daemon's path: each batch ingested by the monitor, its newest points observed."""
    now = [0.0]
    monitor = Monitor(catalog, clock=lambda: now[0])
    analyzer = Analyzer(catalog, rules, clock=lambda: now[0])
    fired = []
    try:
        for now[0], batch in batches:
            result = monitor.ingest(batch)
            found = analyzer.observe(result.latest) + analyzer.sweep()
            fired += [(f.rule_id, now[0]) for f in found]
    finally:
        analyzer.close()
    return fired


def replayed(catalog: Catalog, rules: list[RuleSpec], samples: list[Sample]) -> list[str]:
    """`mendloop rules test`: one batch per timestamp, in time order."""
    by_ts: dict[float, list[Sample]] = {}
    for sample in samples:
        by_ts.setdefault(sample.ts, []).append(sample)
    run = replay(catalog, rules, sorted(by_ts.items()))
    return [f.rule.id for f in run.firings]


def test_a_dead_upstream_is_not_a_bad_config_when_one_poll_holds_both_recoveries(
    catalog: Catalog, raced_rules: list[RuleSpec]
) -> None:
    """The upstream comes back; the probe through nginx (scraped 0.5 s earlier in each
    round) recovers in the same round. One 5 s poll holds both recoveries."""
    samples = scrapes(KILL - 20, FIX + 15)
    assert replayed(catalog, raced_rules, samples) == ["nginx-upstream-failed"]
    fired = live(catalog, raced_rules, polls(samples, 5.0, first=0.05))
    assert [rule for rule, _ in fired] == ["nginx-upstream-failed"]


@pytest.mark.parametrize("first", [0.05, 1.05, 2.05, 3.05, 4.05])
@pytest.mark.parametrize("kill", [KILL, KILL + 0.3, KILL + 0.6, KILL + 0.9])
def test_the_daemons_polls_and_the_replay_agree_through_a_fault_and_its_fix(
    catalog: Catalog, raced_rules: list[RuleSpec], kill: float, first: float
) -> None:
    samples = scrapes(KILL - 20, FIX + 15, kill=kill)
    expected = replayed(catalog, raced_rules, samples)
    assert expected == ["nginx-upstream-failed"]
    fired = live(catalog, raced_rules, polls(samples, 5.0, first))
    assert [rule for rule, _ in fired] == expected


def split_ticks(samples: list[Sample], late: str) -> Iterator[tuple[float, list[Sample]]]:
    """Each second in two batches: ``late``'s sample comes after the others' (another
    push, another remote-write shard)."""
    by_second: dict[int, list[Sample]] = {}
    for sample in samples:
        by_second.setdefault(int(sample.ts), []).append(sample)
    for second, batch in sorted(by_second.items()):
        yield second + 0.9, [s for s in batch if s.series != late]
        yield second + 0.95, [s for s in batch if s.series == late]


SAME_TICK = {  # trigger and veto go bad at the same moment and are held equally long (6 s)
    "id": "probe-fails-alone",
    "fault": "nginx_bad_config",
    "summary": "requests through nginx fail while the upstream answers",
    "all": [{"series": "nginx_probe_up"}],
    "none": [{"series": "nginx_upstream_up"}],
}


def same_ticks(upstream_dies: bool) -> list[Sample]:
    out = []
    for second in range(0, 20):
        ts = 1_800_000_000.0 + second
        probe = 0.0 if second >= 5 else 1.0
        upstream = 0.0 if second >= 5 and upstream_dies else 1.0
        for series, value in (("nginx_probe_up", probe), ("nginx_upstream_up", upstream)):
            out.append(Sample(series=series, labels={"target": TARGET}, ts=ts, value=value))
    return out


def test_a_veto_of_the_same_moment_in_the_next_batch_holds_the_rule_back(
    tmp_path: Path, catalog: Catalog
) -> None:
    rules = compile_rules(tmp_path, catalog, [SAME_TICK])
    samples = same_ticks(upstream_dies=True)
    assert replayed(catalog, rules, samples) == []
    assert live(catalog, rules, split_ticks(samples, late="nginx_upstream_up")) == []


def test_a_rule_held_for_its_veto_fires_once_the_veto_series_said_no(
    tmp_path: Path, catalog: Catalog
) -> None:
    """The hold costs the wait for the veto's sample of that moment, nothing more."""
    rules = compile_rules(tmp_path, catalog, [SAME_TICK])
    samples = same_ticks(upstream_dies=False)
    assert replayed(catalog, rules, samples) == ["probe-fails-alone"]
    fired = live(catalog, rules, split_ticks(samples, late="nginx_upstream_up"))
    assert fired == [("probe-fails-alone", 1_800_000_011.95)]  # probe's 6 s at :11, veto's :11


def test_a_silent_veto_series_delays_its_rule_by_the_gap_at_most(
    tmp_path: Path, catalog: Catalog
) -> None:
    rules = compile_rules(tmp_path, catalog, [SAME_TICK])
    start = 1_800_000_000.0
    batches = [
        (
            start + s,
            [
                Sample(
                    series="nginx_upstream_up", labels={"target": TARGET}, ts=start + s, value=1.0
                )
            ],
        )
        for s in range(0, 5)
    ]
    batches += [
        (
            start + s,
            [Sample(series="nginx_probe_up", labels={"target": TARGET}, ts=start + s, value=0.0)],
        )
        for s in range(5, 100)
    ]
    analyzer = Analyzer(catalog, rules, gap_s=30.0)
    try:
        fired = []
        for at, batch in batches:
            fired += [(f.rule_id, at) for f in analyzer.observe(batch)]
    finally:
        analyzer.close()
    # the probe's 6 s held at :11; the upstream silent since :04, waited for until :41
    assert fired == [("probe-fails-alone", start + 41)]


# -- the engine judges a batch as a whole ---------------------------------------------------


def fact(key: str, target: str = TARGET) -> AbnormalFact:
    return AbnormalFact(
        target=target, series=key, value=0.0, threshold=0.5, direction="low", since=1.0
    )


def test_the_engine_fires_what_holds_at_the_end_of_a_batch_in_any_order(
    tmp_path: Path, catalog: Catalog
) -> None:
    """A: all [probe], none [upstream]; B: all [upstream], none [nginx_up]. Every order of
    one batch ends in the same firings: those true once the whole batch is in."""
    rules = compile_rules(
        tmp_path,
        catalog,
        [
            SAME_TICK,
            {
                **SAME_TICK,
                "id": "b",
                "all": [{"series": "nginx_upstream_up"}],
                "none": [{"series": "nginx_up"}],
            },
        ],
    )
    probe, upstream, nginx = fact("nginx_probe_up"), fact("nginx_upstream_up"), fact("nginx_up")
    start = [(nginx, True)]  # before: nginx_up abnormal (b vetoed)
    batch = [(probe, True), (upstream, True), (nginx, False)]
    outcomes = set()
    for order in permutations(batch):
        got: list[Firing] = []
        engine = CompiledRules(rules, got.append)
        try:
            engine.apply(start)
            engine.apply(order)
        finally:
            engine.close()
        outcomes.add(tuple(sorted(f.rule.id for f in got)))
    assert outcomes == {("b",)}  # probe-fails-alone is vetoed by the upstream at the end


def test_a_veto_retracted_later_fires_its_rule_then(tmp_path: Path, catalog: Catalog) -> None:
    rules = compile_rules(tmp_path, catalog, [SAME_TICK])
    probe, upstream = fact("nginx_probe_up"), fact("nginx_upstream_up")
    got: list[Firing] = []
    engine = CompiledRules(rules, got.append)
    try:
        assert engine.apply([(probe, True), (upstream, True)]) == []
        assert engine.apply([(upstream, False)]) == got
        assert [(f.rule.id, f.facts) for f in got] == [
            ("probe-fails-alone", [probe.model_copy(update={"key": "nginx_probe_up"})])
        ]
    finally:
        engine.close()


def test_points_older_than_one_judged_are_not_judged_again() -> None:
    """Two submits can reach analysis in the other order than they reached the monitor."""
    last = np.array([np.nan, 10.0, 10.0])
    cells = np.array([0, 1, 2, 1])
    ts = np.array([5.0, 9.0, 11.0, 12.0])
    ok = np.ones(4, dtype=bool)
    kept, late = in_order(last, cells, ts, ok)
    assert kept.tolist() == [True, False, True, True] and late == 1
    kept, late = in_order(last, np.array([2, 2, 2]), np.array([11.0, 10.5, 12.0]), ok[:3])
    assert kept.tolist() == [True, False, True] and late == 1  # judged in order within a batch


def test_a_batch_observed_after_a_newer_one_does_not_move_time_back(catalog: Catalog) -> None:
    monitor = Monitor(catalog, clock=lambda: KILL)
    analyzer = Analyzer(catalog, [])
    try:
        up = {"target": TARGET}
        older = monitor.ingest([Sample(series="nginx_up", labels=up, ts=KILL, value=0.0)])
        newer = monitor.ingest([Sample(series="nginx_up", labels=up, ts=KILL + 1, value=1.0)])
        analyzer.observe(newer.latest)
        analyzer.observe(older.latest)  # the slower thread's batch
        assert analyzer.tracker.last_seen(TARGET, "nginx_up") == KILL + 1
        assert analyzer.tracker.last_value(TARGET, "nginx_up") == 1.0
        assert analyzer.out_of_order == 1
    finally:
        analyzer.close()
