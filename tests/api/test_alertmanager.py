"""Alertmanager's webhook (api/alertmanager.py, loop/alertmanager.py, rules/alerts.py) over
a real monitor and the real analyzer (durable_rules): firing alerts open a rule finding,
resolved ones make the series healthy for verification, everything else is counted and
unmapped alerts are kept (in SQL). The last test has the real Debian prometheus-alertmanager send
to the API, authenticated with a token through its own http_config."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from api.alertmanager import alertmanager_router
from api.app import create_app
from api.auth import Auth, Role, TokenStore
from kernel.config import DEFAULT_SITE, TWIN_PACK
from kernel.errors import RuleFileError
from loop.alertmanager import MAX_ALERTS, AlertIntake, AmWebhook
from loop.alertstate import AlertState
from loop.analyze import Analyzer
from loop.db.engine import make_engine
from loop.monitor import Monitor
from loop.store import IncidentStore
from loop.verify import check_metrics
from rules import RULES_DIR
from rules.alerts import load_alert_map
from rules.catalog import Catalog, load_catalog
from rules.compiler import load_rules

ALERT_ENTRY = {
    "name": "alert_cache_saturated", "unit": "alerts", "subsystem": "cache", "layer": "system",
    "bad": "high", "warn": 0.5, "crit": 0.5, "duration_s": 0, "sqi_role": "none",
    "description": "Alertmanager: the cache is saturated (1 while firing).",
}  # fmt: skip
ALERT_RULE = {
    "id": "alert-cache-saturated", "fault": "cache_saturation", "component": "cache",
    "summary": "Alertmanager says the cache is saturated",
    "all": [{"series": "alert_cache_saturated"}],
}  # fmt: skip
ALERTS = {
    "alerts": [
        {"alertname": "CacheSaturated", "match": {"severity": {"=~": "critical|page"}},
         "series": "alert_cache_saturated", "target_label": "instance"},
    ]
}  # fmt: skip
T0 = "2026-12-06T10:00:00Z"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules dir: the shipped catalog plus the alert's series, the shipped rules plus one
    on it, and alerts.yaml."""
    root = tmp_path_factory.mktemp("site")
    catalog = yaml.safe_load((TWIN_PACK / "metrics.yaml").read_text())  # the twin's
    catalog["metrics"].append(ALERT_ENTRY)
    (root / "metrics.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    for rules_file in RULES_DIR.glob("*.yaml"):
        if rules_file.name != "metrics.yaml":
            (root / rules_file.name).write_text(rules_file.read_text())
    (root / "alert_rules.yaml").write_text(yaml.safe_dump({"rules": [ALERT_RULE]}))
    (root / "alerts.yaml").write_text(yaml.safe_dump(ALERTS, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def catalog(site: Path) -> Catalog:
    return load_catalog(site / "metrics.yaml")


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[Engine]:
    """The intake's state on a real SQLite file (tests/loop/test_alertstate.py: PostgreSQL)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def parts(
    site: Path, catalog: Catalog, sql: Engine
) -> tuple[Monitor, Analyzer, AlertIntake, list[Any]]:
    monitor = Monitor(catalog, window_s=60)
    analyzer = Analyzer(catalog, load_rules(catalog, site))
    findings: list[Any] = []

    def submit(batch: list[Any], *, owner: str | None = None) -> Any:
        result = monitor.ingest(batch, owner=owner)
        findings.extend(analyzer.observe(result.latest))
        return result

    intake = AlertIntake(load_alert_map(site / "alerts.yaml", catalog), submit, AlertState(sql))
    return monitor, analyzer, intake, findings


@pytest.fixture
def client(parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]]) -> TestClient:
    app = FastAPI()
    app.include_router(alertmanager_router(parts[2]))
    return TestClient(app)


def alert(
    fingerprint: str = "a1", status: str = "firing", starts: str = T0, **labels: str
) -> dict[str, Any]:
    base = {"alertname": "CacheSaturated", "severity": "critical", "instance": "pm-site-1"}
    labels = base | labels
    return {
        "status": status, "labels": labels, "annotations": {"summary": "s"},
        "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else T0,
        "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
    }  # fmt: skip


def webhook(*alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": '{}:{alertname="CacheSaturated"}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "mendloop", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts), **extra,
    }  # fmt: skip


def post(client: TestClient, *alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    reply = client.post("/v1/alerts/alertmanager", json=webhook(*alerts, **extra))
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_firing_opens_a_rule_finding_and_resolved_is_verification_evidence(
    client: TestClient, parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]]
) -> None:
    monitor, analyzer, intake, findings = parts
    answer = post(client, alert())
    assert answer["counts"]["firing_new"] == 1 and answer["accepted"] == 1
    assert monitor.latest("pm-site-1", "alert_cache_saturated")[1] == 1.0
    (finding,) = findings
    assert finding.rule_id == "alert-cache-saturated" and finding.target == "pm-site-1"
    assert analyzer.rules[finding.rule_id].fault == "cache_saturation"
    fixed_at = time.time()
    time.sleep(0.01)  # the resolved point must come after the fix (a real delay, not timed)
    answer = post(client, alert(status="resolved"), status="resolved")
    assert answer["counts"]["resolved"] == 1
    latest = {"alert_cache_saturated": monitor.latest("pm-site-1", "alert_cache_saturated")}
    (check,) = check_metrics(analyzer.catalog, latest, fixed_at)
    assert check.healthy and check.value == 0.0
    assert intake.firing() == {}


def test_duplicates_and_resolved_before_firing_are_counted_and_ignored(
    client: TestClient, parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]]
) -> None:
    monitor, _, intake, _ = parts
    post(client, alert())
    again = post(client, alert())  # Alertmanager repeats a notification
    assert again["counts"]["firing_duplicate"] == 1 and again["points"] == 0
    early = post(client, alert("b2", status="resolved"))
    assert early["counts"]["resolved_before_firing"] == 1 and early["points"] == 0
    post(client, alert(status="resolved"))
    twice = post(client, alert(status="resolved"))
    assert twice["counts"]["resolved_duplicate"] == 1
    refired = post(client, alert(starts="2026-12-06T11:00:00Z"))  # fired again: a new episode
    assert refired["counts"]["firing_new"] == 1
    counts = intake.counters()
    assert counts["firing_new"] == 2 and counts["resolved"] == 1 and counts["alerts"] == 6
    assert monitor.latest("pm-site-1", "alert_cache_saturated")[1] == 1.0


def test_a_series_stays_firing_while_any_of_its_alerts_fires(
    client: TestClient, parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]]
) -> None:
    monitor = parts[0]
    post(client, alert("a1", mountpoint="/"), alert("a2", mountpoint="/var"))
    post(client, alert("a1", status="resolved", mountpoint="/"))
    assert monitor.latest("pm-site-1", "alert_cache_saturated")[1] == 1.0
    post(client, alert("a2", status="resolved", mountpoint="/var"))
    assert monitor.latest("pm-site-1", "alert_cache_saturated")[1] == 0.0


def test_unmapped_alerts_are_counted_kept_and_visible(client: TestClient) -> None:
    bad = [
        alert("c1", alertname="DiskFull"),  # no alerts.yaml entry
        alert("c2", severity="info"),  # the entry's matchers do not hold
        {**alert("c3"), "labels": {"severity": "critical", "instance": "x"}},  # no alertname
        {**alert("c4"), "labels": {"alertname": "CacheSaturated", "severity": "page"}},
        alert("c5", instance="bad target;rm -rf /"),
    ]
    answer = post(client, *bad)
    assert answer["points"] == 0
    assert answer["counts"] == {
        "notifications": 1, "alerts": 5, "unmapped_unknown_alert": 1, "unmapped_no_match": 1,
        "unmapped_missing_labels": 2, "unmapped_bad_target": 1,
    }  # fmt: skip
    kept = client.get("/v1/alerts/unmapped").json()
    assert [k["fingerprint"] for k in kept] == ["c5", "c4", "c3", "c2", "c1"]
    assert kept[0]["labels"]["instance"] == "bad target;rm -rf /"  # kept as data, never run
    assert client.get("/v1/intake/alertmanager").json()["counters"]["unmapped_bad_target"] == 1


def test_the_firing_state_is_bounded_and_letting_go_is_counted(
    site: Path,
    catalog: Catalog,
    sql: Engine,
    parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]],
) -> None:
    monitor = parts[0]
    alert_map = load_alert_map(site / "alerts.yaml", catalog)
    intake = AlertIntake(alert_map, monitor.ingest, AlertState(sql, remembered=2))
    intake.receive(AmWebhook.model_validate(webhook(alert("a1", instance="h1"))))
    time.sleep(0.01)  # each notification's points are newer than the last (not timed)
    both = webhook(alert("a2", instance="h2"), alert("a3", instance="h3"))
    outcome = intake.receive(AmWebhook.model_validate(both))
    assert outcome.counts["forgotten_firing"] == 1
    assert monitor.latest("h1", "alert_cache_saturated")[1] == 0.0  # let go: not firing for ever
    assert intake.firing() == {"h2": ["alert_cache_saturated"], "h3": ["alert_cache_saturated"]}


@pytest.mark.parametrize(
    "change",
    [
        {"version": "3"},
        {"alerts": [{**alert(), "fingerprint": "not hex"}]},
        {"alerts": [{**alert(), "status": "pending"}]},
        {"alerts": [{**alert(), "labels": {"alertname": 5}}]},
        {"alerts": [{**alert(), "labels": {f"l{i}": "v" for i in range(65)}}]},
        {"alerts": [{**alert(), "annotations": {"description": "x" * 5000}}]},
        {"alerts": [alert(f"{i:x}") for i in range(MAX_ALERTS + 1)]},
        {"truncatedAlerts": -1},
        {"receiver": "r" * 300},
    ],
)
def test_malformed_payloads_are_refused_with_422(
    client: TestClient, change: dict[str, Any]
) -> None:
    reply = client.post("/v1/alerts/alertmanager", json=webhook(alert()) | change)
    assert reply.status_code == 422


def test_the_alert_map_is_checked_against_the_catalog(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text("alerts:\n  - alertname: X\n    series: no_such_series\n")
    with pytest.raises(RuleFileError, match="no_such_series is not in the metric catalog"):
        load_alert_map(path, catalog)
    path.write_text(
        "alerts:\n  - alertname: X\n    series: cache_hit_ratio\n    match: {a: {'=~': '('}}\n"
    )
    with pytest.raises(RuleFileError, match="bad regex"):
        load_alert_map(path, catalog)


label_text = st.text(max_size=12)
fuzz_alert = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "pending", ""]),
        "labels": st.dictionaries(
            st.sampled_from(["alertname", "instance", "severity", "job", ""]) | label_text,
            st.sampled_from(["CacheSaturated", "pm-site-1", "critical", "a b"]) | label_text,
            max_size=5,
        ),
        "startsAt": st.sampled_from([T0, "2026-12-06T11:00:00Z", "yesterday", ""]),
        "fingerprint": st.sampled_from(["a1", "a2", "ff", "", "zz"]),
    }
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(fuzz_alert, max_size=6),
    st.sampled_from(["4", "3", 4]),
    st.one_of(st.none(), st.integers(-2, 3)),
)
def test_fuzzed_webhooks_never_fail_and_every_alert_is_counted(
    client: TestClient,
    parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]],
    alerts: list[dict[str, Any]],
    version: Any,
    truncated: int | None,
) -> None:
    intake = parts[2]
    before = intake.counters()
    body = webhook(*alerts, version=version)
    if truncated is not None:
        body["truncatedAlerts"] = truncated
    reply = client.post("/v1/alerts/alertmanager", json=body)
    assert reply.status_code in (200, 422), reply.text
    after = intake.counters()
    if reply.status_code == 422:
        assert after == before
        return
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    outcomes = sum(n for k, n in delta.items() if k not in ("notifications", "alerts")
                   and not k.startswith(("points_", "truncated")))  # fmt: skip
    assert delta["alerts"] == len(alerts) == outcomes


# --- the real Alertmanager sending to the API ---------------------------------------------

ALERTMANAGER = os.environ.get("MENDLOOP_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, what: str, log: Path | None = None, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what}: not after {timeout:.0f} s\n{tail}", pytrace=False)


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # served from a thread
        pass


@pytest.fixture
def api(
    tmp_path: Path, parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]]
) -> Iterator[tuple[str, str]]:
    """The API with token auth and the alert intake, served on a free port."""
    monitor, _, intake, _ = parts
    store = IncidentStore(f"sqlite:///{tmp_path / 'api.db'}")
    token = TokenStore(store.engine).create("alertmanager", Role.operator, by="test").token
    app = create_app(store, auth=Auth.on(store.engine), alerts=intake, stats=monitor.stats)
    port = free_port()
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, "the API")
    yield url, token
    server.should_exit = True
    thread.join(15)
    store.close()


@pytest.fixture
def alertmanager(tmp_path: Path, api: tuple[str, str]) -> Iterator[tuple[str, Path]]:
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} is missing: apt-get install -y prometheus-alertmanager")
    url, token = api
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(url=url, token=token))
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    am = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{am}/-/ready").status_code == 200, "Alertmanager ready", log)
    yield am, log
    proc.terminate()
    proc.wait(15)


def test_the_real_alertmanager_fires_and_resolves_through_the_api(
    alertmanager: tuple[str, Path],
    api: tuple[str, str],
    parts: tuple[Monitor, Analyzer, AlertIntake, list[Any]],
) -> None:
    am, log = alertmanager
    monitor, _, intake, findings = parts
    assert httpx.post(f"{api[0]}/v1/alerts/alertmanager", json=webhook()).status_code == 401
    labels = {"alertname": "CacheSaturated", "severity": "critical", "instance": "pm-site-1"}
    unknown = {"alertname": "SomethingElse", "instance": "pm-site-1"}
    sent = [{"labels": labels, "annotations": {"summary": "cache full"}},
            {"labels": unknown, "annotations": {}}]  # fmt: skip
    httpx.post(f"{am}/api/v2/alerts", json=sent).raise_for_status()

    def firing() -> bool:
        latest = monitor.latest("pm-site-1", "alert_cache_saturated")
        return latest is not None and latest[1] == 1.0 and bool(intake.unmapped())

    wait_for(firing, "the firing alert in the monitor, the unknown one unmapped", log)
    assert [f.rule_id for f in findings] == ["alert-cache-saturated"]
    (kept,) = intake.unmapped()
    assert kept.alertname == "SomethingElse" and kept.reason == "unknown_alert"
    fixed_at = time.time()
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    resolve = [{"labels": labels, "endsAt": ended}, {"labels": unknown, "endsAt": ended}]
    httpx.post(f"{am}/api/v2/alerts", json=resolve).raise_for_status()

    def resolved() -> bool:
        latest = monitor.latest("pm-site-1", "alert_cache_saturated")
        return latest is not None and latest[1] == 0.0

    wait_for(resolved, "the resolved alert in the monitor", log)
    latest = {"alert_cache_saturated": monitor.latest("pm-site-1", "alert_cache_saturated")}
    assert check_metrics(monitor.catalog, latest, fixed_at)[0].healthy
    counts = intake.counters()
    assert counts["firing_new"] == 1 and counts["resolved"] == 1
    assert counts["unmapped_unknown_alert"] >= 1 and counts.get("resolved_before_firing", 0) >= 1
    metrics = httpx.get(f"{api[0]}/metrics", headers={"authorization": f"Bearer {api[1]}"}).text
    assert 'mendloop_alertmanager_alerts_total{outcome="firing_new"} 1.0' in metrics


def test_doctor_checks_the_alert_map(site: Path, tmp_path: Path) -> None:
    from kernel.config import Settings
    from mendloop.doctor import _content

    twin_site = tmp_path / "site"  # the twin site plus the alert's series (a site entry)
    shutil.copytree(DEFAULT_SITE, twin_site)
    (twin_site / "metrics.yaml").write_text(yaml.safe_dump({"metrics": [ALERT_ENTRY]}))
    alerts = site / "alerts.yaml"
    good = _content(Settings(site=twin_site, alerts_file=alerts, var_dir=tmp_path))
    assert good.ok and "1 Alertmanager alert mappings" in good.detail
    broken = tmp_path / "alerts.yaml"
    broken.write_text("alerts:\n  - alertname: X\n    series: nope\n")
    bad = _content(Settings(site=twin_site, alerts_file=broken, var_dir=tmp_path))
    assert not bad.ok and f"{broken}:2" in bad.detail and "nope" in bad.detail
