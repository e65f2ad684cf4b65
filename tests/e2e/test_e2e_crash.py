"""`kill -9` of the daemon (`mendloop run`, a real process) while its playbook runs, then a
restart: the incident completes and the playbook did not run twice.

The twin runs in the test and pushes its samples to the daemon's REST API. The cache
playbook is held open after its change (it waits for a gate file), so the kill lands in
the middle of a run that has already taken effect; the restarted daemon finds the run
``started`` in SQL, asks the playbook's check mode, sees nothing left to do and goes on
to verification instead of repeating it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import Role, TokenStore
from loop.ledger import INTERRUPTED, Ledger
from loop.store import IncidentStore
from twin.model import Twin
from twin.server import TwinRunner, http_sink

from .conftest import empty_graph, gated_site

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "pm-site-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mendloop.cli", "run"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the test can clean up after it
    )


def wait_for(predicate, what: str, proc: subprocess.Popen[bytes], timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}) before: {what}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.3)


def daemon_env(
    neo4j_settings: Any,
    tmp_path: Path,
    api_port: int,
    twin_port: int,
    site: Path,
    verify_timeout_s: float,
    **extra: str,
) -> dict[str, str]:
    """The environment of a `mendloop run` under test: its own var/, ports, site (a copy
    of the twin site with gated playbooks) and the tests' Neo4j; a 3 s verification hold."""
    return {
        **os.environ,
        "MENDLOOP_VAR_DIR": str(tmp_path / "var"),
        "MENDLOOP_API_PORT": str(api_port),
        "MENDLOOP_TWIN_PORT": str(twin_port),
        "MENDLOOP_SITE": str(site),
        "MENDLOOP_VERIFY_HOLD_S": "3",
        "MENDLOOP_VERIFY_TIMEOUT_S": f"{verify_timeout_s:g}",
        **neo4j_settings.neo4j_environ(),
        **extra,
    }


def wait_finished(
    api: str, incident_id: str, daemon: subprocess.Popen[bytes], token: str = ""
) -> dict:
    """The incident as the API shows it once it has ended."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def finished() -> dict | None:
        body = httpx.get(f"{api}/v1/incidents/{incident_id}", headers=headers).json()
        return body if body["state"] in ("resolved", "rolled_back", "escalated") else None

    return wait_for(finished, "the incident finished", daemon)


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGINT (a clean stop), then SIGKILL of its whole process group if it hangs."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)


def test_kill_9_during_the_playbook_then_restart_completes_without_a_second_run(
    neo4j_settings, tmp_path
) -> None:
    empty_graph(neo4j_settings)
    gate = tmp_path / "gate"
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    twin = TwinRunner(Twin(targets=(TARGET,), seed=3), tick_s=0.5, port=0)
    twin.start()
    site = gated_site(tmp_path / "site", gate, ["cache_scale_out.yml"], twin.url)
    env = daemon_env(neo4j_settings, tmp_path, api_port, twin.port, site, verify_timeout_s=90)
    log = tmp_path / "daemon.log"
    (tmp_path / "var").mkdir()
    store = IncidentStore(f"sqlite:///{tmp_path / 'var' / 'mendloop.db'}")
    pusher = TokenStore(store.engine).create("twin", Role.operator).token  # auth is on
    daemon = start_daemon(env, log)
    try:
        wait_for(lambda: httpx.get(f"{api}/healthz").status_code == 200, "API up", daemon)
        twin.sink = http_sink(f"{api}/v1/samples", token=pusher)
        time.sleep(2)  # a healthy baseline first
        with twin.locked() as model:
            model.inject(TARGET, "cache_saturation")

        def applied() -> bool:
            with twin.locked() as model:
                return bool(model.state(TARGET)["actions"])

        wait_for(applied, "the real run changed the twin", daemon)
        (incident,) = store.list(target=TARGET)
        assert incident.state == "executing"
        runs = Ledger(store.engine).runs(incident.id)
        assert [(r.phase, r.status) for r in runs][-1] == ("run", "started")

        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its ansible-playbook
        daemon.wait(30)
        gate.touch()
        daemon = start_daemon(env, log)  # the restart

        body = wait_finished(api, incident.id, daemon, token=pusher)
    finally:
        stop_daemon(daemon)
        twin.stop()

    assert body["state"] == "resolved", (body["reason"], log.read_text()[-3000:])
    with twin.locked() as model:
        state = model.state(TARGET)
    assert [a["action"] for a in state["actions"]] == ["scale_out_cache"]  # ran once
    assert state["faults"] == []
    runs = Ledger(store.engine).runs(incident.id)
    assert [(r.phase, r.status) for r in runs] == [
        ("check", "successful"),
        ("run", INTERRUPTED),
        ("reconcile-run", "successful"),
    ]
    assert runs[2].changed == 0  # check mode: nothing left to do
    notes = [t["note"] for t in body["timeline"]]
    assert any("verifying" in n for n in notes)
    store.close()
