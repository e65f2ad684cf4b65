"""Decide: from an RCA report to the fix that worked before, and how much autonomy to use.

    decider = Decider(graph, embedder, settings.match_min_similarity, library=lib)
    outcome = decider.decide(report)
    outcome.decision        # Decision, or None with outcome.reason saying why
    decider.similar(report) # an unexplained report: the most similar past cases (shown only)
    decider.refusals        # Counter: graph solutions refused, by reason

The report becomes a MatchQuery (its words, the fault it names, its symptoms, the
component); knowledge.matcher finds the nearest past cases through Neo4j's vector index
and scores each with the calibrated hybrid similarity (knowledge.similarity). Only cases
that ended *resolved*, score at least ``min_similarity`` and do not contradict the fault
the RCA named (a look-alike's fix treats another fault) may propose their solution;
among them the solution with the best similarity x success rate x risk wins.

A report no rule explains (``RCAReport.unexplained``, or no fired candidate) is never
decided: nobody named its fault, so no fix is chosen for it; ``similar`` gives the past
cases most like it, for the person it is escalated to.

The graph is outside data: what a decision runs (playbook, rollback, parameters: the
RemediationPlan, loop/planner.py) and its risk come from the solution library
(loop/solutions.py), never from the graph's Solution node (a copy of the library entry
made at seed time, whose track record is what the graph adds). A chosen solution the
library does not know, or whose graph record names another playbook or rollback than the
library, is refused (no decision: the incident is escalated with the reason), logged and
counted in ``refusals``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kernel.domain import symptom_keys
from kernel.models import Case, Decision, DecisionMode, Match, RCAReport, Solution
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from knowledge.matcher import Matcher, Scored
from knowledge.similarity import MatchQuery, solution_score
from loop.solutions import SolutionSpec

log = logging.getLogger("mendloop.decide")

SIMILAR_K = 3  # past cases shown with an unexplained fault
# (solution with its graph track record, fault, target) -> (mode, why); loop/policy.py
Autonomy = Callable[[Solution, str, str], tuple[DecisionMode, str]]


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


def match_query(report: RCAReport) -> MatchQuery:
    """What an RCA report says about the problem, in the terms cases are matched on."""
    top = report.top
    return MatchQuery(
        text=report.text(),
        fault=top.fault if top else None,
        symptom_keys=tuple(symptom_keys(report.symptoms())),
        component=top.component if top else "",
    )


def unexplained_query(report: RCAReport) -> MatchQuery | None:
    """What an unexplained report says, for finding similar past cases: the ranking's
    words and symptoms and its leading component, no fault (nobody named one)."""
    fault = report.unexplained
    if fault is None or fault.top is None:
        return None
    return MatchQuery(
        text=fault.text() or fault.headline(),
        symptom_keys=tuple(symptom_keys(fault.symptoms())),
        component=fault.top.component,
    )


def autonomy_mode(solution: Solution) -> DecisionMode:
    """Without an autonomy policy only risk decides: high risk waits for a person."""
    return DecisionMode.approval if solution.risk == "high" else DecisionMode.auto


def choose_autonomy(
    solution: Solution, fault: str, target: str, autonomy: Autonomy | None = None
) -> tuple[DecisionMode, str]:
    """How far to trust a fix, and why. With ``autonomy`` (the daemon passes the earned
    autonomy of loop/policy.py, persisted in SQL) the solution's level for this fault and
    target class decides; without it, ``autonomy_mode``."""
    if autonomy is not None:
        return autonomy(solution, fault, target)
    mode = autonomy_mode(solution)
    return mode, f"risk {solution.risk} -> {mode} (no autonomy policy)"


def library_mismatch(solution: Solution, spec: SolutionSpec | None) -> tuple[str, str] | None:
    """Pure: (reason key, why) when the graph's record of a solution may not be run as the
    library defines it; None when the library knows it and the graph agrees."""
    if spec is None:
        return "not_in_library", f"{solution.id!r} is not in the solution library"
    for field_name in ("playbook", "rollback_playbook"):
        graph_value, library_value = getattr(solution, field_name), getattr(spec, field_name)
        if graph_value != library_value:
            return "library_mismatch", (
                f"{solution.id}: the graph names {field_name} {graph_value!r} but the library "
                f"says {library_value!r}; refused (the library is the source of truth)"
            )
    return None


def with_library_risk(solution: Solution, library: Mapping[str, SolutionSpec]) -> Solution:
    """The graph's record of a solution with the library's risk, the one source of risk (a
    solution the library does not know keeps the graph's: chosen, it is refused anyway)."""
    spec = library.get(solution.id)
    if spec is None or spec.risk == solution.risk:
        return solution
    return solution.model_copy(update={"risk": spec.risk})


def rank_candidates(
    scored: list[Scored],
    min_similarity: float,
    library: Mapping[str, SolutionSpec] | None = None,
) -> tuple[list[Candidate], list[Match]]:
    """Pure: the eligible candidates (best fix first) and every match (most similar first).
    With ``library``, risk is the library's (the daemon's case); without, the graph's."""
    candidates = []
    for s in scored:
        solution = s.candidate.solution
        if library is not None:
            solution = with_library_risk(solution, library)
        score = solution_score(s.similarity, solution.success_rate, solution.risk)
        candidates.append(Candidate(s.candidate.case, solution, s.as_match(), score))
    matches = sorted((c.match for c in candidates), key=lambda m: m.similarity, reverse=True)
    eligible = [
        c
        for c in candidates
        if c.case.outcome == "resolved"
        and c.match.similarity >= min_similarity
        and c.match.features.get("fault") != 0.0  # a look-alike's fix treats another fault
    ]
    eligible.sort(key=lambda c: (c.score, c.match.similarity), reverse=True)
    return eligible, matches


class Decider:
    def __init__(
        self,
        graph: KnowledgeGraph,
        embedder: Embedder,
        min_similarity: float,
        autonomy: Autonomy | None = None,
        *,
        library: Mapping[str, SolutionSpec],
    ) -> None:
        self.matcher = Matcher(graph, embedder)
        self.min_similarity = min_similarity
        self.autonomy = autonomy
        self.library = library
        self.refusals: Counter[str] = Counter()

    def similar(self, report: RCAReport, k: int = SIMILAR_K) -> tuple[Match, ...]:
        """The past cases most like an unexplained report, most similar first: shown to
        the person it is escalated to, never applied (no solution is chosen from them)."""
        query = unexplained_query(report)
        if query is None:
            return ()
        scored, _ = self.matcher.match(query)
        return tuple(sorted((s.as_match() for s in scored), key=lambda m: -m.similarity)[:k])

    def decide(self, report: RCAReport) -> DecideOutcome:
        if report.unexplained is not None or not report.explained:
            # a fault nobody named is never matched to a fix (loop/steps/analysis.py
            # escalates it with similar cases): refused here too, whoever asks
            return DecideOutcome(None, "no rule names the fault: nothing is run for it")
        if report.top is None:
            return DecideOutcome(None, "the RCA report names no root cause")
        scored, took = self.matcher.match(match_query(report))
        eligible, matches = rank_candidates(scored, self.min_similarity, self.library)
        timing = {"embed_ms": took.embed_ms, "query_ms": took.query_ms + took.score_ms}
        if not eligible:
            best = f"best {matches[0].similarity:.2f} ({matches[0].case_id})" if matches else "none"
            return DecideOutcome(
                None,
                f"no resolved case with similarity >= {self.min_similarity:.2f}; {best}",
                tuple(matches[:3]),
                **timing,
            )
        chosen = eligible[0]
        spec = self.library.get(chosen.solution.id)
        refused = library_mismatch(chosen.solution, spec)
        if refused is not None:
            key, why = refused
            self.refusals[key] += 1
            log.warning("incident %s: decision refused: %s", report.incident_id, why)
            return DecideOutcome(None, f"decision refused: {why}", tuple(matches[:3]), **timing)
        fault = report.top.fault
        mode, why = choose_autonomy(chosen.solution, fault, report.target, self.autonomy)
        decision = Decision(
            incident_id=report.incident_id,
            solution_id=chosen.solution.id,
            mode=mode,
            reason=(
                f"case {chosen.case.id} similarity {chosen.match.similarity:.2f}; "
                f"{chosen.solution.id} success rate {chosen.solution.success_rate:.2f}, "
                f"risk {chosen.solution.risk} -> {mode}; {why}"
            ),
            match=chosen.match,
        )
        return DecideOutcome(decision, decision.reason, tuple(matches[:3]), **timing)
