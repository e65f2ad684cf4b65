"""Series identity through the push parsers (Prometheus text, OTLP/HTTP JSON): the same
catalog matchers file each label set under its own entry, and what none takes, two take,
or a second label set of one entry is counted by reason and told to the sender."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.ingest import ingest_router
from loop.monitor import Monitor
from rules.catalog import load_catalog

FS = "node_filesystem_avail_bytes"


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "unit": "By", "subsystem": "host", "layer": "host", "bad": "low",
        "warn": 2.0, "crit": 1.0, "duration_s": 0, "sqi_role": "none",
        "description": f"{name} (test)", **extra,
    }  # fmt: skip


@pytest.fixture
def monitor(tmp_path: Path) -> Monitor:
    entries = [
        entry("disk_avail_root_bytes", metric=FS, match={"mountpoint": "/"}),
        entry("disk_avail_var_bytes", metric=FS, match={"mountpoint": {"=~": "/var.*"}}),
        entry("disk_avail_varlog_bytes", metric=FS, match={"mountpoint": "/var/log"}),
    ]
    path = tmp_path / "metrics.yaml"
    path.write_text(yaml.safe_dump({"metrics": entries}))
    return Monitor(load_catalog(path), window_s=30)


@pytest.fixture
def client(monitor: Monitor) -> TestClient:
    app = FastAPI()
    app.include_router(ingest_router(monitor.ingest))
    return TestClient(app)


def test_text_push_files_each_mount_point_apart(client: TestClient, monitor: Monitor) -> None:
    ms = int(time.time() * 1000)
    text = "".join(
        f'{FS}{{instance="h1",mountpoint="{m}"}} {v} {ms}\n'
        for m, v in (("/", 1), ("/var", 2), ("/var/log", 3), ("/home", 4), ("/var/tmp", 5))
    )
    reply = client.post("/v1/samples/prometheus", content=text,
                        headers={"content-type": "text/plain"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["accepted"] == 2
    assert {(r["line"], r["reason"]) for r in body["rejected"]} == {
        (3, "ambiguous_match"), (4, "no_catalog_match"), (5, "label_conflict")
    }  # fmt: skip
    assert monitor.latest("h1", "disk_avail_root_bytes")[1] == 1.0
    assert monitor.latest("h1", "disk_avail_var_bytes")[1] == 2.0  # never /var/tmp's 5


def test_otlp_push_files_each_mount_point_apart(client: TestClient, monitor: Monitor) -> None:
    now = str(int(time.time() * 1e9))
    points = [
        {"timeUnixNano": now, "asDouble": v,
         "attributes": [{"key": "mountpoint", "value": {"stringValue": m}}]}
        for m, v in (("/", 1.0), ("/var", 2.0), ("/home", 4.0))
    ]  # fmt: skip
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "h1"}}]},
                "scopeMetrics": [{"metrics": [{"name": FS, "unit": "By",
                                               "gauge": {"dataPoints": points}}]}],
            }
        ]
    }  # fmt: skip
    reply = client.post("/v1/metrics", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["accepted"] == 2 and answer["partialSuccess"]["rejectedDataPoints"] == "1"
    assert [r["reason"] for r in answer["rejected"]] == ["no_catalog_match"]
    assert monitor.latest("h1", "disk_avail_root_bytes")[1] == 1.0
    assert monitor.latest("h1", "disk_avail_var_bytes")[1] == 2.0
