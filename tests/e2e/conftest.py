"""A whole loop on real components for the end-to-end tests: the twin (HTTP control surface),
the engine (durable_rules, Neo4j, ansible-runner, SQLite) and the REST API, running in a
background thread's event loop so several tests can share one of them.

    with LoopHarness(settings, targets) as loop:
        loop.inject("e2e-1", "cache_saturation")
        incident = loop.wait_settled(loop.wait_opened("e2e-1"))
        loop.approve(incident.id)            # through POST /v1/incidents/{id}/approve
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from kernel.config import DEFAULT_SITE, TWIN_PACK, Settings
from kernel.state import State
from loop.daemon import Engine
from loop.store import IncidentView
from mendloop.labclient import Daemon, FaultOutcome
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner


def empty_graph(settings: Settings) -> None:
    """The tests own the test database: start from an empty graph (seeded by the engine)."""
    from knowledge.graph import KnowledgeGraph

    graph = KnowledgeGraph.connect(settings)
    try:
        graph._run("MATCH (n) DETACH DELETE n")
    finally:
        graph.close()


def assert_verified_fix(outcome: FaultOutcome, expected: str, daemon: Daemon) -> None:
    """A lab fault (tests/packs) ended resolved by the expected fault's fix, verified."""
    assert outcome.state == "resolved", (outcome, daemon.proc.log_tail())
    assert outcome.fault == expected
    assert outcome.verification == "passed"
    assert outcome.detection_s >= 0 and outcome.mttr_s is not None


class LoopHarness:
    def __init__(self, settings: Settings, targets: Iterable[str], seed: int = 7) -> None:
        self.settings = settings
        self.twin = TwinRunner(Twin(targets=tuple(targets), seed=seed), tick_s=0.5, port=0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.engine: Engine | None = None
        self.server: uvicorn.Server | None = None
        self._serve: asyncio.Task[None] | None = None
        self.api_url = ""

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LoopHarness:
        self.thread.start()
        self.twin.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        engine = build_engine(self.settings, {"twin_url": self.twin.url}, progress=lambda _: None)
        self.engine = engine
        self.twin.sink = engine.submit
        await engine.start()
        app = create_app(engine.store, submit=engine.submit, approvals=engine.operations)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self._serve = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self.server is not None and self._serve is not None:
            self.server.should_exit = True
            await self._serve
        if self.engine is not None:
            await self.engine.stop()
            self.engine.close()

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self.twin.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # -- driving ------------------------------------------------------------------------

    def inject(self, target: str, fault: str) -> float:
        at = time.time()
        with self.twin.locked() as model:
            model.inject(target, fault)
        return at

    def twin_state(self, target: str) -> dict[str, Any]:
        with self.twin.locked() as model:
            return model.state(target)

    def wait_opened(self, target: str, timeout_s: float = 60) -> str:
        assert self.engine is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            opened = self.engine.store.list(target=target)
            if opened:
                return opened[-1].id
            time.sleep(0.2)
        raise AssertionError(f"no incident opened on {target}")

    def wait_settled(self, incident_id: str, timeout_s: float = 240) -> IncidentView:
        """Until the incident ended or waits for a person."""
        assert self.engine is not None
        deadline = time.monotonic() + timeout_s
        while True:
            incident = self.engine.store.get(incident_id)
            assert incident is not None
            if incident.terminal or incident.state == State.awaiting_approval:
                return incident
            if time.monotonic() > deadline:
                raise AssertionError(f"incident {incident_id} still {incident.state}")
            time.sleep(0.2)

    def approve(self, incident_id: str, comment: str = "looks right") -> httpx.Response:
        """The way a person approves: the REST API, naming the plan they looked at."""
        base = f"{self.api_url}/v1/incidents/{incident_id}"
        plan = httpx.get(f"{base}/plan", timeout=30)
        body = {"by": "e2e-operator", "comment": comment}
        if plan.status_code == 200:
            body["plan_hash"] = plan.json()["plan_hash"]
        return httpx.post(f"{base}/approve", json=body, timeout=30)


def gated_site(dest: Path, gate: Path, playbooks: Iterable[str], twin_url: str = "") -> Path:
    """A copy of the twin site whose own copy of the power-marketing pack (a site-local
    pack shadows the bundled one) has the given playbooks, after doing their work, wait
    for ``gate`` to exist: a run can be held open (to kill the daemon in the middle of
    it, or to see two runs at once) without any sleep. Returns the site's directory."""
    shutil.copytree(DEFAULT_SITE, dest)
    shutil.copytree(TWIN_PACK, dest / "packs" / TWIN_PACK.name)
    if twin_url:
        site_yaml = dest / "site.yaml"
        site_yaml.write_text(site_yaml.read_text().replace("http://127.0.0.1:9108", twin_url))
    gated_playbooks(dest / "packs" / TWIN_PACK.name / "playbooks", gate, playbooks)
    return dest


def gated_playbooks(folder: Path, gate: Path, playbooks: Iterable[str]) -> Path:
    """The given playbooks of ``folder`` wait for ``gate`` after doing their work."""
    dest = folder
    for name in playbooks:
        text = (dest / name).read_text()
        text += (
            "  post_tasks:\n"
            "    - name: Wait for the test's gate (not in check mode)\n"
            "      ansible.builtin.wait_for:\n"
            f"        path: {gate}\n"
            "        timeout: 600\n"
            "      when: not ansible_check_mode\n"
        )
        (dest / name).write_text(text)
    return dest


def settings_for(neo4j_settings: Settings, var_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        var_dir=var_dir,
        neo4j_uri=neo4j_settings.neo4j_uri,
        neo4j_user=neo4j_settings.neo4j_user,
        neo4j_password=neo4j_settings.neo4j_password,
        **overrides,
    )
