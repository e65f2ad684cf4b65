"""The nginx pack end to end: a real nginx (Debian's binary, its own config tree on loopback
ports in the lab folder), its upstream, prometheus-nginx-exporter, a real Prometheus the
daemon pulls from, and a second Prometheus whose NginxDown alert goes through a real
Alertmanager to the daemon's webhook; the daemon runs on a site that includes the pack.
One start for the module (mendloop/servicelab.py, mendloop/labpacks/nginx.py); the faults
run in sequence, each asserting a verified fix and nginx serving again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel.config import Settings
from mendloop.labclient import Daemon, FaultOutcome, run_fault
from mendloop.labpacks import Fault
from mendloop.labpacks.nginx import NGINX, NginxScenario
from mendloop.labsite import check
from mendloop.servicelab import Lab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.neo4j,
    pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx (nginx-light)"),
]


@dataclass
class Running:
    lab: Lab
    scenario: NginxScenario
    daemon: Daemon
    site: Path
    neo4j: dict[str, str]

    def fault(self, name: str) -> Fault:
        return next(f for f in self.scenario.faults if f.name == name)

    def fix(self, name: str) -> FaultOutcome:
        fault = self.fault(name)
        outcome = run_fault(self.daemon, self.scenario.target, fault.inject)
        assert outcome.fault == fault.expected, outcome
        assert outcome.state == "resolved", (outcome, self.daemon.proc.log_tail())
        assert outcome.verification == "passed", outcome
        assert fault.healthy(), f"{name}: resolved but nginx does not serve"
        return outcome

    def through_alertmanager(self) -> None:
        """The pulling daemon stopped (two daemons would both mend the same nginx); one
        that only hears Alertmanager, fed by a Prometheus with the pack's alert rule."""
        self.daemon.proc.stop()
        self.daemon.close()
        self.daemon = self.lab.daemon(self.site, self.neo4j, name="mendloop-am")
        manager = self.lab.alertmanager(
            f"{self.daemon.url}/v1/alerts/alertmanager", self.daemon.token
        )
        self.lab.prometheus(
            {"nginx": self.scenario.scrape["nginx"]},
            {"nginx": self.scenario.labels["nginx"]},
            alertmanager=manager.url,
            rule_files=self.scenario.rule_files(),
            name="prometheus-alerts",
        )


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, neo4j_settings: Settings
) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("nginx-e2e")
    neo4j = neo4j_settings.neo4j_environ()
    with Lab(root / "lab") as lab:
        scenario = NginxScenario(lab)
        site = scenario.site(root / "site")
        assert check(site) == []  # `mendloop site check` passes on the lab's site
        pull = lab.prometheus(scenario.scrape, scenario.labels)
        daemon = lab.daemon(site, neo4j, prometheus_url=pull.url)
        state = Running(lab, scenario, daemon, site, neo4j)
        try:
            yield state
        finally:
            state.daemon.close()


def test_nginx_down_is_restarted(running: Running) -> None:
    outcome = running.fix("nginx_down")
    assert outcome.solution == "sol-nginx-restart"
    running.fault("nginx_down").reset()


def test_a_bad_config_is_rolled_back_to_the_last_good_copy(running: Running) -> None:
    scenario = running.scenario
    outcome = running.fix("nginx_bad_config")
    assert outcome.solution == "sol-nginx-config-rollback"
    kept = sorted(p.name for p in (scenario.folder / "state").iterdir())
    assert any(name.startswith("rejected-") for name in kept), kept  # the bad tree, kept
    assert scenario.site_conf.read_text() == scenario.good  # the rollback, not the reset
    running.fault("nginx_bad_config").reset()


def test_a_failed_upstream_is_started_again(running: Running) -> None:
    outcome = running.fix("nginx_upstream_failed")
    assert outcome.solution == "sol-nginx-upstream-start"
    running.fault("nginx_upstream_failed").reset()


def test_nginx_down_through_alertmanager_opens_and_verifies(running: Running) -> None:
    running.through_alertmanager()
    outcome = running.fix("nginx_down")
    assert outcome.solution == "sol-nginx-restart"
    incident = running.daemon.store.get(outcome.incident_id)
    assert incident is not None
    assert {f.rule_id for f in incident.findings} == {"nginx-down-alert"}  # no pull here
    counters = dict(running.daemon.get("/v1/intake/alertmanager")["counters"])
    assert counters["firing_new"] >= 1 and counters["resolved"] >= 1, counters  # the evidence
    running.fault("nginx_down").reset()
