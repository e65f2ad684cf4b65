"""SMD, leave-one-machine-out: every setting is chosen on the other machines' labels.

For each machine held out in turn, the detector setting is the one with the best mean
point-wise F1 over the *other* machines, and the ranker setting the one with the best
mean HitRate ((@100 % + @150 %) / 2, per point) over the other machines' true-positive
rows under that detector; both are then scored once on the held-out machine. The
figures we report are those held-out scores only, averaged over machines (each machine
weighs the same). The grids below were committed before the reporting run (see
docs/EVALUATION.md "SMD, leave-one-machine-out").

Per machine, everything that does not depend on the choice is computed once and cached
(``cache_dir``): every detector setting's flagged rows and every ranker setting's
HitRate on every labelled row. The folds then only read those tables.

    result = evaluate_lomo(Path("../shared/datasets/smd"), ["machine-1-2", "machine-1-4"])
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.smd import Segment, load_machine, point_adjust, prf
from evaluation.smd_select import GAP, WINDOWS
from evaluation.smd_select import settings as drift_settings
from evaluation.smd_types import RankerSetting
from ml.attribution import DeviationRanker
from ml.forest import GroupForest

GRID_VERSION = 1  # bump when a grid or a table's meaning changes (invalidates the cache)
# detector: score family x false-alarm budget (share of training rows above the threshold;
# a union of two scores gives each half of it, as GroupForest does)
DETECTOR_FAMILIES = ("zmax", "forest", "forest|zmax", "forest|devmax", "zmax|devmax")
BUDGETS = (0.002, 0.005, 0.01, 0.02)
BASELINE_DETECTOR = "zmax@0.01"  # plain |z|: the largest |z| of a row, 1 % budget
# ranker: the drift-aware grid of evaluation.smd_select x the weight of the plain |z|
ABSOLUTE = (0.0, 0.5, 1.0, 2.0)
BASELINE_RANKER = "abs_z"
Progress = Callable[[str], None]
# (tables) -> (tables per detector whose hits hold extra rankers, all ranker keys, what
# the extra rankers are)
Extend = Callable[
    [list["MachineTable"]], tuple[Mapping[int, Sequence["MachineTable"]], list[str], str]
]


def detector_keys() -> list[str]:
    return [f"{f}@{b}" for f in DETECTOR_FAMILIES for b in BUDGETS]


def ranker_settings() -> dict[str, RankerSetting]:
    """Every ranker setting by a stable key; ``abs_z`` (the plain ranking) is one of them."""
    out: dict[str, RankerSetting] = {BASELINE_RANKER: {}}
    for setting in drift_settings(ABSOLUTE):
        out[json.dumps(setting, sort_keys=True)] = setting
    return out


@dataclass(frozen=True)
class MachineTable:
    """What the folds need of one machine. ``preds``: detector x test row (flagged);
    ``hits``: ranker x labelled-row entry x (@100, @150); ``entry_rows``: the test row of
    each entry (one entry per row of each segment)."""

    machine: str
    truth: np.ndarray
    segments: tuple[Segment, ...]
    preds: np.ndarray
    entry_rows: np.ndarray
    hits: np.ndarray


def _row_hits(contrib: np.ndarray, entries: np.ndarray, culprits: np.ndarray) -> np.ndarray:
    """HitRate@100 % and @150 % of each entry's ranking (``culprits``: entry x metric)."""
    order = np.argsort(-contrib[entries], axis=1, kind="stable")
    hit = np.take_along_axis(culprits, order, axis=1).cumsum(axis=1)
    g = culprits.sum(axis=1)
    out = np.empty((entries.size, 2), dtype=np.float32)
    for i, percent in enumerate((100, 150)):
        k = np.clip(np.floor(percent / 100.0 * g).astype(np.int64), 1, contrib.shape[1])
        out[:, i] = hit[np.arange(entries.size), k - 1] / g
    return out


def _detector_preds(
    train: np.ndarray, test: np.ndarray, devmax: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    forest = GroupForest([f"m{j}" for j in range(train.shape[1])]).fit(train)
    f_train, z_train = forest._parts(train)
    f_test, z_test = forest._parts(test)
    scores = {"zmax": (z_train, z_test), "forest": (f_train, f_test), "devmax": devmax}
    rows = []
    for key in detector_keys():
        family, budget = key.split("@")
        parts = family.split("|")
        q = 1.0 - float(budget) / len(parts)
        flagged = np.zeros(test.shape[0], dtype=bool)
        for p in parts:
            tr, te = scores[p]
            flagged |= te > np.quantile(tr, q)
        rows.append(flagged)
    return np.array(rows)


def machine_table(
    root: Path, machine: str, limit: int | None = None, say: Progress | None = None
) -> MachineTable:
    """Every detector's flags and every ranker's per-row HitRate for one machine. Fitted
    on ``train/`` only; the test rows have the training rows as their history."""
    train, test, truth, segs = load_machine(root, machine, limit)
    train = train.astype(np.float64)
    test = test.astype(np.float64)
    n = train.shape[0]
    history = np.vstack([train, test])
    spans = [np.arange(s.start, s.end) for s in segs]
    entries = np.concatenate(spans or [np.zeros(0)]).astype(np.int64)
    culprits = np.zeros((entries.size, train.shape[1]), dtype=bool)
    at = 0
    for s in segs:
        culprits[np.ix_(np.arange(at, at + s.end - s.start), list(s.dims))] = True
        at += s.end - s.start
    settings = ranker_settings()
    hits = np.zeros((len(settings), entries.size, 2), dtype=np.float32)
    keys = list(settings)
    devmax: tuple[np.ndarray, np.ndarray] | None = None
    for window in WINDOWS:
        base = DeviationRanker(window=window, gap=GAP).fit_scale(train)
        dev = base.deviation(history)
        absz = base.absolute_z(history[n:])
        if window == WINDOWS[0]:  # the plain ranking: |z| against training
            hits[keys.index(BASELINE_RANKER)] = _row_hits(absz, entries, culprits)
        fitted: dict[tuple[float, float], DeviationRanker] = {}
        for i, key in enumerate(keys):
            setting = settings[key]
            if not setting or setting["window"] != window:
                continue
            fit_key = (setting["quantile"], setting["corr"])
            if fit_key not in fitted:  # what fit learns depends on these (and the window)
                fitted[fit_key] = DeviationRanker(**setting).fit(train, train_deviation=dev[:n])
            ranker = fitted[fit_key].with_blame(
                setting["share"], setting["smooth"], setting["absolute"]
            )
            hits[i] = _row_hits(ranker.blame(dev[n:], absz), entries, culprits)
        if window == 360:  # the detector's drift score: the library default, no sharing
            own = DeviationRanker(window=360, gap=GAP, share=0.0).fit(train, dev[:n]).blame(dev)
            devmax = (own[:n].max(axis=1), own[n:].max(axis=1))
        if say:
            say(f"SMD {machine}: rankers with window {window} done")
    assert devmax is not None
    preds = _detector_preds(train, test, devmax)
    return MachineTable(machine, truth, tuple(segs), preds, entries, hits)


def _cache_path(cache_dir: Path, root: Path, machine: str, limit: int | None) -> Path:
    stamp = []
    for part in ("train", "test"):
        st = (root / part / f"{machine}.txt.gz").stat()
        stamp.append(f"{st.st_size}:{st.st_mtime_ns}")
    key = f"{GRID_VERSION}|{root.resolve()}|{machine}|{limit}|{'|'.join(stamp)}"
    return cache_dir / f"{machine}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def cached_table(
    root: Path, machine: str, limit: int | None, cache_dir: Path | None, say: Progress
) -> MachineTable:
    path = _cache_path(cache_dir, root, machine, limit) if cache_dir else None
    if path is not None and path.exists():
        z = np.load(path)
        _, _, _, segs = load_machine(root, machine, limit)
        return MachineTable(
            machine, z["truth"], tuple(segs), z["preds"], z["entry_rows"], z["hits"]
        )
    say(f"SMD {machine}: computing every setting's table (fit on train/, score test/)")
    table = machine_table(root, machine, limit, say)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            truth=table.truth,
            preds=table.preds,
            entry_rows=table.entry_rows,
            hits=table.hits,
        )
        tmp.replace(path)
    return table


# -- the folds: pure functions of the tables ------------------------------------------
def detection(t: MachineTable, d: int) -> dict[str, Any]:
    pred = t.preds[d]
    return {
        "point_wise": prf(pred, t.truth),
        "point_adjusted": prf(point_adjust(pred, t.truth), t.truth),
        "segments": len(t.segments),
        "segments_found": sum(bool(pred[s.start : s.end].any()) for s in t.segments),
    }


def ranking(t: MachineTable, r: int, d: int | None) -> dict[str, float | None]:
    """Mean HitRate per point over the true-positive rows of detector ``d`` (every
    labelled row when ``d`` is None)."""
    h = t.hits[r]
    if d is not None:
        h = h[t.preds[d][t.entry_rows]]
    if h.shape[0] == 0:
        return {"@100%": None, "@150%": None}
    return {"@100%": round(float(h[:, 0].mean()), 4), "@150%": round(float(h[:, 1].mean()), 4)}


def choose_detector(tables: Sequence[MachineTable]) -> int:
    """The detector setting with the best mean point-wise F1 over ``tables`` (a machine
    without a labelled row has no F1 and is left out)."""
    labelled = [t for t in tables if t.truth.any()]
    if not labelled:
        return 0
    f1 = [
        np.mean([detection(t, d)["point_wise"]["f1"] for t in labelled])
        for d in range(tables[0].preds.shape[0])
    ]
    return int(np.argmax(f1))


def choose_ranker(tables: Sequence[MachineTable], d: int) -> int:
    """The ranker setting with the best mean (HitRate@100 % + @150 %) / 2 over the
    true-positive rows of detector ``d``, averaged over ``tables`` (each weighs the same;
    a machine with no true positive is left out)."""
    per_machine = []
    for t in tables:
        tp = t.preds[d][t.entry_rows]
        if tp.any():
            per_machine.append(t.hits[:, tp, :].mean(axis=(1, 2)))
    if not per_machine:
        return 0
    return int(np.argmax(np.mean(per_machine, axis=0)))


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return round(float(np.mean(vals)), 4) if vals else None


def describe_ranker(key: str) -> Any:
    """A ranker key as JSON: its setting, or "abs_z"; an event ranker (``|event-``,
    :mod:`evaluation.smd_events`) with its mode."""
    base, _, mode = key.partition("|event-")
    setting = "abs_z" if base == BASELINE_RANKER else json.loads(base)
    return {"ranker": setting, "event": mode} if mode else setting


def lomo(
    tables: Sequence[MachineTable],
    rank_keys: Sequence[str] | None = None,
    under: Mapping[int, Sequence[MachineTable]] | None = None,
) -> dict[str, Any]:
    """Leave-one-machine-out over ``tables`` (at least 2). ``rank_keys``: the rankers
    of the tables' ``hits`` (default: :func:`ranker_settings`); ``under[d]``: the
    tables whose ``hits`` follow detector ``d``'s events, read by the folds that choose
    ``d`` (default: ``tables``)."""
    if len(tables) < 2:
        raise ValueError("leave-one-machine-out needs at least 2 machines")
    det_keys = detector_keys()
    rank_keys = list(rank_keys or ranker_settings())
    base_d = det_keys.index(BASELINE_DETECTOR)
    base_r = rank_keys.index(BASELINE_RANKER)
    per: dict[str, Any] = {}
    for i, t in enumerate(tables):
        others = [o for j, o in enumerate(tables) if j != i]
        d = choose_detector(others)
        view = under[d] if under is not None else tables
        r = choose_ranker([o for j, o in enumerate(view) if j != i], d)
        per[t.machine] = {
            "detector": det_keys[d],
            "ranker": describe_ranker(rank_keys[r]),
            **detection(t, d),
            "hitrate_per_point": ranking(view[i], r, d),
            "hitrate_all_labelled_rows": ranking(view[i], r, None),
            "abs_z_hitrate_per_point": ranking(t, base_r, d),
            "abs_z_hitrate_all_labelled_rows": ranking(t, base_r, None),
            "baseline_detector": detection(t, base_d),
            "abs_z_on_baseline_detector": ranking(t, base_r, base_d),
        }

    def mean_of(path: Callable[[dict[str, Any]], float | None]) -> float | None:
        return _mean([path(v) for v in per.values()])

    summary: dict[str, Any] = {}
    for name in (
        "hitrate_per_point",
        "hitrate_all_labelled_rows",
        "abs_z_hitrate_per_point",
        "abs_z_hitrate_all_labelled_rows",
        "abs_z_on_baseline_detector",
    ):
        summary[name] = {p: mean_of(lambda v, n=name, p=p: v[n][p]) for p in ("@100%", "@150%")}
    labelled = {t.machine for t in tables if t.truth.any()}  # F1 is undefined elsewhere
    for prefix, key in (("", None), ("baseline_detector_", "baseline_detector")):
        src = (lambda v: v) if key is None else (lambda v, k=key: v[k])
        for name in ("point_wise", "point_adjusted"):
            summary[f"{prefix}f1_{name}"] = _mean(
                [src(v)[name]["f1"] for m, v in per.items() if m in labelled]
            )
        summary[prefix + "segments_found"] = sum(src(v)["segments_found"] for v in per.values())
    summary["segments"] = sum(v["segments"] for v in per.values())
    d_all = choose_detector(tables)
    r_all = choose_ranker(under[d_all] if under is not None else tables, d_all)
    return {
        "machines": per,
        "mean": summary,
        "chosen_on_all_machines": {
            "detector": det_keys[d_all],
            "ranker": describe_ranker(rank_keys[r_all]),
            "note": "for the library default only; no reported figure uses it",
        },
    }


def evaluate_lomo(
    root: Path,
    machines: Sequence[str],
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    extend: Extend | None = None,
) -> dict[str, Any]:
    """Leave-one-machine-out. ``extend`` adds candidate rankers (round 2:
    :func:`evaluation.smd_events.evaluate_events`); round 1's held-out means, without
    them, are then reported beside (``round1``)."""
    say = progress or (lambda msg: None)
    started = time.monotonic()
    tables = [cached_table(root, m, limit, cache_dir, say) for m in machines]
    if extend is not None:
        under, keys, extra = extend(tables)
        out = lomo(tables, keys, under)
        out["round1"] = lomo(tables)["mean"]
    else:
        out, keys, extra = lomo(tables), list(ranker_settings()), ""
    out["protocol"] = {
        "name": "leave-one-machine-out",
        "detector": "best mean point-wise F1 on the other machines, among "
        f"{len(detector_keys())} settings ({', '.join(DETECTOR_FAMILIES)} x budgets "
        f"{list(BUDGETS)})",
        "ranker": "best mean (HitRate@100% + @150%)/2 per point on the other machines' "
        f"true-positive rows, among {len(keys)} settings{extra}",
        "baselines": f"detector {BASELINE_DETECTOR} (plain |z|), ranking by |z| against "
        "the training median",
        "grid_version": GRID_VERSION,
    }
    out["limit"] = limit
    out["run_time_s"] = round(time.monotonic() - started, 1)
    return out
