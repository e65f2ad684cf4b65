"""Candidate ranking is pure: these pin the policy without Neo4j (the integration test in
tests/knowledge covers the graph query itself)."""

from loop.decide import autonomy_mode, rank_candidates
from loop.models import Case, DecisionMode, Evidence, RCAReport, RootCause, Solution

EVIDENCE = (
    Evidence(series="cache_hit_ratio", value=0.4, threshold=0.7, direction="low", since=0),
    Evidence(series="db_penetration_pct", value=12, threshold=10, direction="high", since=0),
)
REPORT = RCAReport(
    incident_id="i",
    target="t",
    latency_ms=1,
    candidates=(
        RootCause(
            fault="cache_saturation", component="cache", score=0.9, summary="s", evidence=EVIDENCE
        ),
    ),
)


def case(cid, symptoms, outcome="resolved", solution="s1", fault="cache_saturation"):
    return Case(
        id=cid,
        title=cid,
        text="x",
        symptoms=symptoms,
        fault=fault,
        solution_id=solution,
        outcome=outcome,
    )


def sol(sid, risk="low", successes=0, failures=0):
    return Solution(
        id=sid, title=sid, playbook=f"{sid}.yml", risk=risk, successes=successes, failures=failures
    )


SYMPTOMS = ("cache_hit_ratio:low", "db_penetration_pct:high")


def test_below_threshold_and_unresolved_cases_cannot_propose():
    hits = [
        (case("weak", ()), sol("s1"), 0.5),
        (case("failed", SYMPTOMS, outcome="failed"), sol("s2"), 0.99),
    ]
    eligible, matches = rank_candidates(REPORT, hits, 0.8)
    assert eligible == []
    assert [m.case_id for m in matches] == ["failed", "weak"]


def test_track_record_and_risk_can_beat_raw_similarity():
    hits = [
        (case("close-risky", SYMPTOMS, solution="risky"), sol("risky", "high", 1, 5), 0.95),
        (case("close-safe", SYMPTOMS, solution="safe"), sol("safe", "low", 8, 0), 0.9),
    ]
    eligible, _ = rank_candidates(REPORT, hits, 0.8)
    assert [c.solution.id for c in eligible] == ["safe", "risky"]


def test_fault_and_symptoms_lift_a_paraphrase_over_the_bar():
    other_fault = [(case("c", SYMPTOMS, fault="db_io_wait"), sol("s1"), 0.65)]
    eligible, matches = rank_candidates(REPORT, other_fault, 0.8)
    assert matches[0].similarity == 0.5 * 0.65 + 0.5 * 0.5  # symptoms agree, fault does not
    assert eligible == []
    eligible, matches = rank_candidates(REPORT, [(case("c", SYMPTOMS), sol("s1"), 0.65)], 0.8)
    assert matches[0].similarity == round(0.5 * 0.65 + 0.5, 4)
    assert len(eligible) == 1 and "symptoms 2 shared of 2" in matches[0].explanation


def test_autonomy():
    assert autonomy_mode(sol("a", "low")) == DecisionMode.auto
    assert autonomy_mode(sol("a", "high")) == DecisionMode.approval
