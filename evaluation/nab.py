"""The Numenta Anomaly Benchmark: corpus loading and the NAB scorer.

Written from NAB's documented scoring rules (Lavin & Ahmad 2015, NAB wiki), not from its
code. For each file:

- the first 15 % of the rows (at most 750) are the probationary period: not scored;
- a window (from ``labels/combined_windows.json``) is a true positive if at least one
  detection falls inside it; only its *earliest* detection counts and earns
  ``tp_weight * sigmoid(position) / sigmoid(-1)``, where position runs from -1 at the
  window's first row to 0 just past its last row (earlier is better);
- a window without a detection costs ``fn_weight``;
- every detection outside all windows is a false positive that costs
  ``fp_weight * sigmoid(position past the previous window)`` (a full ``fp_weight`` if no
  window came before it, or if it is more than 3 window widths after one);

with ``sigmoid(y) = 2 / (1 + exp(5 y)) - 1``. The corpus score is normalised as
``100 * (raw - null) / (perfect - null)`` over all files, where the null detector never
fires and the perfect one fires on the first row of every window.

    corpus = load_corpus(nab_root)
    layouts = [FileLayout.build(f) for f in corpus]
    raw = sum(score_file(lay, detections[f.name], profile).raw for ...)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15
PROFILES_FILE = "config/profiles.json"
WINDOWS_FILE = "labels/combined_windows.json"
# NAB's profile keys and the short names we use on the command line
PROFILE_KEYS = {
    "standard": "standard",
    "reward_low_FP": "reward_low_FP_rate",
    "reward_low_FN": "reward_low_FN_rate",
}


@dataclass(frozen=True)
class Profile:
    """One NAB cost matrix."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class NabFile:
    """One data file with its labelled windows (timestamps as datetime64[ms])."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[np.datetime64, np.datetime64], ...]


@dataclass(frozen=True)
class FileScore:
    raw: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside every window (after probation)
    windows: int


def load_profiles(root: Path) -> dict[str, Profile]:
    data = json.loads((root / PROFILES_FILE).read_text())
    out = {}
    for short, key in PROFILE_KEYS.items():
        cm = data[key]["CostMatrix"]
        out[short] = Profile(short, cm["tpWeight"], cm["fpWeight"], cm["fnWeight"])
    return out


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()[1:]
    ts = np.array([ln.split(",", 1)[0] for ln in lines], dtype="datetime64[ms]")
    vals = np.array([float(ln.split(",", 1)[1]) for ln in lines], dtype=np.float64)
    return ts, vals


def corpus_names(root: Path) -> list[str]:
    """All file names of the corpus (``category/file.csv``), sorted."""
    return sorted(json.loads((root / WINDOWS_FILE).read_text()))


def load_corpus(root: Path, names: Iterable[str] | None = None) -> list[NabFile]:
    """Read the data files and their windows; ``names`` may be a subset."""
    windows = json.loads((root / WINDOWS_FILE).read_text())
    wanted = sorted(windows) if names is None else list(names)
    unknown = [n for n in wanted if n not in windows]
    if unknown:
        raise KeyError(f"not in the NAB corpus: {', '.join(unknown)}")
    out = []
    for name in wanted:
        ts, vals = _read_csv(root / "data" / name)
        wins = tuple(
            (np.datetime64(a.replace(" ", "T"), "ms"), np.datetime64(b.replace(" ", "T"), "ms"))
            for a, b in windows[name]
        )
        out.append(NabFile(name, ts, vals, wins))
    return out


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are never scored."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's reward curve: ~+0.987 at -1 (window start), 0 at 0, towards -1 after."""
    y = np.asarray(position, dtype=np.float64)
    val = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, val)


MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True)
class FileLayout:
    """Per-row facts of one file that do not depend on the detector.

    ``window_id[i]`` is the window row i is in (-1 if none); ``curve[i]`` the unweighted
    sigmoid value of a detection at row i (TP curve inside windows, FP curve outside);
    ``scored`` the windows that have at least one row after probation.
    """

    name: str
    n_rows: int
    probation: int
    window_id: np.ndarray
    curve: np.ndarray
    scored: tuple[int, ...]

    @classmethod
    def build(cls, f: NabFile) -> FileLayout:
        n = len(f.timestamps)
        window_id = np.full(n, -1, dtype=np.int64)
        curve = np.full(n, -1.0)  # before the first window: a full FP
        bounds = []
        for k, (start, end) in enumerate(f.windows):
            lo = int(np.searchsorted(f.timestamps, start, side="left"))
            hi = int(np.searchsorted(f.timestamps, end, side="right")) - 1
            if hi < lo:
                continue
            bounds.append((k, lo, hi))
            window_id[lo : hi + 1] = k
            width = hi - lo + 1
            idx = np.arange(lo, hi + 1)
            curve[lo : hi + 1] = scaled_sigmoid(-(hi - idx + 1) / width)
        for j, (_, lo, hi) in enumerate(bounds):
            nxt = bounds[j + 1][1] if j + 1 < len(bounds) else n
            width = hi - lo + 1
            idx = np.arange(hi + 1, nxt)
            if idx.size:
                # a one-row window would divide by zero: treat rows after it as far past
                pos = (idx - hi) / (width - 1) if width > 1 else np.full(idx.size, np.inf)
                curve[hi + 1 : nxt] = scaled_sigmoid(pos)
        prob = probation_length(n)
        scored = tuple(k for k, _, hi in bounds if hi >= prob)
        return cls(f.name, n, prob, window_id, curve, scored)


def score_file(layout: FileLayout, detections: np.ndarray, profile: Profile) -> FileScore:
    """Raw NAB score of boolean ``detections`` (one per row) under ``profile``."""
    det = np.asarray(detections, dtype=bool).copy()
    if det.shape != (layout.n_rows,):
        raise ValueError(f"{layout.name}: {det.shape[0]} detections for {layout.n_rows} rows")
    det[: layout.probation] = False
    raw = 0.0
    tp = fn = 0
    for k in layout.scored:
        hits = np.flatnonzero(det & (layout.window_id == k))
        if hits.size:
            tp += 1
            raw += profile.tp_weight * float(layout.curve[hits[0]]) / MAX_TP
        else:
            fn += 1
            raw -= profile.fn_weight
    fp_rows = det & (layout.window_id < 0)
    raw += profile.fp_weight * float(layout.curve[fp_rows].sum())
    return FileScore(raw, tp, fn, int(fp_rows.sum()), len(layout.scored))


def null_score(layout: FileLayout, profile: Profile) -> float:
    return -profile.fn_weight * len(layout.scored)


def perfect_score(layout: FileLayout, profile: Profile) -> float:
    return profile.tp_weight * len(layout.scored)


def normalised(raw: float, null: float, perfect: float) -> float:
    """NAB's 0 (null detector) .. 100 (perfect) scale."""
    return 100.0 * (raw - null) / (perfect - null)


def corpus_score(
    layouts: Sequence[FileLayout], detections: Sequence[np.ndarray], profile: Profile
) -> tuple[float, list[FileScore]]:
    """Normalised score over the files given, and the per-file raw scores."""
    per_file = [score_file(lay, d, profile) for lay, d in zip(layouts, detections, strict=True)]
    raw = sum(s.raw for s in per_file)
    null = sum(null_score(lay, profile) for lay in layouts)
    perfect = sum(perfect_score(lay, profile) for lay in layouts)
    return normalised(raw, null, perfect), per_file


def published_totals(root: Path, detector: str, profile: str) -> float | None:
    """The ``Totals`` raw score of a published detector's per-file score file."""
    path = root / "results" / detector / f"{detector}_{PROFILE_KEYS[profile]}_scores.csv"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("Totals"):
            return float(line.split(",")[4])
    return None


def published_per_file(root: Path, detector: str, profile: str) -> dict[str, dict[str, float]]:
    """Per-file rows (Score, TP, FP, FN, Total_Count) of a published score file."""
    path = root / "results" / detector / f"{detector}_{PROFILE_KEYS[profile]}_scores.csv"
    rows: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines()[1:]:
        parts = line.split(",")
        if parts[0] == "Totals":
            continue
        rows[parts[2]] = {
            "score": float(parts[4]),
            "tp": float(parts[5]),
            "fp": float(parts[7]),
            "fn": float(parts[8]),
            "rows": float(parts[9]),
        }
    return rows
