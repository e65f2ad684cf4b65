"""How alike a new problem is to a past case, and which solution to prefer. Pure functions.

    features = match_features(query, cosine, case_fault, ...)   # what matched, each in 0..1
    similarity = Calibration.load().score(features)             # P(same problem), 0..1

The text cosine (all-MiniLM-L6-v2) says how alike two descriptions read; on its own it
tops out around 0.65 for two write-ups of one fault in different styles and cannot tell a
fault from its look-alike. The structured features are the paper's case features:
- fault: 1 when the case's fault is the one the RCA named, else 0;
- symptoms: overlap coefficient |A & B| / min(|A|, |B|) of ``series:direction`` keys (an
  incident caught early shows fewer symptoms than a full write-up, so containment, not
  Jaccard, is fair);
- device: 1 same device type, 0.5 another device of the same component, 0 otherwise;
- environment: overlap coefficient of ``parameter=value`` pairs.
A feature one side does not carry is *unknown*, not zero. The combination is a logistic
model fitted on a labelled set of same / different problem pairs (knowledge/calibration.py,
weights in knowledge/calibration.json), so 0.8 means "at least 80 % likely the same
problem" and the threshold is a probability, not a guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
FEATURES = ("text", "fault", "symptoms", "device", "environment")
RISK_FACTOR = {"low": 1.0, "medium": 0.9, "high": 0.75}


def cosine_from_index_score(score: float) -> float:
    """Neo4j's cosine vector index reports (1 + cos) / 2; we reason in plain cosine."""
    return max(-1.0, min(1.0, 2.0 * score - 1.0))


def overlap(a: Collection[str], b: Collection[str]) -> float | None:
    """Overlap coefficient; None when either side has nothing to compare."""
    left, right = set(a), set(b)
    if not left or not right:
        return None
    return len(left & right) / min(len(left), len(right))


@dataclass(frozen=True)
class MatchQuery:
    """A problem to match: an RCA report's words and structure, or an operator's search."""

    text: str
    fault: str | None = None
    symptom_keys: tuple[str, ...] = ()
    device_type: str = ""
    component: str = ""
    environment: tuple[str, ...] = ()  # "parameter=value"


@dataclass(frozen=True)
class MatchFeatures:
    text: float
    fault: float | None = None
    symptoms: float | None = None
    device: float | None = None
    environment: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(v, 4)) for k, v in asdict(self).items()}

    def explain(self) -> str:
        shown = [f"text {self.text:.2f}"]
        shown += [
            f"{name} {value:.2f}"
            for name, value in asdict(self).items()
            if name != "text" and value is not None
        ]
        return ", ".join(shown)


def match_features(
    query: MatchQuery,
    cosine: float,
    case_fault: str,
    case_symptom_keys: Collection[str],
    case_device_type: str,
    case_component: str,
    case_environment: Collection[str],
) -> MatchFeatures:
    device: float | None = None
    if query.device_type and case_device_type:
        device = 1.0 if query.device_type == case_device_type else 0.0
    if device != 1.0 and query.component and case_component:
        device = 0.5 if query.component == case_component else (device or 0.0)
    return MatchFeatures(
        text=max(0.0, cosine),
        fault=(1.0 if query.fault == case_fault else 0.0) if query.fault and case_fault else None,
        symptoms=overlap(query.symptom_keys, case_symptom_keys),
        device=device,
        environment=overlap(query.environment, case_environment),
    )


class Calibration(BaseModel):
    """Logistic weights: P(same) = sigmoid(bias + w_text x text + sum w_f x (f - 0.5)).

    Known structured features are centred on 0.5 so that an unknown one (left out) counts
    as "no evidence either way" rather than as a mismatch.
    """

    model_config = ConfigDict(frozen=True)

    bias: float
    weights: dict[str, float]
    fitted_on: dict[str, object] = {}

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        return cls.model_validate(json.loads(path.read_text()))

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")

    def score(self, features: MatchFeatures) -> float:
        return sigmoid(self.bias + sum(self.weights[k] * x for k, x in design_row(features)))


def design_row(features: MatchFeatures) -> list[tuple[str, float]]:
    """The model's inputs: text as is, each known structured feature centred on 0.5."""
    row = [("text", features.text)]
    for name in FEATURES[1:]:
        value = getattr(features, name)
        row.append((name, 0.0 if value is None else value - 0.5))
    return row


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def solution_score(similarity: float, success_rate: float, risk: str) -> float:
    """Rank candidate fixes: how alike the case is x how often its fix worked x risk."""
    return similarity * success_rate * RISK_FACTOR.get(risk, RISK_FACTOR["high"])


def environment_pairs(environment: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(f"{k}={v}" for k, v in environment.items()))
