"""`mendloop bench scale`: K real workers (`mendloop run`) on one PostgreSQL, T twin targets
pushed at 1 s, faults injected; what one worker carries and what two do.

    mendloop bench scale --json --workers 1,2 --targets 20,40,80

For each K: K workers start on a fresh schema of the PostgreSQL database
(``MENDLOOP_DATABASE_URL``), in shadow mode (the loop decides, records what it would run,
runs nothing) with API auth off. A pusher thread (mendloop/bench_push.py) sends the twin's
286 series of T targets every second as Prometheus remote-write (``--push json``: as
JSON), batches of 5 targets round-robin over the workers, the next one each second (so
about (K-1)/K of the samples reach a non-owner and are forwarded). After a warm-up a fault
is injected on a fresh target every few seconds; a fault's report time is its incident's
``analyzed`` transition minus the first abnormal sample (the earliest ``started_at`` of
the findings that opened it), both on this machine's clock. A step holds when the report
p95 <= 5 s and the pusher kept the 1 s pace (push round p95 < 1 s, ``--shards`` requests
in flight). Then, with K=2, one worker is killed with SIGKILL and the time until the other
holds every target is the takeover time. The pusher accounts for every sample it sent
(accepted, stale, rejected, refused, failed, and lost: must be 0). Progress goes to
stderr, one JSON object to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text

from kernel.config import Settings
from kernel.errors import ConfigError
from loop.db.engine import make_engine
from loop.store import IncidentStore
from mendloop.bench_push import Pusher
from mendloop.output import print_json, stderr_progress

FAULTS = ("cache_saturation", "db_io_wait", "bank_recon_slow", "voltage_sag")
MAX_SERIES = 1_000_000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workers:
    def __init__(self, url: str, tmp: Path, ttl_s: float) -> None:
        self.url, self.tmp, self.ttl_s = url, tmp, ttl_s
        self.procs: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(self, name: str) -> str:
        port = _free_port()
        env = {
            **os.environ,
            "MENDLOOP_DATABASE_URL": self.url,
            "MENDLOOP_API_PORT": str(port),
            "MENDLOOP_VAR_DIR": str(self.tmp / name),
            "MENDLOOP_API_AUTH": "false",
            "MENDLOOP_SHADOW": "all",
            "MENDLOOP_WORKER_LEASE_TTL_S": f"{self.ttl_s:g}",
            # the CPU is measured, not the cardinality guard (100,000 series by default:
            # 349 targets of 286 series per worker)
            "MENDLOOP_MAX_SERIES": str(MAX_SERIES),
        }
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mendloop.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited: see {self.tmp / name}.log")
            try:
                if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                    self.procs.append((proc, api))
                    return api
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker {name} did not answer within 300 s")

    def kill9(self, api: str) -> None:
        for proc, url in self.procs:
            if url == api:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []


def _report_times(store: IncidentStore, since: float) -> list[float]:
    """Per incident opened after ``since``: analyzed at - first abnormal sample (s)."""
    times = []
    for view in store.list(limit=1000):
        if view.opened_at.timestamp() < since or not view.findings:
            continue
        full = store.get(view.id)
        assert full is not None
        analyzed = [t.at.timestamp() for t in full.timeline if t.to_state == "analyzed"]
        if analyzed:
            times.append(analyzed[0] - min(f.started_at for f in view.findings))
    return times


def _holders(store: IncidentStore) -> dict[str, str | None]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT target, CASE WHEN expires_at > now() THEN worker_id END AS w "
                "FROM target_lease"
            )
        ).all()
    return {r.target: r.w for r in rows}


def step(
    store: IncidentStore,
    apis: list[str],
    n_targets: int,
    warmup_s: float,
    faults: int,
    protocol: str,
    shards: int,
) -> dict[str, Any]:
    targets = [f"scale-{i}" for i in range(n_targets)]
    pusher = Pusher(targets, apis, protocol, shards)
    since = time.time()
    pusher.start()
    try:
        time.sleep(warmup_s)
        for i in range(faults):
            pusher.inject(targets[(i * 7) % n_targets], FAULTS[i % len(FAULTS)])
            time.sleep(6.0)
        time.sleep(10.0)
    finally:
        pusher.stop()
    reports = _report_times(store, since)
    push = pusher.push_s[3:] or pusher.push_s
    p95 = float(np.percentile(reports, 95)) if reports else None
    push_p95 = float(np.percentile(push, 95))
    holds = p95 is not None and p95 <= 5.0 and push_p95 < 1.0 and len(reports) >= faults // 2
    return {
        "targets": n_targets,
        "workers": len(apis),
        "report_s_p50": round(float(np.median(reports)), 2) if reports else None,
        "report_s_p95": round(p95, 2) if p95 is not None else None,
        "reports": len(reports),
        "faults": faults,
        "push_tick_s_p95": round(push_p95, 3),
        "samples": dict(pusher.counts),
        "holds": holds,
    }


def cluster_counts(apis: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for api in apis:
        try:
            out[api] = httpx.get(f"{api}/v1/cluster", timeout=5).json()["intake"]
        except (httpx.HTTPError, KeyError, ValueError):
            out[api] = None
    return out


def bench_scale(
    url: str,
    workers: list[int],
    targets: list[int],
    warmup_s: float,
    faults: int,
    ttl_s: float,
    protocol: str = "remote-write",
    shards: int = 4,
) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    store = IncidentStore(scoped)
    result: dict[str, Any] = {"steps": [], "ttl_s": ttl_s, "push": protocol, "shards": shards}
    try:
        with tempfile.TemporaryDirectory(prefix="mendloop-scale-") as tmp:
            for k in workers:
                pool = Workers(scoped, Path(tmp) / f"k{k}", ttl_s)
                (Path(tmp) / f"k{k}").mkdir()
                try:
                    apis = [pool.start(f"w{i}") for i in range(k)]
                    stderr_progress(f"bench scale: {k} worker(s) up")
                    for n in targets:
                        outcome = step(store, apis, n, warmup_s, faults, protocol, shards)
                        stderr_progress(f"bench scale: {json.dumps(outcome)}")
                        result["steps"].append(outcome)
                        if not outcome["holds"]:
                            break
                    result[f"intake_k{k}"] = cluster_counts(apis)
                    if k >= 2:
                        result["takeover_s"] = takeover(store, pool, apis, protocol, shards)
                finally:
                    pool.stop_all()
    finally:
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    best = {
        k: max(
            (s["targets"] for s in result["steps"] if s["workers"] == k and s["holds"]), default=0
        )
        for k in workers
    }
    result["targets_held"] = best
    result["targets_per_worker"] = {k: best[k] / k for k in workers}
    if 1 in best and 2 in best and best[1]:
        result["scaling_efficiency_1_to_2"] = round(best[2] / (2 * best[1]), 2)
    result["samples_lost"] = sum(s["samples"].get("lost", 0) for s in result["steps"])
    return result


def takeover(
    store: IncidentStore, pool: Workers, apis: list[str], protocol: str, shards: int
) -> float | None:
    """SIGKILL of the last worker while samples flow; seconds until every target has a
    live owner again and none is the dead one's (None: not within 10 TTLs)."""
    with store.engine.connect() as conn:
        victim = conn.execute(
            text("SELECT id FROM worker WHERE api_url = :u"), {"u": apis[-1]}
        ).scalar_one()
    pusher = Pusher([f"scale-{i}" for i in range(20)], apis[:-1], protocol, shards)
    pusher.start()
    try:
        time.sleep(pool.ttl_s + 2)  # every target seen and leased
        killed_at = time.monotonic()
        pool.kill9(apis[-1])
        while time.monotonic() < killed_at + 10 * pool.ttl_s:
            held = _holders(store)
            if all(w is not None and w != victim for w in held.values()):
                return round(time.monotonic() - killed_at, 1)
            time.sleep(0.2)
        return None
    finally:
        pusher.stop()


def cmd_bench_scale(args: argparse.Namespace, settings: Settings) -> int:
    url = args.database_url or settings.database_url
    if not url.startswith("postgresql"):
        raise ConfigError("bench scale needs PostgreSQL: --database-url or MENDLOOP_DATABASE_URL")
    result = bench_scale(
        url,
        [int(k) for k in args.workers.split(",")],
        [int(t) for t in args.targets.split(",")],
        args.warmup_s,
        args.faults,
        args.ttl_s,
        args.push,
        args.shards,
    )
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0
