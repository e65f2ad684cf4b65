"""Evidence that several series give once (used by :mod:`ml.component_rca`).

- :func:`split_shared` — a series that several components report identically (a node
  metric every pod on the node exports) cannot say which of them broke: its score is
  divided by how many report it.
- :func:`merge_alike` — series of one component that move together (a CPU counter and
  the same counter in percent, the P90 / P95 / P99 of one latency) are one piece of
  evidence, not several: each counts 1/k.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ml.rca_types import MetricDeviation, Series

Pairs = list[tuple[Series, MetricDeviation]]


def split_shared(pairs: Pairs, since: float, end: float) -> Pairs:
    """Divide the score of a series that several components report identically."""
    groups: dict[tuple[str, bytes], list[int]] = {}
    for i, (s, _) in enumerate(pairs):
        ts = np.asarray(s.ts, dtype=np.float64)
        keep = (ts >= since) & (ts <= end)
        v = np.round(np.asarray(s.values, dtype=np.float64)[keep], 9)
        groups.setdefault((s.metric, v.tobytes()), []).append(i)
    out = list(pairs)
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            s, d = pairs[i]
            k = len(members)
            out[i] = (s, replace(d, score=d.score / k, shared_with=k))
    return out


def merge_alike(pairs: Pairs, since: float, end: float, limit: float) -> Pairs:
    """Divide the score of each series of a component by the number of that
    component's series (sampled at the same times) that it moves with, directly or
    through another: |correlation| >= ``limit`` over ``[since, end]``."""
    groups: dict[tuple[str, bytes], list[int]] = {}
    for i, (s, _) in enumerate(pairs):
        groups.setdefault((s.component, np.asarray(s.ts, np.float64).tobytes()), []).append(i)
    out = list(pairs)
    for members in groups.values():
        if len(members) < 2:
            continue
        ts = np.asarray(pairs[members[0]][0].ts, dtype=np.float64)
        keep = (ts >= since) & (ts <= end)
        x = np.array([np.asarray(pairs[i][0].values, np.float64)[keep] for i in members])
        finite = np.isfinite(x)
        fill = np.where(finite, x, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        x = np.where(finite, x, fill[:, None])  # a missing sample: the series' mean
        sd = x.std(axis=1)
        live = sd > 0
        corr = np.zeros((len(members), len(members)))
        if live.sum() > 1:
            corr[np.ix_(live, live)] = np.abs(np.corrcoef(x[live]))
        _, label = connected_components(csr_matrix(corr >= limit), directed=False)
        size = np.bincount(label)
        for a, i in enumerate(members):
            k = int(size[label[a]])
            if k > 1:
                s, d = pairs[i]
                out[i] = (s, replace(d, score=d.score / k, alike=k))
    return out
