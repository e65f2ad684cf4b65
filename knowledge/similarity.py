"""How alike a new problem is to a past case, and which solution to prefer. Pure functions.

similarity = 0.7 * text cosine + 0.3 * symptom Jaccard (when both sides list symptoms;
otherwise text alone). The text says *what* broke in words, the symptoms pin *which*
metrics moved which way; either alone confuses look-alikes (DESIGN.md: vector index +
structured overlap).
"""

from __future__ import annotations

from collections.abc import Iterable

TEXT_WEIGHT = 0.7
SYMPTOM_WEIGHT = 0.3
RISK_FACTOR = {"low": 1.0, "medium": 0.9, "high": 0.75}


def cosine_from_index_score(score: float) -> float:
    """Neo4j's cosine vector index reports (1 + cos) / 2; we reason in plain cosine."""
    return max(-1.0, min(1.0, 2.0 * score - 1.0))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    left, right = set(a), set(b)
    if not left and not right:
        return 0.0
    return len(left & right) / len(left | right)


def combined_similarity(
    text_cosine: float, symptoms: Iterable[str], case_symptoms: Iterable[str]
) -> float:
    mine, theirs = set(symptoms), set(case_symptoms)
    text = max(0.0, text_cosine)
    if not mine or not theirs:
        return text
    return TEXT_WEIGHT * text + SYMPTOM_WEIGHT * jaccard(mine, theirs)


def solution_score(similarity: float, success_rate: float, risk: str) -> float:
    """Rank candidate fixes: how alike the case is x how often its fix worked x risk."""
    return similarity * success_rate * RISK_FACTOR.get(risk, RISK_FACTOR["high"])
