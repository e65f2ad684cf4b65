"""SMD round 2 (issue 17): rankings that rest on the whole detected event so far.

At a flagged row the metrics are ranked by the mean (or the maximum) of each metric's
scores over the flagged rows of its event so far (an event: flagged rows less than
``EVENT_GAP`` rows apart; :func:`ml.attribution.accumulate_events`), not by the row's
own scores alone. Causal: a row never sees a later one.

These rankings join the candidates of the leave-one-machine-out choice
(:mod:`evaluation.smd_cv`): every drift-aware ranker setting without the |z| blend (the
351 of the synthetic grid, and the plain |z|) x ``EVENT_MODES``. Events are the flagged
rows of a detector, so their HitRate is computed for the detectors that some fold
chooses (the detector choice does not depend on the ranking). Per machine the table is
computed once and cached beside the round-1 tables.

    result = evaluate_events(root, machines, limit, cache_dir, progress)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.smd import load_machine
from evaluation.smd_cv import (
    MachineTable,
    _row_hits,
    choose_detector,
    evaluate_lomo,
    ranker_settings,
)
from evaluation.smd_cv import _cache_path as base_cache_path
from evaluation.smd_select import GAP
from evaluation.smd_select import GRID as DRIFT_GRID
from ml.attribution import DeviationRanker, accumulate_events

EVENT_MODES = ("mean", "max")
EVENT_GAP = 10  # rows; the earlier event-accumulation attempt's, fixed before any run
GRID_VERSION = 1
Progress = Callable[[str], None]


def event_ranker_keys() -> list[str]:
    """The round-1 ranker keys that get event modes: no |z| blend, and the plain |z|."""
    return [
        k for k, s in ranker_settings().items() if not s or s.get("absolute", 0.0) == 0.0
    ]


def event_hits(
    root: Path, table: MachineTable, detectors: Sequence[int], limit: int | None
) -> np.ndarray:
    """HitRate per labelled-row entry (@100, @150) of every event ranker, for each of
    ``detectors``' events: (detectors, modes, rankers, entries, 2)."""
    train, test, _, _ = load_machine(root, table.machine, limit)
    train = train.astype(np.float64)
    test = test.astype(np.float64)
    n = train.shape[0]
    history = np.vstack([train, test])
    keys = event_ranker_keys()
    settings = ranker_settings()
    culprits = np.zeros((table.entry_rows.size, train.shape[1]), dtype=bool)
    _, _, _, segs = load_machine(root, table.machine, limit)
    at = 0
    for s in segs:
        culprits[np.ix_(np.arange(at, at + s.end - s.start), list(s.dims))] = True
        at += s.end - s.start
    out = np.zeros(
        (len(detectors), len(EVENT_MODES), len(keys), table.entry_rows.size, 2), np.float32
    )
    for window in DRIFT_GRID["window"]:
        base = DeviationRanker(window=window, gap=GAP).fit_scale(train)
        dev = base.deviation(history)
        absz = base.absolute_z(history[n:])
        fitted: dict[tuple[float, float], DeviationRanker] = {}
        for i, key in enumerate(keys):
            setting = settings[key]
            if not setting:
                if window != DRIFT_GRID["window"][0]:
                    continue
                scores = absz
            elif setting["window"] != window:
                continue
            else:
                fit_key = (setting["quantile"], setting["corr"])
                if fit_key not in fitted:
                    fitted[fit_key] = DeviationRanker(**setting).fit(train, dev[:n])
                ranker = fitted[fit_key].with_blame(setting["share"], setting["smooth"], 0.0)
                scores = ranker.blame(dev[n:])
            for a, d in enumerate(detectors):
                for b, mode in enumerate(EVENT_MODES):
                    acc = accumulate_events(scores, table.preds[d], EVENT_GAP, mode)
                    out[a, b, i] = _row_hits(acc, table.entry_rows, culprits)
    return out


def _cache_path(
    cache_dir: Path, root: Path, machine: str, detectors: Sequence[int], limit: int | None
) -> Path:
    data = base_cache_path(cache_dir, root, machine, limit).stem  # names the data's state
    stamp = f"{GRID_VERSION}|{data}|{list(detectors)}|{EVENT_GAP}|{EVENT_MODES}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return cache_dir / f"events-{machine}-{key}.npy"


def with_event_rankers(
    root: Path,
    tables: Sequence[MachineTable],
    limit: int | None,
    cache_dir: Path | None,
    say: Progress,
) -> tuple[dict[int, list[MachineTable]], list[str]]:
    """Per detector that a fold (or the choice on all machines) picks: the tables with
    the event rankers' HitRates under that detector's events appended to ``hits``; and
    the ranker keys of the extended tables."""
    picks = {choose_detector([o for o in tables if o is not t]) for t in tables}
    picks.add(choose_detector(list(tables)))
    detectors = sorted(picks)
    per_machine: dict[str, np.ndarray] = {}
    for t in tables:
        path = _cache_path(cache_dir, root, t.machine, detectors, limit) if cache_dir else None
        if path is not None and path.exists():
            per_machine[t.machine] = np.load(path)
            continue
        say(f"SMD {t.machine}: event rankers under detectors {detectors}")
        hits = event_hits(root, t, detectors, limit)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, hits)
            tmp.replace(path)
        per_machine[t.machine] = hits
    keys = list(ranker_settings()) + [
        f"{k}|event-{mode}" for mode in EVENT_MODES for k in event_ranker_keys()
    ]
    under: dict[int, list[MachineTable]] = {}
    for d in detectors:
        under[d] = []
        for t in tables:
            ev = per_machine[t.machine][detectors.index(d)]
            flat = ev.reshape(-1, *ev.shape[2:])  # (modes x rankers, entries, 2)
            under[d].append(replace(t, hits=np.concatenate([t.hits, flat])))
    return under, keys


def evaluate_events(
    root: Path,
    machines: Sequence[str],
    limit: int | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``eval smd``'s leave-one-machine-out with the event rankers among the candidates
    (a fold reads the tables of the detector it chose)."""
    say = progress or (lambda msg: None)

    def extend(
        tables: list[MachineTable],
    ) -> tuple[dict[int, list[MachineTable]], list[str], str]:
        under, keys = with_event_rankers(root, tables, limit, cache_dir, say)
        extra = (
            f" ({len(ranker_settings())} of round 1 and {len(keys) - len(ranker_settings())} "
            f"event rankers: the settings without the |z| blend, and |z|, x "
            f"{'/'.join(EVENT_MODES)} of the scores over the event so far, events split by "
            f"{EVENT_GAP} unflagged rows)"
        )
        return under, keys, extra

    return evaluate_lomo(root, machines, limit, cache_dir, say, extend=extend)
