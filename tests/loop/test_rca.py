"""Root-cause ranking (loop/rca.py): pure, on the real catalog, rules and topology."""

import json

import pytest

from kernel.models import Evidence, Finding, FindingKind, RCAReport
from loop.rca import Context, Topology, rank
from loop.report import assemble, render_markdown
from rules.catalog import load_catalog
from rules.compiler import AbnormalFact, load_rules

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def rules(catalog):
    return {r.id: r for r in load_rules(catalog)}


@pytest.fixture(scope="module")
def topology():
    return Topology.from_domain()


def fact(catalog, series, since, value=None):
    spec = catalog[series]
    if value is None:
        value = spec.crit * (1.5 if spec.bad == "high" else 0.5)
    return AbnormalFact(
        target="t", series=series, value=value, threshold=spec.crit, direction=spec.bad, since=since
    )


def finding(rules, catalog, rule_id, since):
    rule = rules[rule_id]
    facts = [fact(catalog, c.series, since) for c in rule.conditions]
    return Finding(
        kind=FindingKind.rule,
        target="t",
        series=tuple(f.series for f in facts),
        rule_id=rule_id,
        started_at=since,
        score=rule.confidence,
        evidence=tuple(
            Evidence(
                series=f.series,
                value=f.value,
                threshold=f.threshold,
                direction=f.direction,
                since=f.since,
            )
            for f in facts
        ),
    )


def anomaly(catalog, series, since, direction=None, deviation=3.0):
    spec = catalog[series]
    return Evidence(
        series=series,
        value=1.0,
        threshold=0.5,
        direction=direction or spec.bad,
        since=since,
        source="anomaly",
        component=spec.component,
        deviation=deviation,
    )


def test_topology_is_the_domain_files(topology):
    assert topology.upstream("payment") >= {"api", "database", "cache", "third_party", "esb"}
    assert topology.downstream("cache") == {"database", "api", "payment", "customer_service"}
    assert topology.downstream("customer_service") == frozenset()
    small = Topology({"a": [], "b": ["a"], "c": ["b"]})
    assert small.downstream("a") == {"b", "c"} and small.upstream("c") == {"a", "b"}


def test_the_earliest_upstream_that_explains_the_most_ranks_first(rules, catalog, topology):
    # two rules fired: the 2PC rule (payment) and the cache rule; the cache went abnormal
    # first and the database and api in between, so the cache explains payment too
    findings = [
        finding(rules, catalog, "payment-2pc-inconsistency", T0 + 1),
        finding(rules, catalog, "cache-saturation-penetration", T0 + 5),
    ]
    context = Context(
        abnormal=(
            fact(catalog, "cache_utilization_pct", T0),
            fact(catalog, "db_query_latency_ms", T0 + 2),
            fact(catalog, "api_response_time_ms", T0 + 3),
        ),
        now=T0 + 6,
    )
    causes = rank(findings, rules, catalog, topology, context)
    assert [c.fault for c in causes] == ["cache_saturation", "twopc_inconsistency"]
    top, second = causes
    assert set(top.explains) == {"database", "api", "payment"}
    assert "cache" in second.why and "symptom" in second.why
    assert top.onset == T0 and top.fired and top.rules == ("cache-saturation-penetration",)
    assert sum(c.confidence for c in causes) == pytest.approx(1.0)
    assert top.confidence > second.confidence
    assert all(e.rule_id == "cache-saturation-penetration" for e in top.evidence)
    assert all(e.component is not None and e.deviation is not None for e in top.evidence)


def test_without_topology_evidence_the_rules_confidence_decides(rules, catalog, topology):
    findings = [
        finding(rules, catalog, "pq-harmonic-distortion", T0),
        finding(rules, catalog, "edge-cpu-saturation", T0),
    ]
    causes = rank(findings, rules, catalog, topology, Context())
    expected = sorted(
        ["pq-harmonic-distortion", "edge-cpu-saturation"], key=lambda r: -rules[r].confidence
    )
    assert [c.rules[0] for c in causes] == expected


def test_a_vetoed_rule_is_a_signature_candidate_below_the_fired_one(rules, catalog, topology):
    # cache and database both broken: the db rule is vetoed by the cache's hit ratio, but
    # its signature is there, so it is still a candidate (for overlapping faults)
    findings = [finding(rules, catalog, "cache-saturation-penetration", T0)]
    context = Context(
        abnormal=(
            fact(catalog, "cache_hit_ratio", T0),
            fact(catalog, "db_io_wait_pct", T0 + 1),
            fact(catalog, "db_query_latency_ms", T0 + 1),
        )
    )
    causes = rank(findings, rules, catalog, topology, context, active=rules)
    assert [c.fault for c in causes[:2]] == ["cache_saturation", "db_io_wait"]
    assert causes[0].fired and not causes[1].fired
    assert causes[1].rules == ("db-io-wait-saturation",)


def test_ml_anomalies_complete_a_signature_only_in_the_bad_direction(rules, catalog, topology):
    good_way = Context(
        anomalies=(
            anomaly(catalog, "db_io_wait_pct", T0, direction="low"),
            anomaly(catalog, "db_query_latency_ms", T0, direction="low"),
        )
    )
    assert rank([], rules, catalog, topology, good_way, active=rules) == ()
    bad_way = Context(
        anomalies=(
            anomaly(catalog, "db_io_wait_pct", T0),
            anomaly(catalog, "db_query_latency_ms", T0 + 1),
        )
    )
    causes = rank([], rules, catalog, topology, bad_way, active=rules)
    assert causes[0].fault == "db_io_wait" and not causes[0].fired
    assert causes[0].anomalies and causes[0].onset == T0


def test_fired_always_outranks_a_signature(rules, catalog, topology):
    # the nbiot signature is upstream and earlier, but only the meter rule fired
    findings = [finding(rules, catalog, "meter-calibration-drift", T0 + 10)]
    nbiot = rules["nbiot-deep-coverage-loss"]
    context = Context(abnormal=tuple(fact(catalog, c.series, T0) for c in nbiot.conditions))
    causes = rank(findings, rules, catalog, topology, context, active=rules)
    assert causes[0].fault == "meter_calibration_drift" and causes[0].fired
    assert "nbiot" in causes[0].why
    assert causes[1].fault == "nbiot_deep_coverage" and not causes[1].fired


def test_report_names_fired_causes_only_to_the_matcher(rules, catalog, topology):
    findings = [finding(rules, catalog, "cache-saturation-penetration", T0 + 1)]
    context = Context(
        abnormal=(
            fact(catalog, "db_io_wait_pct", T0 + 2),
            fact(catalog, "db_query_latency_ms", T0 + 2),
        ),
        anomalies=(anomaly(catalog, "cache_latency_ms", T0 - 1),),
        now=T0 + 4.5,
    )
    causes = rank(findings, rules, catalog, topology, context, active=rules)
    report = assemble("inc", "t", causes, context, 0.3, catalog)
    assert len(report.candidates) == 2
    assert report.text().count("component") == 1 and "cache" in report.text()
    assert all(
        tag.split(":")[0] in rules["cache-saturation-penetration"].series
        for tag in report.symptoms()
    )
    # time to report: from the first sample past a threshold, not from the ML onset
    assert report.first_abnormal_at == T0 + 1 and report.time_to_report_s == 3.5
    assert report.top.onset == T0 - 1
    assert list(report.abnormal_components) == ["cache", "database"]
    again = RCAReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert json.loads(report.model_dump_json())["candidates"][0]["confidence"] > 0.5


def test_markdown_has_the_headline_table_and_evidence(rules, catalog, topology):
    findings = [finding(rules, catalog, "cache-saturation-penetration", T0)]
    context = Context(anomalies=(anomaly(catalog, "cache_latency_ms", T0),), now=T0 + 3)
    report = assemble(
        "inc9",
        "pm-site-1",
        rank(findings, rules, catalog, topology, context),
        context,
        0.2,
        catalog,
    )
    text = render_markdown(report)
    assert "Most likely cause: `cache_saturation` on cache" in text
    assert "| 1 | `cache_saturation` | cache |" in text
    assert "`cache_hit_ratio` = 0.35, below threshold 0.7" in text
    assert "[rule cache-saturation-penetration]" in text and "[ML baseline]" in text
    assert "first abnormal sample -> report: 3.0 s" in text
    empty = assemble("inc0", "t", (), Context(), 0.1, catalog)
    assert "No candidate" in render_markdown(empty)


def test_old_reports_without_the_new_fields_still_load():
    stored = {
        "incident_id": "x",
        "target": "t",
        "candidates": [
            {
                "fault": "cache_saturation",
                "component": "cache",
                "score": 0.9,
                "summary": "s",
                "evidence": [
                    {"series": "a", "value": 1, "threshold": 0.5, "direction": "high", "since": 1}
                ],
            }
        ],
        "latency_ms": 0.1,
    }
    report = RCAReport.model_validate(stored)
    assert report.top.fired and report.symptoms() == ("a:high",)


def test_findings_that_arrive_together_split_into_independent_problems():
    from kernel.models import Finding, FindingKind
    from loop.rca import Topology, independent_problems

    topology = Topology({"cache": [], "database": ["cache"], "edge": [], "power_quality": []})

    def finding(rule_id: str) -> Finding:
        return Finding(
            kind=FindingKind.rule,
            target="t",
            series=("x",),
            rule_id=rule_id,
            started_at=0.0,
            score=1.0,
            evidence=(),
        )

    component = {"c": "cache", "d": "database", "e": "edge", "p": "power_quality"}
    found = [finding(r) for r in ("e", "p", "d", "c")]
    problems = independent_problems(found, lambda f: component[f.rule_id], topology)
    assert sorted(sorted(f.rule_id for f in p) for p in problems) == [["c", "d"], ["e"], ["p"]]
    assert independent_problems([], lambda f: "", topology) == []
