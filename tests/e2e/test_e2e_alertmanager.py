"""The whole loop opened and verified by Alertmanager: the real Debian
prometheus-alertmanager sends its webhook to the API of a running engine (the twin, Neo4j,
ansible-runner, SQLite); the firing alert opens the incident through a rule on its series,
the fix runs for real, and the resolved alert is what lets verification pass.

The test plays Prometheus: it posts the alert to Alertmanager when the twin's cache is
saturated and resolves it once the twin's cache is healthy again. The cache's own metric
rule is left out of this engine's rules, so only the alert can open the incident.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from api.app import create_app
from api.auth import Auth, Role, TokenStore
from kernel.config import DEFAULT_SITE, TWIN_PACK
from kernel.state import State
from loop.alertmanager import AlertIntake
from loop.alertstate import AlertState
from rules.alerts import load_alert_map

from .conftest import LoopHarness, empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

ALERTMANAGER = os.environ.get("MENDLOOP_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
TARGET = "am-1"
SERIES = "alert_cache_saturated"
ALERT = {"alertname": "CacheSaturated", "severity": "critical", "instance": TARGET}
AM_CONFIG = """\
route:
  receiver: mendloop
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: mendloop
    webhook_configs:
      - url: {url}/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization: {{credentials: {token}}}
"""


def site_rules(root: Path) -> Path:
    """A copy of the twin site whose own copy of the power-marketing pack (a site-local
    pack shadows the bundled one, docs/SITES.md) has the alert's series and a rule on it,
    without the cache's metric rule (the alert alone must open the incident); alerts.yaml
    beside site.yaml. Returns the site's directory."""
    shutil.copytree(DEFAULT_SITE, root)
    pack = root / "packs" / TWIN_PACK.name
    shutil.copytree(TWIN_PACK, pack)
    catalog = yaml.safe_load((pack / "metrics.yaml").read_text())
    catalog["metrics"].append(
        {"name": SERIES, "unit": "alerts", "subsystem": "cache", "layer": "system",
         "bad": "high", "warn": 0.5, "crit": 0.5, "duration_s": 0, "sqi_role": "none",
         "description": "Alertmanager: CacheSaturated firing (1) or resolved (0)."}
    )  # fmt: skip
    (pack / "metrics.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    cache = yaml.safe_load((pack / "rules" / "cache.yaml").read_text())
    cache["rules"] = [r for r in cache["rules"] if r["fault"] != "cache_saturation"]
    cache["rules"].append(
        {"id": "alert-cache-saturated", "fault": "cache_saturation", "component": "cache",
         "confidence": 0.9, "summary": "Alertmanager: the cache cluster is saturated",
         "all": [{"series": SERIES}]}
    )  # fmt: skip
    (pack / "rules" / "cache.yaml").write_text(yaml.safe_dump(cache, sort_keys=False))
    (root / "alerts.yaml").write_text(
        yaml.safe_dump({"alerts": [{"alertname": "CacheSaturated", "series": SERIES}]})
    )
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, what: str, timeout_s: float = 120, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise AssertionError(f"never happened: {what}\n{tail}")
        time.sleep(0.2)


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # served from a thread
        pass


@pytest.fixture
def alerting(neo4j_settings, tmp_path: Path) -> Iterator[tuple[LoopHarness, str, Path]]:
    """The engine, its API with the alert intake and tokens, and a real Alertmanager."""
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} is missing: apt-get install -y prometheus-alertmanager")
    empty_graph(neo4j_settings)
    site = site_rules(tmp_path / "site")
    settings = settings_for(
        neo4j_settings, tmp_path / "var", site=site,
        alerts_file=site / "alerts.yaml", verify_hold_s=3.0, verify_timeout_s=60.0,
    )  # fmt: skip
    with LoopHarness(settings, [TARGET]) as loop:
        engine = loop.engine
        assert engine is not None
        alert_map = load_alert_map(site / "alerts.yaml", engine.catalog)
        intake = AlertIntake(alert_map, engine.submit, AlertState(engine.store.engine))
        app = create_app(engine.store, auth=Auth.on(engine.store.engine), alerts=intake)
        token = TokenStore(engine.store.engine).create("am", Role.operator, by="test").token
        port = free_port()
        server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, "the alert API")
        config = tmp_path / "alertmanager.yml"
        config.write_text(AM_CONFIG.format(url=f"http://127.0.0.1:{port}", token=token))
        am_port = free_port()
        log = tmp_path / "alertmanager.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                 "--log.level=debug"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        am = f"http://127.0.0.1:{am_port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{am}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, "Alertmanager ready", log=log)
        try:
            yield loop, am, log
        finally:
            proc.terminate()
            proc.wait(15)
            server.should_exit = True
            thread.join(15)


def test_an_alert_opens_the_incident_and_its_resolution_verifies_the_fix(alerting) -> None:
    loop, am, log = alerting
    engine = loop.engine
    time.sleep(2)  # a healthy baseline first
    loop.inject(TARGET, "cache_saturation")

    def saturated() -> bool:  # what Prometheus' alerting rule would see
        point = engine.monitor.latest(TARGET, "cache_utilization_pct")
        return point is not None and not engine.catalog["cache_utilization_pct"].is_healthy(
            point[1]
        )

    wait_for(saturated, "the twin's cache saturated", log=log)
    httpx.post(f"{am}/api/v2/alerts", json=[{"labels": ALERT}], timeout=10).raise_for_status()
    incident_id = loop.wait_opened(TARGET, timeout_s=60)
    opened = engine.store.get(incident_id)
    assert [f.rule_id for f in opened.findings] == ["alert-cache-saturated"]

    resolved_sent = threading.Event()

    def play_prometheus() -> None:  # resolve the alert once the cache is healthy again
        while not resolved_sent.is_set():
            point = engine.monitor.latest(TARGET, "cache_utilization_pct")
            healthy = point is not None and engine.catalog["cache_utilization_pct"].is_healthy(
                point[1]
            )
            if healthy and engine.store.get(incident_id).state == State.verifying:
                ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
                httpx.post(f"{am}/api/v2/alerts", json=[{"labels": ALERT, "endsAt": ended}],
                           timeout=10).raise_for_status()  # fmt: skip
                resolved_sent.set()
            time.sleep(0.3)

    prometheus = threading.Thread(target=play_prometheus, daemon=True)
    prometheus.start()
    incident = loop.wait_settled(incident_id)
    if incident.state == State.awaiting_approval:
        assert loop.approve(incident_id).status_code == 200
        incident = loop.wait_settled(incident_id)
    resolved_sent.set()
    prometheus.join(10)
    assert incident.state == State.resolved, (incident.state, incident.reason)
    assert incident.fault == "cache_saturation"
    verification = incident.verification
    assert verification is not None
    alert_checks = [c for c in verification.checks if c.series == SERIES]
    assert alert_checks and alert_checks[0].healthy and alert_checks[0].value == 0.0
