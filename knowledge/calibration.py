"""Fit the hybrid similarity so that 0.8 separates "same problem" from "different problem".

The labelled set is built, not found: every hand-written query of
knowledge/labelled_queries.yaml (paraphrases, terse alerts with part of the symptoms,
customer wording, near misses of a neighbouring fault) against every seed case; a pair is
"same" when the case's fault is the query's. Each query counts twice, with the fault
named (as the RCA names it) and without (an operator's free-text search).

A logistic regression over the features of knowledge.similarity gives P(same). Precision
and recall at 0.8 are measured on held-out queries (grouped k-fold: a query and its two
modes are never both in training and test), then the weights are fitted on all pairs and
written to knowledge/calibration.json. ``mendloop kb calibrate`` reruns this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kernel.domain import Domain, symptom_keys
from kernel.errors import KnowledgeError
from kernel.models import Case
from knowledge.embedding import Embedder
from knowledge.seed import load_cases
from knowledge.similarity import (
    FEATURES,
    Calibration,
    MatchFeatures,
    MatchQuery,
    design_row,
    environment_pairs,
    match_features,
)

LABELLED_QUERIES = Path(__file__).resolve().parent / "labelled_queries.yaml"
THRESHOLD = 0.8
FOLDS = 5


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    fault: str
    query: MatchQuery


@dataclass(frozen=True)
class Pair:
    query_id: str
    named_fault: bool
    case_id: str
    features: MatchFeatures
    same: bool


def load_queries(
    path: Path = LABELLED_QUERIES, domain: Domain | None = None
) -> list[LabelledQuery]:
    domain = domain or Domain.load()
    try:
        entries = yaml.safe_load(path.read_text())["queries"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc
    queries = []
    for entry in entries:
        device = entry.get("device_type", "")
        queries.append(
            LabelledQuery(
                entry["id"],
                entry["fault"],
                MatchQuery(
                    text=entry["text"],
                    symptom_keys=tuple(symptom_keys(entry.get("symptoms", []))),
                    device_type=device,
                    component=domain.device_types.get(device, ""),
                    environment=environment_pairs(entry.get("environment", {})),
                ),
            )
        )
    return queries


def build_pairs(
    queries: list[LabelledQuery], cases: list[Case], embedder: Embedder, domain: Domain
) -> list[Pair]:
    query_vectors = np.array(embedder.embed_many([q.query.text for q in queries]))
    case_vectors = np.array(embedder.embed_many([c.text for c in cases]))
    cosines = query_vectors @ case_vectors.T
    pairs = []
    for qi, labelled in enumerate(queries):
        for named in (True, False):
            query = labelled.query
            if named:
                query = dataclasses.replace(query, fault=labelled.fault)
            for ci, case in enumerate(cases):
                features = match_features(
                    query,
                    float(cosines[qi, ci]),
                    case.fault,
                    symptom_keys(case.symptoms),
                    case.device_type,
                    domain.device_types.get(case.device_type, ""),
                    environment_pairs(case.environment),
                )
                pairs.append(
                    Pair(labelled.id, named, case.id, features, case.fault == labelled.fault)
                )
    return pairs


def _design(pairs: list[Pair]) -> np.ndarray:
    return np.array([[x for _, x in design_row(p.features)] for p in pairs])


def fit(pairs: list[Pair]) -> Calibration:
    # scikit-learn (~1 s to import) only for `mendloop kb calibrate`, never in the daemon
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    model.fit(_design(pairs), np.array([p.same for p in pairs]))
    return Calibration(
        bias=float(model.intercept_[0]),
        weights={name: float(w) for name, w in zip(FEATURES, model.coef_[0], strict=True)},
    )


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def top1(pairs: list[Pair], scores: np.ndarray) -> float:
    """Share of (query, mode) whose best-scored case has the query's fault."""
    best: dict[tuple[str, bool], tuple[float, bool]] = {}
    for pair, score in zip(pairs, scores, strict=True):
        key = (pair.query_id, pair.named_fault)
        if key not in best or score > best[key][0]:
            best[key] = (float(score), pair.same)
    return round(sum(same for _, same in best.values()) / len(best), 4)


def _fixed_weights(features: MatchFeatures) -> float:
    """The walking skeleton's guess, for comparison: 0.5 text + 0.5 mean of the known
    structured features."""
    known = [v for k, v in features.__dict__.items() if k != "text" and v is not None]
    return 0.5 * features.text + 0.5 * sum(known) / len(known) if known else features.text


def cross_validate(pairs: list[Pair], folds: int = FOLDS) -> np.ndarray:
    """Held-out P(same) for every pair: each fold's queries scored by a model fitted
    without them."""
    query_ids = sorted({p.query_id for p in pairs})
    fold_of = {qid: i % folds for i, qid in enumerate(query_ids)}
    scores = np.zeros(len(pairs))
    for fold in range(folds):
        train = [p for p in pairs if fold_of[p.query_id] != fold]
        model = fit(train)
        for i, pair in enumerate(pairs):
            if fold_of[pair.query_id] == fold:
                scores[i] = model.score(pair.features)
    return scores


def calibrate(
    embedder: Embedder, domain: Domain | None = None
) -> tuple[Calibration, dict[str, Any]]:
    """Fit on the labelled set; report held-out precision/recall at 0.8 per query mode."""
    domain = domain or Domain.load()
    queries, cases = load_queries(domain=domain), load_cases()
    pairs = build_pairs(queries, cases, embedder, domain)
    labels = np.array([p.same for p in pairs])
    held_out = cross_validate(pairs)
    report: dict[str, Any] = {
        "queries": len(queries),
        "cases": len(cases),
        "pairs": len(pairs),
        "same_pairs": int(labels.sum()),
        "threshold": THRESHOLD,
        "held_out": precision_recall(held_out, labels, THRESHOLD) | {"top1": top1(pairs, held_out)},
    }
    for named in (True, False):
        mask = np.array([p.named_fault == named for p in pairs])
        subset = [p for p in pairs if p.named_fault == named]
        report["held_out_fault_named" if named else "held_out_text_only"] = precision_recall(
            held_out[mask], labels[mask], THRESHOLD
        ) | {"top1": top1(subset, held_out[mask])}
    text_only = np.array([p.features.text for p in pairs])
    report["text_cosine_alone"] = precision_recall(text_only, labels, THRESHOLD)
    fixed = np.array([_fixed_weights(p.features) for p in pairs])
    report["uncalibrated_half_and_half"] = precision_recall(fixed, labels, THRESHOLD)
    final = fit(pairs)
    return final.model_copy(update={"fitted_on": report}), report
