"""Decide: from an RCA report to the fix that worked before, and how much autonomy to use.

    decider = Decider(graph, embedder, settings.match_min_similarity, base_vars)
    outcome = decider.decide(report)
    outcome.decision        # Decision, or None with outcome.reason saying why

The report's text is embedded and the nearest past cases come from Neo4j's vector index;
each is re-scored with the structured symptom overlap (knowledge.similarity). Only cases
that ended *resolved* and score at least ``min_similarity`` may propose their solution;
among them the solution with the best similarity x success rate x risk wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.similarity import combined_similarity, solution_score
from loop.models import Case, Decision, DecisionMode, Match, RCAReport, Solution

CANDIDATES_K = 10


@dataclass(frozen=True)
class Candidate:
    case: Case
    solution: Solution
    match: Match
    score: float


@dataclass(frozen=True)
class DecideOutcome:
    decision: Decision | None
    reason: str
    matches: tuple[Match, ...] = field(default=())
    embed_ms: float = 0.0
    query_ms: float = 0.0


def autonomy_mode(solution: Solution) -> DecisionMode:
    """How far to trust a fix: low/medium risk runs on its own, high risk waits for a person.

    Earned autonomy from track record (suggest -> approval -> auto) comes with the
    remediation issue; the seam is here.
    """
    return DecisionMode.approval if solution.risk == "high" else DecisionMode.auto


def rank_candidates(
    report: RCAReport, hits: list[tuple[Case, Solution, float]], min_similarity: float
) -> tuple[list[Candidate], list[Match]]:
    """Pure: score every hit; return the eligible candidates (best first) and all matches."""
    symptoms = report.symptoms()
    fault = report.top.fault if report.top else None
    scored: list[Candidate] = []
    for case, solution, cosine in hits:
        similarity = combined_similarity(cosine, fault, symptoms, case.fault, case.symptoms)
        match = Match(
            case_id=case.id,
            similarity=round(similarity, 4),
            solution_id=solution.id,
            solution_success_rate=round(solution.success_rate, 4),
            explanation=(
                f"text cosine {cosine:.2f}; fault {case.fault} "
                f"{'=' if case.fault == fault else '!='} {fault}; symptoms "
                f"{len(set(symptoms) & set(case.symptoms))} shared of {len(set(symptoms))}; "
                f"case '{case.title}' ({case.outcome}) fixed by {solution.id}"
            ),
        )
        scored.append(
            Candidate(
                case,
                solution,
                match,
                solution_score(similarity, solution.success_rate, solution.risk),
            )
        )
    matches = sorted((c.match for c in scored), key=lambda m: m.similarity, reverse=True)
    eligible = [
        c for c in scored if c.case.outcome == "resolved" and c.match.similarity >= min_similarity
    ]
    eligible.sort(key=lambda c: (c.score, c.match.similarity), reverse=True)
    return eligible, matches


class Decider:
    def __init__(
        self,
        graph: KnowledgeGraph,
        embedder: Embedder,
        min_similarity: float,
        base_vars: dict[str, str | int | float | bool],
    ) -> None:
        self.graph = graph
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.base_vars = base_vars

    def decide(self, report: RCAReport) -> DecideOutcome:
        if report.top is None:
            return DecideOutcome(None, "the RCA report names no root cause")
        t0 = time.perf_counter()
        vector = self.embedder.embed(report.text())
        t1 = time.perf_counter()
        hits = self.graph.similar_cases(vector, k=CANDIDATES_K)
        t2 = time.perf_counter()
        eligible, matches = rank_candidates(report, hits, self.min_similarity)
        timing = {"embed_ms": (t1 - t0) * 1000, "query_ms": (t2 - t1) * 1000}
        if not eligible:
            best = f"best {matches[0].similarity:.2f} ({matches[0].case_id})" if matches else "none"
            return DecideOutcome(
                None,
                f"no resolved case with similarity >= {self.min_similarity:.2f}; {best}",
                tuple(matches[:3]),
                **timing,
            )
        chosen = eligible[0]
        mode = autonomy_mode(chosen.solution)
        decision = Decision(
            incident_id=report.incident_id,
            solution_id=chosen.solution.id,
            playbook=chosen.solution.playbook,
            rollback_playbook=chosen.solution.rollback_playbook,
            extra_vars={**self.base_vars, "target": report.target},
            mode=mode,
            reason=(
                f"case {chosen.case.id} similarity {chosen.match.similarity:.2f}; "
                f"{chosen.solution.id} success rate {chosen.solution.success_rate:.2f}, "
                f"risk {chosen.solution.risk} -> {mode}"
            ),
            match=chosen.match,
        )
        return DecideOutcome(decision, decision.reason, tuple(matches[:3]), **timing)
