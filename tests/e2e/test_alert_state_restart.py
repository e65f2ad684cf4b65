"""The Alertmanager intake's state across a real daemon restart (loop/alertstate.py): the
lab's `mendloop run` on a site including the redis pack (its own SQLite; shadow mode: it
decides and records, runs nothing) takes a firing RedisDown, is stopped (SIGTERM) and
started again on the same database. The new process still knows the alert fires, takes
the repeated notification for a duplicate and the resolution for a resolution, so the
alert series goes back to 0 (with the state in memory it was `resolved_before_firing` and
the series stayed at 1). The test plays Alertmanager (tests/api/test_alertmanager.py and
the packs' e2e tests have the real one send)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.config import Settings
from mendloop.labclient import Daemon
from mendloop.labpacks.redis import RedisScenario
from mendloop.servicelab import Lab, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
T0 = "2026-12-06T10:00:00Z"


def notification(status: str, target: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "RedisDown", "target": target, "severity": "critical"},
        "startsAt": T0,
        "fingerprint": "4ed15d0",
    }
    return {
        "version": "4", "groupKey": "{}:{alertname=\"RedisDown\"}", "status": status,
        "receiver": "mendloop", "alerts": [alert],
    }  # fmt: skip


def post(daemon: Daemon, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(
        f"{daemon.url}/v1/alerts/alertmanager", json=body, headers=daemon.headers, timeout=30
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["counts"])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, RedisScenario, Path]]:
    with Lab(tmp_path / "lab") as lab:
        scenario = RedisScenario(lab)
        yield lab, scenario, scenario.site(tmp_path / "site")


def test_a_restarted_daemon_still_knows_which_alerts_fire(lab, neo4j_settings: Settings) -> None:
    lab_, scenario, site = lab
    neo4j = neo4j_settings.neo4j_environ()
    env = {"MENDLOOP_SHADOW": "all"}
    port = free_port()
    first = lab_.daemon(site, neo4j, env=env, port=port)
    assert post(first, notification("firing", scenario.target))["firing_new"] == 1
    fired = first.get("/v1/intake/alertmanager")["firing"]
    assert fired == {scenario.target: ["alert_redis_down"]}
    first.close()
    first.proc.stop()

    again = lab_.daemon(site, neo4j, env=env, port=port)  # same var dir, same database
    try:
        assert again.get("/v1/intake/alertmanager")["firing"] == fired
        assert post(again, notification("firing", scenario.target)) == {
            "notifications": 1, "alerts": 1, "firing_duplicate": 1,
        }  # fmt: skip
        assert post(again, notification("resolved", scenario.target)) == {
            "notifications": 1, "alerts": 1, "resolved": 1,
        }  # fmt: skip
        assert again.get("/v1/intake/alertmanager")["firing"] == {}
        counters = again.get("/v1/intake/alertmanager")["counters"]
        assert "resolved_before_firing" not in counters
    finally:
        again.close()
        again.proc.stop()
