"""Folds over a table of ranks (setting x fault): choose a setting on some faults, score
it on the others. Shared by ``eval trainticket`` and its MicroRCA baseline.

    cv = cross_validate(table, faults, lambda f: f.day)   # leave-one-day-out
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evaluation.trainticket import Fault, accuracy

KINDS = ("return", "exception", "cpu_contention", "network_delay")


def _criterion(ranks: np.ndarray) -> tuple[float, float]:
    """(AS@1 + AS@3) / 2 and the mean reciprocal rank, per setting (rows)."""
    return (
        ((ranks <= 1).mean(axis=1) + (ranks <= 3).mean(axis=1)) / 2,
        (1.0 / ranks).mean(axis=1),
    )


def choose(table: np.ndarray, train: np.ndarray) -> int:
    """The setting with the best criterion on the faults ``train`` (a boolean mask)."""
    main, mrr = _criterion(table[:, train])
    order = sorted(range(table.shape[0]), key=lambda i: (-main[i], -mrr[i], i))
    return order[0]


def cross_validate(
    table: np.ndarray, faults: Sequence[Fault], fold_of: Callable[[Fault], str]
) -> dict[str, Any]:
    """Each fold's faults ranked by the setting chosen on all the others."""
    folds = sorted({fold_of(f) for f in faults})
    ranks = np.zeros(len(faults), dtype=np.int64)
    chosen = {}
    for fold in folds:
        held = np.array([fold_of(f) == fold for f in faults])
        i = choose(table, ~held)
        ranks[held] = table[i, held]
        chosen[fold] = i
    return {"ranks": ranks, "chosen": chosen}


def report(ranks: np.ndarray, faults: Sequence[Fault]) -> dict[str, Any]:
    return {
        "overall": accuracy(ranks.tolist()),
        "per_fault_type": {
            k: {
                **accuracy([int(r) for r, f in zip(ranks, faults, strict=True) if f.kind == k]),
                "faults": sum(f.kind == k for f in faults),
            }
            for k in KINDS
        },
    }
