"""`mendloop eval packs`: per pack and fault, how long the real loop takes to see a broken
real service (detection delay: injection -> incident opened) and to have it verified fixed
(MTTR: injection -> incident resolved), through each intake path:

- ``pull``: Prometheus scrapes the exporter, the daemon pulls from Prometheus' API;
- ``push``: Prometheus remote-writes every scraped sample into the daemon, and the series
  of the pack's recording rules (``packs/<pack>/prometheus/*.recording.yml``, loaded as a
  user loads them for push: docs/INTAKE.md);
- ``alertmanager``: Prometheus evaluates the pack's alerting rules, the real Alertmanager
  sends its webhook to the daemon, which pulls nothing.

    mendloop eval packs --json                              # every scenario, every path
    mendloop eval packs --packs redis --paths pull,alertmanager

Each pack's service and exporter start once (mendloop/labpacks: the scenario its e2e test
runs); each path gets its own Prometheus (and Alertmanager) and daemon, the faults run in
sequence and the service is reset between them. The daemons use the Neo4j of the settings
and add to it (each seeds the site's cases; resolved incidents become cases): point
NEO4J_URI at a scratch Neo4j. A fault that does not end resolved is reported with its
state and reason, never dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from kernel.config import PACKS_DIR, Settings
from kernel.errors import MendloopError
from mendloop.labclient import Daemon, run_fault
from mendloop.labpacks import Scenario
from mendloop.labpacks.registry import SCENARIOS
from mendloop.servicelab import Lab, LabError, Proc

PATHS = ("pull", "push", "alertmanager")
DAEMON_ENV = {"MENDLOOP_VERIFY_HOLD_S": "3", "MENDLOOP_VERIFY_TIMEOUT_S": "120"}


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def start_path(
    lab: Lab, scenario: Scenario, path: str, site: Path, neo4j: dict[str, str]
) -> tuple[Daemon, list[Proc]]:
    """The daemon and what feeds it for one path; the processes to stop after it."""
    name = f"{scenario.pack}-{path}"
    interval = getattr(scenario, "interval", "1s")  # a scenario may need a longer scrape
    jobs = getattr(scenario, "job_options", None)  # e.g. a blackbox exporter's params
    if path == "pull":
        prom = lab.prometheus(
            scenario.scrape,
            labels=scenario.labels,
            interval=interval,
            name=f"prom-{name}",
            job_options=jobs,
        )
        daemon = lab.daemon(
            site, neo4j, prometheus_url=prom.url, env=DAEMON_ENV, name=f"mendloop-{name}"
        )
        return daemon, [prom]
    if path == "push":
        daemon = lab.daemon(site, neo4j, env=DAEMON_ENV, name=f"mendloop-{name}")
        prom = lab.prometheus(
            scenario.scrape,
            labels=scenario.labels,
            interval=interval,
            remote_write=f"{daemon.url}/api/v1/write",
            token=daemon.token,
            rule_files=recording_rules(scenario.pack),
            name=f"prom-{name}",
            job_options=jobs,
        )
        return daemon, [prom]
    daemon = lab.daemon(site, neo4j, env=DAEMON_ENV, name=f"mendloop-{name}")
    am = lab.alertmanager(
        f"{daemon.url}/v1/alerts/alertmanager", token=daemon.token, name=f"am-{name}"
    )
    prom = lab.prometheus(
        scenario.scrape,
        labels=scenario.labels,
        interval=interval,
        alertmanager=am.url,
        rule_files=scenario.rule_files(),
        name=f"prom-{name}",
        job_options=jobs,
    )
    return daemon, [prom, am]


def recording_rules(pack: str) -> list[Path]:
    """The pack's Prometheus recording rules: what its catalog's push series are recorded by
    (an entry with ``expr:`` and ``metric:``, rules/catalog.py)."""
    return sorted((PACKS_DIR / pack / "prometheus").glob("*.recording.yml"))


def wait_baseline(lab: Lab, daemon: Daemon, feeders: list[Proc], path: str) -> None:
    """Until Prometheus scrapes the exporter and (pull, push) the daemon took samples."""
    prom = feeders[0]

    def scraped() -> bool:
        answer = httpx.get(f"{prom.url}/api/v1/query", params={"query": "up"}, timeout=5)
        return any(r["value"][1] == "1" for r in answer.json()["data"]["result"])

    lab.wait(scraped, "Prometheus scraping the exporter", 60, feeders)
    if path != "alertmanager":

        def accepted() -> bool:
            return int(daemon.get("/v1/intake")["counters"].get("accepted", 0)) > 0

        lab.wait(accepted, "the daemon taking samples", 60, [daemon.proc])
    time.sleep(3)  # a few healthy rounds before the first fault


def run_path(
    lab: Lab, scenario: Scenario, path: str, neo4j: dict[str, str], progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    site = scenario.site(lab.root / f"site-{path}")
    rows: list[dict[str, Any]] = []
    daemon, feeders = start_path(lab, scenario, path, site, neo4j)
    try:
        wait_baseline(lab, daemon, feeders, path)
        for fault in scenario.faults:
            row: dict[str, Any] = {"pack": scenario.pack, "path": path, "fault": fault.name}
            try:
                outcome = run_fault(daemon, scenario.target, fault.inject)
                found = outcome.as_dict()
                row |= found | {"fault": fault.name, "diagnosed": found["fault"]}
                row["expected"] = fault.expected
                row["service_healthy"] = healthy_within(lab, fault.healthy, 30)
            except LabError as exc:  # no incident, or it never ended: said, not dropped
                row |= {"state": "error", "reason": str(exc)[:500]}
            progress(
                f"{scenario.pack}/{path}/{fault.name}: {row.get('state')} "
                f"detection {row.get('detection_s')} s, MTTR {row.get('mttr_s')} s"
            )
            rows.append(row)
            try:
                fault.reset()
            except (LabError, OSError) as exc:  # the next faults would measure a broken service
                row["reset_error"] = str(exc)[:500]
                break
            time.sleep(3)  # healthy again before the next fault
    finally:
        daemon.close()
        daemon.proc.stop()
        for proc in feeders:
            proc.stop()
    return rows


def healthy_within(lab: Lab, healthy: Callable[[], bool], timeout: float) -> bool:
    """The scenario's own health check, given ``timeout`` s to hold (False, not an error:
    the incident's outcome stays what the loop said)."""
    try:
        return bool(lab.wait(healthy, "the service healthy again", timeout))
    except LabError:
        return False


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pack and path: faults run, verified fixes, median detection and MTTR."""
    out = []
    for key in sorted({(r["pack"], r["path"]) for r in rows}):
        mine = [r for r in rows if (r["pack"], r["path"]) == key]
        fixed = [r for r in mine if r.get("state") == "resolved" and r.get("mttr_s") is not None]
        out.append(
            {
                "pack": key[0],
                "path": key[1],
                "faults": len(mine),
                "verified_fixed": sum(r.get("verification") == "passed" for r in fixed),
                "median_detection_s": _median([r["detection_s"] for r in fixed]),
                "median_mttr_s": _median([r["mttr_s"] for r in fixed]),
            }
        )
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def evaluate_packs(
    packs: Sequence[str],
    paths: Sequence[str],
    neo4j: dict[str, str],
    root: Path,
    progress: Callable[[str], None] = _progress,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    started = time.time()
    for pack in packs:
        with Lab(root / pack) as lab:
            scenario = SCENARIOS[pack](lab)
            for path in paths:
                progress(f"{pack}: {path}")
                rows.extend(run_path(lab, scenario, path, neo4j, progress))
    return {
        "machine": machine(),
        "packs": list(packs),
        "paths": list(paths),
        "wall_s": round(time.time() - started, 1),
        "summary": summarize(rows),
        "results": rows,
    }


def _split(text: str | None, known: Sequence[str], what: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()] if text else list(known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise MendloopError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def cmd_eval_packs(args: argparse.Namespace, settings: Settings) -> int:
    packs = _split(args.packs, sorted(SCENARIOS), "packs")
    paths = _split(args.paths, PATHS, "paths")
    neo4j = settings.neo4j_environ()
    with tempfile.TemporaryDirectory(prefix="mendloop-eval-packs-") as tmp:
        result = evaluate_packs(packs, paths, neo4j, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'pack':<12}{'path':<14}{'fixed':>8}{'detect s':>10}{'MTTR s':>9}")
        for s in result["summary"]:
            print(
                f"{s['pack']:<12}{s['path']:<14}{s['verified_fixed']:>4}/{s['faults']:<3}"
                f"{s['median_detection_s']!s:>10}{s['median_mttr_s']!s:>9}"
            )
    return 0 if all(r.get("verification") == "passed" for r in result["results"]) else 1
