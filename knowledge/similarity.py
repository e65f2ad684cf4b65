"""How alike a new problem is to a past case, and which solution to prefer. Pure functions.

    similarity = 0.5 x text cosine + 0.5 x structured agreement

The text cosine (all-MiniLM-L6-v2) says how alike the two descriptions read; on its own it
tops out around 0.65 for two write-ups of the same fault of different length and style,
and cannot tell a fault from a look-alike. The structured part is the mean of what both
sides carry (the paper's case features: fault phenomenon, symptoms, ...):
- fault: 1 if the case's fault is the root cause the RCA named, else 0;
- symptoms: overlap coefficient |A & B| / min(|A|, |B|) of ``series:direction`` tags: an
  incident caught early shows fewer symptoms than the full write-up of a past case, so
  containment, not Jaccard, is the fair measure.
With neither on one side, the text alone decides.
"""

from __future__ import annotations

from collections.abc import Iterable

TEXT_WEIGHT = 0.5
RISK_FACTOR = {"low": 1.0, "medium": 0.9, "high": 0.75}


def cosine_from_index_score(score: float) -> float:
    """Neo4j's cosine vector index reports (1 + cos) / 2; we reason in plain cosine."""
    return max(-1.0, min(1.0, 2.0 * score - 1.0))


def overlap(a: Iterable[str], b: Iterable[str]) -> float:
    left, right = set(a), set(b)
    if not left or not right:
        return 0.0
    return len(left & right) / min(len(left), len(right))


def structured_agreement(
    fault: str | None, symptoms: Iterable[str], case_fault: str, case_symptoms: Iterable[str]
) -> float | None:
    """Mean of the structured features both sides have; None when they share none."""
    mine, theirs = set(symptoms), set(case_symptoms)
    parts = []
    if fault and case_fault:
        parts.append(1.0 if fault == case_fault else 0.0)
    if mine and theirs:
        parts.append(overlap(mine, theirs))
    return sum(parts) / len(parts) if parts else None


def combined_similarity(
    text_cosine: float,
    fault: str | None,
    symptoms: Iterable[str],
    case_fault: str,
    case_symptoms: Iterable[str],
) -> float:
    text = max(0.0, text_cosine)
    structured = structured_agreement(fault, symptoms, case_fault, case_symptoms)
    if structured is None:
        return text
    return TEXT_WEIGHT * text + (1 - TEXT_WEIGHT) * structured


def solution_score(similarity: float, success_rate: float, risk: str) -> float:
    """Rank candidate fixes: how alike the case is x how often its fix worked x risk."""
    return similarity * success_rate * RISK_FACTOR.get(risk, RISK_FACTOR["high"])
