"""Two real workers (`mendloop run`) on one real PostgreSQL, the twin pushing to them:

1. the first worker takes every target; when the second joins, the leases rebalance and
   the two split the targets (and samples pushed to the non-owner are forwarded);
2. `kill -9` of a worker while its playbook runs: the other takes its targets after the
   lease TTL, reconciles the interrupted run through check mode and finishes the incident
   with exactly one run (the playbook's own side effect counted in the twin);
3. a third worker joins (rebalance again); an approval posted to a worker that does not
   own the incident's target is honoured once, by the owner.

The cache playbook is held open after its change (it waits for a gate file), so the kill
lands in the middle of a run that has already taken effect, as in tests/e2e.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from api.auth import Role, TokenStore
from kernel.config import DEFAULT_SITE, TWIN_PACK
from kernel.state import State
from loop.ledger import INTERRUPTED, Ledger
from loop.store import IncidentStore
from twin.model import Twin
from twin.server import TwinRunner

from .conftest import needs_postgres
from .procs import FailoverSink, Worker, holders, wait_for, worker_ids

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j, needs_postgres]
TARGETS = ("pm-site-1", "pm-site-2", "pm-site-3", "pm-site-4")
TTL_S = 6


def gated(dest: Path, gate: Path, twin_url: str) -> Path:
    """A copy of the twin site with its own copy of the power-marketing pack (a site-local
    pack shadows the bundled one) whose fix waits for ``gate``; the twin at ``twin_url``."""
    shutil.copytree(DEFAULT_SITE, dest)
    site_yaml = dest / "site.yaml"
    site_yaml.write_text(site_yaml.read_text().replace("http://127.0.0.1:9108", twin_url))
    shutil.copytree(TWIN_PACK, dest / "packs" / TWIN_PACK.name)
    book = dest / "packs" / TWIN_PACK.name / "playbooks" / "cache_scale_out.yml"
    book.write_text(
        book.read_text() + "  post_tasks:\n"
        "    - name: Wait for the test's gate (not in check mode)\n"
        "      ansible.builtin.wait_for:\n"
        f"        path: {gate}\n"
        "        timeout: 600\n"
        "      when: not ansible_check_mode\n"
    )
    return dest


class Estate:
    def __init__(self, neo4j_settings, pg_url: str, tmp: Path) -> None:
        self.tmp = tmp
        self.gate = tmp / "gate"
        self.store = IncidentStore(pg_url)
        self.ledger = Ledger(self.store.engine)
        tokens = TokenStore(self.store.engine)
        self.pusher = tokens.create("twin", Role.operator).token
        self.admin = tokens.create("ops", Role.admin).token
        self.twin = TwinRunner(Twin(targets=TARGETS, seed=5), tick_s=0.5, port=0)
        self.env = {
            **os.environ,
            "MENDLOOP_DATABASE_URL": pg_url,
            "MENDLOOP_WORKER_LEASE_TTL_S": str(TTL_S),
            "MENDLOOP_VERIFY_HOLD_S": "3",
            "MENDLOOP_VERIFY_TIMEOUT_S": "90",
            **neo4j_settings.neo4j_environ(),
        }
        self.workers: list[Worker] = []
        self.sink: FailoverSink | None = None

    def worker(self, name: str) -> Worker:
        if "MENDLOOP_SITE" not in self.env:  # the twin's port is known once it runs
            self.env["MENDLOOP_SITE"] = str(gated(self.tmp / "site", self.gate, self.twin.url))
        worker = Worker(name, {**self.env, "MENDLOOP_TWIN_PORT": str(self.twin.port)}, self.tmp)
        self.workers.append(worker.start())
        wait_for(lambda: httpx.get(f"{worker.api}/healthz").status_code == 200, "API up", [worker])
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def held_by(self, worker: Worker) -> set[str]:
        me = worker_ids(self.store.engine).get(f"http://127.0.0.1:{worker.port}")
        return {t for t, w in holders(self.store.engine).items() if w is not None and w == me}

    def incident_of(self, target: str) -> str | None:
        found = self.store.list(target=target)
        return found[0].id if found else None  # the newest

    def twin_actions(self, target: str) -> list[str]:
        with self.twin.locked() as model:
            return [a["action"] for a in model.state(target)["actions"]]

    def finished(self, incident_id: str) -> bool:
        incident = self.store.get(incident_id)
        return incident is not None and incident.terminal

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.twin.stop()
        if self.sink is not None:
            self.sink.close()
        self.store.close()


@pytest.fixture
def world(neo4j_settings, pg_url, tmp_path) -> Iterator[Estate]:
    from knowledge.graph import KnowledgeGraph

    graph = KnowledgeGraph.connect(neo4j_settings)
    try:
        graph._run("MATCH (n) DETACH DELETE n")  # the tests own the test graph
    finally:
        graph.close()
    estate = Estate(neo4j_settings, pg_url, tmp_path)
    estate.twin.start()
    try:
        yield estate
    finally:
        estate.close()


def test_workers_split_take_over_after_kill_9_and_honour_an_approval_sent_to_the_non_owner(
    world: Estate,
) -> None:
    a = world.worker("a")
    world.sink = FailoverSink([f"{a.api}/v1/samples"], world.pusher)
    world.twin.sink = world.sink
    wait_for(lambda: world.held_by(a) == set(TARGETS), "a alone holds every target", [a])

    # 1. a second worker joins: the leases rebalance, two targets each
    b = world.worker("b")
    world.sink.sinks.append(type(world.sink.sinks[0])(f"{b.api}/v1/samples", token=world.pusher))
    wait_for(
        lambda: len(world.held_by(a)) == 2 and len(world.held_by(b)) == 2,
        "the targets split 2/2 after b joined",
        world.live(),
    )
    mine_a, mine_b = world.held_by(a), world.held_by(b)
    assert not mine_a & mine_b and mine_a | mine_b == set(TARGETS)
    wait_for(
        lambda: a.status(world.admin)["intake"].get("forwarded", 0) > 0,
        "samples of b's targets pushed to a reach b (forwarded)",
        world.live(),
    )

    # 2. kill -9 of a while its playbook runs: b takes over, one run in all
    victim = sorted(mine_a)[0]
    with world.twin.locked() as model:
        model.inject(victim, "cache_saturation")
    wait_for(lambda: world.twin_actions(victim), "a's run changed the twin", world.live())
    incident_id = world.incident_of(victim)
    assert incident_id is not None
    assert world.store.get(incident_id).state == State.executing
    runs = world.ledger.runs(incident_id)
    assert [(r.phase, r.status) for r in runs][-1] == ("run", "started")
    a.kill9()
    world.gate.touch()
    wait_for(lambda: victim in world.held_by(b), "b took a's targets", [b])
    wait_for(lambda: world.finished(incident_id), "b finished a's incident", [b])
    incident = world.store.get(incident_id)
    assert incident.state == State.resolved, (incident.reason, b.tail())
    assert world.twin_actions(victim) == ["scale_out_cache"]  # the fix ran once
    runs = world.ledger.runs(incident_id)
    assert [(r.phase, r.status) for r in runs] == [
        ("check", "successful"),
        ("run", INTERRUPTED),
        ("reconcile-run", "successful"),
    ]
    assert runs[2].changed == 0  # check mode: nothing left to do

    # 3. a third worker joins (rebalance); an approval sent to it for b's target
    c = world.worker("c")
    wait_for(
        lambda: len(world.held_by(c)) == 2 and len(world.held_by(b)) == 2,
        "the targets split 2/2 after c joined",
        world.live(),
    )
    target = sorted(world.held_by(b) - {victim})[0]  # a target that had no incident yet
    world.ledger.pause(target, by="test", reason="a person decides on this one")
    before = world.incident_of(target)  # the victim's, when b's target is the one a lost
    with world.twin.locked() as model:
        model.inject(target, "cache_saturation")
    asked = wait_for(
        lambda: (i := world.incident_of(target)) != before and i,
        "a new incident opened on b's target",
        world.live(),
    )
    waiting = wait_for(
        lambda: (i := world.store.get(asked)) and i.state == State.awaiting_approval and i,
        "the incident waits for a person",
        world.live(),
    )
    assert waiting.target in world.held_by(b) and target not in world.held_by(c)
    headers = {"Authorization": f"Bearer {world.admin}"}
    plan = httpx.get(f"{c.api}/v1/incidents/{asked}/plan", headers=headers, timeout=30)
    body = {"by": "ops", "comment": "go", "plan_hash": plan.json()["plan_hash"]}
    approved = httpx.post(
        f"{c.api}/v1/incidents/{asked}/approve", json=body, headers=headers, timeout=30
    )
    assert approved.status_code == 200, approved.text
    wait_for(lambda: world.finished(asked), "the owner ran the approved fix", world.live())
    done = world.store.get(asked)
    assert done.state == State.resolved, (done.reason, b.tail())
    assert world.twin_actions(target) == ["scale_out_cache"]
    assert [r.phase for r in world.ledger.runs(asked)].count("run") == 1
    status_b = b.status(world.admin)
    assert status_b["cluster"]["heard"] + status_b["cluster"]["polled"] >= 1
    with world.store.engine.connect() as conn:
        runs_elsewhere = conn.execute(
            text("SELECT count(*) FROM execution_run WHERE incident_id = :i AND phase = 'run'"),
            {"i": asked},
        ).scalar_one()
    assert runs_elsewhere == 1
