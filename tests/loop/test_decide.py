"""Candidate ranking is pure: these pin the policy without Neo4j (the integration tests in
tests/knowledge cover the graph query itself)."""

from kernel.models import Case, DecisionMode, Evidence, RCAReport, RootCause, Solution
from knowledge.graph import Candidate as Hit
from knowledge.matcher import score_candidates
from knowledge.similarity import Calibration
from loop.decide import autonomy_mode, match_query, rank_candidates

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
SYMPTOMS = ("cache_hit_ratio:low", "db_penetration_pct:high")
CALIBRATION = Calibration.load()


def hit(
    cid,
    symptoms,
    cosine,
    outcome="resolved",
    solution=None,
    fault="cache_saturation",
    component="cache",
):
    solution = solution or sol("s1")
    case = Case(
        id=cid,
        title=cid,
        text="x",
        symptoms=symptoms,
        fault=fault,
        solution_id=solution.id,
        outcome=outcome,
    )
    return Hit(case, solution, cosine, tuple(symptoms), component)


def sol(sid, risk="low", successes=0, failures=0):
    return Solution(
        id=sid, title=sid, playbook=f"{sid}.yml", risk=risk, successes=successes, failures=failures
    )


def rank(hits):
    return rank_candidates(score_candidates(match_query(REPORT), hits, CALIBRATION), 0.8)


def test_the_query_carries_what_the_report_knows():
    query = match_query(REPORT)
    assert query.fault == "cache_saturation" and query.component == "cache"
    assert query.symptom_keys == SYMPTOMS


def test_below_threshold_and_unresolved_cases_cannot_propose():
    eligible, matches = rank(
        [
            hit("weak", (), 0.1, fault="db_io_wait"),
            hit("failed", SYMPTOMS, 0.99, outcome="failed", solution=sol("s2")),
        ]
    )
    assert eligible == []
    assert [m.case_id for m in matches] == ["failed", "weak"]


def test_track_record_and_risk_can_beat_raw_similarity():
    eligible, _ = rank(
        [
            hit("close-risky", SYMPTOMS, 0.95, solution=sol("risky", "high", 1, 5)),
            hit("close-safe", SYMPTOMS, 0.9, solution=sol("safe", "low", 8, 0)),
        ]
    )
    assert [c.solution.id for c in eligible] == ["safe", "risky"]


def test_fault_and_symptoms_decide_between_a_paraphrase_and_a_look_alike():
    eligible, matches = rank(
        [hit("other", SYMPTOMS, 0.65, fault="db_io_wait", component="database")]
    )
    assert matches[0].similarity < 0.8 and eligible == []
    # even a look-alike that reads and shows exactly the same never proposes its fix
    eligible, matches = rank([hit("twin", SYMPTOMS, 0.95, fault="db_io_wait")])
    assert matches[0].features["fault"] == 0.0 and eligible == []
    eligible, matches = rank([hit("same", SYMPTOMS, 0.65)])
    assert len(eligible) == 1 and matches[0].similarity >= 0.8
    assert "fault 1.00" in matches[0].explanation and "symptoms 1.00" in matches[0].explanation


def test_autonomy():
    assert autonomy_mode(sol("a", "low")) == DecisionMode.auto
    assert autonomy_mode(sol("a", "high")) == DecisionMode.approval
