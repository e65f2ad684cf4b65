"""Nezha TrainTicket: which service caused each of the 45 injected faults, from metrics.

Data (``../shared/datasets/nezha-trainticket``, see its README): per-minute metrics of
46 pods over two days, the fault lists, and no call graph; the graph below was derived
by the dataset's curator from the traces (left out of the folder) and is written here
as data. Each fault is scored with the rule-free ranking the daemon uses
(:mod:`ml.component_rca`): window ``[inject_time, inject_time + window_s]``, baseline
``[inject_time - baseline_s, inject_time)``, every one of the 46 services a candidate.
``inject_time`` is used, never the unreliable ``inject_timestamp``; nothing else of the
fault list (its order, the other faults' times, the unlabelled episodes) is a feature.

AS@k = share of faults whose injected service is among the top k.

    faults = load_faults(root)
    series = load_day(root, "2023-01-29")
    ranked = rank_fault(series, faults[0], Setting(...))
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ml.component_rca import (
    ComponentScore,
    MetricDeviation,
    RcaSettings,
    Series,
    metric_deviations,
    rank_components,
)

DAYS = ("2023-01-29", "2023-01-30")
# front_service.csv is the UI's inbound latency: its LatencyP90 equals ts-ui-dashboard's
# PodServerLatencyP90 in every row of both days (checked), so its series belong to that
# service, the front door, which calls the gateway (the UI is not traced, so the
# curator's trace-derived graph has no edge for it)
FRONTEND = "ts-ui-dashboard"
# caller -> callees, derived by the dataset's curator from the traces (README "Topology")
CALLS: dict[str, tuple[str, ...]] = {
    "gateway": (
        "auth", "cancel", "execute", "food", "inside-payment", "preserve", "preserve-other",
        "travel", "travel2",
    ),
    "auth": ("verification-code",),
    "preserve": (
        "assurance", "basic", "contacts", "food", "order", "seat", "security", "travel", "user",
    ),
    "preserve-other": (
        "assurance", "basic", "contacts", "food", "order-other", "seat", "security", "travel2",
        "user",
    ),
    "travel": ("basic", "route", "seat"),
    "travel2": ("basic", "seat"),
    "basic": ("price", "route", "station", "train"),
    "seat": ("config", "order", "order-other"),
    "security": ("order", "order-other"),
    "food": ("delivery", "station-food", "train-food", "travel"),
    "cancel": ("inside-payment", "order", "order-other", "user"),
    "inside-payment": ("order", "order-other", "payment"),
    "execute": ("order", "order-other"),
}  # fmt: skip
PUBLISHED = {  # Nezha, FSE 2023, Tables 3-4 (TrainTicket, 45 faults), AS@1/3/5 in %
    "MicroScope (metrics)": (17.78, 26.67, 35.56),
    "MicroRCA (metrics)": (20.00, 31.11, 44.44),
    "Nezha (metrics+traces+logs)": (86.67, 97.78, 97.78),
}


def service(name: str) -> str:
    return f"ts-{name}-service"


def topology() -> dict[str, tuple[str, ...]]:
    """Service -> the services it calls; the UI (front end) calls the gateway."""
    deps = {service(c): tuple(service(d) for d in ds) for c, ds in CALLS.items()}
    deps[FRONTEND] = (service("gateway"),)
    return deps


@dataclass(frozen=True)
class Fault:
    day: str
    at: float  # inject_time, epoch seconds (UTC)
    service: str
    kind: str


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def load_faults(root: Path, days: Sequence[str] = DAYS) -> list[Fault]:
    out = []
    for day in days:
        raw = json.loads((root / day / f"{day}-fault_list.json").read_text())
        for items in raw.values():
            for f in items:
                svc = f["inject_pod"].rsplit("-", 2)[0]
                out.append(Fault(day, _epoch(f["inject_time"]), svc, f["inject_type"]))
    return sorted(out, key=lambda f: f.at)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def load_day(root: Path, day: str) -> list[Series]:
    """Every (service, metric) series of one day; ``front_service.csv``'s as the UI's
    (``FRONTEND``). Timestamps from the ``TimeStamp`` column (epoch seconds, UTC)."""
    out = []
    for path in sorted((root / day / "metric").glob("*.csv.gz")):
        with gzip.open(path, "rt", newline="") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        if path.name.startswith("front_service"):
            component = FRONTEND
        else:
            component = path.name.removesuffix("_metric.csv.gz").rsplit("-", 2)[0]
        ts = np.array([_float(r[1]) for r in body])
        for j, metric in enumerate(header[3:], start=3):
            values = np.array([_float(r[j]) for r in body])
            out.append(Series(component, metric, ts, values))
    return out


@dataclass(frozen=True)
class Setting:
    window_s: float
    baseline_s: float
    rca: RcaSettings
    symptom: tuple[str, str] | None = None


def fault_deviations(
    series: Sequence[Series], fault: Fault, setting: Setting
) -> list[MetricDeviation]:
    return metric_deviations(
        series, fault.at, fault.at + setting.window_s, setting.baseline_s, setting.rca
    )


def rank_fault(
    series: Sequence[Series],
    fault: Fault,
    setting: Setting,
    devs: Sequence[MetricDeviation] | None = None,
) -> list[ComponentScore]:
    """The ranking of the 46 services (the UI, the front end, is one). ``devs``:
    :func:`fault_deviations` of the same fault under a setting that measures
    deviations the same way, if already computed."""
    if devs is None:
        devs = fault_deviations(series, fault, setting)
    ranked = rank_components(
        devs,
        topology(),
        setting.rca,
        symptom=setting.symptom,
        components={s.component for s in series},
    )
    return list(ranked)


def rank_of(ranked: Sequence[ComponentScore], truth: str) -> int:
    """1-based rank of ``truth`` (len + 1 when absent)."""
    for i, c in enumerate(ranked, start=1):
        if c.component == truth:
            return i
    return len(ranked) + 1


def accuracy(ranks: Sequence[int]) -> dict[str, float | None]:
    if not ranks:
        return {"AS@1": None, "AS@3": None, "AS@5": None}
    r = np.asarray(ranks)
    return {f"AS@{k}": round(float(np.mean(r <= k)), 4) for k in (1, 3, 5)}
