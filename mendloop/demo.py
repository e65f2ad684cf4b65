"""`mendloop demo`: Neo4j, the twin and the daemon on this machine; faults injected one
by one, each loop closed in front of you.

Prints each stage as it happens (stderr) and the summary of DESIGN.md: one JSON object
on stdout with ``--json``, a table otherwise. Uses its own SQLite file (var/demo.db,
fresh each run) so a previous run's incidents cannot block the twin's target.

Both autonomy paths show: a fix whose solution has earned ``auto`` (its verified track
record) runs on its own; one that needs approval (high risk, or the hourly limit of
automatic actions on the target) waits in ``awaiting_approval`` with its plan (dry run,
plan hash) until the demo approves it through the REST API, exactly as a person would
(``POST /v1/incidents/{id}/approve``); the plan is recomputed before the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from api.app import app_for
from api.auth import Auth, Role
from kernel.config import Settings
from kernel.errors import MendloopError
from kernel.state import State
from loop.daemon import Engine
from loop.events import StageEvent
from loop.store import IncidentView
from mendloop.output import stderr_progress
from mendloop.service import build_engine
from twin.model import FAULTS, Twin
from twin.server import TwinRunner

TARGET = "pm-site-1"
DEFAULT_FAULTS = ("cache_saturation",)


@dataclass(frozen=True)
class Api:
    url: str
    token: str = field(repr=False)


def _stage_printer(t0: list[float]) -> Any:
    def show(event: StageEvent) -> None:
        print(
            f"  [{time.time() - t0[0]:6.1f}s] {event.state or event.kind:<17} "
            f"{event.incident_id or event.target}  {event.note}",
            file=sys.stderr,
            flush=True,
        )

    return show


def incident_summary(
    fault: str,
    injected_at: float,
    incident: IncidentView | None,
    approved_via: str | None = None,
    runs: list[str] | None = None,
) -> dict[str, Any]:
    """One row of the demo's JSON: timings are measured from the moment of injection."""
    if incident is None:
        return {
            "fault": fault,
            "detected_after_s": None,
            "rca_after_s": None,
            "top_cause": None,
            "matched_case": None,
            "similarity": None,
            "playbook": None,
            "mode": None,
            "verified": False,
            "mttr_s": None,
            "state": "not_detected",
            "decision_after_s": None,
            "autonomy": None,
            "approved_via": None,
            "runs": [],
            "rolled_back": False,
            "plan_hash": None,
        }
    match = incident.decision.match if incident.decision else None
    resolved_at = next(
        (t.at.timestamp() for t in incident.timeline if t.to_state == State.resolved), None
    )
    decided_at = next(
        (t.at.timestamp() for t in incident.timeline if t.to_state == State.decided), None
    )
    return {
        "fault": fault,
        "incident": incident.id,
        "state": incident.state,
        "detected_after_s": round(incident.opened_at.timestamp() - injected_at, 2),
        "rca_after_s": round(incident.report.generated_at.timestamp() - injected_at, 2)
        if incident.report
        else None,
        "rca_compute_ms": round(incident.report.latency_ms, 2) if incident.report else None,
        "top_cause": incident.fault,
        "matched_case": match.case_id if match else None,
        "similarity": match.similarity if match else None,
        "playbook": incident.remediation.playbook if incident.remediation else None,
        "mode": incident.decision.mode if incident.decision else None,
        "verified": incident.verification is not None and incident.verification.status == "passed",
        "decision_after_s": round(decided_at - injected_at, 2) if decided_at else None,
        "mttr_s": round(resolved_at - injected_at, 2) if resolved_at else None,
        "reason": incident.reason,
        "autonomy": _autonomy_why(incident.decision.reason) if incident.decision else None,
        "approved_via": approved_via,
        "runs": runs or [],
        "rolled_back": incident.state == State.rolled_back,
        # the approved plan (dry run + everything that ran), when a person approved it
        "plan_hash": incident.plan.plan_hash if incident.plan else None,
    }


def _autonomy_why(reason: str) -> str:
    """The autonomy part of a decision's reason (loop/policy.py wrote it)."""
    _, found, rest = reason.partition("autonomy of ")
    return f"autonomy of {rest}" if found else reason


async def _wait_opened(engine: Engine, since: float, timeout_s: float) -> IncidentView | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = [i for i in engine.store.list(target=TARGET) if i.opened_at.timestamp() >= since]
        if fresh:
            return engine.store.get(fresh[-1].id)
        await asyncio.sleep(0.2)
    return None


async def _wait_calm(engine: Engine, timeout_s: float) -> None:
    """Until no series of the target is abnormal, so the next fault starts clean."""
    deadline = time.monotonic() + timeout_s
    while engine.analyzer.tracker.abnormal(TARGET) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


async def _approve(api: Api, incident: IncidentView) -> str:
    """Approve the way a person would: through the REST API, with an approver's token,
    the plan the person saw (its hash) and a comment."""
    path = f"/v1/incidents/{incident.id}/approve"
    body = {"comment": "approved by the demo"}
    if incident.plan is not None:
        body["plan_hash"] = incident.plan.plan_hash
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        answer = await client.post(
            path, json=body, headers={"Authorization": f"Bearer {api.token}"}
        )
    answer.raise_for_status()
    stderr_progress(f"  approved through POST {path}")
    return f"POST {path}"


async def _inject_each(
    engine: Engine,
    twin: TwinRunner,
    faults: list[str],
    t0: list[float],
    settings: Settings,
    api: Api,
) -> list[dict[str, Any]]:
    rows = []
    stderr_progress("warming up: waiting for healthy baselines")
    await asyncio.sleep(3)
    for fault in faults:
        await _wait_calm(engine, 60)
        t0[0] = injected_at = time.time()
        stderr_progress(f"\n>>> injecting {fault} into {TARGET}")
        with twin.locked() as model:
            model.inject(TARGET, fault)
        incident = await _wait_opened(engine, injected_at, 60)
        approved_via = None
        runs: list[str] = []
        if incident is not None:
            budget = settings.verify_timeout_s + settings.playbook_timeout_s * 3
            incident = await engine.wait_settled(incident.id, budget)
            if incident.state == State.awaiting_approval:
                approved_via = await _approve(api, incident)
                incident = await engine.wait_settled(incident.id, budget)
            runs = [r.phase for r in engine.ledger.runs(incident.id)]
        row = incident_summary(fault, injected_at, incident, approved_via, runs)
        spec = (
            engine.library.get(incident.decision.solution_id)
            if incident and incident.decision
            else None
        )
        row["remedy_fixes_fault"] = None if spec is None else fault in spec.faults
        rows.append(row)
        with twin.locked() as model:
            model.clear(TARGET)
    return rows


async def _run(settings: Settings, faults: list[str]) -> dict[str, Any]:
    twin_model = Twin(targets=(TARGET,))
    with TwinRunner(twin_model, host=settings.twin_host, port=settings.twin_port) as twin:
        stderr_progress(f"digital twin: {TARGET} on {twin.url} (control surface + /metrics)")
        demo_db = settings.var_dir / "demo.db"
        demo_db.unlink(missing_ok=True)
        engine = build_engine(settings, {"twin_url": twin.url}, database_url=f"sqlite:///{demo_db}")
        twin.sink = engine.submit
        t0 = [time.time()]
        engine.listeners.append(_stage_printer(t0))
        await engine.start()
        # the daemon's own API, tokens on: the demo approves as an approver would
        auth = Auth.on(engine.store.engine)
        token = auth.tokens.create("demo-approver", Role.approver, by="demo").token
        app = app_for(engine, auth=auth)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            api = Api(f"http://127.0.0.1:{port}", token)
            stderr_progress(f"REST API (approvals): {api.url}")
            rows = await _inject_each(engine, twin, faults, t0, settings, api)
        finally:
            server.should_exit = True
            await serving
            await engine.stop()
            engine.close()
    return {"incidents": rows, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """DESIGN.md's summary plus how each fix was allowed to run and how it ended."""
    mttrs = [r["mttr_s"] for r in rows if r["mttr_s"] is not None]
    auto = [r["mttr_s"] for r in rows if r["mode"] == "auto" and r["mttr_s"] is not None]
    return {
        "faults": len(rows),
        "resolved": sum(1 for r in rows if r["state"] == State.resolved),
        "mttr_s_p50": round(statistics.median(mttrs), 2) if mttrs else None,
        "automatic": sum(1 for r in rows if r["mode"] == "auto"),
        "approved_via_api": sum(1 for r in rows if r["approved_via"]),
        "mttr_s_p50_automatic": round(statistics.median(auto), 2) if auto else None,
        "rolled_back": sum(1 for r in rows if r["rolled_back"]),
        # a remedy that ran but is not one for the injected fault (paper goal: 0)
        "wrong_remedies": sum(
            1 for r in rows if "run" in r["runs"] and r.get("remedy_fixes_fault") is False
        ),
        "rca_top1": sum(1 for r in rows if r["top_cause"] == r["fault"]),
    }


def print_human(result: dict[str, Any]) -> None:
    print("\nmendloop demo — one loop per fault")
    for row in result["incidents"]:
        print(
            f"- {row['fault']}: {row['state']}; detected after {row['detected_after_s']} s, "
            f"RCA after {row['rca_after_s']} s -> {row['top_cause']}; matched "
            f"{row['matched_case']} (similarity {row['similarity']}); ran {row['playbook']} "
            f"({row['mode']}{', approved via the API' if row.get('approved_via') else ''}); "
            f"verified={row['verified']}; MTTR {row['mttr_s']} s"
        )
        if row.get("autonomy"):
            print(f"  {row['autonomy']}")
        if row.get("reason"):
            print(f"  reason: {row['reason']}")
    s = result["summary"]
    print(
        f"{s['resolved']}/{s['faults']} resolved ({s['automatic']} automatic, "
        f"{s['approved_via_api']} approved through the API); MTTR p50 {s['mttr_s_p50']} s"
    )


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """`mendloop demo [--faults A,B|all] [--json]`."""
    faults = [f.strip() for f in args.faults.split(",") if f.strip()] if args.faults else None
    if faults == ["all"]:
        faults = list(FAULTS)
    unknown = [f for f in faults or () if f not in FAULTS]
    if unknown:
        raise MendloopError(
            f"unknown fault(s) {', '.join(unknown)}; the twin knows: {', '.join(sorted(FAULTS))}"
        )
    return run_demo(settings, faults, args.json)


def run_demo(settings: Settings, faults: list[str] | None, as_json: bool) -> int:
    result = asyncio.run(_run(settings, list(faults or DEFAULT_FAULTS)))
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print_human(result)
    return 0 if result["summary"]["resolved"] == result["summary"]["faults"] else 1
