"""How blame moves along the dependency graph (used by :mod:`ml.component_rca`).

Two propagations, both pure functions of per-component numbers and the graph
(``dependencies[c]`` = the components ``c`` calls or needs):

- :func:`pagerank` — a random walk that restarts at ``start``, moves from a component to
  its dependencies in proportion to their anomaly, steps back to a dependant with a small
  weight, and stays on a component more anomalous than all its dependencies (the
  personalised PageRank of MicroRCA / CloudRanger). A component with no anomaly never
  receives blame.
- :func:`caller_evidence` — a dependency's fault shows as latency or errors in the
  components that call it, often more clearly than in its own metrics (a network delay
  on a pod, an error path that returns early). Each caller's *symptom* (its abnormal
  latency / error score) is shared among the components it depends on, so a component
  that several abnormal callers have in common collects the most; that is added, times
  ``weight``, to its own anomaly. Unlike the walk, it can name a component whose own
  metrics say nothing.

    blame = caller_evidence(names, own, symptom, deps, weight=1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def pagerank(
    names: Sequence[str],
    anomaly: np.ndarray,
    dependencies: Mapping[str, Sequence[str]],
    start: np.ndarray,
    damping: float,
    back_weight: float,
) -> np.ndarray:
    """Stationary share of the walk described in the module docstring."""
    n = len(names)
    index = {c: i for i, c in enumerate(names)}
    w = np.zeros((n, n))
    for c, deps in dependencies.items():
        i = index[c]
        for d in deps:
            j = index[d]
            if i == j:
                continue
            w[i, j] += anomaly[j]
            w[j, i] += back_weight * anomaly[i]
    for i in range(n):
        deps_max = max((anomaly[index[d]] for d in dependencies.get(names[i], ())), default=0.0)
        w[i, i] += max(anomaly[i] - deps_max, 0.0)
    rows = w.sum(axis=1)
    p = np.where(rows[:, None] > 0, w / np.where(rows > 0, rows, 1.0)[:, None], 0.0)
    dangling = rows <= 0
    restart = start / start.sum() if start.sum() > 0 else np.full(n, 1.0 / n)
    pi = restart.copy()
    for _ in range(200):
        nxt = damping * (pi @ p + pi[dangling].sum() * restart)
        nxt += (1 - damping) * restart
        if np.abs(nxt - pi).sum() < 1e-12:
            return nxt
        pi = nxt
    return pi


def caller_evidence(
    names: Sequence[str],
    own: np.ndarray,
    symptom: np.ndarray,
    dependencies: Mapping[str, Sequence[str]],
    weight: float,
) -> np.ndarray:
    """``own`` plus ``weight`` x each caller's ``symptom`` split evenly among its
    dependencies (a caller with k dependencies gives each 1/k of it)."""
    index = {c: i for i, c in enumerate(names)}
    out = np.asarray(own, dtype=np.float64).copy()
    for c, deps in dependencies.items():
        targets = [index[d] for d in deps if d != c]
        s = symptom[index[c]]
        if not targets or s <= 0:
            continue
        for j in targets:
            out[j] += weight * s / len(targets)
    return out
