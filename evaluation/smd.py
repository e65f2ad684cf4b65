"""SMD (Server Machine Dataset): detection F1 and root-cause metric localisation.

For each machine the :class:`ml.forest.GroupForest` is fitted on ``train/`` only; its
threshold is the ``1 - false_alarm_rate`` quantile of the *training* scores. It then
scores ``test/`` and is compared with ``test_label`` (point-wise and point-adjusted F1)
and ``interpretation_label`` (HitRate@100 % / @150 %: of the ground-truth metrics G of a
detected anomaly, how many are among the top ``floor(P% * |G|)`` metrics of our ranking).

The metrics are ranked by :class:`ml.attribution.DeviationRanker` (each metric's
deviation from its own recent baseline, in units of how far it usually strays in
training, averaged over the row and the 4 before it), fitted on ``train/`` only; the
test rows are scored with the training rows as their history (train precedes test in
time). The earlier ranking, by |robust z| against the training baseline, is reported
next to it (``*_abs_z``).

HitRate is computed two ways: per detected anomalous point (each true-positive row ranks
the metrics by its own scores; OmniAnomaly's per-point reading), and per detected segment
(one ranking from the mean score over the segment's flagged rows).

    result = evaluate_machine(Path("../shared/datasets/smd"), "machine-1-6")
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.smd_types import Segment
from ml.attribution import DeviationRanker
from ml.forest import GroupForest

MACHINES = ("machine-1-6", "machine-2-1")
PUBLISHED = {
    "OmniAnomaly HitRate@150% (SMD, 28 machines)": "up to 0.89",
    "OmniAnomaly best-F1 point-adjusted (SMD, 28 machines)": 0.9620,
}


def parse_interpretation(text: str) -> list[Segment]:
    """``start-end:d1,d2,...`` lines; rows 0-based end-exclusive, metrics 1-based."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        span, dims = line.split(":")
        a, b = span.split("-")
        out.append(Segment(int(a), int(b), tuple(int(d) - 1 for d in dims.split(","))))
    return out


def load_machine(root: Path, machine: str, limit: int | None = None):
    """(train, test, labels, segments); ``limit`` truncates train and test (for tests)."""
    train = np.loadtxt(root / "train" / f"{machine}.txt.gz", delimiter=",", dtype=np.float32)
    test = np.loadtxt(root / "test" / f"{machine}.txt.gz", delimiter=",", dtype=np.float32)
    labels = np.loadtxt(root / "test_label" / f"{machine}.txt", dtype=np.int64).astype(bool)
    segs = parse_interpretation((root / "interpretation_label" / f"{machine}.txt").read_text())
    if limit is not None:
        train, test, labels = train[:limit], test[:limit], labels[:limit]
        segs = [Segment(s.start, min(s.end, limit), s.dims) for s in segs if s.start < limit]
    return train, test, labels, segs


# -- pure metrics ---------------------------------------------------------------------
def prf(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def label_runs(truth: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    t = np.concatenate([[False], np.asarray(truth, dtype=bool), [False]])
    d = np.diff(t.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def point_adjust(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The literature's adjustment: a labelled run with any flagged row counts as all
    flagged. Inflates scores; always reported next to the point-wise figure."""
    out = np.asarray(pred, dtype=bool).copy()
    for a, b in label_runs(truth):
        if out[a:b].any():
            out[a:b] = True
    return out


def hit_rate(ranking: Sequence[int], truth: Sequence[int], percent: float) -> float:
    """|top-floor(P% |G|) of ranking ∩ G| / |G|."""
    g = set(truth)
    k = math.floor(percent / 100.0 * len(g))
    return len(set(list(ranking)[:k]) & g) / len(g)


# -- evaluation -------------------------------------------------------------------------
def _hit_rates(
    contrib: np.ndarray, pred: np.ndarray, segs: Sequence[Segment]
) -> tuple[dict[int, list[float]], dict[int, list[float]], int]:
    """HitRate@100/150 % per flagged row and per detected segment, from ``contrib`` (rows
    x metrics, higher = more to blame)."""
    per_point: dict[int, list[float]] = {100: [], 150: []}
    per_segment: dict[int, list[float]] = {100: [], 150: []}
    detected = 0
    for s in segs:
        flagged = np.flatnonzero(pred[s.start : s.end]) + s.start
        if flagged.size == 0:
            continue
        detected += 1
        seg_rank = np.argsort(-contrib[flagged].mean(axis=0), kind="stable")
        for p in (100, 150):
            per_segment[p].append(hit_rate(seg_rank.tolist(), s.dims, p))
        for row in np.argsort(-contrib[flagged], axis=1, kind="stable"):
            for p in (100, 150):
                per_point[p].append(hit_rate(row.tolist(), s.dims, p))
    return per_point, per_segment, detected


def evaluate_machine(
    root: Path,
    machine: str,
    false_alarm_rate: float = 0.01,
    limit: int | None = None,
    select: str = "synthetic",
) -> dict[str, Any]:
    """``select``: how the ranker's setting is chosen: ``synthetic`` on faults injected
    into ``train/`` (:mod:`evaluation.smd_select`), or ``fixed``, the library default
    (chosen on these machines' labels; reported next to it as ``*_fixed_setting``)."""
    from evaluation.smd_select import select_ranker  # it imports this module's types

    if select not in ("synthetic", "fixed"):
        raise ValueError(f"select must be 'synthetic' or 'fixed', not {select!r}")
    started = time.monotonic()
    train, test, truth, segs = load_machine(root, machine, limit)
    metrics = [f"m{j + 1}" for j in range(train.shape[1])]
    forest = GroupForest(metrics, false_alarm_rate=false_alarm_rate).fit(train)
    result = forest.score(test)
    pred = result.anomalous
    out: dict[str, Any] = {
        "train_rows": int(train.shape[0]),
        "test_rows": int(test.shape[0]),
        "threshold": round(forest.threshold, 6),
        "point_wise": prf(pred, truth),
        "point_adjusted": prf(point_adjust(pred, truth), truth),
    }
    # for context only: the best F1 over thresholds, which looks at the test labels
    qs = np.unique(np.quantile(result.scores, np.linspace(0.5, 0.999, 200)))
    best = max((prf(point_adjust(result.scores > q, truth), truth)["f1"], float(q)) for q in qs)
    out["point_adjusted_best_f1_label_tuned"] = best[0]
    history = np.vstack([train, test])
    if select == "synthetic":
        setting, table = select_ranker(train)
        out["ranker_setting"] = setting
        out["ranker_selection_top"] = table[:5]
        rankings = {"": DeviationRanker(**setting), "_fixed_setting": DeviationRanker()}
    else:
        out["ranker_setting"] = "fixed"
        rankings = {"": DeviationRanker()}
    contribs = {
        suffix: r.fit(train).scores(history)[train.shape[0] :] for suffix, r in rankings.items()
    }
    contribs["_abs_z"] = np.nan_to_num(np.abs(forest.zscores(test)), nan=0.0)
    detected = 0
    for suffix, contrib in contribs.items():
        per_point, per_segment, detected = _hit_rates(contrib, pred, segs)
        for name, d in (("hitrate_per_point", per_point), ("hitrate_per_segment", per_segment)):
            out[name + suffix] = {
                f"@{p}%": round(float(np.mean(v)), 4) if v else None for p, v in d.items()
            }
    out["segments"] = len(segs)
    out["segments_detected"] = detected
    out["run_time_s"] = round(time.monotonic() - started, 1)
    return out


def evaluate_smd(
    root: Path,
    machines: Sequence[str] = MACHINES,
    false_alarm_rate: float = 0.01,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    select: str = "synthetic",
) -> dict[str, Any]:
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    per = {}
    for m in machines:
        say(f"SMD {m}: fitting on train/ (ranker setting: {select}), scoring test/")
        per[m] = evaluate_machine(root, m, false_alarm_rate, limit, select)
    keys = [
        f"hitrate_per_{unit}{suffix}"
        for suffix in ("", "_fixed_setting", "_abs_z")
        for unit in ("point", "segment")
    ]
    mean = {
        k: {
            p: round(float(np.mean([per[m][k][p] for m in per if per[m][k][p] is not None])), 4)
            for p in ("@100%", "@150%")
        }
        for k in keys
        if any(k in per[m] and per[m][k]["@150%"] is not None for m in per)
    }
    return {
        "machines": per,
        "mean": mean,
        "false_alarm_rate": false_alarm_rate,
        "ranker_setting_chosen_on": (
            "synthetic faults injected into train/ (evaluation/smd_select.py)"
            if select == "synthetic"
            else "the library default, chosen on these machines' interpretation labels"
        ),
        "published": PUBLISHED,
        "run_time_s": round(time.monotonic() - started, 1),
    }
