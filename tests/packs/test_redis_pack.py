"""The redis pack on a real Redis: the Debian redis-server and prometheus-redis-exporter,
scraped by a real Prometheus, watched by the real daemon (`mendloop run`) on a site that
includes the pack. One start for the module (mendloop/labpacks/redis.py, the scenario
`mendloop eval packs` measures too); the faults run in sequence, each must end in a
verified fix with the service healthy again: Redis killed (linux-host's identity-checked
restart), memory pressure (maxmemory raised), too many clients (maxclients raised). Then
memory pressure once more through the real prometheus-alertmanager (alerting rules in
Prometheus, the webhook into a daemon that pulls nothing). The pack's playbooks are also
run directly: check mode changes nothing, the fix captures the old value, the rollback
puts it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.config import Settings
from kernel.models import RunStatus
from loop.runner import PlaybookRunner
from loop.solutions import check_file
from mendloop.labclient import Daemon, run_fault
from mendloop.labpacks.redis import MAXMEMORY, PACK_DIR, RedisScenario, redis_call
from mendloop.labsite import check
from mendloop.packeval import start_path
from mendloop.servicelab import Lab

from ..e2e.conftest import assert_verified_fix, empty_graph

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, RedisScenario, Path]]:
    root = tmp_path_factory.mktemp("redis-lab")
    with Lab(root / "lab") as lab:
        scenario = RedisScenario(lab)
        site = scenario.site(root / "site")
        yield lab, scenario, site


@pytest.fixture(scope="module")
def pulled(lab, neo4j_settings: Settings) -> Iterator[Daemon]:
    """Prometheus scraping the exporter, the daemon pulling from it."""
    lab_, scenario, site = lab
    empty_graph(neo4j_settings)
    daemon, feeders = start_path(lab_, scenario, "pull", site, neo4j_settings.neo4j_environ())
    yield daemon
    daemon.close()
    daemon.proc.stop()
    for proc in feeders:
        proc.stop()


def test_the_lab_site_passes_site_check(lab) -> None:
    _, _, site = lab
    assert check(site) == []


def test_playbooks_check_mode_fix_and_rollback(lab, tmp_path: Path) -> None:
    """raise_maxmemory / raise_maxclients on the real Redis through the real runner:
    check mode changes nothing, the fix raises within the limit and captures the old
    value, the rollback given that captured value restores it."""
    _, scenario, _ = lab
    specs, errors = check_file(PACK_DIR / "solutions" / "redis.yaml", PACK_DIR / "playbooks")
    assert errors == []
    runner = HostRunner(tmp_path, scenario.inventory())
    for sid, setting, base in (
        ("sol-redis-raise-maxmemory", "maxmemory", MAXMEMORY),
        ("sol-redis-raise-maxclients", "maxclients", 40),
    ):
        spec = specs[sid]
        extra = spec.render_vars({"target": scenario.target}, {"grow_pct": 50})
        dry = runner.run_detailed(spec.playbook, extra, check=True)
        assert dry.run.status == RunStatus.successful, dry.events[-5:]
        assert current(scenario, setting) == base
        done = runner.run_detailed(spec.playbook, extra, check=False)
        assert done.run.status == RunStatus.successful, done.events[-5:]
        assert current(scenario, setting) == base * 150 // 100
        assert done.captured == {f"old_{setting}": str(base)}
        assert spec.rollback_playbook is not None
        back = runner.run_detailed(
            spec.rollback_playbook, {**extra, f"captured_old_{setting}": str(base)}, check=False
        )
        assert back.run.status == RunStatus.successful, back.events[-5:]
        assert current(scenario, setting) == base
        refused = runner.run_detailed(
            spec.rollback_playbook, {**extra, f"captured_old_{setting}": "1; FLUSHALL"}, False
        )
        assert refused.run.status == RunStatus.failed
        assert current(scenario, setting) == base


def test_faults_in_sequence_each_verified_fixed(lab, pulled: Daemon) -> None:
    _, scenario, _ = lab
    for fault in scenario.faults:
        outcome = run_fault(pulled, scenario.target, fault.inject)
        assert_verified_fix(outcome, fault.expected, pulled)
        assert fault.healthy(), fault.name
        fault.reset()
    solutions = [i.decision.solution_id for i in pulled.incidents(scenario.target) if i.decision]
    assert solutions == [
        "sol-restart-process",
        "sol-redis-raise-maxmemory",
        "sol-redis-raise-maxclients",
    ]


def test_memory_pressure_through_alertmanager(lab, pulled: Daemon, neo4j_settings) -> None:
    """After the pulled run (its daemon stopped): Prometheus evaluates the pack's alerting
    rules, the real Alertmanager sends the webhook to a daemon that pulls nothing; the
    firing alert opens the incident, the resolved one verifies the fix."""
    lab_, scenario, site = lab
    pulled.close()
    pulled.proc.stop()
    daemon, feeders = start_path(
        lab_, scenario, "alertmanager", site, neo4j_settings.neo4j_environ()
    )
    try:
        fault = next(f for f in scenario.faults if f.name == "memory_pressure")
        outcome = run_fault(daemon, scenario.target, fault.inject, settle_timeout=300)
        assert_verified_fix(outcome, fault.expected, daemon)
        incident = daemon.store.get(outcome.incident_id)
        assert incident is not None and incident.verification is not None
        assert [f.rule_id for f in incident.findings] == ["alert-redis-memory-pressure"]
        checks = {c.series: c for c in incident.verification.checks}
        assert checks["alert_redis_memory_pressure"].healthy
        assert checks["alert_redis_memory_pressure"].value == 0.0
        assert fault.healthy()
        counters = daemon.get("/v1/intake/alertmanager")["counters"]
        assert counters["firing_new"] >= 1 and counters["resolved"] >= 1
        fault.reset()
    finally:
        daemon.close()
        for proc in feeders:
            proc.stop()


def current(scenario: RedisScenario, setting: str) -> int:
    return int(redis_call(scenario.port, "CONFIG", "GET", setting)[1])


class HostRunner(PlaybookRunner):
    """The real runner on the pack's playbooks, localhost carrying the target's host vars."""

    def __init__(self, work: Path, host_vars: dict[str, Any]) -> None:
        super().__init__(PACK_DIR / "playbooks", work, timeout_s=120)
        self.host_vars = host_vars

    def _inventory(self) -> dict[str, Any]:
        inventory = super()._inventory()
        assert isinstance(inventory, dict)
        inventory["all"]["hosts"]["localhost"].update(self.host_vars)
        return inventory
