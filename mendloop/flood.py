"""`mendloop bench flood`: the whole daemon under a flood of new names, with a real fault.

    mendloop bench flood --json            # needs Neo4j (started when local), ~8-9 min

In this process, as `mendloop demo` runs them: Neo4j, the twin (one real target, fed in
process), the engine and its API with tokens on. First the twin's fault is injected once
on a quiet daemon (its MTTR is the reference); once the real target has reported for
``MENDLOOP_LOOP_ESTABLISHED_S`` (an established target, as in any real estate), a flood
client in a process of its own (mendloop/floodclient.py) pushes ever new targets x every
catalog series through the real HTTP API (JSON, Prometheus text and OTLP in turn, several
operator tokens, the values of a faulty target so that what gets in opens incidents) while
a prober lists incidents as a person would, and the same fault is injected again.
Reported (one JSON object with ``--json``): peak RSS of the daemon's process, the API's
latency during the flood (the prober's and the pushes'), what the flood sent and what
became of it by reason (the server's counters and the answers), the live series/targets
at the end, the incidents the flood opened, and the real fault's MTTR during the flood
beside the quiet one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import uvicorn

from api.app import app_for
from api.auth import Auth, Role
from kernel.config import Settings
from kernel.state import State
from mendloop.measure import peak_rss_mb, rss_mb
from mendloop.output import stderr_progress
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner

TARGET = "pm-site-1"
FLOOD_OWNERS = 3  # operator tokens the flood spreads over (per-token and global limits)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def _latency(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _pct(values, 50),
        "p95_ms": _pct(values, 95),
        "max_ms": round(max(values) * 1000, 1) if values else None,
    }


async def _fix_once(engine: Any, twin: Any, api: str, approver: str, fault: str) -> dict[str, Any]:
    """Inject ``fault`` on the real target, approve through the API if it asks, wait until
    it settles; its MTTR from injection to resolved."""

    injected = time.time()
    with twin.locked() as model:
        model.inject(TARGET, fault)
    incident = None
    deadline = time.monotonic() + 120
    while incident is None and time.monotonic() < deadline:
        fresh = [i for i in engine.store.list(target=TARGET) if i.opened_at.timestamp() >= injected]
        incident = fresh[-1] if fresh else None
        await asyncio.sleep(0.2)
    row: dict[str, Any] = {"fault": fault, "detected_after_s": None, "mttr_s": None}
    if incident is not None:
        row["detected_after_s"] = round(incident.opened_at.timestamp() - injected, 2)
        budget = engine.settings.verify_timeout_s + engine.settings.playbook_timeout_s * 3
        incident = await engine.wait_settled(incident.id, budget)
        if incident.state == State.awaiting_approval:
            body = {"comment": "approved by the flood bench"}
            if incident.plan is not None:
                body["plan_hash"] = incident.plan.plan_hash
            async with httpx.AsyncClient(base_url=api, timeout=120) as client:
                answer = await client.post(
                    f"/v1/incidents/{incident.id}/approve",
                    json=body,
                    headers={"Authorization": f"Bearer {approver}"},
                )
            row["approved"] = answer.status_code
            incident = await engine.wait_settled(incident.id, budget)
        resolved = next(
            (t.at.timestamp() for t in incident.timeline if t.to_state == State.resolved), None
        )
        row |= {
            "incident": incident.id,
            "state": str(incident.state),
            "mttr_s": round(resolved - injected, 2) if resolved else None,
        }
    with twin.locked() as model:
        model.clear(TARGET)
    return row


def _faulty_values(catalog: Any, fault: str) -> tuple[list[str], list[float]]:
    """One target's samples with ``fault`` on (what the flood sends under its new names)."""
    twin = Twin(targets=("probe",), seed=3)
    t0 = time.time()
    twin.advance(t0)
    twin.inject("probe", fault, now=t0)
    samples = twin.step(t0 + 30)
    known = [s for s in samples if s.series in catalog]
    return [s.series for s in known], [float(s.value) for s in known]


async def _run(settings: Settings, args: Any) -> dict[str, Any]:
    db = settings.var_dir / "bench-flood.db"
    db.unlink(missing_ok=True)
    with TwinRunner(Twin(targets=(TARGET,)), host=settings.twin_host, port=0) as twin:
        engine = build_engine(settings, {"twin_url": twin.url}, database_url=f"sqlite:///{db}")
        twin.sink = engine.submit
        await engine.start()
        started = time.monotonic()
        auth = Auth.on(engine.store.engine)
        tokens = [
            auth.tokens.create(f"flood-{i}", Role.operator, by="bench").token
            for i in range(FLOOD_OWNERS)
        ]
        viewer = auth.tokens.create("prober", Role.viewer, by="bench").token
        approver = auth.tokens.create("bench-approver", Role.approver, by="bench").token
        server = uvicorn.Server(
            uvicorn.Config(
                app_for(engine, auth=auth),
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="off",
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            api = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            stderr_progress(f"bench flood: daemon API on {api}; warming up")
            await asyncio.sleep(args.warmup_s)
            quiet = await _fix_once(engine, twin, api, approver, args.fault)
            stderr_progress(f"quiet: {quiet}")
            await asyncio.sleep(args.warmup_s)
            # the real target has reported for long enough to count as established (the
            # loop's admission ranks such targets before new ones), as in any real estate
            established_s = float(getattr(settings, "loop_established_s", 0.0))
            wait_s = established_s + args.warmup_s - (time.monotonic() - started)
            if wait_s > 0:
                stderr_progress(f"waiting {wait_s:.0f} s until {TARGET} is established")
                await asyncio.sleep(wait_s)
            series, values = _faulty_values(engine.catalog, args.fault)
            config = {
                "url": api,
                "tokens": tokens,
                "viewer": viewer,
                "series": series,
                "values": values,
                "targets_per_request": args.targets_per_request,
                "workers": args.workers,
                "max_s": args.max_s,
                "probe_every_s": 0.25,
                "repeat": not args.no_repeat,
            }
            before = engine.monitor.stats()
            rss_before = rss_mb()
            opened_before = {i.id for i in engine.store.list(limit=10**6)}
            client = subprocess.Popen(
                [sys.executable, "-m", "mendloop.floodclient"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdin is not None
            client.stdin.write(json.dumps(config) + "\n")
            client.stdin.flush()
            stderr_progress(f"flooding with {args.workers} workers; fault in {args.lead_s} s")
            await asyncio.sleep(args.lead_s)
            flooded = await _fix_once(engine, twin, api, approver, args.fault)
            stderr_progress(f"during the flood: {flooded}")
            client.stdin.write("stop\n")  # communicate() flushes and closes stdin
            out, _ = await asyncio.to_thread(client.communicate, timeout=300)
            flood = json.loads(out)
            after = engine.monitor.stats()
            incidents = [i for i in engine.store.list(limit=10**6) if i.id not in opened_before]
            runs = Counter(
                f"{r.phase}:{r.status}"
                for i in incidents
                if i.target != TARGET
                for r in engine.ledger.runs(i.id)
            )
        finally:
            server.should_exit = True
            await serving
            await engine.stop()
            engine.close()
    counters = Counter(after["counters"])
    counters.subtract(before["counters"])
    by_reason = {k: v for k, v in sorted(counters.items()) if v and k != "accepted"}
    pushes = [x for values in flood["latencies"].values() for x in values]
    states = Counter(str(i.state) for i in incidents if i.target != TARGET)
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_flood_mb": round(rss_before, 1),
        "rss_after_flood_mb": round(rss_mb(), 1),
        "api_p95_ms": _pct(flood["probe_latencies"], 95),
        "api_probe": _latency(flood["probe_latencies"]),
        "push": _latency(pushes),
        "push_by_format": {k: _latency(v) for k, v in flood["latencies"].items()},
        "flood_s": flood["seconds"],
        "flood_points_sent": flood["sent"],
        "flood_requests": flood["statuses"],
        "flood_client_errors": flood["errors"],
        "flood_answers": flood["answers"],
        "accepted": counters["accepted"],
        "refused": by_reason,
        "series": after["series"],
        "targets": after.get("targets"),
        "window_mb": round(after["window_bytes"] / 2**20, 1),
        "limits": after.get("limits"),
        "flood_incidents": len(incidents) - sum(1 for i in incidents if i.target == TARGET),
        "flood_incident_states": dict(states),
        "flood_playbook_runs": dict(runs),
        "mttr_s_quiet": quiet["mttr_s"],
        "mttr_s_flood": flooded["mttr_s"],
        "fault_quiet": quiet,
        "fault_flood": flooded,
        "workers": args.workers,
        "targets_per_request": args.targets_per_request,
        "series_per_target": len(series),
    }


def cmd_bench_flood(args: Any, settings: Settings) -> int:
    result = asyncio.run(_run(settings, args))
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"flood: {result['flood_points_sent']} points in {result['flood_s']} s; refused "
            f"{result['refused']}; peak RSS {result['peak_rss_mb']} MB; API p95 "
            f"{result['api_p95_ms']} ms (pushes p95 {result['push']['p95_ms']} ms); MTTR "
            f"{result['mttr_s_flood']} s during the flood ({result['mttr_s_quiet']} s quiet)"
        )
    return 0 if result["mttr_s_flood"] is not None else 1
