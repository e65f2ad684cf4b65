"""Hot reload: a broken rule set is refused and the old rules stay; a good one is swapped
in atomically with the abnormal signals of the moment re-asserted."""

import shutil
import time

import pytest

from kernel.config import DEFAULT_SITE, TWIN_PACK, Settings
from kernel.models import Sample
from loop.analyze import Analyzer
from loop.daemon import Engine
from loop.store import IncidentStore
from rules.catalog import load_catalog
from rules.compiler import load_rules
from rules.reload import RuleSource
from sites import load_site

RULES = TWIN_PACK / "rules"
SAG = {"pq_voltage_rms_pct": 82.0, "pq_voltage_sag_depth_pct": 20.0}
NEW_RULE = """
  - id: sag-rms-only
    fault: voltage_sag
    summary: RMS voltage alone below 90 %
    all:
      - series: pq_voltage_rms_pct
"""


def ticks(start: int, stop: int, base: float = 0.0, **values: float) -> list[list[Sample]]:
    return [
        [
            Sample(series=k, labels={"target": "t"}, ts=base + ts, value=v + 0.1 * (ts % 3))
            for k, v in values.items()
        ]
        for ts in range(start, stop)
    ]


@pytest.fixture
def rules_dir(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    shutil.copy(TWIN_PACK / "metrics.yaml", folder / "metrics.yaml")  # the catalog beside them
    return folder


def test_analyzer_reload_keeps_state_and_fires_only_what_is_new(rules_dir):
    catalog = load_catalog()
    analyzer = Analyzer(catalog, load_rules(catalog, rules_dir))
    try:
        fired = [f.rule_id for batch in ticks(0, 5, **SAG) for f in analyzer.observe(batch)]
        assert fired == ["pq-voltage-sag"]
        with (rules_dir / "power_quality.yaml").open("a") as fh:
            fh.write(NEW_RULE)
        result = analyzer.reload(load_rules(catalog, rules_dir))
        assert result.added == ("sag-rms-only",) and result.removed == () and result.changed == ()
        # the sag in flight is re-asserted: the new rule fires now, the old one does not again
        assert [f.rule_id for f in result.fired] == ["sag-rms-only"]
        assert [f.rule_id for f in analyzer.observe([])] == ["sag-rms-only"]
        assert [f.rule_id for b in ticks(5, 8, **SAG) for f in analyzer.observe(b)] == []
        # a removed rule's findings can still be explained
        analyzer.reload([r for r in load_rules(catalog, rules_dir) if r.id != "pq-voltage-sag"])
        assert "pq-voltage-sag" not in analyzer.active_rules
        assert analyzer.rules["pq-voltage-sag"].fault == "voltage_sag"
    finally:
        analyzer.close()


@pytest.fixture
def engine(tmp_path, rules_dir):
    settings = Settings(var_dir=tmp_path / "var")
    catalog = load_catalog(rules_dir / "metrics.yaml")
    store = IncidentStore(f"sqlite:///{tmp_path / 'engine.db'}")
    # graph, embedder and runner are never reached: no incident is driven here
    engine = Engine(
        settings,
        store,
        None,
        None,
        catalog,
        load_rules(catalog, rules_dir),
        None,  # type: ignore[arg-type]
        load_site(DEFAULT_SITE),
        RuleSource.for_dir(rules_dir, catalog),  # hot reload of this folder
    )
    yield engine
    engine.analyzer.close()
    store.close()


def test_engine_refuses_a_broken_file_and_keeps_its_rules(engine, rules_dir):
    before = dict(engine.analyzer.active_rules)
    broken = rules_dir / "broken.yaml"
    broken.write_text(
        "rules:\n  - id: x\n    fault: voltage_sag\n    summary: s\n"
        "    all:\n      - series: pq_voltage_rms_pct\n        gt: 3\n"
    )
    assert engine.upkeep.rule_source.changed()
    assert engine.upkeep.reload_rules() is None
    assert engine.analyzer.active_rules == before
    (error,) = engine.upkeep.errors
    assert (error.path, error.line) == (str(broken), 7)
    assert "unknown operator 'gt'" in error.reason
    # the old rules still work (the engine judges against the wall clock: recent samples)
    base = time.time() - 10
    found = [f.rule_id for b in ticks(0, 4, base, **SAG) for f in engine.analyzer.observe(b)]
    assert found == ["pq-voltage-sag"]


def test_engine_swaps_in_a_good_file_and_hands_over_its_findings(engine, rules_dir):
    base = time.time() - 10
    for batch in ticks(0, 5, base, **SAG):
        engine.submit(batch)
    kept = engine.findings_before_start()  # not started: kept
    assert [f.rule_id for f in kept] == ["pq-voltage-sag"]
    with (rules_dir / "power_quality.yaml").open("a") as fh:
        fh.write(NEW_RULE)
    assert engine.upkeep.rule_source.changed()
    result = engine.upkeep.reload_rules()
    assert result is not None and result.added == ("sag-rms-only",)
    assert engine.upkeep.errors == ()
    assert "sag-rms-only" in engine.analyzer.active_rules
    assert [f.rule_id for f in engine.findings_before_start()] == ["pq-voltage-sag", "sag-rms-only"]
    assert not engine.upkeep.rule_source.changed()  # one reload per change
