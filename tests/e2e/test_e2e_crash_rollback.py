"""`kill -9` of the daemon (`mendloop run`, a real process) while it *rolls back* a fix that
verification rejected, then a restart: the rollback is reconciled through its check mode,
never run twice, and the incident ends ``rolled_back`` with the reason it rolled back.

The cache fix runs for real; then the test breaks the cache again, so verification times
out and the rollback starts. The rollback playbook is held open after its change (it
waits for a gate file), so the kill lands in the middle of a rollback that has already
taken effect; the restarted daemon finds its row ``started`` in SQL, asks the rollback's
check mode, sees nothing left to revert and ends the incident without re-running it.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from loop.ledger import INTERRUPTED, Ledger
from loop.store import IncidentStore
from twin.model import Twin
from twin.server import TwinRunner, http_sink

from .conftest import empty_graph, gated_site
from .test_e2e_crash import (
    daemon_env,
    free_port,
    start_daemon,
    stop_daemon,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "pm-site-1"


def test_kill_9_during_the_rollback_then_restart_reconciles_it(neo4j_settings, tmp_path) -> None:
    empty_graph(neo4j_settings)
    gate = tmp_path / "gate"
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    twin = TwinRunner(Twin(targets=(TARGET,), seed=5), tick_s=0.5, port=0)
    twin.start()
    site = gated_site(tmp_path / "site", gate, ["cache_scale_out_rollback.yml"], twin.url)
    env = daemon_env(
        neo4j_settings,
        tmp_path,
        api_port,
        twin.port,
        site,
        verify_timeout_s=8,
        MENDLOOP_API_AUTH="false",  # this test is about the loop, not the API's tokens
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    store = None
    try:
        wait_for(lambda: httpx.get(f"{api}/healthz").status_code == 200, "API up", daemon)
        store = IncidentStore(f"sqlite:///{tmp_path / 'var' / 'mendloop.db'}")
        twin.sink = http_sink(f"{api}/v1/samples")
        time.sleep(2)  # a healthy baseline first
        with twin.locked() as model:
            model.inject(TARGET, "cache_saturation")

        def repaired() -> bool:
            with twin.locked() as model:
                return bool(model.state(TARGET)["actions"])

        wait_for(repaired, "the fix ran", daemon)
        with twin.locked() as model:  # the cache breaks again: verification must fail
            model.inject(TARGET, "cache_saturation")

        def rolled_back_on_twin() -> bool:
            with twin.locked() as model:
                return any(a["rolled_back_at"] for a in model.state(TARGET)["actions"])

        wait_for(rolled_back_on_twin, "the rollback changed the twin", daemon)
        (incident,) = store.list(target=TARGET)
        assert incident.state == "verifying"
        runs = Ledger(store.engine).runs(incident.id)
        assert [(r.phase, r.status) for r in runs][-1] == ("rollback", "started")

        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its ansible-playbook
        daemon.wait(30)
        # the cache stays broken: no more samples, or the restarted daemon would open (and
        # fix) a new incident for it while this one is being reconciled
        twin.sink = None
        gate.touch()
        daemon = start_daemon(env, log)  # the restart

        body = wait_finished(api, incident.id, daemon)
    finally:
        stop_daemon(daemon)
        twin.stop()

    assert body["state"] == "rolled_back", (body["reason"], log.read_text()[-3000:])
    assert "verification timed_out" in body["reason"]  # why it rolled back, kept across
    assert "took effect; not re-run" in body["reason"]
    with twin.locked() as model:
        state = model.state(TARGET)
    (action,) = state["actions"]  # the fix once, rolled back once
    assert action["action"] == "scale_out_cache" and action["rolled_back_at"] is not None
    assert store is not None
    runs = Ledger(store.engine).runs(incident.id)
    assert [(r.phase, r.status) for r in runs] == [
        ("check", "successful"),
        ("run", "successful"),
        ("rollback", INTERRUPTED),
        ("reconcile-rollback", "successful"),
    ]
    assert runs[3].changed == 0  # check mode: nothing left to revert
    store.close()
