"""MicroRCA (Wu et al., NOMS 2020) on Nezha TrainTicket: the published metrics-only baseline.

Re-implemented from the authors' public code (elastisys/MicroRCA, ``MicroRCA.py`` and
``MicroRCA_online.py``; read, not copied) so that our figures can be checked against the
20 / 31 / 44 % AS@1/3/5 the Nezha paper publishes for it. The steps, as there:

1. **Anomalous invocations**: each invocation's response time over the window is smoothed
   (rolling mean), NaN set to 0, scaled to unit L2 norm, and clustered by BIRCH
   (``threshold``, branching factor 50); more than one cluster = anomalous.
2. **Attributed graph**: services (the call graph) and hosts (service -> its host).
3. **Anomalous subgraph**: the destinations of anomalous invocations and their in- and
   out-edges. Weight of an anomalous edge: ``alpha``; of another edge: the correlation
   of its response time with the anomalous node's; of an edge to a host: the mean
   in-edge weight x the largest |correlation| of the anomalous response time with a host
   metric (at least 0.01).
4. **Personalisation** of an anomalous node: the mean weight of its edges x the largest
   |correlation| of its anomalous response time with its container's CPU, memory or
   network (at least 0.01), divided by its degree.
5. Personalised PageRank (damping 0.85) on the *reversed* subgraph; services ranked by
   it. A service outside the subgraph is not ranked (a miss at every k).

What this data forces us to adapt (said in the output): no per-invocation latency
exists, only each pod's server (inbound) and client (outbound) latency percentiles, so
the response time of an invocation ``u -> v`` is ``v``'s server P90 (``edge="server"``)
or, as MicroRCA adds the source- and destination-reported medians, ``u``'s client P90
plus ``v``'s server P90 (``edge="client+server"``); hosts are the groups of pods whose
node metrics are identical all day; samples are 1 minute apart instead of 5 s, so the
smoothing span of 12 samples (60 s) is 1 sample, and BIRCH's threshold, which applies to
values scaled by 1/sqrt(n), is kept at the published 0.045 or scaled to the window's
length (``scale_threshold``: as if the window had the 30 samples of MicroRCA's 150 s).
The UI (ts-ui-dashboard, the front end) calls the gateway. A correlation that is
negative or undefined (a flat series) is a weight of 0: networkx's PageRank does not
converge with negative weights, and MicroRCA's code would carry a NaN.

    result = evaluate_microrca(Path("../shared/datasets/nezha-trainticket"))
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import Birch

from evaluation.rank_folds import choose, cross_validate, report
from evaluation.trainticket import (
    DAYS,
    Fault,
    load_day,
    load_faults,
    topology,
)
from ml.component_rca import Series

SERVER = "PodServerLatencyP90(s)"
CLIENT = "PodClientLatencyP90(s)"
CONTAINER = ("CpuUsageRate(%)", "MemoryUsageRate(%)", "NetworkTransmitBytes")
HOST = ("NodeCpuUsageRate(%)", "NodeMemoryUsageRate(%)", "NodeNetworkReceiveBytes")


@dataclass(frozen=True)
class MicroRcaSettings:
    pre_s: float = 600.0  # the window starts this long before inject_time
    post_s: float = 180.0  # and ends this long after it (the fault lasts 3 minutes)
    edge: str = "server"  # or "client+server"
    threshold: float = 0.045  # BIRCH, as published
    scale_threshold: bool = False  # scale it by sqrt(30 / samples in the window)
    smoothing: int = 1  # samples of the rolling mean (12 x 5 s published = 1 x 60 s)
    alpha: float = 0.55  # weight of an anomalous edge, as published
    damping: float = 0.85
    reverse: bool = True  # walk the reversed subgraph, as published


@dataclass(frozen=True)
class DayFrame:
    """One day's series aligned by row (the files share their minutes row by row)."""

    ts: np.ndarray  # per row, the median timestamp over the files
    values: dict[tuple[str, str], np.ndarray]
    host: dict[str, str]  # service -> host id


def day_frame(series: Sequence[Series]) -> DayFrame:
    rows = {s.ts.size for s in series}
    if len(rows) != 1:
        raise ValueError("the day's files do not have the same number of rows")
    ts = np.median(np.array([s.ts for s in series]), axis=0)
    values = {(s.component, s.metric): s.values for s in series}
    groups: dict[bytes, str] = {}
    host = {}
    for s in sorted(series, key=lambda s: s.component):
        if s.metric == HOST[0]:  # pods on one node report the same node series
            key = np.round(np.nan_to_num(s.values, nan=-1.0), 6).tobytes()
            host[s.component] = groups.setdefault(key, f"host-{len(groups)}")
    return DayFrame(ts, values, host)


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    """pandas' ``rolling(n, min_periods=1).mean()``: NaN ignored, NaN where all are."""
    out = np.full(x.size, np.nan)
    for i in range(x.size):
        w = x[max(0, i - n + 1) : i + 1]
        w = w[np.isfinite(w)]
        if w.size:
            out[i] = w.mean()
    return out


def birch_anomalous(x: np.ndarray, threshold: float, smoothing: int) -> bool:
    """MicroRCA's detector: smoothed, NaN -> 0, unit L2 norm, BIRCH; > 1 cluster."""
    x = np.nan_to_num(_smooth(np.asarray(x, dtype=np.float64), smoothing), nan=0.0)
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        return False  # sklearn's normalize leaves a zero vector as it is: one cluster
    brc = Birch(branching_factor=50, n_clusters=None, threshold=threshold)
    brc.fit((x / norm).reshape(-1, 1))
    return int(np.unique(brc.labels_).size) > 1


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """pandas' Series.corr: Pearson over the rows where both are finite; NaN when
    undefined, which we read as 0 (MicroRCA would carry the NaN into PageRank)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return 0.0
    x, y = a[ok], b[ok]
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def pagerank(
    nodes: Sequence[str],
    edges: dict[tuple[str, str], float],
    personalization: dict[str, float],
    damping: float,
) -> dict[str, float]:
    """networkx's ``pagerank`` (weighted, personalised; dangling nodes jump by the
    personalisation), written out so that the evaluation needs no graph library."""
    index = {n: i for i, n in enumerate(nodes)}
    n = len(nodes)
    w = np.zeros((n, n))
    for (u, v), weight in edges.items():
        w[index[u], index[v]] += weight
    out = w.sum(axis=1)
    p = np.divide(w, out[:, None], out=np.zeros_like(w), where=out[:, None] != 0)
    dangling = out == 0
    pers = np.array([personalization.get(x, 0.0) for x in nodes])
    pers = pers / pers.sum() if pers.sum() != 0 else np.full(n, 1.0 / n)
    x = np.full(n, 1.0 / n)
    for _ in range(10000):
        nxt = damping * (x @ p + x[dangling].sum() * pers) + (1 - damping) * pers
        if np.abs(nxt - x).sum() < n * 1e-6:
            x = nxt
            break
        x = nxt
    return {name: float(x[i]) for i, name in enumerate(nodes)}


def rank_microrca(frame: DayFrame, fault_at: float, cfg: MicroRcaSettings) -> list[str]:
    """The services in MicroRCA's order, most likely cause first (only those in the
    anomalous subgraph)."""
    rows = (frame.ts >= fault_at - cfg.pre_s) & (frame.ts <= fault_at + cfg.post_s)
    v = {k: a[rows] for k, a in frame.values.items()}
    calls = topology()
    services = sorted({c for c, _ in v})

    def latency(u: str, d: str) -> np.ndarray:
        if cfg.edge == "server":
            return v[(d, SERVER)]
        return v[(u, CLIENT)] + v[(d, SERVER)]  # NaN where either is, as pandas' add

    graph = [(u, d) for u, ds in calls.items() for d in ds]
    lat = {e: latency(*e) for e in graph}
    threshold = cfg.threshold
    if cfg.scale_threshold:
        threshold *= math.sqrt(30 / max(int(rows.sum()), 1))
    anomalous = [e for e in graph if birch_anomalous(lat[e], threshold, cfg.smoothing)]
    if not anomalous:
        return []
    base: dict[str, np.ndarray] = {}
    for u, d in anomalous:  # the last anomalous invocation of a node stands for it
        base[d] = lat[(u, d)]
    hosts = {frame.host[s] for s in services if s in frame.host}
    kind = {**{s: "service" for s in services}, **{h: "host" for h in hosts}}
    weights: dict[tuple[str, str], float] = {}
    ins: dict[str, list[tuple[str, str]]] = defaultdict(list)
    outs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for u, d in graph:
        outs[u].append((u, d))
        ins[d].append((u, d))
    for s in services:
        if s in frame.host:
            outs[s].append((s, frame.host[s]))
    anomalous_set = set(anomalous)
    for node in sorted(base):
        for e in ins[node]:
            corr = max(_corr(base[node], lat[e]), 0.0)
            weights[e] = round(cfg.alpha if e in anomalous_set else corr, 3)
        for e in outs[node]:
            u, d = e
            if e in anomalous_set:
                weights[e] = round(cfg.alpha, 3)
            elif kind[d] == "host":
                in_w = [weights[x] for x in ins[u] if x in weights]
                corr = max([0.01] + [abs(_corr(base[u], v[(u, m)])) for m in HOST])
                weights[e] = round((float(np.mean(in_w)) if in_w else 0.0) * corr, 3)
            else:
                weights[e] = round(max(_corr(base[u], lat[e]), 0.0), 3)
    nodes = sorted({x for e in weights for x in e})
    degree = defaultdict(int)
    for u, d in weights:
        degree[u] += 1
        degree[d] += 1
    personalization = {}
    for node in sorted(base):
        ctn = max([0.01] + [abs(_corr(base[node], v[(node, m)])) for m in CONTAINER])
        near = [w for (a, b), w in weights.items() if b == node] + [
            w for (a, b), w in weights.items() if a == node and kind[b] == "service"
        ]
        personalization[node] = (float(np.mean(near)) if near else 0.0) * ctn / degree[node]
    walked = {((d, u) if cfg.reverse else (u, d)): w for (u, d), w in weights.items()}
    score = pagerank(nodes, walked, personalization, cfg.damping)
    return sorted((n for n in nodes if kind[n] == "service"), key=lambda n: (-score[n], n))


GRID = {  # the baseline's own knobs, for its cross-validated figure
    "pre_s": (600.0, 1200.0),
    "post_s": (180.0, 300.0),
    "edge": ("server", "client+server"),
    "scale_threshold": (False, True),
    "alpha": (0.55,),
}


def grid() -> list[MicroRcaSettings]:
    return [
        MicroRcaSettings(pre_s=p, post_s=q, edge=e, scale_threshold=s, alpha=a)
        for p, q, e, s, a in itertools.product(*GRID.values())
    ]


CANDIDATES = 46


def _rank(ranked: Sequence[str], truth: str, candidates: int) -> int:
    return ranked.index(truth) + 1 if truth in ranked else candidates + 1


def microrca_table(
    frames: dict[str, DayFrame],
    faults: Sequence[Fault],
    settings: Sequence[MicroRcaSettings],
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Per setting x fault (shape 3 x settings x faults): the rank of the true service
    (47 when not ranked), how many services were ranked, and the first one's index in
    ``services(frames)`` (-1: none)."""
    names = services(frames)
    out = np.zeros((3, len(settings), len(faults)), dtype=np.int64)
    for j, f in enumerate(faults):
        for i, cfg in enumerate(settings):
            ranked = rank_microrca(frames[f.day], f.at, cfg)
            out[0, i, j] = _rank(ranked, f.service, CANDIDATES)
            out[1, i, j] = len(ranked)
            out[2, i, j] = names.index(ranked[0]) if ranked else -1
        if progress:
            progress(f"MicroRCA: fault {j + 1}/{len(faults)} ranked by every setting")
    return out


def services(frames: dict[str, DayFrame]) -> list[str]:
    return sorted({c for frame in frames.values() for c, _ in frame.values})


def report_microrca(
    table: np.ndarray, faults: Sequence[Fault], names: Sequence[str]
) -> dict[str, Any]:
    """MicroRCA with its published parameters, every grid setting, and the setting
    chosen leave-one-day-out (the criterion of ``evaluation.trainticket_cv``)."""
    ranks, sizes, first = table
    settings = grid()
    published = settings.index(MicroRcaSettings())
    lodo = cross_validate(ranks, faults, lambda f: f.day)
    return {
        "protocol": "window [inject_time - pre_s, inject_time + post_s]; a service outside "
        "the anomalous subgraph is not ranked (a miss); leave-one-day-out as ours",
        "published_parameters": {
            **asdict(settings[published]),
            **report(ranks[published], faults),
            "median_services_ranked": float(np.median(sizes[published])),
            "ranked_first": dict(
                Counter(names[k] if k >= 0 else "-" for k in first[published]).most_common(3)
            ),
        },
        "every_setting": [
            {
                **asdict(cfg),
                **report(ranks[i], faults)["overall"],
                "median_services_ranked": float(np.median(sizes[i])),
            }
            for i, cfg in enumerate(settings)
        ],
        "leave_one_day_out": {
            **report(lodo["ranks"], faults),
            "chosen": {d: asdict(settings[i]) for d, i in lodo["chosen"].items()},
        },
        "best_on_all_faults_in_sample": asdict(
            settings[choose(ranks, np.ones(len(faults), dtype=bool))]
        ),
    }


def evaluate_microrca(
    root: Path, days: Sequence[str] = DAYS, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    faults = load_faults(root, days)
    frames = {d: day_frame(load_day(root, d)) for d in days}
    table = microrca_table(frames, faults, grid(), say)
    out = report_microrca(table, faults, services(frames))
    out["run_time_s"] = round(time.monotonic() - started, 1)
    return out
