"""Machine-learning detectors for analyze (scikit-learn, numpy).

- :class:`SeasonalBaseline` — per series, median/MAD per time-of-day bucket, O(1) per point;
- :class:`StreamingDetector` — per series of unknown shape, causal, self-calibrating
  (level, step and shape deviations against the series' own recent past);
- :class:`SequenceDetector` — per series, causal: a learnt model of normal sequences
  (:class:`ContextualDetector`, contexts of bit-pair facts) gated by the streaming
  detector's deviation, one alarm per event (NAB: 68.8 cross-validated);
- :class:`DeviationRanker` — which metrics explain a multivariate anomaly: deviation from
  each metric's recent baseline relative to its training behaviour, shared between
  correlated metrics; :func:`ml.attribution.accumulate_events` ranks a detected event by
  all its rows so far;
- :func:`rank_components` (:mod:`ml.component_rca`) — rule-free root cause: which
  component broke, from each series' deviation against its recent past and blame
  propagated along the dependency graph (personalised PageRank, or callers' symptoms
  shared among what they call: :mod:`ml.rca_walk`), with evidence;
- :class:`GroupForest` — IsolationForest over short windows of a group of series (a target
  or subsystem) with per-metric attribution (:meth:`GroupForest.attribute`);
- :class:`DetectorBank` — one StreamingDetector per (target, series), emitting
  :class:`SeriesEvent` (alarm with onset time and kind, or the start of STALE/NO_DATA);
- :func:`onset_index` — when a series started to deviate;
- :func:`save_model` / :func:`load_model` / :class:`RetrainSchedule` — persistence.

Thresholds are learnt from each model's training data (a quantile of its training scores,
i.e. a false-alarm budget), never constants. Bad input (NaN, gaps, flat lines) yields the
NO_DATA / STALE states of :class:`SeriesState`, never ANOMALOUS.
"""

from ml.attribution import DeviationRanker
from ml.bank import DetectorBank, SeriesEvent
from ml.baseline import ScoredBlock, SeasonalBaseline
from ml.component_rca import (
    ComponentScore,
    MetricDeviation,
    RcaSettings,
    metric_deviations,
    rank_components,
)
from ml.contextual import ContextualDetector, rest_period_alarms
from ml.forest import GroupForest, GroupScores
from ml.onset import elevated_level, onset_index, onset_order
from ml.persist import (
    FORMAT_VERSION,
    ModelFileError,
    ModelMeta,
    RetrainSchedule,
    load_model,
    retrain_due,
    save_model,
)
from ml.sequence import SequenceDetector, SequenceParams, sequence_alarms
from ml.types import Attribution, PointScore, SeriesState
from ml.univariate import StreamingDetector, StreamingParams, alarms_from_scores
from ml.windowed import WindowNovelty, window_novelty

__all__ = [
    "FORMAT_VERSION",
    "Attribution",
    "ComponentScore",
    "ContextualDetector",
    "DetectorBank",
    "DeviationRanker",
    "GroupForest",
    "GroupScores",
    "MetricDeviation",
    "ModelFileError",
    "ModelMeta",
    "PointScore",
    "RcaSettings",
    "RetrainSchedule",
    "ScoredBlock",
    "SeasonalBaseline",
    "SequenceDetector",
    "SequenceParams",
    "SeriesEvent",
    "SeriesState",
    "StreamingDetector",
    "StreamingParams",
    "WindowNovelty",
    "alarms_from_scores",
    "elevated_level",
    "load_model",
    "metric_deviations",
    "onset_index",
    "onset_order",
    "rank_components",
    "rest_period_alarms",
    "retrain_due",
    "save_model",
    "sequence_alarms",
    "window_novelty",
]
