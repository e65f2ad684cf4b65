"""The linux-host pack on real things of this host: two tmpfs the lab mounts (a data file
system filled with old temporary files, a log file system whose log grows), a managed
process (the Debian redis-server) killed and stopped (SIGSTOP: it runs and answers
nothing), watched by the Debian node_exporter, process-exporter and
blackbox exporter, scraped by a real Prometheus, pulled by the real daemon on a site that
includes the pack. One start for the module (mendloop/labpacks/linuxhost.py, the scenario
`mendloop eval packs` measures too); each fault must end in a verified fix with the host
healthy again. Then the disk-full fault once more through the real prometheus-alertmanager
(the pack's alerting rules in Prometheus, the webhook into a daemon that pulls nothing).
Skipped, saying why, where the lab may not mount a tmpfs (not root).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.config import Settings
from mendloop.labclient import Daemon, run_fault
from mendloop.labpacks.linuxhost import LinuxHostScenario, MountRefused, free_share
from mendloop.labsite import check
from mendloop.packeval import start_path
from mendloop.servicelab import Lab

from ..e2e.conftest import assert_verified_fix, empty_graph

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
SOLUTIONS = {
    "disk_full": "sol-free-disk-space",
    "log_volume": "sol-rotate-logs",
    "process_down": "sol-restart-process",
    "process_hung": "sol-restart-process",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, LinuxHostScenario, Path]]:
    root = tmp_path_factory.mktemp("linux-host-lab")
    with Lab(root / "lab") as lab:
        try:
            scenario = LinuxHostScenario(lab)
        except MountRefused as exc:
            pytest.skip(f"the lab needs real file systems: {exc}")
        site = scenario.site(root / "site")
        yield lab, scenario, site
    assert not any(p.is_mount() for p in (scenario.data, scenario.logs))


@pytest.fixture(scope="module")
def pulled(lab, neo4j_settings: Settings) -> Iterator[Daemon]:
    """Prometheus scraping the three exporters, the daemon pulling from it."""
    lab_, scenario, site = lab
    empty_graph(neo4j_settings)
    daemon, feeders = start_path(lab_, scenario, "pull", site, neo4j_settings.neo4j_environ())
    yield daemon
    daemon.close()
    daemon.proc.stop()
    for proc in feeders:
        proc.stop()


def test_the_lab_site_passes_site_check(lab) -> None:
    _, scenario, site = lab
    assert check(site) == []
    assert scenario.data.is_mount() and scenario.logs.is_mount()


def test_faults_in_sequence_each_verified_fixed(lab, pulled: Daemon) -> None:
    """Disk full, log volume, process down, process hung. (The scenario's memory pressure
    fault depends on what the machine's other users do with its memory meanwhile: it is
    measured by `mendloop eval packs`, not asserted here.)"""
    _, scenario, _ = lab
    faults = [f for f in scenario.faults if f.name != "memory_pressure"]
    for fault in faults:
        outcome = run_fault(pulled, scenario.target, fault.inject)
        assert_verified_fix(outcome, fault.expected, pulled)
        assert fault.healthy(), fault.name
        fault.reset()
    decided = [i.decision.solution_id for i in pulled.incidents(scenario.target) if i.decision]
    assert decided == [SOLUTIONS[f.name] for f in faults]
    # what the fixes did: the old junk is gone, the log's content kept compressed
    assert free_share(scenario.data) > 0.9


def test_disk_full_through_alertmanager(lab, pulled: Daemon, neo4j_settings) -> None:
    """After the pulled run (its daemon stopped): the firing HostDiskFull alert opens the
    incident, the resolved one verifies the fix."""
    lab_, scenario, site = lab
    pulled.close()
    pulled.proc.stop()
    daemon, feeders = start_path(
        lab_, scenario, "alertmanager", site, neo4j_settings.neo4j_environ()
    )
    try:
        fault = next(f for f in scenario.faults if f.name == "disk_full")
        outcome = run_fault(daemon, scenario.target, fault.inject, settle_timeout=300)
        assert_verified_fix(outcome, fault.expected, daemon)
        incident = daemon.store.get(outcome.incident_id)
        assert incident is not None and incident.verification is not None
        assert [f.rule_id for f in incident.findings] == ["alert-host-disk-full"]
        checks = {c.series: c for c in incident.verification.checks}
        assert checks["alert_host_disk_full"].healthy
        assert checks["alert_host_disk_full"].value == 0.0
        assert fault.healthy()
        counters = daemon.get("/v1/intake/alertmanager")["counters"]
        assert counters["firing_new"] >= 1 and counters["resolved"] >= 1
        fault.reset()
    finally:
        daemon.close()
        for proc in feeders:
            proc.stop()
