"""Find the past cases most like a problem: vector index for candidates, then the calibrated
hybrid score over their structured fields (returned by the same round trip).

    matcher = Matcher(graph, embedder)
    scored, timing = matcher.match(MatchQuery(text=..., fault=..., symptom_keys=...))
    scored[0].similarity, scored[0].features.explain()
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kernel.errors import GraphUnavailable
from kernel.models import Match
from knowledge.embedding import Embedder
from knowledge.graph import Candidate, KnowledgeGraph
from knowledge.similarity import Calibration, MatchFeatures, MatchQuery, match_features

CANDIDATES_K = 50


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    features: MatchFeatures
    similarity: float

    def as_match(self) -> Match:
        case, solution = self.candidate.case, self.candidate.solution
        return Match(
            case_id=case.id,
            similarity=round(self.similarity, 4),
            solution_id=solution.id,
            solution_success_rate=round(solution.success_rate, 4),
            explanation=(
                f"{self.features.explain()}; case '{case.title}' ({case.fault}, "
                f"{case.outcome}) fixed by {solution.id}"
            ),
            features=self.features.as_dict(),
        )


def score_candidates(
    query: MatchQuery, candidates: list[Candidate], calibration: Calibration
) -> list[Scored]:
    """Pure: the hybrid score of every candidate, most similar first."""
    scored = []
    for hit in candidates:
        features = match_features(
            query,
            hit.cosine,
            hit.case.fault,
            hit.symptom_keys,
            hit.case.device_type,
            hit.component,
            [f"{k}={v}" for k, v in hit.case.environment.items()],
        )
        scored.append(Scored(hit, features, calibration.score(features)))
    scored.sort(key=lambda s: (s.similarity, s.candidate.cosine), reverse=True)
    return scored


@dataclass
class MatchTiming:
    embed_ms: float = 0.0
    query_ms: float = 0.0
    score_ms: float = 0.0


class Matcher:
    def __init__(
        self,
        graph: KnowledgeGraph,
        embedder: Embedder,
        calibration: Calibration | None = None,
        k: int = CANDIDATES_K,
        cache: bool = True,
        retry_s: float = 30.0,
    ) -> None:
        self.graph = graph
        self.embedder = embedder
        self.calibration = calibration or Calibration.load()
        self.k = k
        self.cache = cache
        self.retry_s = retry_s

    def match(self, query: MatchQuery) -> tuple[list[Scored], MatchTiming]:
        t0 = time.perf_counter()
        vector = self.embedder.embed_many([query.text], cache=self.cache)[0]
        t1 = time.perf_counter()
        candidates = self._candidates(vector)
        t2 = time.perf_counter()
        scored = score_candidates(query, candidates, self.calibration)
        t3 = time.perf_counter()
        return scored, MatchTiming((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)

    def _candidates(self, vector: list[float]) -> list[Candidate]:
        """A read is safe to repeat: ride out a Neo4j restart for up to ``retry_s``."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.5
        while True:
            try:
                return self.graph.candidates(vector, k=self.k)
            except GraphUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
